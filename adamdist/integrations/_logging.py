"""Sending a recorder's new rows to loggers, shared by the Lightning and Hugging Face callbacks."""

from __future__ import annotations

import warnings

from ..results import UpdateStats
from ._common import join, scalar_rows


class RecorderSet:
    """The recorders of one training run (one per optimizer), and how far they were logged.

    A failure while logging warns and stops the logging; it never raises into the
    training loop (the recording itself goes on).
    """

    def __init__(self, recorders, tag: str):
        self.recorders = list(recorders)
        self.tag = tag
        self.logged_through = 0  # the last recorded step sent to the loggers
        self.failed = False

    def completed_steps(self) -> int:
        return min(r.completed_steps for r in self.recorders)

    def result(self, optimizer: int | None = None, since: int | None = None) -> UpdateStats:
        if optimizer is not None:
            if not 0 <= optimizer < len(self.recorders):
                raise ValueError(f"optimizer must be in [0, {len(self.recorders) - 1}], got {optimizer!r}")
            return self.recorders[optimizer].result(since=since)
        parts = [r.result(since=since) for r in self.recorders]
        return None if any(p is None for p in parts) else join(parts)

    def log_new(self, send) -> None:
        """``send(stats)`` with the rows recorded since the last call (if any); only those are copied."""
        if self.failed:
            return
        try:
            new = self.result(since=self.logged_through)
            if new is None or not new.steps.size:
                return
            send(new)
            self.logged_through = int(new.steps[-1])
        except Exception as err:  # noqa: BLE001 - a logger's fault must not stop the user's training
            self.failed = True
            warnings.warn(f"adamdist: logging the update histograms failed and is switched off: "
                          f"{type(err).__name__}: {err}", RuntimeWarning, stacklevel=2)

    def detach(self) -> None:
        for r in self.recorders:
            r.detach()


def send_to(target, stats: UpdateStats, tag: str) -> None:
    """Send ``stats`` to a TensorBoard writer, a W&B run, or anything with ``log_metrics(dict, step)``."""
    if hasattr(target, "add_histogram_raw"):
        from .tensorboard import to_tensorboard

        to_tensorboard(stats, target, tag)
    elif hasattr(target, "define_metric") and hasattr(target, "log"):
        from .wandb import to_wandb

        to_wandb(stats, target, tag)
    elif hasattr(target, "log_metrics"):
        for step, values in scalar_rows(stats, tag):
            target.log_metrics(values, step=step)
    else:
        raise TypeError(f"cannot log to {type(target).__name__}: pass a SummaryWriter, a wandb run or a logger "
                        f"with log_metrics")
