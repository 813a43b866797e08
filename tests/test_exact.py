"""Tests of adamdist.exact: closed form (eq. 30), Monte Carlo, torch.optim.Adam, argument checks.

Monte Carlo agreement uses the Kolmogorov-Smirnov band sup|F_n - F| <= c / sqrt(n)
with c = 1.95 (alpha ~ 1e-3 per test), evaluated at sample quantiles (so the
statistic is the KS distance restricted to those points). Seeds are fixed.
"""

from __future__ import annotations

import itertools
import math
import pickle
import re

import numpy as np
import pytest
from scipy import special

from adamdist import exact
from adamdist.exact import (
    AdamUpdateDistribution,
    TwoPointUpdateDistribution,
    adam_update_from_gradients,
    laprop_update_from_gradients,
    laprop_update_rvs,
    momentum_weights,
    second_moment_weights,
    update_distribution,
)

KS_C = 1.95


def closed_form_cdf(t, y):
    """Theorem 1 / eq. 30: (1 + u/sqrt t)/2 ~ Beta((t-1)/2, (t-1)/2)."""
    z = np.clip((1.0 + np.asarray(y) / math.sqrt(t)) / 2.0, 0.0, 1.0)
    return special.betainc((t - 1) / 2, (t - 1) / 2, z)


def closed_form_pdf(t, y):
    b = (t - 1) / 2
    z = (1.0 + np.asarray(y) / math.sqrt(t)) / 2.0
    return np.exp((b - 1) * np.log(z * (1 - z)) - special.betaln(b, b)) / (2 * math.sqrt(t))


def ks_distance(dist, samples, n_points):
    x = np.sort(samples)
    q = np.quantile(x, np.linspace(0.5 / n_points, 1 - 0.5 / n_points, n_points))
    emp_right = np.searchsorted(x, q, side="right") / x.size
    emp_left = np.searchsorted(x, q, side="left") / x.size
    F = dist.cdf(q)
    return max(np.abs(F - emp_right).max(), np.abs(F - emp_left).max())


SIGMAS = {"1": None, "t": lambda i: float(i), "1/t": lambda i: 1.0 / i}
MEANS = {"0": None, "-1": -1.0, "-t": lambda i: -float(i)}
BETAS = list(itertools.product([0.0, 0.9], [0.9, 0.98, 0.999, 1.0]))
ALL_CASES = [(b1, b2, s, m) for (b1, b2) in BETAS for s in SIGMAS for m in MEANS
             if not (s == "1" and m == "0" and b1 == 0.0 and b2 == 1.0)]


# --------------------------------------------------------------------------- weights and recursions


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9, 0.999])
def test_weights_sum_to_one(beta):
    for t in (1, 2, 17):
        assert momentum_weights(t, beta).sum() == pytest.approx(1.0, abs=1e-14)
        assert second_moment_weights(t, beta).sum() == pytest.approx(1.0, abs=1e-14)
    np.testing.assert_allclose(second_moment_weights(5, 1.0), np.full(5, 0.2))
    np.testing.assert_array_equal(momentum_weights(4, 0.0), [0, 0, 0, 1])


@pytest.mark.parametrize("beta1,beta2", [(0.0, 0.9), (0.9, 0.999), (0.9, 0.98), (0.5, 0.0), (0.0, 0.0)])
def test_recursion_matches_torch_adam(beta1, beta2):
    torch = pytest.importorskip("torch")
    t, n = 9, 257
    rng = np.random.default_rng(7)
    g = rng.normal(0.3, 1.0, (n, t)) * np.arange(1, t + 1)
    p = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([p], lr=1.0, betas=(beta1, beta2), eps=0.0)
    before = None
    for k in range(t):
        p.grad = torch.from_numpy(g[:, k].copy())
        before = p.detach().clone()
        opt.step()
    torch_update = (before - p.detach()).numpy()
    ours = adam_update_from_gradients(g, beta1, beta2)
    np.testing.assert_allclose(ours, torch_update, rtol=1e-12, atol=1e-12)
    # and the quadratic-form representation of the module docstring
    a, w = momentum_weights(t, beta1), second_moment_weights(t, beta2)
    np.testing.assert_allclose(ours, (g @ a) / np.sqrt((g * g) @ w), rtol=1e-12)


