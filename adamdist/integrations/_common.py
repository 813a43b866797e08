"""What the callbacks share: which parameters a recorder tracks, joining recorders, the moments to log."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from .._validation import check_int
from ..results import _ARRAY_FIELDS, UpdateStats

#: Moments of :class:`~adamdist.results.UpdateStats` sent to a logger as scalars, per tensor and step.
MOMENTS = ("mean", "var", "abs_var", "skew")


def check_log_every(log_every):
    """``None`` or a positive int (log every ``log_every`` optimizer steps)."""
    return None if log_every is None else check_int(log_every, "log_every", low=1)


def params_held_by(optimizer, module, params) -> dict:
    """The named parameters of ``module`` (all, or those named in ``params``) that ``optimizer`` updates.

    ``params``: ``None`` (every parameter), a sequence of names, or a dict name -> parameter.
    A name that is in no parameter of ``module`` raises ``ValueError``; names held by
    another optimizer are simply not this one's.
    """
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    if params is None:
        named = dict(module.named_parameters())
    elif isinstance(params, Mapping):
        named = dict(params)
    elif isinstance(params, (str, bytes)):
        raise TypeError(f"params must be None, a list of parameter names or a dict, got {params!r}")
    else:
        table = dict(module.named_parameters())
        names = list(params)
        missing = [n for n in names if n not in table]
        if missing:
            raise ValueError(f"params names {missing} are not parameters of the model; it has e.g. {list(table)[:8]}")
        named = {n: table[n] for n in names}
    return {n: p for n, p in named.items() if id(p) in held}


def join(parts: list[UpdateStats]) -> UpdateStats:
    """One :class:`UpdateStats` with the tensors of several recorders that recorded the same steps.

    Each optimizer of a run has its own recorder; when they step together (the usual case)
    their results are one run. Different steps raise ``ValueError``.
    """
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    for other in parts[1:]:
        if not np.array_equal(other.steps, first.steps) or not np.array_equal(other.edges, first.edges):
            raise ValueError("the optimizers recorded different steps (or bins): ask for one with result(optimizer=i)")
    arrays = {f: np.concatenate([getattr(p, f) for p in parts], axis=1) for f in (*_ARRAY_FIELDS, "no_grad")}
    samples = {k: v for p in parts for k, v in p.samples.items()}
    metadata = dict(first.metadata, optimizers=[dict(p.metadata) for p in parts])
    return UpdateStats(steps=first.steps, names=sum((p.names for p in parts), ()), edges=first.edges,
                       samples=samples, metadata=metadata, **arrays)


def scalar_rows(stats: UpdateStats, tag: str):
    """``(step, {f"{tag}/{name}/{moment}": value})`` per recorded step: the finite moments of tensors with a gradient."""
    for i, step in enumerate(stats.steps):
        values = {}
        for j, name in enumerate(stats.names):
            if stats.no_grad[i, j]:
                continue
            for moment in MOMENTS:
                value = float(getattr(stats, moment)[i, j])
                if math.isfinite(value):
                    values[f"{tag}/{name}/{moment}"] = value
        yield int(step), values


def check_step_offset(step_offset) -> int:
    if isinstance(step_offset, bool) or not isinstance(step_offset, (int, np.integer)) or step_offset < 0:
        raise ValueError(f"step_offset must be a non-negative int, got {step_offset!r}")
    return int(step_offset)


def check_tag(tag) -> str:
    if not isinstance(tag, str) or not tag.strip("/"):
        raise ValueError(f"tag must be a non-empty string, got {tag!r}")
    return tag.strip("/")
