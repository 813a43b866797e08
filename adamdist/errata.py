r"""Misprints in Zhang & Liu, each with the corrected formula and a numerical check.

Every :class:`Erratum` carries a ``check(seed)`` that computes, for one or more
quantities, the value implied by the formula *as printed*, the value implied by
the *corrected* formula, and a *reference* value obtained by an independent
route (quadrature of a density, direct summation, a Monte Carlo simulation
of the random variables themselves, or ``torch.optim.Adam``). Where the
misprint is an inconsistency between two passages of the paper, the reference
is the number read off the other passage, quoted verbatim in
:data:`PAPER_QUOTES`. :func:`check_all` runs them all; the
book's chapters show the relevant ones next to the equation, and its errata
page lists them together.

An erratum is *confirmed* when the corrected value agrees with the reference
in every row (within the row's tolerance) and the printed value misses at
least one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from scipy import integrate, special

from . import theory

__all__ = ["Erratum", "ERRATA", "PAPER_QUOTES", "get", "check_all", "summary"]

_COLUMNS = ["quantity", "printed", "corrected", "reference", "route", "tol"]


@dataclass(frozen=True)
class Erratum:
    """One misprint: where it is, what is printed, what is right, and how we know."""

    key: str
    where: str
    section: str
    printed: str
    corrected: str
    note: str
    check: Callable[..., pd.DataFrame]

    def run(self, seed: int = 0) -> pd.DataFrame:
        """Run the check; adds ``printed_ok`` and ``corrected_ok`` (agreement with the reference)."""
        frame = self.check(seed)

        def agrees(col):
            return np.abs(frame[col].astype(float) - frame["reference"]) <= frame["tol"]

        return frame.assign(printed_ok=agrees("printed"), corrected_ok=agrees("corrected"))

    def confirmed(self, seed: int = 0) -> bool:
        """True when the corrected formula matches every reference and the printed one misses one."""
        return _confirmed(self.run(seed))


def _confirmed(frame: pd.DataFrame) -> bool:
    return bool(frame["corrected_ok"].all() and not frame["printed_ok"].all())


def _frame(rows):
    return pd.DataFrame(rows, columns=_COLUMNS)


def _mc_se_tol(n, scale=1.0, k=6.0):
    """A tolerance of k Monte Carlo standard errors for a mean of n draws with sd ``scale``."""
    return k * scale / np.sqrt(n)


# -- section 3 -------------------------------------------------------------------------

def _f_density(z, m, exponent):
    log_c = exponent * np.log(m - 1) - special.betaln(0.5, (m - 1) / 2)
    return np.exp(log_c - 0.5 * np.log(z) - (m / 2) * np.log(m - 1 + z))


def _check_eq7(seed, m=6, n=200_000):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, n))
    # the F(1, m-1) statistic: squared t statistic of the sample mean
    z = x.mean(axis=0) ** 2 / (x.var(axis=0, ddof=1) / m)
    p_mc = (z <= 1).mean()
    rows = []
    for label, upper in [("total probability", np.inf), ("P(Z <= 1)", 1.0)]:
        vals = {}
        for which, e in [("printed", m - 0.5), ("corrected", (m - 1) / 2)]:
            vals[which] = integrate.quad(_f_density, 0, upper, args=(m, e), limit=200)[0]
        ref, route, tol = (1.0, "a density integrates to 1", 1e-6) if upper == np.inf else \
            (p_mc, f"Monte Carlo of the F statistic, n = {n}", _mc_se_tol(n, 0.5))
        rows.append([f"{label}, m = {m}", vals["printed"], vals["corrected"], ref, route, tol])
    return _frame(rows)


def _check_f_variance(seed, m=10):
    def moment(k):
        return integrate.quad(lambda z: z**k * _f_density(z, m, (m - 1) / 2), 0, np.inf, limit=400)[0]

    var = moment(2) - moment(1) ** 2
    printed = 2 * (m - 1) ** 2 * (m - 2) / ((m - 2) ** 2 * (m - 4))
    corrected = 2 * (m - 1) ** 2 * (m - 2) / ((m - 3) ** 2 * (m - 5))
    return _frame([[f"Var F(1, m-1), m = {m}", printed, corrected, var, "quadrature of the F density", 1e-6]])


def _ema_samples(beta, m, n, rng, mean=0.0):
    """Run the recursion n <- beta n + (1 - beta) z itself, no closed form involved."""
    acc = np.zeros(n)
    for _ in range(m):
        acc = beta * acc + (1 - beta) * (mean + rng.standard_normal(n))
    return acc


def _check_eq8(seed, beta=0.9, m=5, n=400_000):
    rng = np.random.default_rng(seed)
    avg = _ema_samples(beta, m, n, rng, mean=1.0)
    rows = [
        [f"mean factor, beta = {beta}, m = {m}", 1 - beta ** (m - 1), 1 - beta**m, avg.mean(),
         f"Monte Carlo of the recursion (mu = 1), n = {n}", _mc_se_tol(n, avg.std())],
        [f"variance factor, beta = {beta}, m = {m}",
         (1 - beta) ** 2 * (1 - beta ** (2 * (m - 1))) / (1 - beta**2),
         (1 - beta) ** 2 * (1 - beta ** (2 * m)) / (1 - beta**2), avg.var(),
         f"Monte Carlo of the recursion, n = {n}", _mc_se_tol(n, avg.var() * np.sqrt(2))],
    ]
    return _frame(rows)


def _bias_corrected_factor(beta, k):
    return (1 - beta) / (1 + beta) * (1 + beta**k) / (1 - beta**k)


def _check_eq10(seed, beta=0.9, m=5, n=400_000):
    rng = np.random.default_rng(seed)
    avg = _ema_samples(beta, m, n, rng) / (1 - beta**m)
    return _frame([[f"variance after bias correction, beta = {beta}, m = {m}",
                    _bias_corrected_factor(beta, m - 1), _bias_corrected_factor(beta, m), avg.var(),
                    f"Monte Carlo of the bias-corrected recursion, n = {n}",
                    _mc_se_tol(n, avg.var() * np.sqrt(2))]])


def _check_beta09(seed):
    rows = []
    for beta, printed in [(0.9, 1 / 21), (0.99, 1 / 199)]:
        # the long-run weights (1 - beta) beta^i, summed term by term until they are below 1e-30
        i = np.arange(int(np.ceil(-35 / np.log10(beta))))
        direct = np.sum(((1 - beta) * beta**i) ** 2)
        rows.append([f"long-run variance, beta = {beta}", printed, (1 - beta) / (1 + beta), direct,
                     f"direct sum of {i.size} squared weights", 1e-12])
    return _frame(rows)


def _check_eq11(seed, n=400_000):
    rows = []
    for beta in (0.9, 0.99, 0.999):
        m_eq = 2 / (1 - beta)  # eq. (12)
        i = np.arange(int(np.ceil(-35 / np.log10(beta))))
        direct = np.sum(((1 - beta) * beta**i) ** 2)  # m -> infinity: all squared weights
        rows.append([f"long-run variance, beta = {beta} (eq. 12: m = {m_eq:g})", 1 / (m_eq - 1),
                     (1 - beta) / (1 + beta), direct, f"direct sum of {i.size} squared weights", 1e-12])
    # the printed side condition m >> 1/beta holds at m = 100 for beta = 0.999, yet the limit is far off
    beta, m = 0.999, 100
    rng = np.random.default_rng(seed)
    avg = _ema_samples(beta, m, n, rng) / (1 - beta**m)
    rows.append([f"variance after m = {m} steps, beta = {beta} (m >> 1/beta holds)", 1 / (2 / (1 - beta) - 1),
                 _bias_corrected_factor(beta, m), avg.var(),
                 f"Monte Carlo of the bias-corrected recursion, n = {n}", _mc_se_tol(n, avg.var() * np.sqrt(2))])
    return _frame(rows)


def _check_unbiased_u(seed, m=5, n=400_000):
    x = np.random.default_rng(seed).standard_normal((m, n))
    u = (x**2).sum(axis=0) / (m - 1)  # Q/(m-1) with Q the uncentred sum of squares (mu = 0)
    return _frame([[f"E[Q/(m-1)], mu = 0, sigma = 1, m = {m}", 1.0, m / (m - 1), u.mean(),
                    f"Monte Carlo, n = {n}", _mc_se_tol(n, u.std())]])


def _adam_steps(grads, mu, beta, ordering):
    """The update Delta theta = (theta_t - theta_{t-1}) / lambda after the last gradient, epsilon = 0."""
    n = m = 0.0
    for t, g in enumerate(grads, start=1):
        c_n, c_m = 1 - beta**t, 1 - mu**t
        n = beta * n + (1 - beta) * g * g
        if ordering == "eq3":  # eq. (3): divide by the preconditioner, then average
            m = mu * m + (1 - mu) * g / np.sqrt(n / c_n)
            step = -m / c_m
        else:  # Kingma & Ba: average the raw gradients, then divide
            m = mu * m + (1 - mu) * g
            step = -(m / c_m) / np.sqrt(n / c_n)
    return step


def _torch_adam_step(grads, mu, beta):
    import torch

    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.Adam([param], lr=1.0, betas=(mu, beta), eps=0.0)
    before = 0.0
    for g in grads:
        before = float(param.detach()[0])
        param.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
    return float(param.detach()[0]) - before


def _check_eq3(seed, beta=0.999, t=5):
    grads = np.random.default_rng(seed).standard_normal(t).tolist()
    rows = []
    for mu in (0.9, 0.0):
        rows.append([f"update at step {t}, mu = beta1 = {mu}, beta = {beta}",
                     _adam_steps(grads, mu, beta, "eq3"), _adam_steps(grads, mu, beta, "adam"),
                     _torch_adam_step(grads, mu, beta), "torch.optim.Adam (lr = 1, eps = 0, float64)", 1e-9])
    return _frame(rows)


# -- section 4 -------------------------------------------------------------------------

def _check_mode(seed, m=10, n=400_000):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, n))
    k = x[-1] ** 2 / (x**2).sum(axis=0)
    counts, edges = np.histogram(k, bins=100, range=(0, 1))
    mode_k = 0.5 * (edges[counts.argmax()] + edges[counts.argmax() + 1])
    g = m * k
    counts_g, edges_g = np.histogram(g, bins=100, range=(0, m))
    mode_g = 0.5 * (edges_g[counts_g.argmax()] + edges_g[counts_g.argmax() + 1])
    return _frame([
        [f"mode of K, m = {m}", 1 / (m - 2), 0.0, mode_k, "fullest bin of a Monte Carlo histogram (width 0.01)", 0.01],
        [f"mode of G = mK, m = {m}", m / (m - 2), 0.0, mode_g, "fullest bin of a Monte Carlo histogram (width 0.1)", 0.1],
    ])


def _check_mode_c_m1(seed, n=400_000):
    rows = []
    rng = np.random.default_rng(seed)
    for m in (5, 10):
        c = m - 1
        # the density of G = cK with K ~ Beta(1/2, (m-1)/2) (eq. 21), on a grid that reaches down to 1e-12 c
        grid = c * np.concatenate([np.logspace(-12, -1, 2000), np.linspace(0.1, 1 - 1e-9, 2000)])
        density = special.gamma(m / 2) / (special.gamma(0.5) * special.gamma((m - 1) / 2)) \
            * (grid / c) ** -0.5 * (1 - grid / c) ** ((m - 3) / 2) / c
        argmax = grid[np.argmax(density)]
        rows.append([f"argmax of the c = m - 1 density of G, m = {m}", (m - 1) / (m - 2), 0.0, argmax,
                     "maximum of the density on a log-spaced grid down to 1e-12 (m - 1)", 1e-6])
        x = rng.standard_normal((m, n))
        g = x[-1] ** 2 / ((x**2).sum(axis=0) / c)
        counts, edges = np.histogram(g, bins=100, range=(0, c))
        mode = 0.5 * (edges[counts.argmax()] + edges[counts.argmax() + 1])
        rows.append([f"fullest bin of simulated G (c = m - 1), m = {m}", (m - 1) / (m - 2), 0.0, mode,
                     f"Monte Carlo histogram, n = {n}, bin width {c / 100:g}", c / 100])
    return _frame(rows)


def _check_eq16(seed, n=100_000):
    x1 = np.random.default_rng(seed).standard_normal(n)
    g = x1**2 / x1**2  # eq. 14 at m = 1, c = 1
    return _frame([["E[G] at m = 1", 0.0, 1.0, g.mean(), "Monte Carlo of eq. (14)", 1e-12]])


def _joint_zk(z, k, m, rate):
    log_c = -(m / 2) * np.log(2) - 0.5 * np.log(np.pi) - special.gammaln((m - 1) / 2)
    return np.exp(log_c - 2 * np.log(k) + ((m - 3) / 2) * np.log((1 - k) / k)
                  + ((m - 2) / 2) * np.log(z) - rate * z / k)


def _check_eq19(seed, m=5, n=200_000):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, n))
    k = x[-1] ** 2 / (x**2).sum(axis=0)
    p_mc = (k <= 0.3).mean()

    def mass(rate, k_hi):
        # z = k s makes the inner integrand's scale independent of k, which quadrature needs near k = 0
        return integrate.dblquad(lambda s, kk: kk * _joint_zk(kk * s, kk, m, rate), 0, k_hi, 0, np.inf)[0]

    return _frame([
        [f"total probability, m = {m}", mass(1.0, 1.0), mass(0.5, 1.0), 1.0, "a density integrates to 1", 1e-6],
        [f"P(K <= 0.3), m = {m}", mass(1.0, 0.3), mass(0.5, 0.3), p_mc,
         f"Monte Carlo of K, n = {n}", _mc_se_tol(n, 0.5)],
    ])


def _check_eq27(seed, n=200_000):
    x = np.random.default_rng(seed).standard_normal((2, n))
    g = x[-1] ** 2 / ((x**2).sum(axis=0) / 2)
    printed = lambda t: 1 / (np.pi * np.sqrt(t / 2 * (1 - t / 2)))  # noqa: E731
    corrected = lambda t: printed(t) / 2  # noqa: E731
    return _frame([
        ["total probability of f_2(g)", integrate.quad(printed, 0, 2)[0], integrate.quad(corrected, 0, 2)[0], 1.0,
         "a density integrates to 1", 1e-6],
        ["P(G <= 1), m = 2", integrate.quad(printed, 0, 1)[0], integrate.quad(corrected, 0, 1)[0], (g <= 1).mean(),
         f"Monte Carlo of eq. (14), n = {n}", _mc_se_tol(n, 0.5)],
    ])


def _check_eq27_edges(seed, n=400_000):
    x = np.random.default_rng(seed).standard_normal((2, n))
    g = x[-1] ** 2 / ((x**2).sum(axis=0) / 2)
    counts, edges = np.histogram(g, bins=100, range=(0, 2))  # bin width 0.02
    upper = counts[25:].argmax() + 25  # the fuller end of g > 0.5
    centre = 0.5 * (edges[upper] + edges[upper + 1])
    return _frame([["upper point where G piles up, m = 2 (c = m)", 1.0, 2.0, centre,
                    f"fullest bin of g > 0.5 in a Monte Carlo histogram (width 0.02), n = {n}", 0.02]])


def _check_m_to_1(seed, m=1.001, n=400_000):
    rng = np.random.default_rng(seed)
    z, h = rng.chisquare(1, n), rng.chisquare(m - 1, n)  # X_m^2 and H of eq. (15), real m
    g = m * z / (z + h)
    return _frame([
        [f"P(G < 1/2), m = {m}", 0.5, 0.0, (g < 0.5).mean(), f"Monte Carlo of eq. (15), n = {n}",
         _mc_se_tol(n, 0.5)],
        [f"E[G], m = {m}", 0.5, 1.0, g.mean(), f"Monte Carlo of eq. (15), n = {n}", _mc_se_tol(n, g.std())],
    ])


def _theorem1_draws(m, n, seed):
    x = np.random.default_rng(seed).standard_normal((m, n))
    return x[-1] / np.sqrt((x**2).mean(axis=0))


def _update_draws(m, c, n, seed):
    x = np.random.default_rng(seed).standard_normal((m, n))
    return x[-1] / np.sqrt((x**2).sum(axis=0) / c)


def _update_density(x, m, c):
    """Eq. (30) for the normalisation c: the law of sqrt(c) X_k, on |x| < sqrt(c)."""
    return (1 - x * x / c) ** ((m - 3) / 2) / (np.sqrt(c) * special.beta(0.5, (m - 1) / 2))


def _mass(density, a, b, **kw):
    return integrate.quad(density, a, b, limit=200, **kw)[0]


def _check_eq32(seed, m=2, n=200_000):
    printed = lambda t: 1 / (np.pi * np.sqrt(1 - t * t))  # noqa: E731
    rows = []
    for c, a in [(m, 1.0), (m - 1, 0.5)]:
        u = _update_draws(m, c, n, seed + c)
        rows.append([f"P(|U| <= {a:g}), m = {m}, c = {'m' if c == m else 'm - 1'}",
                     _mass(printed, -a, a, points=[0.0]),
                     _mass(lambda t: _update_density(t, m, c), -a, a, points=[0.0]),
                     (np.abs(u) <= a).mean(), f"Monte Carlo of the update, n = {n}", _mc_se_tol(n, 0.5)])
    return _frame(rows)


def _check_eq33(seed, m=3, n=200_000):
    rows = []
    half = np.sqrt(2)  # the printed law: uniform, height 1/(2 sqrt 2), on [-sqrt 2, sqrt 2]
    for c in (m, m - 1):
        u = _update_draws(m, c, n, seed + c)
        lim = np.sqrt(c)
        name = "m" if c == m else "m - 1"
        rows.append([f"Var U, m = {m}, c = {name}", half**2 / 3,
                     _mass(lambda t: t * t * _update_density(t, m, c), -lim, lim), u.var(),
                     f"Monte Carlo of the update, n = {n}", _mc_se_tol(n, 1.0)])
        if c == m:
            rows.append([f"P(|U| > sqrt 2), m = {m}, c = m", 0.0,
                         1 - _mass(lambda t: _update_density(t, m, c), -half, half),
                         (np.abs(u) > half).mean(), f"Monte Carlo of the update, n = {n}", _mc_se_tol(n, 0.5)])
    return _frame(rows)


def _check_eq28_support(seed, m=4, n=200_000):
    x = np.random.default_rng(seed).standard_normal((m, n))
    xk = x[-1] / np.sqrt((x**2).sum(axis=0))
    q = np.quantile(np.abs(xk), 1 - 1e-4)
    return _frame([[f"99.99% quantile of |X_k|, m = {m}: bound", np.sqrt(m), 1.0, q,
                    f"Monte Carlo, n = {n}", 0.05]])


def _check_theorem1(seed, t=4, n=200_000):
    x = np.random.default_rng(seed).standard_normal((t, n))
    u = x[-1] / np.sqrt((x**2).mean(axis=0))  # the simple-average Adam update at step t
    return _frame([[f"Var of the update, t = {t}", 1 / t**2, 1.0, u.var(),
                    f"Monte Carlo of the simple-average update, n = {n}", _mc_se_tol(n, 1.0)]])


def _check_eq34(seed, m=5, n=400_000):
    u = _theorem1_draws(m, n, seed)
    return _frame([[f"Var |U|, m = {m}", (m - 1) / m, float(theory.abs_update_variance(m)), np.abs(u).var(),
                    f"Monte Carlo of the update, n = {n}", _mc_se_tol(n, 0.6)]])


def _u_shape_windows(u):
    """Share of the update (scaled to [-1, 1]) in the centre window |u| < 0.1 and in one edge window of width 0.1."""
    return (np.abs(u) < 0.1).mean(), (np.abs(u) > 0.8).mean() / 2  # same width, 0.2, in both windows


def _check_transition(seed, n=400_000):
    """First step at which a Monte Carlo histogram of the update stops being U-shaped, and the shape at m = 2."""
    first, u_shaped_at_2 = np.nan, np.nan
    for m in range(2, 8):
        centre, edge = _u_shape_windows(_theorem1_draws(m, n, seed + m) / np.sqrt(m))
        if m == 2:
            u_shaped_at_2 = float(edge > centre)
        if centre >= 0.9 * edge:
            first = m
            break
    route = f"Monte Carlo histograms, n = {n}: centre window vs edge window"
    return _frame([["first m at which the law is not U-shaped", 2.0, 3.0, float(first), route, 0.0],
                   ["law at m = 2 is U-shaped (1 = yes, 0 = unimodal)", 0.0, 1.0, u_shaped_at_2, route, 0.0]])


def _check_eq28_law(seed, m=4, n=200_000):
    law28 = lambda x: (1 - x * x) ** ((m - 3) / 2) / special.beta(0.5, (m - 1) / 2)  # noqa: E731
    u = _theorem1_draws(m, n, seed)
    return _frame([
        [f"variance of the law (28), m = {m}", 1.0, 1 / m, _mass(lambda x: x * x * law28(x), -1, 1),
         "quadrature of eq. (28)", 1e-8],
        [f"P(|update| > 1), m = {m}", 0.0, 1 - _mass(lambda t: _update_density(t, m, m), -1, 1),
         (np.abs(u) > 1).mean(), f"Monte Carlo of the update, n = {n}", _mc_se_tol(n, 0.5)],
    ])


def _check_eq34_ratio(seed, m=5, n=200_000):
    x = np.random.default_rng(seed).standard_normal((m, n))
    with np.errstate(invalid="ignore"):
        printed = np.isfinite(x[-1] / np.sqrt(x.sum(axis=0))).mean()
    corrected = np.isfinite(x[-1] / np.sqrt((x**2).sum(axis=0) / m)).mean()
    # the update of eqs. (2)-(4) with mu = 0 and the simple average, run step by step
    n_t = np.zeros(n)
    for t in range(1, m + 1):
        n_t += x[t - 1] ** 2
        update = x[t - 1] / np.sqrt(n_t / t)
    return _frame([[f"share of draws where the ratio is a real number, m = {m}", printed, corrected,
                    np.isfinite(update).mean(), f"the recursion of eqs. (2)-(4), n = {n}", 0.0]])


def _check_sec52_variance(seed, n=400_000):
    lo, hi = 2, 20
    u_lo, u_hi = _theorem1_draws(lo, n, seed), _theorem1_draws(hi, n, seed + 1)
    cor2 = float(theory.abs_update_variance(hi) - theory.abs_update_variance(lo))  # Corollary 2
    # the sample variance of a variance estimate: (E[u^4] - E[u^2]^2) / n, both terms estimated
    se = np.sqrt(np.var(u_lo**2) / n + np.var(u_hi**2) / n)
    return _frame([
        [f"Var(update), m = {hi} minus m = {lo}", cor2, 0.0, u_hi.var() - u_lo.var(),
         f"Monte Carlo of the update, n = {n}", 6 * se],
        [f"Var|update|, m = {hi} minus m = {lo}", cor2, cor2, np.abs(u_hi).var() - np.abs(u_lo).var(),
         f"Monte Carlo of the update, n = {n}", 6 * se],
    ])


# Passages of the paper that contradict each other, verbatim from its text layer (no-break spaces read as
# plain spaces), as pairs (text, formula): the formula (LaTeX, or None) follows the text within a few
# characters there. The textual checks read their numbers from here; tests/test_errata.py finds every
# passage in the paper's text when it is at hand.
PAPER_QUOTES = {
    "fig3-caption": [
        ("(1) for both dataset, the agreement is very good for", r"m\leq 10"),
        ("(2) the agreement of RegNetX on CIFAR-10 continues to hold much later, while the smaller network on "
         "MNIST starts to deviate after", r"m>10"),
    ],
    "sec52": [
        ("on CIFAR-10, for different model architectures: RegNetX, MobileNet [Howard et al., 2017], and "
         "ShuffleNet [Zhang et al., 2018]. See Figure 3.", None),
        ("(1) the agreement is very good for", r"m\leq 20"),
    ],
    "sec52-variance": [
        ("One of the key predictions of this work is that the adaptive gradients\u2019 variance is an increasing "
         "function of time", None),
    ],
}

_DATASETS = ("CIFAR-10", "MNIST")
_ARCHITECTURES = ("RegNetX", "MobileNet", "ShuffleNet")


def _quoted_bound(key):
    """The m of the first 'm <= N' in a quoted passage."""
    import re

    latex = next(f for _, f in PAPER_QUOTES[key] if f and "leq" in f)
    return float(re.fullmatch(r"m\\leq (\d+)", latex).group(1))


def _check_fig3_caption(seed):
    caption = " ".join(text for text, _ in PAPER_QUOTES["fig3-caption"])
    section = " ".join(text for text, _ in PAPER_QUOTES["sec52"])

    def named(text, names):
        return float(sum(name in text for name in names))

    route = "section 5.2, which describes the same figure"
    return _frame([
        ["agreement 'very good' up to m", _quoted_bound("fig3-caption"), _quoted_bound("sec52"),
         _quoted_bound("sec52"), route, 0.0],
        ["datasets named for the left and middle panels", named(caption, _DATASETS), 1.0,
         named(section, _DATASETS), route, 0.0],
        ["CIFAR-10 architectures named", named(caption, _ARCHITECTURES), 3.0,
         named(section, _ARCHITECTURES), route, 0.0],
    ])


ERRATA = (
    Erratum("eq3-laprop", "Eq. (3), 'the Adam algorithm can be written as'", "2",
            r"m_t=\mu m_{t-1}+(1-\mu)\frac{g_t}{\sqrt{n_t/c_n}+\epsilon},\quad "
            r"\theta_t=\theta_{t-1}-\lambda\frac{m_t}{c_m}",
            r"\text{Adam: } m_t=\mu m_{t-1}+(1-\mu)g_t,\quad "
            r"\theta_t=\theta_{t-1}-\lambda\frac{m_t/c_m}{\sqrt{n_t/c_n}+\epsilon}"
            r"\quad(\text{the printed form is LaProp's; the two agree for } \mu=0)",
            "Eq. (3) divides each gradient by its preconditioner before averaging, which is LaProp (Ziyin et al., "
            "2020), not Adam. With momentum the two give different updates; with mu = 0, the setting of the "
            "theory, they coincide, so nothing after section 2 depends on it.",
            _check_eq3),
    Erratum("unbiased-u", "Text after eq. (6)", "3",
            r"U:=\tfrac{1}{n-1}Q \text{ is the unbiased estimator},\quad Q=\textstyle\sum_i^m X_i^2",
            r"\text{with } \mu=0 \text{ known, } S=\tfrac1m Q \text{ is unbiased; } "
            r"E\big[\tfrac{Q}{m-1}\big]=\tfrac{m}{m-1}\sigma^2;\ "
            r"U=\tfrac{1}{m-1}\textstyle\sum_i (X_i-\bar X)^2 \text{ is the unbiased estimator when } \mu "
            r"\text{ is estimated}",
            "Q is the uncentred sum of squares (mu = 0), so Q/m already has mean sigma^2 and Q/(m-1) is biased "
            "upwards; the m - 1 belongs to the centred sum, which is also what the t and F statements that "
            "follow need. The n should be m.",
            _check_unbiased_u),
    Erratum("eq7-f-density", "Eq. (7) and the sentence before it", "3",
            r"f_{1,m-1}(z)=\frac{(m-1)^{m-1/2}\,\Gamma(\frac m2)}{\Gamma(\frac12)\Gamma(\frac{m-1}{2})}"
            r"\frac{z^{-1/2}}{(m-1+z)^{m/2}},\quad \text{statistic } \frac{(\bar X-\mu)^2}{U^2/m}",
            r"f_{1,m-1}(z)=\frac{(m-1)^{(m-1)/2}\,\Gamma(\frac m2)}{\Gamma(\frac12)\Gamma(\frac{m-1}{2})}"
            r"\frac{z^{-1/2}}{(m-1+z)^{m/2}},\quad \text{statistic } \frac{(\bar X-\mu)^2}{U/m}",
            "The power of m-1 is (m-1)/2; read literally, the printed m-1/2 makes the density integrate to "
            "(m-1)^{m/2}. The F statistic divides by U/m (a variance), not U^2/m.",
            _check_eq7),
    Erratum("f-variance", "Variance of F(1, m-1), after eq. (7)", "3",
            r"\frac{2(m-1)^2(m-2)}{(m-2)^2(m-4)},\ \text{divergent for } m\le 4",
            r"\frac{2(m-1)^2(m-2)}{(m-3)^2(m-5)},\ \text{divergent for } m\le 5",
            "With d1 = 1 and d2 = m - 1 the F variance 2 d2^2 (d1 + d2 - 2) / (d1 (d2 - 2)^2 (d2 - 4)) "
            "has (m-3)^2 (m-5) below the line.",
            _check_f_variance),
    Erratum("eq8-ema", "Eq. (8)", "3",
            r"\mathcal N\big(\mu(1-\beta^{m-1}),\ \sigma^2(1-\beta)^2\tfrac{1-\beta^{2(m-1)}}{1-\beta^2}\big)",
            r"\mathcal N\big(\mu(1-\beta^{m}),\ \sigma^2(1-\beta)^2\tfrac{1-\beta^{2m}}{1-\beta^2}\big)",
            "The average has m terms (i = 1..m), so the geometric sums end at beta^m, not beta^(m-1).",
            _check_eq8),
    Erratum("eq9-10-bias-correction", "Eqs. (9)-(10) and the bias correction before them", "3",
            r"\text{divide by } 1-\beta^{m-1};\quad \sigma^2\,\frac{1-\beta}{1+\beta}\,\frac{1+\beta^{m-1}}{1-\beta^{m-1}}",
            r"\text{divide by } 1-\beta^{m};\quad \sigma^2\,\frac{1-\beta}{1+\beta}\,\frac{1+\beta^{m}}{1-\beta^{m}}"
            r"=\sigma^2\frac{\sum_{i=0}^{m-1}\beta^{2i}}{(\sum_{i=0}^{m-1}\beta^i)^2}",
            "Same off-by-one as eq. (8). The sum form on the right of eq. (9) is correct and equals the "
            "corrected closed form.",
            _check_eq10),
    Erratum("beta09-limit", "Text after eq. (10)", "3",
            r"\beta=0.9:\ \sigma^2/21", r"\beta=0.9:\ \sigma^2\,\frac{1-\beta}{1+\beta}=\sigma^2/19",
            "The long-run variance is (1-beta)/(1+beta); that is 1/19 at beta = 0.9 (the 1/199 printed for "
            "beta = 0.99 is right).",
            _check_beta09),
    Erratum("eq11-limit", "Eq. (11) and the sentence before it", "3",
            r"\text{as } \beta\to 1 \ (m\gg 1/\beta):\ \lim_{\beta\to\infty}\lim_{m\to\infty}"
            r"\mathcal N(\dots)=\mathcal N\big(\mu,\tfrac{\sigma^2}{m-1}\big)",
            r"\beta\to 1,\ m(1-\beta)\gg 1:\ \lim_{m\to\infty}\mathcal N\big(\mu,\sigma^2"
            r"\tfrac{1-\beta}{1+\beta}\tfrac{1+\beta^m}{1-\beta^m}\big)=\mathcal N\big(\mu,\sigma^2"
            r"\tfrac{1-\beta}{1+\beta}\big)=\mathcal N\big(\mu,\tfrac{\sigma^2}{m-1}\big),\quad "
            r"m=\tfrac{2}{1-\beta}\ \text{(eq. 12)}",
            "The right-hand side is right when its m is eq. (12)'s m = 2/(1-beta): then (1-beta)/(1+beta) = "
            "1/(m-1) exactly. The outer limit is beta -> 1 (as the sentence says), not beta -> infinity, and the "
            "side condition must be m >> 1/(1-beta): m >> 1/beta is just m >> 1 for beta near 1, and at "
            "beta = 0.999, m = 100 (1/beta = 1.001) the variance is still that of eq. (10), not the limit.",
            _check_eq11),
    Erratum("mode-k-g", "Text after eqs. (22) and (24)", "4",
            r"\operatorname{mode}K=\frac{1}{m-2},\quad \operatorname{mode}G=\frac{m}{m-2}",
            r"f_K(k)\propto k^{-1/2}(1-k)^{(m-3)/2}\to\infty \text{ as } k\to 0:\ \text{the mode is } 0",
            "Beta(1/2, (m-1)/2) has its first parameter below 1, so its density is unbounded at 0 and "
            "decreasing for m >= 3; (a-1)/(a+b-2) does not apply.",
            _check_mode),
    Erratum("mode-g-c-m1", "Text after eq. (24), the normalisation c = m - 1", "4",
            r"c=m-1:\ \operatorname{mode}G=\frac{m-1}{m-2}",
            r"c=m-1:\ f(g)=\frac{1}{m-1}f_K\big(\tfrac{g}{m-1}\big)\propto g^{-1/2}\big(1-\tfrac{g}{m-1}\big)"
            r"^{\frac{m-3}{2}}\to\infty \text{ as } g\to 0:\ \operatorname{mode}G=0\ (m\ge 3)",
            "Rescaling K by c = m - 1 moves no mode away from 0: the density of G is g^{-1/2} times a factor that "
            "does not increase for m >= 3, so it is largest at g -> 0 under either normalisation (at m = 2 it is "
            "U-shaped, with both ends of [0, m-1] infinite).",
            _check_mode_c_m1),
    Erratum("eq16-m1", "Eq. (16)", "4",
            r"G=\frac{X_1^2}{|X_1|}=\operatorname{sgn}(X_1)",
            r"G=\frac{X_1^2}{X_1^2}=1,\qquad \text{the update } \frac{X_1}{|X_1|}=\operatorname{sgn}(X_1)",
            "At m = 1 the squared update G is identically 1; it is the update itself that is the sign.",
            _check_eq16),
    Erratum("eq19-exponent", "Eq. (19)", "4",
            r"f(z,k)\propto \dots\, z^{\frac{m-2}{2}}e^{-z/k}",
            r"f(z,k)\propto \dots\, z^{\frac{m-2}{2}}e^{-z/(2k)}",
            "The exponents -z/2 and -h/2 = -z(1-k)/(2k) add to -z/(2k); only that gives eq. (20) after "
            "integrating over z.",
            _check_eq19),
    Erratum("eq27-m2-g", "Eq. (27)", "4",
            r"f_2(g)=\frac{1}{\pi}\frac{1}{\sqrt{\frac g2\left(1-\frac g2\right)}}",
            r"f_2(g)=\frac{1}{2\pi}\frac{1}{\sqrt{\frac g2\left(1-\frac g2\right)}},\quad 0<g<2",
            "The Jacobian 1/c = 1/2 of k = g/2 is missing: the printed density integrates to 2.",
            _check_eq27),
    Erratum("eq27-edges", "Text after eq. (27)", "4",
            r"m=2:\ g \text{ is either very close to } 0 \text{ or very close to } 1",
            r"m=2:\ g \text{ is either very close to } 0 \text{ or very close to } 2=c",
            "The arcsine density of eq. (27) is infinite at both ends of its support [0, 2] and smallest at g = 1; "
            "it is K = G/2 that piles up near 0 and 1 (as G itself would under c = m - 1, where G = K at m = 2, "
            "but eq. (27) is the c = m density).",
            _check_eq27_edges),
    Erratum("m-to-1-limit", "Text after eq. (27), the limit m -> 1+", "4",
            r"m\to 1^+:\ f_m(g)\to\text{ a mixture }\propto\delta(g-1)+\delta(g)",
            r"m\to 1^+:\ K\sim\mathrm{Beta}\big(\tfrac12,\tfrac{m-1}{2}\big)\to\delta(k-1),\ "
            r"\text{so } f_m(g)\to\delta(g-1)",
            "E[G] = 1 for every m (eq. 24) and G is bounded, so the limit law has mean 1; a mixture with mass at "
            "g = 0 cannot. As m -> 1, H ~ chi^2_{m-1} -> 0, so K -> 1: all the mass goes to g = 1, which is also "
            "the delta law the paper itself gives at m = 1.",
            _check_m_to_1),
    Erratum("eq28-support", "Sentence before eq. (28)", "4",
            r"X_k=\sqrt K \text{ extended from } [0,\sqrt m] \text{ to } [-\sqrt m,\sqrt m]",
            r"X_k=\pm\sqrt K \in [-1, 1]",
            "K lies in [0, 1], so its signed root lies in [-1, 1]; the interval [-sqrt m, sqrt m] belongs to "
            "X_g = sqrt(m) X_k.",
            _check_eq28_support),
    Erratum("eq28-law", "Sentence after eq. (28)", "4",
            r"f_m(x_k) \text{ of eq. (28) is the predicted distribution of } \Delta\theta",
            r"\text{eq. (28) is the law of } X_k=\Delta\theta/\sqrt m \ (\operatorname{Var}=1/m);"
            r"\ \text{the law of } \Delta\theta \text{ is eq. (30), as Theorem 1 says}",
            "Eq. (28) lives on [-1, 1] and has variance 1/m, while the update has variance 1 (Corollary 1) and "
            "exceeds 1 in size with positive probability. Figure 1, whose caption gives variance 1, plots eq. (30).",
            _check_eq28_law),
    Erratum("eq32-m2-update", "Eq. (32)", "4",
            r"f_2(x_g)=\frac1\pi\frac{1}{\sqrt{1-x_g^2}}",
            r"c=m\ \text{(eq. 30)}:\ f_2(x_g)=\frac1\pi\frac{1}{\sqrt{2-x_g^2}},\ |x_g|<\sqrt2;"
            r"\quad \text{the printed law is the } c=m-1 \text{ one, support } \pm\sqrt{m-1}=\pm1",
            "The printed law is exactly the m = 2 update under the normalisation c = m - 1 (support "
            "+-sqrt(m-1), mentioned after eq. 24), where X_g = X_k. The misprint is that it is not the law of "
            "eq. (30), which uses c = m and gives the update at m = 2 the support [-sqrt 2, sqrt 2].",
            _check_eq32),
    Erratum("eq33-m3-update", "Eq. (33)", "4",
            r"f_3(x_g)=\frac{1}{2\sqrt2}\ \text{on } [-\sqrt2,\sqrt2]",
            r"c=m\ \text{(eq. 30)}:\ f_3(x_g)=\frac{1}{2\sqrt3}\ \text{on } [-\sqrt3,\sqrt3];"
            r"\quad \text{the printed law is the } c=m-1 \text{ one}",
            "The printed uniform law on [-sqrt 2, sqrt 2] is exactly the m = 3 update under c = m - 1 "
            "(variance (m-1)/m = 2/3). Eq. (30), with c = m, gives height 1/(2 sqrt 3) on [-sqrt 3, sqrt 3] "
            "(variance 1, as Corollary 1 requires).",
            _check_eq33),
    Erratum("theorem1-cn", "Theorem 1", "4",
            r"n_t=\sum_{i=1}^t g_i^2,\quad c_n=\tfrac1t",
            r"n_t=\sum_{i=1}^t g_i^2,\quad c_n=t\quad\big(\text{i.e. } n_t/c_n=\tfrac1t\textstyle\sum_i g_i^2\big)",
            "The preconditioner is sqrt(n_t / c_n); it is the mean of the squared gradients only with c_n = t. "
            "With c_n = 1/t the update would have variance 1/t^2.",
            _check_theorem1),
    Erratum("eq34-abs-variance", "Text before eq. (34)", "4",
            r"\operatorname{Var}|X_g|=\frac{m-1}{m},\ \text{and } \operatorname{Var}[T]>1>\operatorname{Var}|X_g| "
            r"\text{ become equalities as } m\to\infty",
            r"\operatorname{Var}|X_g|=1-\frac{4m\Gamma(m/2)^2}{(m-1)^2\pi\Gamma(\frac{m-1}2)^2}\to 1-\frac2\pi;"
            r"\quad \frac{m-1}{m} \text{ is } \operatorname{Var}X_g \text{ for } c=m-1",
            "(m-1)/m is the variance of the update under the c = m - 1 normalisation, not of its magnitude; "
            "Var|X_g| is Corollary 2 and tends to 1 - 2/pi, so the right inequality stays strict.",
            _check_eq34),
    Erratum("eq34-ratio", "Text after eq. (34)", "4",
            r"\frac{X_m}{\sqrt{\sum^m X_i}}",
            r"\frac{X_m}{\sqrt{\frac1m\sum_{i=1}^m X_i^2}}",
            "The square is missing under the root: a sum of Gaussians is negative half of the time, so the "
            "printed ratio is not even a real number then. The ratio discussed is the update.",
            _check_eq34_ratio),
    Erratum("fig2-transition", "Caption of Figure 2", "5",
            r"\text{unimodal} \to \text{bimodal at } m = 2",
            r"\text{bimodal (U-shaped) for } m<3,\ \text{flat at } m=3,\ \text{unimodal for } m>3",
            "The exponent (m-3)/2 in eq. (30) changes sign at m = 3, as the main text of section 5.1 says; "
            "the caption's m = 2 and its direction are misprints. Figure 1's caption (property 3: bimodal to "
            "unimodal as m increases) is right.",
            _check_transition),
    Erratum("fig3-caption", "Caption of Figure 3", "5",
            r"\text{both datasets (CIFAR-10, MNIST): agreement very good for } m\le 10",
            r"\text{as section 5.2: CIFAR-10, with RegNetX, MobileNet and ShuffleNet; agreement very good for } "
            r"m\le 20",
            "The caption and the text of section 5.2 describe the same panels differently: the caption speaks of "
            "two datasets (RegNetX on CIFAR-10, a small network on MNIST) and m <= 10, section 5.2 of three "
            "CIFAR-10 architectures and m <= 20. The book follows section 5.2; MNIST appears elsewhere in the "
            "paper only as an appendix experiment. One of the two passages is stale.",
            _check_fig3_caption),
    Erratum("sec52-variance", "First sentence of section 5.2", "5",
            r"\text{the adaptive gradients' variance is an increasing function of time}",
            r"\operatorname{Var}[\Delta\theta]=1 \text{ is constant (Corollary 1); } "
            r"\operatorname{Var}|\Delta\theta| \text{ increases (Corollary 2)}",
            "The increasing variance of the paper is that of the magnitude |Delta theta| (Corollary 2), as its "
            "abstract and conclusion say; the variance of the update itself is 1 at every step. The check reads "
            "the sentence as predicting Corollary 2's increase for the variance of the update.",
            _check_sec52_variance),
)


def get(key: str) -> Erratum:
    """The erratum with this key (see ``[e.key for e in ERRATA]``)."""
    for e in ERRATA:
        if e.key == key:
            return e
    raise ValueError(f"no erratum {key!r}; known keys: {[e.key for e in ERRATA]}")


def check_all(seed: int = 0) -> pd.DataFrame:
    """Run every check; one row per checked quantity, with the erratum's key and location.

    ``confirmed`` is the erratum-level verdict (see :meth:`Erratum.confirmed`),
    repeated on each of its rows.
    """
    frames = []
    for e in ERRATA:
        frame = e.run(seed)
        frames.append(frame.assign(key=e.key, where=e.where, confirmed=_confirmed(frame)))
    out = pd.concat(frames, ignore_index=True)
    return out[["key", "where", *_COLUMNS, "printed_ok", "corrected_ok", "confirmed"]]


def summary(keys, seed: int = 0) -> pd.DataFrame:
    """A compact table of the checks of some errata, for display next to the text.

    One row per checked quantity, indexed by it, with the printed, corrected and
    reference values, how the reference was obtained, and a tick or cross for
    whether the printed and the corrected formula agree with the reference.
    """
    if isinstance(keys, str):
        keys = [keys]
    frames = [get(k).run(seed) for k in keys]
    frame = pd.concat(frames, ignore_index=True)
    marks = {True: "\u2713", False: "\u2717"}
    return pd.DataFrame({
        "printed": frame["printed"].astype(float),
        "corrected": frame["corrected"],
        "reference": frame["reference"],
        "reference from": frame["route"],
        "printed agrees": frame["printed_ok"].map(marks),
        "corrected agrees": frame["corrected_ok"].map(marks),
    }).set_axis(frame["quantity"].rename("quantity"), axis=0)
