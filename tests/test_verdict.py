"""Tests of adamdist.verdict: the rule's size and power on draws from known laws, and known verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from adamdist import exact, theory, verdict
from adamdist.results import UpdateStats


def test_ks_test_has_the_nominal_size_on_draws_from_the_law():
    # 400 samples of 300 draws from the exact law at t = 10 (drawn by the recursion, not the CDF)
    law = exact.update_distribution(10, beta1=0.0, beta2=0.999)
    table = exact.tabulate(law, tol=1e-4)
    draws = law.rvs(size=400 * 300, random_state=1).reshape(400, 300)
    p = np.array([verdict.ks_test(row, table)[1] for row in draws])
    # p-values of a true null are uniform: 5% below 0.05 on average (binomial sd 1.1%)
    assert 0.015 <= (p < 0.05).mean() <= 0.09
    assert st.kstest(p, "uniform").pvalue > 1e-3


def test_ks_test_has_power_against_a_shifted_scale():
    law = exact.tabulate(exact.update_distribution(10, beta1=0.0, beta2=0.999))
    sigma = np.ones(10)
    sigma[-1] = 1.5  # the newest gradient 1.5 times the others: wider updates
    wider = exact.update_distribution(10, beta1=0.0, beta2=0.999, sigma=sigma)
    p = [verdict.ks_test(wider.rvs(size=2000, random_state=s), law)[1] for s in range(20)]
    assert max(p) < 1e-3


def test_sign_test_and_zeros():
    rng = np.random.default_rng(0)
    signs = np.where(rng.random(2000) < 0.5, 1.0, -1.0)
    assert verdict.sign_test(signs)[1] > 0.01
    assert verdict.sign_test(np.abs(signs))[1] < 1e-10
    with_zero = signs.copy()
    with_zero[0] = 0.0
    assert verdict.sign_test(with_zero)[1] == 0.0
    with pytest.raises(ValueError, match="NaN"):
        verdict.sign_test([1.0, np.nan])
    with pytest.raises(ValueError, match="p_plus"):
        verdict.sign_test([1.0], p_plus=2.0)


def test_benjamini_hochberg_matches_scipy():
    p = np.random.default_rng(2).random(200) ** 3
    for alpha in (0.01, 0.05, 0.2):
        ours = verdict.benjamini_hochberg(p, alpha)
        assert np.array_equal(ours, st.false_discovery_control(p, method="bh") <= alpha)
    with pytest.raises(ValueError, match="alpha"):
        verdict.benjamini_hochberg(p, alpha=1.5)


def test_holds_through_and_its_checks():
    frame = pd.DataFrame({"step": [1, 2, 3], "share_not_rejected": [0.2, 1.0, 1.0]})
    assert verdict.holds_through(frame) == 0
    assert verdict.holds_through(frame.assign(share_not_rejected=1.0)) == 3
    with pytest.raises(ValueError, match="gaps"):
        verdict.holds_through(pd.DataFrame({"step": [1, 3], "share_not_rejected": [1.0, 1.0]}))


def test_common_step_share():
    rng = np.random.default_rng(0)
    steps, names = np.repeat(np.arange(1, 31), 10), np.tile([f"w{k}" for k in range(10)], 30)
    step_effect = np.repeat(rng.normal(0, 0.3, 30), 10)
    level = np.tile(rng.normal(0, 1.0, 10), 30)  # each tensor's own level is not step variation
    common = pd.DataFrame({"step": steps, "name": names, "var_ratio": np.exp(step_effect + level)})
    assert verdict.common_step_share(common) == pytest.approx(1.0)
    own = common.assign(var_ratio=np.exp(level + rng.normal(0, 0.3, 300)))
    assert verdict.common_step_share(own) < 0.25


def test_mode_count():
    rng = np.random.default_rng(0)
    assert verdict.mode_count(rng.normal(size=5000)) == 1
    assert verdict.mode_count(np.concatenate([rng.normal(-3, 0.5, 3000), rng.normal(3, 0.5, 3000)])) == 2
    zeros = np.concatenate([np.zeros(4000), rng.normal(size=3000)])
    assert verdict.mode_count(zeros) == 1  # exact zeros are not a mode of the update
    assert verdict.mode_count(zeros, drop_zeros=False) >= 1
    assert verdict.mode_count(None, law=theory.update_distribution(30)) == 1


def _simulated_run(steps, tensors, scale_of_step, k=1500, seed=0, beta2=0.999):
    """An UpdateStats of Adam updates (beta1 = 0) for gradients sigma_t * N(0, 1), with the grad record."""
    rng = np.random.default_rng(seed)
    sigma = np.asarray([scale_of_step(t) for t in range(1, steps + 1)])
    names = [f"layer{j}.weight" for j in range(tensors)]
    samples, grad = {}, {}
    var = np.zeros((steps, tensors))
    for j, name in enumerate(names):
        g = rng.normal(size=(steps, k)) * sigma[:, None]
        v = np.zeros(k)
        u = np.zeros((steps, k))
        for t in range(1, steps + 1):
            v = beta2 * v + (1 - beta2) * g[t - 1] ** 2
            u[t - 1] = -g[t - 1] / np.sqrt(v / (1 - beta2 ** t))  # (theta_t - theta_{t-1}) / lr
        samples[name] = u
        var[:, j] = u.var(axis=1)
        grad[name] = {"mean_square": (g ** 2).mean(axis=1).tolist()}
    z = np.zeros((steps, tensors))
    return UpdateStats(steps=np.arange(1, steps + 1), names=names, edges=[-4.0, 4.0], count=z + k, mean=z,
                       var=var, abs_var=z, skew=z, nonfinite=z, hist=np.zeros((steps, tensors, 1)),
                       underflow=z, overflow=z, samples=samples,
                       metadata={"config": {"beta1": 0.0, "beta2": beta2}, "grad": grad})


def test_a_run_from_the_law_holds_throughout():
    run = _simulated_run(12, 4, lambda t: 1.0)
    frame = verdict.law_test(run)
    assert frame["rejected"].mean() <= 0.05
    shares = verdict.step_shares(frame)
    assert verdict.holds_through(shares) == 12
    assert ((shares.var_ratio_low < 1.05) & (shares.var_ratio_high > 0.95)).all()


def test_a_step_wide_scale_jump_fails_the_unit_law_but_not_the_measured_one():
    jump = 6
    run = _simulated_run(10, 3, lambda t: 2.0 if t == jump else 1.0)
    unit = verdict.step_shares(verdict.law_test(run))
    assert verdict.holds_through(unit) == jump - 1
    assert unit.set_index("step").loc[jump, "var_ratio_median"] > 1.5  # the big batch's updates are wide
    measured = verdict.law_test(run, scale="measured", workers=1)
    assert verdict.holds_through(verdict.step_shares(measured)) == 10
    assert verdict.common_step_share(verdict.law_test(run)) > 0.8


def test_law_test_checks_its_input():
    run = _simulated_run(3, 1, lambda t: 1.0)
    with pytest.raises(ValueError, match="scale"):
        verdict.law_test(run, scale="guess")
    no_grad = UpdateStats(**{**run.__dict__, "metadata": {"config": {"beta2": 0.999}}})
    with pytest.raises(ValueError, match="record_grad"):
        verdict.law_test(no_grad, scale="measured")
    with pytest.raises(ValueError, match="steps 1, 2, 3"):
        verdict.law_test(run.select(steps=[2, 3]))
    with pytest.raises(ValueError, match="beta2"):
        verdict.law_test(UpdateStats(**{**run.__dict__, "metadata": {}}))


def test_claim_rows_and_grades():
    row = verdict.claim("the law holds", "section 5", "holds through m = 4", "100 steps", "partly supported")
    table = verdict.claims_table([row])
    assert list(table.columns) == list(verdict.CLAIM_COLUMNS)
    with pytest.raises(ValueError, match="verdict"):
        verdict.claim("x", "y", "z", "w", "true")
    with pytest.raises(TypeError, match="measured"):
        verdict.claim("x", "y", "", "w", "supported")
    assert verdict.grade(float("nan"), 1, 0) == "not testable here"
    assert verdict.grade(0.2, 0.1, 0.5, higher_is_better=False) == "partly supported"
    assert verdict.grade(0.05, 0.1, 0.5, higher_is_better=False) == "supported"
    assert verdict.grade(0.7, 0.1, 0.5, higher_is_better=False) == "contradicted"
