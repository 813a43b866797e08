"""A PyTorch Lightning callback that records the optimizer's updates (needs ``adamdist[lightning]``)."""

from __future__ import annotations

from .._optional import require
from ._common import check_log_every, check_tag, params_held_by
from ._logging import RecorderSet, send_to

pl = require("lightning.pytorch", "lightning", __name__)

__all__ = ["UpdateDistributionCallback"]


class UpdateDistributionCallback(pl.Callback):
    r"""Record :math:`u = \Delta\theta/\eta` of every optimizer of a Lightning fit.

    At ``on_fit_start`` an :class:`~adamdist.capture.UpdateRecorder` is attached to each
    of ``trainer.optimizers`` (tracking the module's parameters that optimizer holds); at
    ``on_fit_end`` they are detached. The recorder's rules hold: an optimizer step is a
    step (with gradient accumulation, the batches in between are not), a step that raises
    is not counted, nothing raises into the training step, and under ``strategy="ddp"``
    rank 0 records (the replicas are identical after the step).

    Parameters
    ----------
    params : None, sequence of str, or dict
        What to track: every parameter of the LightningModule (default), the named ones,
        or a dict name -> parameter.
    steps, bins, sample_size, seed, record_grad
        As for :class:`~adamdist.capture.UpdateRecorder`; ``steps`` counts optimizer
        steps from the start of the fit.
    log_every : int, optional
        Every ``log_every`` optimizer steps (and at the end of the fit), send the steps
        recorded since the last time to each of the trainer's loggers: histograms and
        moments to a ``TensorBoardLogger`` (:func:`~adamdist.integrations.tensorboard.to_tensorboard`)
        or a ``WandbLogger`` (:func:`~adamdist.integrations.wandb.to_wandb`), the moments to
        any other logger (``log_metrics``). The statistics are read from the recorder
        between steps, never inside one. ``None``: no logging.
    tag : str
        Prefix of the logged names.

    Examples
    --------
    In a training script (``tests/test_integrations_lightning.py`` runs such fits)::

        callback = UpdateDistributionCallback(steps=20, log_every=5)
        lightning.Trainer(callbacks=[callback], max_steps=20).fit(model, data)
        callback.result().to_frame("moments")
    """

    def __init__(self, params=None, steps=None, bins=None, sample_size: int = 2000, log_every: int | None = None,
                 *, tag: str = "updates", seed: int = 0, record_grad: bool = False):
        super().__init__()
        self.params = params
        self.recorder_options = dict(steps=steps, bins=bins, sample_size=sample_size, seed=seed,
                                     record_grad=record_grad)
        self.log_every = check_log_every(log_every)
        self.tag = check_tag(tag)
        self._set = None
        self._stats = None

    def on_fit_start(self, trainer, pl_module) -> None:
        from ..capture import UpdateRecorder

        recorders = []
        for optimizer in trainer.optimizers:
            named = params_held_by(optimizer, pl_module, self.params)
            if named:
                recorders.append(UpdateRecorder(optimizer, named, **self.recorder_options).attach())
        if not recorders:
            raise ValueError("UpdateDistributionCallback: no optimizer of the trainer holds a selected parameter")
        self._set = RecorderSet(recorders, self.tag)
        self._stats = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._set is not None and self.log_every is not None:
            done = self._set.completed_steps()
            if done >= self._set.logged_through + self.log_every:
                self._log(trainer)

    def on_fit_end(self, trainer, pl_module) -> None:
        if self._set is None:
            return
        if self.log_every is not None:
            self._log(trainer)
        self._stats = self._set.result() if trainer.is_global_zero else None
        self._set.detach()

    def _log(self, trainer) -> None:
        if not trainer.is_global_zero:
            return
        targets = [getattr(logger, "experiment", None) if _writes_histograms(logger) else logger
                   for logger in trainer.loggers]
        self._set.log_new(lambda stats: [send_to(t, stats, self.tag) for t in targets])

    def result(self, optimizer: int | None = None):
        """The recorded :class:`~adamdist.results.UpdateStats` (all optimizers joined, or ``optimizer=i``).

        During the fit: the steps so far. ``None`` on DDP ranks other than 0.
        """
        if self._set is None:
            raise RuntimeError("the callback has not been part of a fit yet")
        if optimizer is None and self._stats is not None:
            return self._stats
        return self._set.result(optimizer)


def _writes_histograms(logger) -> bool:
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    return isinstance(logger, (TensorBoardLogger, WandbLogger))