def test_simple_average_recursion_is_quadratic_form():
    g = np.random.default_rng(3).standard_normal((100, 12))
    for b1 in (0.0, 0.9):
        a, w = momentum_weights(12, b1), second_moment_weights(12, 1.0)
        np.testing.assert_allclose(adam_update_from_gradients(g, b1, 1.0),
                                   (g @ a) / np.sqrt((g * g) @ w), rtol=1e-12)


def test_rvs_runs_the_recursion_with_the_given_seed():
    d = update_distribution(6, 0.9, 0.98, sigma=lambda i: i, mean=-1.0)
    u1 = d.rvs(1000, random_state=11)
    u2 = d.rvs(1000, random_state=np.random.default_rng(11))
    np.testing.assert_array_equal(u1, u2)
    g = -1.0 + np.arange(1, 7) * np.random.default_rng(11).standard_normal((1000, 6))
    np.testing.assert_allclose(u1, (g @ d.momentum_weights) / np.sqrt((g * g) @ d.second_moment_weights), rtol=1e-12)


def test_laprop_form():
    g = np.random.default_rng(5).normal(0.2, 1.0, (500, 8))
    # beta1 = 0: preconditioner inside or outside the momentum is the same thing
    np.testing.assert_allclose(laprop_update_from_gradients(g, 0.0, 0.99),
                               adam_update_from_gradients(g, 0.0, 0.99), rtol=1e-13)
    # eqs. 1-4 by hand for beta1 = 0.9, beta2 = 0.99
    b1, b2 = 0.9, 0.99
    m = np.zeros(500)
    n = np.zeros(500)
    for k in range(8):
        n = b2 * n + (1 - b2) * g[:, k] ** 2
        m = b1 * m + (1 - b1) * g[:, k] / np.sqrt(n / (1 - b2 ** (k + 1)))
    np.testing.assert_allclose(laprop_update_from_gradients(g, b1, b2), m / (1 - b1 ** 8), rtol=1e-12)
    assert not np.allclose(laprop_update_from_gradients(g, b1, b2), adam_update_from_gradients(g, b1, b2))
    u = laprop_update_rvs(8, 0.9, 0.99, size=300, random_state=1, sigma=lambda i: i, mean=-1.0)
    assert u.shape == (300,) and np.isfinite(u).all()
    np.testing.assert_array_equal(u, laprop_update_rvs(8, 0.9, 0.99, 300, 1, lambda i: i, -1.0))


# --------------------------------------------------------------------------- the closed form (Theorem 1)


@pytest.mark.parametrize("t", [2, 3, 4, 5, 7, 10, 20, 50, 100, 150, 200])
def test_cdf_matches_closed_form(t):
    d = update_distribution(t, beta1=0.0, beta2=1.0)
    y = math.sqrt(t) * np.linspace(-1.01, 1.01, 203)
    assert np.abs(d.cdf(y) - closed_form_cdf(t, y)).max() < 1e-6
    assert d.support() == pytest.approx((-math.sqrt(t), math.sqrt(t)), rel=1e-14)


@pytest.mark.slow
def test_cdf_matches_closed_form_every_t():
    for t in range(2, 201):
        d = update_distribution(t, beta1=0.0, beta2=1.0)
        y = math.sqrt(t) * np.linspace(-0.999, 0.999, 101)
        assert np.abs(d.cdf(y) - closed_form_cdf(t, y)).max() < 1e-6, t


@pytest.mark.slow
@pytest.mark.parametrize("t", [500, 1000])
def test_cdf_matches_closed_form_large_t(t):
    d = update_distribution(t, beta1=0.0, beta2=1.0)
    y = np.linspace(-4.5, 4.5, 61)
    assert np.abs(d.cdf(y) - closed_form_cdf(t, y)).max() < 1e-6


