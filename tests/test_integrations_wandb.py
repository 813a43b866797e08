"""adamdist.integrations.wandb: histograms and moments in a real offline W&B run, read back from its files."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("wandb")
pytest.importorskip("torch")

from _wandb_offline import history  # noqa: E402

from adamdist.integrations.wandb import WANDB_MAX_BINS, to_wandb  # noqa: E402
from adamdist.results import default_edges  # noqa: E402
from adamdist.simulate import run  # noqa: E402


@pytest.fixture
def offline_run(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    r = wandb.init(project="adamdist-test", dir=str(tmp_path), mode="offline")
    yield r
    if wandb.run is not None:
        wandb.finish()


def _run_dir(tmp_path):
    (folder,) = (tmp_path / "wandb").glob("offline-run-*")
    return folder


def test_histograms_and_moments_reach_the_offline_run(tmp_path, offline_run):
    import wandb

    stats = run("adam", n=4000, steps=3, beta1=0.0, eps=0.0, edges=default_edges(3.0, 30), seed=1)
    offline_run.log({"user/loss": 1.0})  # the run's own step counter is already past 0
    assert stats.to_wandb(offline_run, tag="sim", step_offset=5) == 3
    wandb.finish()
    wandb.teardown()  # the service process flushes the record log before we read it
    rows = [r for r in history(_run_dir(tmp_path)) if "sim/step" in r]
    assert [r["sim/step"] for r in rows] == [6, 7, 8]
    (name,) = stats.names
    for i, row in enumerate(rows):
        logged = row[f"sim/{name}"]
        assert logged["_type"] == "histogram"
        np.testing.assert_array_equal(logged["values"], stats.hist[i, 0])
        np.testing.assert_allclose(logged["bins"], stats.edges)
        assert row[f"sim/{name}/var"] == pytest.approx(stats.var[i, 0])


def test_refuses_what_wandb_cannot_hold(offline_run):
    stats = run("average", n=500, steps=2, edges=np.linspace(-3, 3, WANDB_MAX_BINS + 2))
    with pytest.raises(ValueError, match="at most 512"):
        to_wandb(stats, offline_run)
    with pytest.raises(TypeError, match="UpdateStats"):
        to_wandb(None, offline_run)


def test_needs_a_run():
    import wandb

    assert wandb.run is None
    with pytest.raises(ValueError, match="needs a run"):
        to_wandb(run("average", n=500, steps=1))
