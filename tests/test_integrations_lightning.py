"""adamdist.integrations.lightning: the callback in real Lightning fits (CPU, tiny model, no downloads)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning.pytorch")

from adamdist.integrations.lightning import UpdateDistributionCallback  # noqa: E402

LR = 1e-3


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=LR, betas=(0.0, 0.999))


class TwoOptimizers(Tiny):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        x, y = batch
        first, second = self.optimizers()
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        first.zero_grad()
        second.zero_grad()
        self.manual_backward(loss)
        first.step()
        second.step()

    def configure_optimizers(self):
        return [torch.optim.Adam(self.net[0].parameters(), lr=LR), torch.optim.SGD(self.net[2].parameters(), lr=0.1)]


def _data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=False)


class ManualDifference(L.Callback):
    """The reference: snapshot before every optimizer step, difference after the batch."""

    def __init__(self):
        self.before, self.updates = None, []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.before = {n: p.detach().clone() for n, p in pl_module.named_parameters()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.before is not None:
            self.updates.append({n: ((p.detach() - self.before[n]) / LR).double()
                                 for n, p in pl_module.named_parameters()})
            self.before = None


def _fit(model, callbacks, tmp_path, **trainer_args):
    torch.manual_seed(0)
    trainer = L.Trainer(default_root_dir=str(tmp_path), accelerator="cpu", devices=1, max_epochs=1,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        callbacks=callbacks, **trainer_args)
    trainer.fit(model, _data())
    return trainer


def _weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_recorded_updates_equal_snapshot_and_difference_and_training_is_unchanged(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    torch.manual_seed(1)
    plain = Tiny()
    torch.manual_seed(1)
    watched = Tiny()
    _fit(plain, [], tmp_path / "plain", logger=False, accumulate_grad_batches=2)
    manual = ManualDifference()
    callback = UpdateDistributionCallback(steps=8, bins=40, sample_size=50, log_every=3)
    logger = TensorBoardLogger(str(tmp_path / "tb"), name="run")
    _fit(watched, [callback, manual], tmp_path / "watched", logger=logger, accumulate_grad_batches=2, log_every_n_steps=1)
    for name, value in _weights(plain).items():  # bit for bit: the callback changes nothing
        assert torch.equal(value, _weights(watched)[name]), name
    stats = callback.result()
    # 16 batches, 2 accumulated per optimizer step: 8 optimizer steps, all recorded
    assert stats.steps.tolist() == list(range(1, 9)) and len(manual.updates) == 8
    indices = callback._set.recorders[0].sample_indices
    for i, update in enumerate(manual.updates):
        for j, name in enumerate(stats.names):
            u = update[name].reshape(-1).numpy()
            np.testing.assert_allclose(stats.mean[i, j], u.mean(), rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(stats.var[i, j], u.var(), rtol=1e-9)
            np.testing.assert_allclose(stats.samples[name][i], u[indices[name]], rtol=1e-12)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(logger.log_dir, size_guidance={"histograms": 0})
    acc.Reload()
    events = acc.Histograms("updates/net.0.weight")
    assert [e.step for e in events] == list(range(1, 9))  # logged every 3 steps and the rest at the end
    np.testing.assert_array_equal(events[4].histogram_value.bucket, stats.hist[4, stats.names.index("net.0.weight")])


def test_two_optimizers_are_joined_and_selected(tmp_path):
    model = TwoOptimizers()
    callback = UpdateDistributionCallback(params=["net.0.weight", "net.2.weight"], steps=5, sample_size=10)
    _fit(model, [callback], tmp_path, logger=False, max_steps=10)
    joined = callback.result()
    assert joined.names == ("net.0.weight", "net.2.weight") and joined.steps.tolist() == [1, 2, 3, 4, 5]
    assert [m["optimizer"].rsplit(".", 1)[-1] for m in joined.metadata["optimizers"]] == ["Adam", "SGD"]
    assert callback.result(optimizer=1).names == ("net.2.weight",)
    with pytest.raises(ValueError, match="optimizer must be in"):
        callback.result(optimizer=2)


def test_other_loggers_get_the_moments_and_a_failing_logger_does_not_stop_training(tmp_path):
    from lightning.pytorch.loggers import CSVLogger, Logger

    class Broken(Logger):
        name, version = "broken", 0

        def log_metrics(self, metrics, step=None):
            if any(k.startswith("updates/") for k in metrics):
                raise OSError("disk full")

        def log_hyperparams(self, *args, **kwargs):
            pass

    csv = CSVLogger(str(tmp_path), name="csv")
    callback = UpdateDistributionCallback(steps=4, sample_size=0, log_every=2)
    _fit(Tiny(), [callback], tmp_path, logger=[csv], max_steps=4, log_every_n_steps=1)
    import pandas as pd

    metrics = pd.read_csv(f"{csv.log_dir}/metrics.csv")
    assert metrics["updates/net.0.weight/var"].notna().sum() == 4
    broken = UpdateDistributionCallback(steps=4, sample_size=0, log_every=2)
    with pytest.warns(RuntimeWarning, match="logging the update histograms failed"):
        _fit(Tiny(), [broken], tmp_path / "b", logger=[Broken()], max_steps=4)
    assert broken.result().steps.tolist() == [1, 2, 3, 4]  # the recording went on


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="log_every"):
        UpdateDistributionCallback(log_every=0)
    with pytest.raises(RuntimeError, match="not been part of a fit"):
        UpdateDistributionCallback().result()


def test_a_wandb_logger_gets_the_histograms(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from _wandb_offline import history, offline_wandb, run_folder
    from lightning.pytorch.loggers import WandbLogger

    callback = UpdateDistributionCallback(steps=4, bins=40, sample_size=0, log_every=2)
    with offline_wandb(monkeypatch, tmp_path):
        logger = WandbLogger(project="adamdist-test", save_dir=str(tmp_path), offline=True)
        _fit(Tiny(), [callback], tmp_path, logger=logger, max_steps=4, log_every_n_steps=1)
        run_dir = run_folder(logger.experiment)
    stats = callback.result()
    rows = [r for r in history(run_dir) if "updates/step" in r]
    assert [r["updates/step"] for r in rows] == [1, 2, 3, 4]
    j = stats.names.index("net.0.weight")
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(row["updates/net.0.weight"]["values"], stats.hist[i, j])
        assert row["updates/net.0.weight/mean"] == pytest.approx(stats.mean[i, j])


def test_ddp_rank_zero_records_and_the_replicas_agree(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(here), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(here / "_lightning_ddp_worker.py"), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    zero, one = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert zero["world_size"] == one["world_size"] == 2
    assert not zero["result_is_none"] and one["result_is_none"]  # rank 0 records, the other rank has no result
    assert zero["steps"] == list(range(1, 7)) and zero["optimizer_steps"] == one["optimizer_steps"] == 6
    assert zero["max_error"] < 1e-9  # the recorded updates are rank 0's snapshot-and-difference
    assert zero["world_size_recorded"] == 2
    assert zero["weights_sum"] == one["weights_sum"]  # the replicas stayed identical
