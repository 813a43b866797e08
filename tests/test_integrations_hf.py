"""adamdist.integrations.hf: the callback in a real transformers.Trainer run (tiny GPT-2 from a config, CPU)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from adamdist.integrations.hf import UpdateDistributionCallback  # noqa: E402

LR = 1e-3


def _model(seed=0):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    return transformers.GPT2LMHeadModel(config)


def _data(n=48):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 64, (n, 12), generator=g)
    return [{"input_ids": row, "labels": row} for row in ids]


class ManualDifference(transformers.TrainerCallback):
    """The reference: snapshot before each optimizer step, difference after it."""

    def __init__(self):
        self.before, self.updates = None, []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.before = {n: p.detach().clone() for n, p in model.named_parameters()}

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.updates.append({n: ((p.detach() - self.before[n]) / LR).double() for n, p in model.named_parameters()})


def _train(tmp_path, callbacks, **overrides):
    args = dict(output_dir=str(tmp_path / "out"), max_steps=6, per_device_train_batch_size=4,
                gradient_accumulation_steps=2, learning_rate=LR, lr_scheduler_type="constant", logging_steps=2,
                report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0, data_seed=0,
                dataloader_num_workers=0)
    args.update(overrides)
    model = _model()
    trainer = transformers.Trainer(model=model, args=transformers.TrainingArguments(**args),
                                   train_dataset=_data(), callbacks=callbacks)
    trainer.train()
    return model


def test_recorded_updates_equal_snapshot_and_difference_and_training_is_unchanged(tmp_path, monkeypatch):
    plain = _train(tmp_path / "plain", [])
    manual = ManualDifference()
    names = ["transformer.h.0.mlp.c_fc.weight", "transformer.h.0.attn.c_attn.weight"]
    callback = UpdateDistributionCallback(params=names, steps=6, bins=40, sample_size=30)
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))  # the trainer's and ours
    watched = _train(tmp_path / "watched", [callback, manual], report_to=["tensorboard"])
    for (name, a), (_, b) in zip(plain.named_parameters(), watched.named_parameters()):
        assert torch.equal(a, b), name  # bit for bit: the callback changes nothing
    stats = callback.result()
    assert stats.names == tuple(names) and stats.steps.tolist() == list(range(1, 7)) and len(manual.updates) == 6
    indices = callback._set.recorders[0].sample_indices
    for i, update in enumerate(manual.updates):
        for j, name in enumerate(names):
            u = update[name].reshape(-1).numpy()
            np.testing.assert_allclose(stats.var[i, j], u.var(), rtol=1e-9)
            np.testing.assert_allclose(stats.samples[name][i], u[indices[name]], rtol=1e-12)
    # report_to=["tensorboard"]: histograms at the logging steps (2, 4, 6) cover every step
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"histograms": 0})
    acc.Reload()
    events = acc.Histograms(f"updates/{names[0]}")
    assert [e.step for e in events] == list(range(1, 7))
    np.testing.assert_array_equal(events[2].histogram_value.bucket, stats.hist[2, 0])


def test_log_every_to_a_given_folder(tmp_path):
    callback = UpdateDistributionCallback(params=["transformer.wte.weight"], steps=4, sample_size=0, log_every=3,
                                          log_to=tmp_path / "mine")
    _train(tmp_path, [callback], max_steps=4, gradient_accumulation_steps=1)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "mine"), size_guidance={"histograms": 0})
    acc.Reload()
    assert [e.step for e in acc.Histograms("updates/transformer.wte.weight")] == [1, 2, 3, 4]


def test_bad_selection_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not parameters of the model"):
        _train(tmp_path, [UpdateDistributionCallback(params=["no.such.weight"])], max_steps=1)
    with pytest.raises(RuntimeError, match="not been part"):
        UpdateDistributionCallback().result()


def test_report_to_wandb_gets_the_histograms(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    from _wandb_offline import history, offline_wandb, run_folder

    name = "transformer.h.0.mlp.c_fc.weight"
    callback = UpdateDistributionCallback(params=[name], steps=6, bins=40, sample_size=0)
    with offline_wandb(monkeypatch, tmp_path):
        _train(tmp_path, [callback], report_to=["wandb"])
        run_dir = run_folder(wandb.run)
    stats = callback.result()
    rows = [r for r in history(run_dir) if "updates/step" in r]
    # the trainer's own logging steps (2, 4, 6) carry every recorded step, on our own x axis
    assert [r["updates/step"] for r in rows] == list(range(1, 7))
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(row[f"updates/{name}"]["values"], stats.hist[i, 0])
        assert row[f"updates/{name}/var"] == pytest.approx(stats.var[i, 0])
