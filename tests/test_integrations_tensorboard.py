"""adamdist.integrations.tensorboard: our bins as TensorBoard histograms, read back by TensorBoard itself."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorboard")
pytest.importorskip("torch")

from adamdist.integrations.tensorboard import to_tensorboard  # noqa: E402
from adamdist.results import default_edges  # noqa: E402
from adamdist.simulate import run  # noqa: E402


def _read(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"histograms": 0, "scalars": 0})
    acc.Reload()
    return acc


def test_histograms_keep_our_bins_and_counts(tmp_path):
    stats = run("adam", n=5000, steps=4, beta1=0.0, eps=0.0, edges=default_edges(3.0, 24), seed=3)
    assert stats.to_tensorboard(tmp_path, tag="sim") == 4
    acc = _read(tmp_path)
    (name,) = stats.names
    events = acc.Histograms(f"sim/{name}")
    assert [e.step for e in events] == stats.steps.tolist()
    for i, event in enumerate(events):
        h = event.histogram_value
        np.testing.assert_array_equal(h.bucket, stats.hist[i, 0])  # counts, not a re-binning
        np.testing.assert_allclose(h.bucket_limit, stats.edges[1:])
        assert h.min == stats.edges[0] and h.num == stats.hist[i, 0].sum()
    var = acc.Scalars(f"sim/{name}/var")
    np.testing.assert_allclose([s.value for s in var], stats.var[:, 0], rtol=1e-6)  # float32 in the event file
    assert {f"sim/{name}/{m}" for m in ("mean", "var", "abs_var", "skew")} <= set(acc.Tags()["scalars"])


def test_writer_is_used_as_given_with_an_offset(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    stats = run("average", n=1000, steps=2)
    with SummaryWriter(str(tmp_path)) as writer:
        to_tensorboard(stats, writer, step_offset=10)
        writer.add_scalar("user/loss", 1.0, global_step=0)  # still open: ours did not close it
    acc = _read(tmp_path)
    assert [e.step for e in acc.Histograms(f"updates/{stats.names[0]}")] == [11, 12]


def test_rows_without_gradient_are_skipped_and_bad_arguments_refused(tmp_path):
    import dataclasses

    stats = run("average", n=1000, steps=3)
    no_grad = np.zeros_like(stats.no_grad)
    no_grad[1, 0] = True
    flagged = dataclasses.replace(stats, no_grad=no_grad)
    assert to_tensorboard(flagged, tmp_path) == 2
    with pytest.raises(TypeError, match="SummaryWriter or a folder"):
        to_tensorboard(stats, object())
    with pytest.raises(TypeError, match="UpdateStats"):
        to_tensorboard({"steps": []}, tmp_path)
    with pytest.raises(ValueError, match="step_offset"):
        to_tensorboard(stats, tmp_path, step_offset=-1)
    with pytest.raises(ValueError, match="tag"):
        to_tensorboard(stats, tmp_path, tag="")
