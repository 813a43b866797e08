"""Recorded update histograms as Weights & Biases histograms, with our bins (needs ``adamdist[wandb]``)."""

from __future__ import annotations

import numpy as np

from .._optional import require
from ..results import UpdateStats
from ._common import check_step_offset, check_tag, scalar_rows

wandb = require("wandb", "wandb", __name__)

__all__ = ["to_wandb", "WANDB_MAX_BINS"]

#: ``wandb.Histogram`` holds at most this many bins.
WANDB_MAX_BINS = 512


def to_wandb(stats: UpdateStats, run=None, tag: str = "updates", *, step_offset: int = 0) -> int:
    r"""Log every recorded step's histogram and moments to a W&B run.

    Parameters
    ----------
    stats : UpdateStats
        A recording or a simulation.
    run : wandb Run, optional
        Default ``wandb.run`` (the active run). With Lightning, ``WandbLogger.experiment``.
    tag : str
        Histograms are logged as ``"{tag}/{name}"`` (``wandb.Histogram(np_histogram=
        (counts, edges))``: our bins), the moments as ``"{tag}/{name}/{moment}"``.
    step_offset : int
        Added to the recorded step :math:`m`.

    Returns
    -------
    int
        The number of histograms logged.

    Notes
    -----
    The values are plotted against their own x axis ``"{tag}/step"`` (``define_metric``),
    so that logging a finished recording never conflicts with the run's own step counter
    (W&B drops rows logged at a step below the run's current one). Rows without a
    gradient or without entries inside the edges are skipped.
    """
    if not isinstance(stats, UpdateStats):
        raise TypeError(f"stats must be an UpdateStats, got {type(stats).__name__}")
    tag = check_tag(tag)
    step_offset = check_step_offset(step_offset)
    if stats.edges.size - 1 > WANDB_MAX_BINS:
        raise ValueError(f"stats has {stats.edges.size - 1} bins; wandb.Histogram holds at most {WANDB_MAX_BINS}")
    run = wandb.run if run is None else run
    if run is None or not hasattr(run, "log"):
        raise ValueError("to_wandb needs a run: pass run=wandb.init(...) or call it inside an active run")
    axis = f"{tag}/step"
    run.define_metric(axis)
    run.define_metric(f"{tag}/*", step_metric=axis)
    logged = 0
    scalars = dict(scalar_rows(stats, tag))
    for i, step in enumerate(stats.steps):
        row = {axis: int(step) + int(step_offset), **scalars[int(step)]}
        for j, name in enumerate(stats.names):
            counts = stats.hist[i, j]
            if stats.no_grad[i, j] or counts.sum() == 0:
                continue
            row[f"{tag}/{name}"] = wandb.Histogram(np_histogram=(counts.astype(np.int64), stats.edges))
            logged += 1
        run.log(row)
    return logged
