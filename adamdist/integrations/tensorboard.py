"""Recorded update histograms as TensorBoard histograms, with our bins (needs ``adamdist[tensorboard]``)."""

from __future__ import annotations

import os


from .._optional import require
from ..results import UpdateStats
from ._common import check_step_offset, check_tag, scalar_rows

require("tensorboard", "tensorboard", __name__)

__all__ = ["to_tensorboard"]


def to_tensorboard(stats: UpdateStats, writer_or_logdir, tag: str = "updates", *, step_offset: int = 0) -> int:
    r"""Write every recorded step's histogram and moments to TensorBoard.

    Parameters
    ----------
    stats : UpdateStats
        A recording (:meth:`adamdist.capture.UpdateRecorder.result`) or a simulation.
    writer_or_logdir : SummaryWriter or path
        A ``torch.utils.tensorboard.SummaryWriter`` (e.g. Lightning's
        ``TensorBoardLogger.experiment``), or a folder for a new writer that is closed
        afterwards.
    tag : str
        Histograms go to ``"{tag}/{name}"``, the moments ``mean``, ``var``,
        ``abs_var`` and ``skew`` of :math:`u = \Delta\theta/\eta` to
        ``"{tag}/{name}/{moment}"``.
    step_offset : int
        Added to the recorded step :math:`m` to give TensorBoard's ``global_step``
        (e.g. the optimizer steps taken before the recorder was attached).

    Returns
    -------
    int
        The number of histograms written.

    Notes
    -----
    The histograms are written in TensorBoard's raw bucket form
    (``add_histogram_raw``): bucket :math:`k` is :math:`(e_k, e_{k+1}]` of the
    recording's own edges, so TensorBoard shows our bins, not a re-binning.
    ``num`` is the count inside the edges (under/overflow left out, as in the
    book's charts); ``sum`` and ``sum_squares`` are that count times the mean and
    second moment of all finite entries. Steps where a tensor had no gradient, or no
    entry inside the edges, are skipped.

    Examples
    --------
    >>> import tempfile
    >>> from adamdist.simulate import run
    >>> folder = tempfile.mkdtemp()
    >>> to_tensorboard(run("average", n=1000, steps=3), folder)
    3
    """
    if not isinstance(stats, UpdateStats):
        raise TypeError(f"stats must be an UpdateStats, got {type(stats).__name__}")
    tag = check_tag(tag)
    step_offset = check_step_offset(step_offset)
    own = isinstance(writer_or_logdir, (str, os.PathLike))
    if own:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(os.fspath(writer_or_logdir))
    else:
        writer = writer_or_logdir
        if not (hasattr(writer, "add_histogram_raw") and hasattr(writer, "add_scalar")):
            raise TypeError(f"writer_or_logdir must be a SummaryWriter or a folder, got {type(writer).__name__}")
    edges = stats.edges
    limits = edges[1:].tolist()
    written = 0
    try:
        for i, step in enumerate(stats.steps):
            for j, name in enumerate(stats.names):
                counts = stats.hist[i, j]
                inside = int(counts.sum())
                if stats.no_grad[i, j] or inside == 0:
                    continue
                mean, var = float(stats.mean[i, j]), float(stats.var[i, j])
                writer.add_histogram_raw(f"{tag}/{name}", min=float(edges[0]), max=float(edges[-1]), num=inside,
                                         sum=inside * mean, sum_squares=inside * (var + mean * mean),
                                         bucket_limits=limits, bucket_counts=counts.tolist(),
                                         global_step=int(step) + int(step_offset))
                written += 1
        for step, values in scalar_rows(stats, tag):
            for key, value in values.items():
                writer.add_scalar(key, value, global_step=step + int(step_offset))
        writer.flush()
    finally:
        if own:
            writer.close()
    return written
