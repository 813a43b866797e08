"""adamdist.experiments.claims: the per-step rule's summaries, the cached law tests and the verdict rules."""

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from adamdist.experiments import claims  # noqa: E402


def _shares(values):
    return pd.DataFrame({"step": np.arange(1, len(values) + 1), "share_not_rejected": values})


def test_steps_holding_counts_steps_where_half_the_tensors_pass():
    shares = _shares([1.0, 0.5, 0.49, 0.0])
    assert claims.steps_holding(shares) == 0.5
    assert claims.steps_holding(shares, last=2) == 1.0


def test_law_frame_rejects_bad_arguments():
    with pytest.raises(ValueError, match="scale"):
        claims.law_frame("mnist", scale="huge")
    with pytest.raises(ValueError, match="last"):
        claims.law_frame("mnist", last=0)
    with pytest.raises(ValueError, match="unknown run"):
        claims.law_frame("no-such-run")


def test_law_frame_caches_and_recovers_from_a_damaged_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAMDIST_CACHE", str(tmp_path))
    calls = []
    frame = pd.DataFrame([{c: 0 for c in claims._COLUMNS}]).assign(name="w", rejected=False)

    def compute(stats, scale, drop_zeros, beta1, workers):
        calls.append(scale)
        return frame

    monkeypatch.setattr(claims, "load_run", lambda name, run_profile=None: None)
    monkeypatch.setattr(claims, "_law_frame_compute", compute)
    first = claims.law_frame("mnist")
    second = claims.law_frame("mnist")
    assert len(calls) == 1 and list(second.columns) == list(claims._COLUMNS) and len(first) == 1
    (cached,) = (tmp_path / "law_tests").glob("*.csv")
    cached.write_text("garbage,\n\x00")
    with pytest.warns(RuntimeWarning, match="unreadable"):
        claims.law_frame("mnist")
    assert len(calls) == 2
    claims.law_frame("mnist", beta1=0.0)  # another option, another file
    assert len(calls) == 3 and len(list((tmp_path / "law_tests").glob("*.csv"))) == 2


def _fake_mnist(holds_until, growth, steps=100):
    """A results entry shaped like vision_results()["mnist"]: the law holds at steps 1..holds_until."""
    from types import SimpleNamespace

    step = np.arange(1, steps + 1)
    shares = _shares(np.where(step <= holds_until, 0.9, 0.1))
    ms = (step.astype(float) ** growth).tolist()
    stats = SimpleNamespace(steps=step, names=["conv2.weight", "fc1.weight"],
                            metadata={"config": {"batch_size": 128, "seed": 0, "beta1": 0.0, "beta2": 0.999},
                                      "grad": {"conv2.weight": {"mean_square": ms}, "fc1.weight": {"mean_square": ms}}})
    unit = pd.DataFrame({"step": step, "zero_share": 0.3})
    from adamdist.diagnosis import Z, Diagnosis

    diagnosed = pd.DataFrame({"name": stats.names, "holds_through": [holds_until, steps], "steps": steps,
                              "cause": ["shrinking_scale", "consistent"], "score": 9.0, "evidence": "", "also": ""})
    return {"stats": stats, "unit_shares": shares, "nonzero_shares": _shares(np.full(steps, 0.9)),
            "measured_shares": _shares(np.full(steps, 0.9)), "unit": unit,
            "diagnosis": Diagnosis(diagnosed, pd.DataFrame(), holds_until, steps, {}, Z)}


def test_mnist_claims_follow_their_stated_rules():
    rows = {r["claim"]: r for r in claims.mnist_claims({"mnist": _fake_mnist(holds_until=12, growth=0.5)})}
    early = rows["The MNIST CNN agrees with the law for m ≤ 10 and deviates after"]
    assert early["verdict"] == "supported" and "holds through m = 12" in early["measured"]
    assert "diagnosed cause where the law fails by m = 100: shrinking_scale (1 of 1 tensors)" in early["measured"]
    assert rows["MNIST deviates because the gradient's variance increases"]["verdict"] == "supported"
    # a law that fails at step 5 contradicts "agrees for m <= 10"; a shrinking gradient contradicts the explanation
    rows = {r["claim"]: r for r in claims.mnist_claims({"mnist": _fake_mnist(holds_until=4, growth=-0.5)})}
    assert rows["The MNIST CNN agrees with the law for m ≤ 10 and deviates after"]["verdict"] == "contradicted"
    assert rows["MNIST deviates because the gradient's variance increases"]["verdict"] == "contradicted"
    assert all(r["section"].startswith("07_mnist.md#") for r in rows.values())


def test_law_modes_follow_theorem_1():
    # the two atoms at m = 1, the U-shape at m = 2, one mode from the flat law at m = 3 on
    modes = claims.law_modes([1, 2, 3, 4, 10])
    assert modes["law modes"].tolist() == [2, 2, 1, 1, 1]
