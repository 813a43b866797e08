"""A Hugging Face ``transformers.Trainer`` callback that records the optimizer's updates (``adamdist[hf]``)."""

from __future__ import annotations

import os

from .._optional import require
from ._common import check_log_every, check_tag, params_held_by
from ._logging import RecorderSet, send_to

transformers = require("transformers", "hf", __name__)

__all__ = ["UpdateDistributionCallback"]


def _unwrap(optimizer):
    import torch

    # accelerate's AcceleratedOptimizer (what Trainer holds) forwards step() to the torch optimizer
    # inside it; the recorder's hooks belong on that one.
    while isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer):
        optimizer = optimizer.optimizer
    return optimizer


class UpdateDistributionCallback(transformers.TrainerCallback):
    r"""Record :math:`u = \Delta\theta/\eta` of a ``transformers.Trainer`` run.

    At ``on_train_begin`` an :class:`~adamdist.capture.UpdateRecorder` is attached to the
    trainer's optimizer (the torch optimizer inside accelerate's wrapper), tracking the
    model's parameters it holds; at ``on_train_end`` it is detached. An optimizer step is
    a step (``gradient_accumulation_steps`` batches make one).

    Parameters
    ----------
    params, steps, bins, sample_size, seed, record_grad
        As for :class:`adamdist.integrations.lightning.UpdateDistributionCallback`.
    log_every : int, optional
        Send the new steps every ``log_every`` optimizer steps. ``None`` (default): at the
        trainer's own logging steps (``logging_steps``, the ``on_log`` event), and at the
        end of training.
    log_to : SummaryWriter, folder, wandb run, or None
        Where to send them. ``None``: where the trainer reports. ``"tensorboard"`` in
        ``report_to`` writes to the folder the trainer's TensorBoard callback uses when it is
        named (``TENSORBOARD_LOGGING_DIR``, or ``logging_dir`` in transformers < 5), else to
        ``output_dir/runs/adamdist_updates``; ``"wandb"`` logs to the active ``wandb.run``.
        Neither means no logging.
    tag : str
        Prefix of the logged names.
    """

    def __init__(self, params=None, steps=None, bins=None, sample_size: int = 2000, log_every: int | None = None,
                 *, log_to=None, tag: str = "updates", seed: int = 0, record_grad: bool = False):
        self.params = params
        self.recorder_options = dict(steps=steps, bins=bins, sample_size=sample_size, seed=seed,
                                     record_grad=record_grad)
        self.log_every = check_log_every(log_every)
        self.log_to = log_to
        self.tag = check_tag(tag)
        self._set = None
        self._stats = None
        self._targets = None
        self._own_writer = None

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        from ..capture import UpdateRecorder

        if model is None or optimizer is None:
            raise ValueError("UpdateDistributionCallback: the Trainer passed no model or optimizer to on_train_begin")
        optimizer = _unwrap(optimizer)
        named = params_held_by(optimizer, model, self.params)
        if not named:
            raise ValueError("UpdateDistributionCallback: the trainer's optimizer holds no selected parameter")
        self._set = RecorderSet([UpdateRecorder(optimizer, named, **self.recorder_options).attach()], self.tag)
        self._targets = self._resolve_targets(args) if state.is_world_process_zero else []

    def _resolve_targets(self, args) -> list:
        if self.log_to is not None:
            if isinstance(self.log_to, (str, os.PathLike)):
                return [self._writer(os.fspath(self.log_to))]
            return [self.log_to]
        report_to = args.report_to if isinstance(args.report_to, (list, tuple)) else [args.report_to]
        targets = []
        if "tensorboard" in report_to or "all" in report_to:
            logdir = (os.getenv("TENSORBOARD_LOGGING_DIR") or getattr(args, "logging_dir", None)
                      or os.path.join(args.output_dir, "runs", "adamdist_updates"))
            targets.append(self._writer(os.path.expanduser(logdir)))
        if "wandb" in report_to or "all" in report_to:
            import wandb

            if wandb.run is not None:
                targets.append(wandb.run)
        return targets

    def _writer(self, folder: str):
        """The TensorBoard writer this callback opens (and closes at the end of training)."""
        from torch.utils.tensorboard import SummaryWriter

        self._own_writer = SummaryWriter(folder)
        return self._own_writer

    def _log(self):
        if self._set is not None and self._targets:
            self._set.log_new(lambda stats: [send_to(t, stats, self.tag) for t in self._targets])

    def on_step_end(self, args, state, control, **kwargs):
        if self.log_every is not None and self._set is not None:
            if self._set.completed_steps() >= self._set.logged_through + self.log_every:
                self._log()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.log_every is None:
            self._log()

    def on_train_end(self, args, state, control, **kwargs):
        if self._set is None:
            return
        self._log()
        self._stats = self._set.result()
        self._set.detach()
        if self._own_writer is not None:
            self._own_writer.close()
            self._own_writer = None

    def result(self, optimizer: int | None = None):
        """The recorded :class:`~adamdist.results.UpdateStats` (during training: the steps so far)."""
        if self._set is None:
            raise RuntimeError("the callback has not been part of a training run yet")
        if optimizer is None and self._stats is not None:
            return self._stats
        return self._set.result(optimizer)
