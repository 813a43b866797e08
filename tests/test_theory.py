"""adamdist.theory: closed forms vs numerical integration vs Monte Carlo."""

import mpmath
import numpy as np
import pytest
from scipy import integrate, stats

from adamdist import theory as T

M_GRID = [1.2, 1.7, 2, 2.5, 3, 4, 5, 7, 10, 20, 50, 200, 1e3, 1e4, 1e5, 1e7]


def _simulate_theorem1(m, n, seed, c=None):
    """The recursion itself: X_m / sqrt(sum X_i^2 / c) for i.i.d. standard normals."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, n))
    c = m if c is None else c
    return x[-1] / np.sqrt((x**2).sum(axis=0) / c)


# -- the density: normalised, right variance, against a 40-digit quadrature ----------

@pytest.mark.parametrize("m", M_GRID)
def test_pdf_integrates_to_one_and_gives_unit_variance(m):
    d = T.update_distribution(m)
    lo, hi = d.support()
    assert hi == pytest.approx(np.sqrt(m)) and lo == -hi
    # beyond m = 1e4 the mass sits within 12 of 0, far from the edges at +-sqrt(m)
    a, b = (lo, hi) if m <= 1e4 else (-12.0, 12.0)
    # quad's extrapolation copes with the integrable edge singularities of m < 3
    mass = integrate.quad(d.pdf, a, b, points=[0.0], limit=400)[0]
    var = integrate.quad(lambda x: x * x * d.pdf(x), a, b, points=[0.0], limit=400)[0]
    tol = 1e-6 if m < 3 else 1e-9
    assert mass == pytest.approx(1.0, rel=tol)
    assert var == pytest.approx(1.0, rel=tol)
    assert d.var() == pytest.approx(1.0, rel=1e-12)
    assert T.update_variance(m) == pytest.approx(1.0, rel=1e-15)


@pytest.mark.parametrize("m", [2, 3, 6, 11, 40])
def test_pdf_matches_high_precision_formula(m):
    """Eq. 30 evaluated with 40-digit Gamma functions, an independent route to the log-space code."""
    mpmath.mp.dps = 40
    d = T.update_distribution(m)
    for x in np.linspace(-0.99, 0.99, 7) * np.sqrt(m):
        xm = mpmath.mpf(x)
        ref = (1 / mpmath.sqrt(m) * mpmath.gamma(mpmath.mpf(m) / 2)
               / (mpmath.gamma((mpmath.mpf(m) - 1) / 2) * mpmath.gamma(0.5))
               * (1 - xm**2 / m) ** ((mpmath.mpf(m) - 3) / 2))
        assert d.pdf(x) == pytest.approx(float(ref), rel=1e-12)


@pytest.mark.parametrize("m", [1.5, 2, 3, 4.5, 10, 200])
def test_cdf_is_integral_of_pdf(m):
    d = T.update_distribution(m)
    lo, hi = d.support()
    for x in np.linspace(lo, hi, 9)[1:-1]:
        integral = integrate.quad(d.pdf, lo, x, limit=400)[0]
        assert d.cdf(x) == pytest.approx(integral, abs=1e-7)
    q = np.array([0.001, 0.1, 0.5, 0.77, 0.999])
    # near the edges of an m < 3 law the cdf is so steep that x = -1 + tiny cannot be
    # represented more finely: compare in x-space there
    np.testing.assert_allclose(d.cdf(d.ppf(q)), q, rtol=1e-6)
    x = np.linspace(d.ppf(1e-6), d.ppf(1 - 1e-6), 11)
    np.testing.assert_allclose(d.ppf(d.cdf(x)), x, atol=1e-9)
    np.testing.assert_allclose(d.isf(d.sf(x)), x, atol=1e-9)


def test_large_m_is_gaussian():
    """Eq. 31: the law tends to N(0, 1); at m = 1e7 the difference is O(1/m)."""
    d = T.update_distribution(1e7)
    x = np.linspace(-5, 5, 41)
    np.testing.assert_allclose(d.cdf(x), stats.norm.cdf(x), atol=2e-7)
    np.testing.assert_allclose(d.pdf(x), stats.norm.pdf(x), atol=2e-7)
    assert np.all(np.isfinite(d.logpdf(x)))


@pytest.mark.parametrize("m", [2, 3, 5, 12])
def test_matches_monte_carlo_of_the_recursion(m):
    u = _simulate_theorem1(m, 200_000, seed=m)
    d = T.update_distribution(m)
    ks = stats.kstest(u, d.cdf)
    assert ks.statistic < 1.63 / np.sqrt(u.size)  # 99% Kolmogorov band
    assert u.var() == pytest.approx(1.0, abs=0.02)
    assert np.abs(u).max() <= np.sqrt(m) + 1e-12


@pytest.mark.parametrize("m, c", [(4, 3), (10, 9), (7, 2.5)])
def test_other_normalisation(m, c):
    u = _simulate_theorem1(m, 100_000, seed=1, c=c)
    d = T.update_distribution(m, c=c)
    assert stats.kstest(u, d.cdf).statistic < 1.63 / np.sqrt(u.size)
    assert d.var() == pytest.approx(c / m)
    assert T.update_variance(m, c) == pytest.approx(c / m)
    assert d.support()[1] == pytest.approx(np.sqrt(c))


def test_m_equal_one_is_the_sign():
    d = T.update_distribution(1)
    np.testing.assert_allclose(d.cdf([-1.5, -1.0, 0.0, 0.999, 1.0]), [0, 0.5, 0.5, 0.5, 1.0])
    assert d.var() == 1.0 and d.mean() == 0.0
    assert set(np.unique(d.rvs(size=100, random_state=0))) == {-1.0, 1.0}
    assert T.update_distribution(1, c=4).support() == (-2.0, 2.0)
    a = T.abs_update_distribution(1)
    assert a.var() == 0 and a.mean() == 1.0
    assert T.abs_update_variance(1) == pytest.approx(0.0, abs=1e-15)


def test_special_cases_m2_m3():
    # m = 3 is uniform on [-sqrt 3, sqrt 3] (the corrected eq. 33)
    d3 = T.update_distribution(3)
    x = np.linspace(-1.7, 1.7, 11)
    np.testing.assert_allclose(d3.pdf(x), 1 / (2 * np.sqrt(3)), rtol=1e-13)
    # m = 2 is the arcsine law on [-sqrt 2, sqrt 2] (the corrected eq. 32)
    d2 = T.update_distribution(2)
    x = np.linspace(-1.4, 1.4, 11)
    np.testing.assert_allclose(d2.pdf(x), 1 / (np.pi * np.sqrt(2 - x**2)), rtol=1e-13)
    np.testing.assert_allclose(d2.cdf(x), 0.5 + np.arcsin(x / np.sqrt(2)) / np.pi, rtol=1e-12)


def test_modality_changes_at_m_3():
    for m, shape in [(2, "U"), (2.9, "U"), (3.1, "cap"), (8, "cap")]:
        d = T.update_distribution(m)
        edge = 0.95 * np.sqrt(m)
        assert (d.pdf(edge) > d.pdf(0)) == (shape == "U")


# -- |U| and its variance (Corollary 2) ----------------------------------------------

@pytest.mark.parametrize("m", [2, 3, 5, 17, 100, 1e4, 1e7])
def test_abs_variance_corollary2_three_routes(m):
    closed = T.abs_update_variance(m)
    # route 1: the printed Corollary 2 with 40-digit Gamma functions
    mpmath.mp.dps = 40
    mm = mpmath.mpf(m)
    printed = 1 - 4 * mm * mpmath.gamma(mm / 2) ** 2 / ((mm - 1) ** 2 * mpmath.pi * mpmath.gamma((mm - 1) / 2) ** 2)
    assert closed == pytest.approx(float(printed), rel=1e-12)
    # route 2: numerical integration of the |U| density
    d = T.abs_update_distribution(m)
    hi = d.support()[1]
    upper = min(hi, 12.0)
    e1 = integrate.quad(lambda x: x * d.pdf(x), 0, upper, limit=200)[0]
    e2 = integrate.quad(lambda x: x * x * d.pdf(x), 0, upper, limit=200)[0]
    assert e2 - e1**2 == pytest.approx(closed, rel=1e-7)
    assert d.var() == pytest.approx(closed, rel=1e-10)
    assert T.abs_update_mean(m) == pytest.approx(e1, rel=1e-8)


def test_abs_variance_monte_carlo_and_monotone():
    for m in [2, 4, 9]:
        u = _simulate_theorem1(m, 400_000, seed=10 + m)
        assert np.abs(u).var() == pytest.approx(T.abs_update_variance(m), abs=0.004)
    v = T.abs_update_variance(np.arange(1, 2000))
    assert np.all(np.diff(v) > 0)
    assert v[-1] < 1 - 2 / np.pi
    assert T.abs_update_variance(1e7) == pytest.approx(1 - 2 / np.pi, abs=1e-7)


def test_abs_distribution_matches_update_distribution():
    for m in [2.5, 6, 30]:
        d, a = T.update_distribution(m), T.abs_update_distribution(m)
        y = np.linspace(0, 0.99 * np.sqrt(m), 9)
        np.testing.assert_allclose(a.cdf(y), d.cdf(y) - d.cdf(-y), atol=1e-13)


def test_squared_and_share_laws():
    m = 6
    x = np.random.default_rng(0).standard_normal((m, 200_000))
    k = x[-1] ** 2 / (x**2).sum(axis=0)
    assert stats.kstest(k, T.gradient_share_distribution(m).cdf).statistic < 1.63 / np.sqrt(k.size)
    assert T.gradient_share_distribution(m).mean() == pytest.approx(1 / m)  # eq. 22
    assert T.squared_update_distribution(m).mean() == pytest.approx(1.0)  # eq. 24
    assert T.squared_update_distribution(m, c=m - 1).mean() == pytest.approx((m - 1) / m)


# -- Student t, EMA --------------------------------------------------------------------

def test_student_t_variance():
    np.testing.assert_allclose(T.student_t_variance([3, 4, 10]), [3, 2, 1.25])
    assert np.isinf(T.student_t_variance(2)) and np.isinf(T.student_t_variance(1.5))
    assert T.student_t_variance(10) == pytest.approx(stats.t(10).var())
    # eq. 34: Var[T] > 1 = Var[U] > Var|U| for every finite m > 2
    m = np.arange(3, 200)
    assert np.all(T.student_t_variance(m) > 1) and np.all(T.abs_update_variance(m) < 1)


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9, 0.99, 0.999, 0.999999])
@pytest.mark.parametrize("m", [1, 2, 7, 100, 5000])
def test_ema_variance_is_sum_of_squared_weights(beta, m):
    w = T.ema_weights(beta, m)
    assert w.sum() == pytest.approx(1.0, rel=1e-12)
    assert T.ema_mean_variance(beta, m) == pytest.approx((w**2).sum(), rel=1e-9)
    assert T.ema_effective_samples(beta, m) == pytest.approx(1 / (w**2).sum(), rel=1e-9)


def test_ema_mean_variance_monte_carlo_and_limits():
    rng = np.random.default_rng(5)
    beta, m = 0.9, 12
    z = rng.standard_normal((m, 200_000))
    avg = T.ema_weights(beta, m) @ z
    assert avg.var() == pytest.approx(T.ema_mean_variance(beta, m), rel=0.01)
    assert T.ema_mean_variance(0.0, 9) == 1.0
    assert T.ema_mean_variance(1 - 1e-9, 10) == pytest.approx(1 / 10, rel=1e-6)
    assert T.ema_mean_variance(0.9, 1e6) == pytest.approx(1 / 19, rel=1e-12)
    assert T.ema_equivalent_m(0.999) == pytest.approx(2000)
    assert T.ema_equivalent_beta(2000) == pytest.approx(0.999)
    np.testing.assert_allclose(T.ema_mean_variance([0.9, 0.99], [10, 10]),
                               [T.ema_mean_variance(0.9, 10), T.ema_mean_variance(0.99, 10)])


# -- API behaviour and bad input -----------------------------------------------------------

def test_scipy_api_and_broadcasting():
    d = T.update_distribution(5)
    lo, hi = d.interval(0.9)
    assert d.cdf(hi) - d.cdf(lo) == pytest.approx(0.9)
    assert d.rvs(size=(3, 4), random_state=1).shape == (3, 4)
    assert d.std() == pytest.approx(1.0)
    assert isinstance(T.update_variance(5), float)
    assert T.abs_update_variance(np.array([[2.0], [5.0]]), np.array([1.0, 2.0])).shape == (2, 2)
    assert d.cdf(10) == 1.0 and d.pdf(10) == 0.0 and d.cdf(-10) == 0.0


@pytest.mark.parametrize("func", [T.update_distribution, T.abs_update_distribution, T.update_variance,
                                  T.abs_update_variance, T.student_t_variance])
@pytest.mark.parametrize("bad, err, match", [(0.5, ValueError, r"m must lie in \[1"), (np.nan, ValueError, "m must not be NaN"),
                                             (np.inf, ValueError, "m must be finite"), (-3, ValueError, "m must lie"),
                                             (2e7, ValueError, "m must lie"), ("5", TypeError, "m must be a real number")])
def test_bad_m(func, bad, err, match):
    with pytest.raises(err, match=match):
        func(bad)


def test_bad_c_and_beta():
    for bad in [0, -1, np.nan]:
        with pytest.raises(ValueError, match="c must"):
            T.update_distribution(5, c=bad)
    for bad in [1.0, -0.1, 1.5, np.nan]:
        with pytest.raises(ValueError, match="beta must"):
            T.ema_mean_variance(bad, 5)
    with pytest.raises(ValueError, match="m must be an integer"):
        T.ema_weights(0.9, 2.5)
    with pytest.raises(ValueError, match="m must lie"):
        T.ema_equivalent_beta(1.5)
    with pytest.raises(TypeError, match="scalar"):
        T.update_distribution([2, 3])


def test_update_bound_proposition1():
    assert T.update_bound(7) == pytest.approx(np.sqrt(7))
    assert T.update_bound(5, 0.0) == 1.0
    for beta2, t in [(0.9, 3), (0.999, 10), (0.5, 40)]:
        w = T.ema_weights(beta2, t)
        assert T.update_bound(t, beta2) == pytest.approx(1 / np.sqrt(w[-1]), rel=1e-12)
        # the bound is attained when all earlier gradients vanish, and never exceeded otherwise
        rng = np.random.default_rng(t)
        g = rng.standard_normal((t, 50_000)) * rng.exponential(size=(t, 1)) ** 3
        u = g[-1] / np.sqrt(w @ g**2)
        assert np.abs(u).max() <= T.update_bound(t, beta2) * (1 + 1e-12)
        g[:-1] = 0
        assert np.abs(g[-1] / np.sqrt(w @ g**2)).max() == pytest.approx(T.update_bound(t, beta2))
    np.testing.assert_allclose(T.update_bound([1, 10], [1.0, 1 - 1e-12]), [1.0, np.sqrt(10)], rtol=1e-9)
    with pytest.raises(ValueError, match="beta2 must lie"):
        T.update_bound(3, 1.5)
    with pytest.raises(ValueError, match="t must lie"):
        T.update_bound(0)


def test_special_cases_of_g_eqs_25_to_27():
    g = np.linspace(1e-6, 2.0, 50)
    # eq. (26): m = 3, F(g) = sqrt(g / 3); eq. (27) corrected: m = 2, the arcsine law on (0, 2)
    np.testing.assert_allclose(T.squared_update_distribution(3).cdf(g), np.sqrt(g / 3), atol=1e-14)
    np.testing.assert_allclose(T.squared_update_distribution(2).cdf(g),
                               2 / np.pi * np.arcsin(np.sqrt(g / 2)), atol=1e-14)
    # eq. (25): chi-square with one degree of freedom as m grows, the gap shrinking like 1/m
    grid = np.linspace(1e-4, 10, 200)
    gaps = [np.abs(T.squared_update_distribution(m).cdf(grid) - stats.chi2.cdf(grid, 1)).max()
            for m in (1e2, 1e3, 1e4)]
    assert gaps[2] < 1e-4 and gaps[1] / gaps[2] == pytest.approx(10, rel=0.2)
    # and by simulation from the definition G = m Z / (Z + H)
    rng = np.random.default_rng(7)
    z, h = rng.chisquare(1, 100_000), rng.chisquare(2, 100_000)
    assert stats.kstest(3 * z / (z + h), lambda t: np.sqrt(np.clip(t, 0, 3) / 3)).statistic < 1.63 / np.sqrt(1e5)


# -- the package's own errors (issue: no silent failures) -------------------------------------------------
@pytest.mark.parametrize("call, words", [
    (lambda: T.ema_weights(np.array([0.1, 0.2]), 5), r"beta must be a single real number, got an array"),
    (lambda: T.ema_weights(0.9, np.array([3, 4])), r"m must be a single real number, got an array"),
    (lambda: T.squared_update_distribution(np.array([3, 4])), r"m must be a scalar for a frozen distribution"),
    (lambda: T.squared_update_distribution(3, c=np.array([3, 4])), r"c must be a scalar"),
    (lambda: T.gradient_share_distribution(np.array([3, 4])), r"m must be a scalar for a frozen distribution"),
])
def test_arrays_where_one_number_is_needed_are_refused_by_name(call, words):
    with pytest.raises(TypeError, match=words):
        call()


@pytest.mark.parametrize("call", [
    lambda: T.update_distribution(True),
    lambda: T.abs_update_distribution(True),
    lambda: T.squared_update_distribution(True),
    lambda: T.gradient_share_distribution(True),
    lambda: T.ema_weights(0.9, True),
    lambda: T.ema_weights(False, 3),
    lambda: T.update_variance(np.array([True, False])),
])
def test_booleans_are_not_step_counts(call):
    with pytest.raises(TypeError, match="must be a real number or an array of real numbers"):
        call()


def test_squared_update_law_unchanged_by_the_checks():
    d = T.squared_update_distribution(7, c=6)
    assert d.mean() == pytest.approx(6 / 7, rel=1e-14)
    assert T.gradient_share_distribution(7).mean() == pytest.approx(1 / 7, rel=1e-14)


def test_ema_weights_have_one_owner_and_reach_the_simple_average():
    from adamdist import exact

    for t in (1, 2, 9, 400):
        for beta in (0.0, 0.3, 0.9, 0.999):
            np.testing.assert_array_equal(exact.momentum_weights(t, beta), T.ema_weights(beta, t))
            np.testing.assert_array_equal(exact.second_moment_weights(t, beta), T.ema_weights(beta, t))
        np.testing.assert_array_equal(T.ema_weights(1.0, t), np.full(t, 1 / t))
        np.testing.assert_allclose(T.ema_weights(1 - 1e-12, t), np.full(t, 1 / t), rtol=1e-8)
    with pytest.raises(ValueError, match="beta"):
        T.ema_weights(1.5, 3)


def test_adam_effective_m():
    t = np.arange(1, 31)
    np.testing.assert_array_equal(T.adam_effective_m(None, t), t.astype(float))
    np.testing.assert_array_equal(T.adam_effective_m(0.0, t), np.ones(30))
    m = T.adam_effective_m(0.999, t)
    np.testing.assert_allclose(m, t, rtol=1e-3)
    np.testing.assert_allclose(m, [1 / (T.ema_weights(0.999, k) ** 2).sum() for k in t], rtol=1e-12)
    assert T.adam_effective_m(0.999, 1) == 1.0 and isinstance(T.adam_effective_m(0.9, 5), float)
    with pytest.raises(ValueError, match="t"):
        T.adam_effective_m(0.9, 0)
