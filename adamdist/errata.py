r"""Misprints in Zhang & Liu, each with the corrected formula and a numerical check.

Every :class:`Erratum` carries a ``check(seed)`` that computes, for one or more
quantities, the value implied by the formula *as printed*, the value implied by
the *corrected* formula, and a *reference* value obtained by an independent
route (quadrature of a density, direct summation, or a Monte Carlo simulation
of the random variables themselves). :func:`check_all` runs them all; the
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

__all__ = ["Erratum", "ERRATA", "get", "check_all", "summary"]

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


def _check_eq11(seed, m=10, beta=1 - 1e-6, n=400_000):
    rng = np.random.default_rng(seed)
    avg = _ema_samples(beta, m, n, rng) / (-np.expm1(m * np.log(beta)))
    return _frame([[f"variance as beta -> 1, m = {m}", 1 / (m - 1), 1 / m, avg.var(),
                    f"Monte Carlo, beta = 1 - 1e-6, n = {n}", _mc_se_tol(n, avg.var() * np.sqrt(2))]])


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


def _theorem1_draws(m, n, seed):
    x = np.random.default_rng(seed).standard_normal((m, n))
    return x[-1] / np.sqrt((x**2).mean(axis=0))


def _check_eq32(seed, n=200_000):
    u = _theorem1_draws(2, n, seed)
    corrected = integrate.quad(lambda t: 1 / (np.pi * np.sqrt(2 - t * t)), -1, 1)[0]
    return _frame([["P(|U| <= 1), m = 2", integrate.quad(lambda t: 1 / (np.pi * np.sqrt(1 - t * t)), -1, 1)[0],
                    corrected, (np.abs(u) <= 1).mean(), f"Monte Carlo of the update, n = {n}", _mc_se_tol(n, 0.5)]])


def _check_eq33(seed, n=200_000):
    u = _theorem1_draws(3, n, seed)
    return _frame([
        ["Var U, m = 3", 2.0 / 3.0, 1.0, u.var(), f"Monte Carlo of the update, n = {n}", _mc_se_tol(n, 1.0)],
        ["P(|U| > sqrt 2), m = 3", 0.0, 1 - np.sqrt(2) / np.sqrt(3), (np.abs(u) > np.sqrt(2)).mean(),
         f"Monte Carlo of the update, n = {n}", _mc_se_tol(n, 0.5)],
    ])


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


def _check_transition(seed, n=400_000):
    """First step at which a Monte Carlo histogram of the update stops being U-shaped."""
    first = np.nan
    for m in range(2, 8):
        u = _theorem1_draws(m, n, seed + m) / np.sqrt(m)  # scaled to [-1, 1]
        centre = (np.abs(u) < 0.1).mean()
        edge = (np.abs(u) > 0.8).mean() / 2  # one edge window of the same width, 0.2, as the centre one
        if centre >= 0.9 * edge:
            first = m
            break
    return _frame([["first m at which the law is not U-shaped", 2.0, 3.0, float(first),
                    f"Monte Carlo histograms, n = {n}: centre window vs edge window", 0.0]])


ERRATA = (
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
    Erratum("eq11-limit", "Eq. (11)", "3",
            r"\lim_{\beta\to\infty}\lim_{m\to\infty}\mathcal N(\dots)=\mathcal N\big(\mu,\tfrac{\sigma^2}{m-1}\big)",
            r"\text{for fixed } m:\ \lim_{\beta\to 1}\mathcal N\big(\mu,\sigma^2\tfrac{1-\beta}{1+\beta}"
            r"\tfrac{1+\beta^m}{1-\beta^m}\big)=\mathcal N\big(\mu,\tfrac{\sigma^2}{m}\big)",
            "The limit is beta -> 1 at fixed m (taking m -> infinity first gives 0); with m samples the "
            "simple average has variance sigma^2/m.",
            _check_eq11),
    Erratum("mode-k-g", "Text after eqs. (22) and (24)", "4",
            r"\operatorname{mode}K=\frac{1}{m-2},\quad \operatorname{mode}G=\frac{m}{m-2}",
            r"f_K(k)\propto k^{-1/2}(1-k)^{(m-3)/2}\to\infty \text{ as } k\to 0:\ \text{the mode is } 0",
            "Beta(1/2, (m-1)/2) has its first parameter below 1, so its density is unbounded at 0 and "
            "decreasing for m >= 3; (a-1)/(a+b-2) does not apply.",
            _check_mode),
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
    Erratum("eq28-support", "Sentence before eq. (28)", "4",
            r"X_k=\sqrt K \text{ extended from } [0,\sqrt m] \text{ to } [-\sqrt m,\sqrt m]",
            r"X_k=\pm\sqrt K \in [-1, 1]",
            "K lies in [0, 1], so its signed root lies in [-1, 1]; the interval [-sqrt m, sqrt m] belongs to "
            "X_g = sqrt(m) X_k.",
            _check_eq28_support),
    Erratum("eq32-m2-update", "Eq. (32)", "4",
            r"f_2(x_g)=\frac1\pi\frac{1}{\sqrt{1-x_g^2}}",
            r"f_2(x_g)=\frac1\pi\frac{1}{\sqrt{2-x_g^2}},\quad |x_g|<\sqrt2",
            "The printed formula is the law of X_k (support [-1, 1]); the update at m = 2 ranges over "
            "[-sqrt 2, sqrt 2], by eq. (30).",
            _check_eq32),
    Erratum("eq33-m3-update", "Eq. (33)", "4",
            r"f_3(x_g)=\frac{1}{2\sqrt2}\ \text{on } [-\sqrt2,\sqrt2]",
            r"f_3(x_g)=\frac{1}{2\sqrt3}\ \text{on } [-\sqrt3,\sqrt3]",
            "Eq. (30) at m = 3 gives a constant 1/(2 sqrt 3) on |x| <= sqrt 3 (variance 1, as Corollary 1 "
            "requires); the printed version has variance 2/3.",
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
    Erratum("fig2-transition", "Caption of Figure 2 (and Figure 1's property 3)", "4-5",
            r"\text{unimodal} \to \text{bimodal at } m = 2",
            r"\text{bimodal (U-shaped) for } m<3,\ \text{flat at } m=3,\ \text{unimodal for } m>3",
            "The exponent (m-3)/2 in eq. (30) changes sign at m = 3, as the main text of section 5.1 says; "
            "the caption's m = 2 and its direction are misprints.",
            _check_transition),
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