@pytest.mark.parametrize("t", [2, 3, 10, 60, 200])
def test_pdf_and_sf_match_closed_form(t):
    d = update_distribution(t, beta1=0.0, beta2=1.0)
    y = math.sqrt(t) * np.linspace(-0.98, 0.98, 41)
    np.testing.assert_allclose(d.pdf(y), closed_form_pdf(t, y), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(d.sf(y), 1 - closed_form_cdf(t, y), atol=1e-9)


def test_agrees_with_theory_module():
    theory = pytest.importorskip("adamdist.theory")
    if not hasattr(theory, "update_distribution"):
        pytest.skip("adamdist.theory.update_distribution not available")
    for t in (2, 5, 30):
        ref = theory.update_distribution(t)
        d = update_distribution(t, 0.0, 1.0)
        y = math.sqrt(t) * np.linspace(-0.99, 0.99, 31)
        assert np.abs(d.cdf(y) - ref.cdf(y)).max() < 1e-6
        np.testing.assert_allclose(d.pdf(y), ref.pdf(y), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("t", [2, 3, 8, 40])
def test_simple_average_moments(t):
    d = update_distribution(t, 0.0, 1.0)
    assert d.var() == pytest.approx(1.0, abs=1e-8)  # Corollary 1
    assert d.mean() == pytest.approx(0.0, abs=1e-8)


# --------------------------------------------------------------------------- Monte Carlo beyond the paper


def _case(t, b1, b2, s, m):
    return update_distribution(t, b1, b2, sigma=SIGMAS[s], mean=MEANS[m])


@pytest.mark.parametrize("b1,b2,s,m", ALL_CASES[::3] + [(0.9, 0.999, "t", "-t"), (0.0, 0.9, "1/t", "-1")])
def test_cdf_matches_monte_carlo(b1, b2, s, m):
    n = 40_000
    d = _case(7, b1, b2, s, m)
    u = d.rvs(n, random_state=20240601)
    assert ks_distance(d, u, 200) <= KS_C / math.sqrt(n)
    lo, hi = d.support()
    assert lo <= u.min() and u.max() <= hi


@pytest.mark.slow
@pytest.mark.parametrize("t", [3, 12])
@pytest.mark.parametrize("b1,b2,s,m", ALL_CASES)
def test_cdf_matches_monte_carlo_1e6(t, b1, b2, s, m):
    n = 1_000_000
    d = _case(t, b1, b2, s, m)
    u = d.rvs(n, random_state=987654321 + t)
    assert ks_distance(d, u, 1000) <= KS_C / math.sqrt(n)
    lo, hi = d.support()
    assert lo <= u.min() and u.max() <= hi


@pytest.mark.parametrize("b1,b2,s,m", [(0.9, 0.999, "1", "-1"), (0.0, 0.98, "t", "-t"),
                                       (0.9, 0.9, "1/t", "0"), (0.9, 1.0, "1", "-t")])
def test_moments_match_monte_carlo(b1, b2, s, m):
    n = 200_000
    d = _case(10, b1, b2, s, m)
    u = d.rvs(n, random_state=4)
    mean, var = d.mean(), d.var()
    assert abs(u.mean() - mean) < 5 * math.sqrt(var / n)
    # var of the sample variance ~ (m4 - var^2)/n, bounded via the sample itself
    se_var = math.sqrt(np.var((u - u.mean()) ** 2) / n)
    assert abs(u.var() - var) < 5 * se_var


@pytest.mark.parametrize("b1,b2,s,m", [(0.0, 1.0, "1", "0"), (0.9, 0.999, "t", "-1"),
                                       (0.9, 0.98, "1/t", "-t"), (0.0, 0.9, "1", "-1")])
def test_pdf_is_derivative_of_cdf_and_integrates_to_one(b1, b2, s, m):
    d = _case(9, b1, b2, s, m)
    lo, hi = d.interval(1 - 1e-9)
    x = np.linspace(lo, hi, 25)[1:-1]
    h = 1e-5 * (hi - lo)
    numeric = (d.cdf(x + h) - d.cdf(x - h)) / (2 * h)
    np.testing.assert_allclose(d.pdf(x), numeric, rtol=1e-5, atol=1e-6 * d.pdf(x).max())
    nodes, weights = np.polynomial.legendre.leggauss(200)
    total = 0.0
    edges = np.linspace(d.support()[0], d.support()[1], 9)
    for a_, b_ in zip(edges[:-1], edges[1:]):
        # x = mid + half sin: tames the algebraic behaviour at the support edge
        th = 0.5 * np.pi * nodes
        xs = 0.5 * (a_ + b_) + 0.5 * (b_ - a_) * np.sin(th)
        total += np.sum(0.25 * np.pi * (b_ - a_) * weights * np.cos(th) * d.pdf(xs))
    assert total == pytest.approx(1.0, abs=1e-6)


def test_pdf_at_zero_is_continuous():
    d = update_distribution(5, 0.9, 0.98, mean=-0.5)
    assert d.pdf(0.0) == pytest.approx(d.pdf(1e-4), rel=1e-3)
    assert d.pdf(0.0) == pytest.approx(d.pdf(-1e-4), rel=1e-3)


def test_mirror_symmetry():
    d = update_distribution(6, 0.9, 0.999, sigma=lambda i: i, mean=-1.0)
    e = update_distribution(6, 0.9, 0.999, sigma=lambda i: i, mean=1.0)
    x = np.linspace(-2, 2, 21)
    np.testing.assert_allclose(d.cdf(x), 1 - e.cdf(-x), atol=1e-10)
    np.testing.assert_allclose(d.pdf(x), e.pdf(-x), rtol=1e-8, atol=1e-12)


def test_ppf_inverts_cdf_and_interval():
    d = update_distribution(8, 0.9, 0.98, sigma=lambda i: 1.0 / i, mean=-1.0)
    q = np.array([1e-6, 0.01, 0.3, 0.5, 0.9, 0.999999])
    np.testing.assert_allclose(d.cdf(d.ppf(q)), q, atol=1e-10)
    lo, hi = d.interval(0.9)
    assert d.cdf(hi) - d.cdf(lo) == pytest.approx(0.9, abs=1e-10)
    assert d.ppf(0.0) == d.support()[0] and d.ppf(1.0) == d.support()[1]


def test_scale_invariance():
    base = update_distribution(6, 0.9, 0.98, sigma=[1, 2, 3, 4, 5, 6], mean=-1.0)
    scaled = update_distribution(6, 0.9, 0.98, sigma=np.arange(1, 7) * 1e3, mean=-1e3)
    x = np.linspace(-1.5, 1.5, 13)
    np.testing.assert_allclose(base.cdf(x), scaled.cdf(x), atol=1e-10)


# --------------------------------------------------------------------------- degenerate inputs


@pytest.mark.parametrize("t,b1,b2", [(1, 0.0, 1.0), (1, 0.9, 0.999), (5, 0.0, 0.0)])
def test_two_point_law(t, b1, b2):
    d = update_distribution(t, b1, b2, mean=0.5)
    assert isinstance(d, TwoPointUpdateDistribution)
    p = 0.5 * special.erfc(-0.5 / math.sqrt(2))
    assert d.pmf(1.0) == pytest.approx(p) and d.pmf(-1.0) == pytest.approx(1 - p)
    np.testing.assert_allclose(d.cdf([-1.5, -1.0, 0.0, 0.999, 1.0]), [0, 1 - p, 1 - p, 1 - p, 1])
    u = d.rvs(20_000, random_state=0)
    assert np.abs(np.abs(u) - 1.0).max() < 1e-14  # sign(g_t), up to the recursion's rounding
    assert abs(u.mean() - d.mean()) < 5 * d.std() / math.sqrt(u.size)
    with pytest.raises(ValueError, match="two-point"):
        d.pdf(0.0)


def test_beta2_zero_with_momentum_is_heavy_tailed():
    d = update_distribution(5, 0.9, 0.0)
    assert isinstance(d, AdamUpdateDistribution)
    assert d.support() == (-math.inf, math.inf)
    assert d.var() == math.inf
    with pytest.raises(ValueError, match="beta2"):
        d.mean()
    n = 40_000
    assert ks_distance(d, d.rvs(n, random_state=2), 200) <= KS_C / math.sqrt(n)
    assert 0 < d.cdf(-1e3) < 1e-2 and d.cdf(np.inf) == 1.0


@pytest.mark.parametrize("sigma,mean", [(1.0, -100.0), (1e-3, 1.0), (1.0, lambda i: -float(i) ** 2)])
def test_strongly_noncentral(sigma, mean):
    # the MGF underflows on one side: the Chernoff bound certifies that side negligible
    d = update_distribution(5, 0.9, 0.99, sigma=sigma, mean=mean)
    n = 40_000
    u = d.rvs(n, random_state=8)
    assert ks_distance(d, u, 200) <= KS_C / math.sqrt(n)
    x = np.linspace(-2.5, 2.5, 51)
    assert np.isfinite(d.cdf(x)).all() and np.isfinite(d.pdf(x)).all()
    assert abs(d.mean() - u.mean()) < 5 * u.std() / math.sqrt(n)


def test_outputs_are_finite_everywhere():
    d = update_distribution(4, 0.9, 0.9, sigma=lambda i: i, mean=lambda i: -i)
    x = np.array([-np.inf, -1e9, -1.0, -1e-12, 0.0, 1e-12, 0.3, 1.0, 1e9, np.inf])
    for f in (d.cdf, d.sf, d.pdf):
        assert np.isfinite(f(x)).all()
    assert np.isscalar(d.cdf(0.1)) and d.cdf(np.zeros((2, 3))).shape == (2, 3)


@pytest.mark.parametrize("kwargs,exc,name", [
    (dict(t=0), ValueError, "t"),
    (dict(t=2.5), TypeError, "t"),
    (dict(t=True), TypeError, "t"),
    (dict(beta1=1.0), ValueError, "beta1"),
    (dict(beta1=-0.1), ValueError, "beta1"),
    (dict(beta1=float("nan")), ValueError, "beta1"),
    (dict(beta1="0.9"), TypeError, "beta1"),
    (dict(beta2=1.5), ValueError, "beta2"),
    (dict(beta2=-1e-3), ValueError, "beta2"),
    (dict(sigma=[1.0, 0.0, 1.0]), ValueError, "sigma"),
    (dict(sigma=[1.0, -2.0, 1.0]), ValueError, "sigma"),
    (dict(sigma=[1.0, np.nan, 1.0]), ValueError, "sigma"),
    (dict(sigma=[1.0, np.inf, 1.0]), ValueError, "sigma"),
    (dict(sigma=[1.0, 1.0]), ValueError, "sigma"),
    (dict(sigma=lambda i: 0.0), ValueError, "sigma"),
    (dict(sigma=lambda i: "x"), TypeError, "sigma"),
    (dict(mean=[0.0, np.nan, 0.0]), ValueError, "mean"),
    (dict(mean=np.inf), ValueError, "mean"),
    (dict(mean=[0.0] * 4), ValueError, "mean"),
])
def test_bad_arguments(kwargs, exc, name):
    args = dict(t=3, beta1=0.9, beta2=0.99)
    args.update(kwargs)
    with pytest.raises(exc, match=name):
        update_distribution(**args)


def test_bad_method_arguments():
    d = update_distribution(4, 0.9, 0.99)
    with pytest.raises(ValueError, match="x"):
        d.cdf([0.0, np.nan])
    with pytest.raises(ValueError, match="q"):
        d.ppf(1.5)
    with pytest.raises(ValueError, match="confidence"):
        d.interval(2.0)
    with pytest.raises(ValueError, match="size"):
        d.rvs(0)
    with pytest.raises(TypeError, match="random_state"):
        d.rvs(3, random_state="seed")
    with pytest.raises(ValueError, match="g"):
        adam_update_from_gradients(np.ones((3, 2)) * np.nan, 0.9, 0.99)
    with pytest.raises(ValueError, match="beta2"):
        laprop_update_rvs(3, 0.9, 2.0, size=5)


def test_repr():
    text = repr(update_distribution(12, 0.9, 1.0, mean=-1.0))
    assert "t=12" in text and "beta1=0.9" in text and "simple average" in text
    assert "P(u=+1)" in repr(update_distribution(1))
    assert exact.__all__


# -- the package's own errors (issue: no silent failures) -------------------------------------------------
def _refusal_in_a_child(call: str) -> str:
    """The ValueError's message of ``call``, run where a regression (the allocation itself) cannot hurt pytest."""
    from _isolated import run_isolated

    child = run_isolated(f"""
        from adamdist import exact
        try:
            {call}
        except ValueError as exc:
            print(exc)
    """)
    assert child.returncode == 0, child.stderr[-2000:]
    return child.stdout


def test_a_step_whose_matrices_cannot_fit_is_refused_with_the_estimate():
    said = _refusal_in_a_child("exact.update_distribution(100_000)")
    assert re.search(r"the exact law at t = 100000 needs about 298\.0 GiB on the host but only .* GiB is "
                     r"available; reduce t", said), said


def test_the_memory_estimate_bounds_what_building_the_law_holds():
    import tracemalloc

    t = 800
    tracemalloc.start()
    exact.update_distribution(t, beta1=0.9)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak <= exact._MATRICES * 8 * t * t <= 2 * peak


@pytest.mark.parametrize("mean", [1e300, -1e300, 1e7, [0.0, 0.0, 0.0, 0.0, 2e7]])
def test_a_mean_beyond_double_precision_is_refused(mean):
    with pytest.raises(ValueError, match=r"mean must satisfy \|mean\| <= 1e\+06 \* max\(sigma\)"):
        exact.update_distribution(5, mean=mean)


@pytest.mark.parametrize("t", [2, 50, 400])
def test_the_largest_allowed_mean_still_gives_a_law(t):
    d = exact.update_distribution(t, beta1=0.9, mean=1e6)
    assert np.isfinite(d.cdf(np.linspace(-1, 1.1, 5))).all() and np.isfinite(d.var())


@pytest.mark.parametrize("call, argument", [
    (lambda: exact.update_distribution(5, beta1=np.array([0.1, 0.2])), "beta1"),
    (lambda: exact.update_distribution(5, beta2=[0.9, 0.99]), "beta2"),
    (lambda: exact.momentum_weights(5, np.array([0.1, 0.2])), "beta1"),
    (lambda: exact.second_moment_weights(5, [0.9, 0.99]), "beta2"),
    (lambda: exact.laprop_update_rvs(5, beta1=[0.1, 0.2]), "beta1"),
])
def test_array_betas_are_refused_by_name(call, argument):
    with pytest.raises(TypeError, match=rf"{argument} must be a single real number, got an array of shape \(2,\)"):
        call()


@pytest.mark.parametrize("call", [
    lambda: exact.update_distribution(True),
    lambda: exact.update_distribution(5, beta1=False),
    lambda: exact.momentum_weights(True, 0.5),
])
def test_booleans_are_not_numbers(call):
    with pytest.raises(TypeError, match="got bool|got False|got True"):
        call()


@pytest.mark.parametrize("law", [lambda: exact.update_distribution(5), lambda: exact.update_distribution(1)])
@pytest.mark.parametrize("random_state, error, words", [
    (-1, ValueError, r"random_state must be an integer in \[0, inf\], got -1"),
    (True, TypeError, "random_state must be None, an int seed >= 0 or a numpy.random.Generator, got bool"),
    ("0", TypeError, "random_state must be None, an int seed >= 0"),
])
def test_rvs_random_state_is_checked(law, random_state, error, words):
    with pytest.raises(error, match=words):
        law().rvs(3, random_state=random_state)
    with pytest.raises(error, match=words):
        exact.laprop_update_rvs(5, random_state=random_state)


def test_rvs_too_many_draws_for_memory_are_refused():
    said = _refusal_in_a_child("exact.update_distribution(5).rvs(size=10**12)")
    assert re.search(r"draws of 5 gradients needs about .* GiB.*reduce size", said), said


# -- tabulate: the table's error bound against direct evaluation -------------------------------
_TABULATED = [
    dict(t=2, beta1=0.0, beta2=0.999),
    dict(t=15, beta1=0.0, beta2=0.999),
    dict(t=100, beta1=0.0, beta2=0.999),
    dict(t=30, beta1=0.0, beta2=1.0),
    dict(t=12, beta1=0.9, beta2=0.999),
    dict(t=40, beta1=0.0, beta2=0.999, sigma=np.exp(np.random.default_rng(3).normal(0.0, 0.8, 40))),
]


@pytest.mark.parametrize("case", _TABULATED, ids=lambda c: f"t{c['t']}-b1{c['beta1']}-b2{c['beta2']}"
                         + ("-sigma" if "sigma" in c else ""))
@pytest.mark.parametrize("tol", [1e-3, 1e-4])
def test_tabulate_error_bound_holds_on_a_dense_grid(case, tol):
    law = update_distribution(**case)
    table = exact.tabulate(law, tol=tol)
    assert table.error_bound <= tol
    lo, hi = law.support()
    x = np.linspace(lo, hi, 1501)[1:-1]
    err = np.abs(np.asarray(table.cdf(x)) - np.asarray(law.cdf(x))).max()
    assert err <= table.error_bound
    assert table.var() == pytest.approx(law.var(), rel=20 * tol)
    assert np.diff(table.cdf(x)).min() >= -1e-14  # monotone up to rounding
    assert table.cdf(lo - 1.0) == 0.0 and table.cdf(hi) == 1.0


def test_tabulate_closed_form_and_scipy_laws():
    from adamdist import theory

    law = theory.update_distribution(9)  # Theorem 1's scipy law: support is a method there
    table = exact.tabulate(law, tol=1e-5)
    x = np.linspace(-2.9, 2.9, 301)
    assert np.abs(table.cdf(x) - closed_form_cdf(9, x)).max() <= table.error_bound


def test_tabulate_rejects_what_it_cannot_tabulate():
    with pytest.raises(ValueError, match="two-point"):
        exact.tabulate(update_distribution(1))
    with pytest.raises(ValueError, match="finite support"):
        exact.tabulate(update_distribution(5, beta1=0.9, beta2=0.0))
    with pytest.raises(ValueError, match="tol"):
        exact.tabulate(update_distribution(5), tol=0.0)
    with pytest.raises(ValueError, match="max_nodes"):
        exact.tabulate(update_distribution(50), tol=1e-9, max_nodes=40)
    with pytest.raises(TypeError, match="start_nodes"):
        exact.tabulate(update_distribution(5), start_nodes=7.5)


def test_the_laws_are_scipy_distributions_with_every_method():
    from scipy import stats as st

    d = update_distribution(8, 0.9, 0.999)
    assert isinstance(d, st.rv_continuous)
    x = np.array([-1.0, 0.3, 1.2])
    np.testing.assert_allclose(d.logpdf(x), np.log(d.pdf(x)), rtol=1e-14)
    np.testing.assert_allclose(d.logcdf(x), np.log(d.cdf(x)), rtol=1e-14)
    np.testing.assert_allclose(d.logsf(x), np.log(d.sf(x)), rtol=1e-9)
    np.testing.assert_allclose(d.cdf(d.isf([0.1, 0.7])), [0.9, 0.3], atol=1e-11)
    assert d.median() == pytest.approx(float(d.ppf(0.5)), abs=1e-15)
    assert d.moment(2) == pytest.approx(d.var() + d.mean() ** 2, rel=1e-12)
    assert d.expect(lambda u: u**2) == pytest.approx(d.moment(2), rel=1e-6)  # scipy's quadrature of the pdf
    grid = np.linspace(-d.bound, d.bound, 4001)[1:-1]
    f = d.pdf(grid)
    assert d.entropy() == pytest.approx(-np.trapezoid(f * np.log(f), grid), abs=2e-3)  # scipy's quad, scalars
    lo, hi = d.support()
    assert -lo == hi == d.bound
    frozen = d(loc=0.5, scale=2.0)  # scipy's loc/scale family, rebuilt from the law's own parameters
    np.testing.assert_allclose(frozen.cdf(0.5 + 2 * x), d.cdf(x), rtol=1e-14)
    assert frozen.var() == pytest.approx(4 * d.var(), rel=1e-12)
    again = pickle.loads(pickle.dumps(d))
    np.testing.assert_array_equal(again.cdf(x), d.cdf(x))
    with pytest.raises(ValueError, match="q"):
        d.ppf(1.5)  # scipy would return NaN


def test_the_two_point_law_is_a_scipy_discrete_distribution():
    from scipy import stats as st

    d = update_distribution(1, 0.9, 0.999, mean=0.2)
    assert isinstance(d, st.rv_discrete)
    assert d.support() == (-1, 1) and d.pmf(0) == 0.0
    assert d.pmf(1) + d.pmf(-1) == pytest.approx(1.0)
    assert d.moment(2) == pytest.approx(1.0) and d.median() in (-1.0, 1.0)
    assert d.sf(0.0) == pytest.approx(d.p_plus) and d.expect(lambda u: u) == pytest.approx(d.mean())
