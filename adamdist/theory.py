r"""Closed forms of Zhang & Liu, sections 3-4.

The setting of the paper's Theorem 1: gradients :math:`X_1, \dots, X_m` are
i.i.d. standard normal, Adam has no momentum (:math:`\beta_1 = 0`) and its
preconditioner is the *simple* average of the squared gradients. The update at
step :math:`m` is then

.. math::

    U_m = \frac{X_m}{\sqrt{\frac{1}{c}\sum_{i=1}^m X_i^2}},

with :math:`c = m` (the paper's choice, Theorem 1) or :math:`c = m - 1`
(the "unbiased" normalisation the paper also discusses). Writing
:math:`K = X_m^2 / \sum_i X_i^2 \sim \mathrm{Beta}(\tfrac12, \tfrac{m-1}{2})`
(eq. 21) and giving :math:`\sqrt{K}` the sign of :math:`X_m`,

.. math::

    \frac{1 + U_m/\sqrt{c}}{2} \sim \mathrm{Beta}\left(\tfrac{m-1}{2}, \tfrac{m-1}{2}\right)
    \qquad \text{(eqs. 28-30)},

so the update is a scaled, centred symmetric Beta variable, bounded by
:math:`\sqrt{c}`, with variance :math:`c/m` (Corollary 1 for :math:`c = m`).

Everything here works in logarithms (``betaln``, ``gammaln``) or with the
regularised incomplete Beta function, so it stays finite and accurate from
:math:`m` just above 1 up to :math:`m = 10^7`; :math:`m` may be real.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

from ._validation import check_range, check_scalar, scalar_or_array

__all__ = [
    "update_distribution",
    "abs_update_distribution",
    "squared_update_distribution",
    "gradient_share_distribution",
    "update_variance",
    "abs_update_variance",
    "abs_update_mean",
    "student_t_variance",
    "update_bound",
    "ema_weights",
    "ema_mean_variance",
    "ema_effective_samples",
    "adam_effective_m",
    "ema_equivalent_m",
    "ema_equivalent_beta",
]

_M_MAX = 1e7  # beyond this the law is Gaussian to double precision and betainc loses digits


def _check_m(m, *, allow_one=True):
    low = 1.0
    arr = check_range(m, "m", low, _M_MAX, low_open=not allow_one)
    return arr


def _check_c(c, m):
    if c is None:
        return np.asarray(m, dtype=np.float64)
    return check_range(c, "c", 0.0, np.inf, low_open=True)


class adam_update_gen(stats.rv_continuous):
    r"""Standardised update law of Theorem 1 (``c = 1``), support :math:`[-1, 1]`.

    Density (eq. 28)

    .. math::

        f(x; m) = \frac{(1 - x^2)^{(m-3)/2}}{B\left(\tfrac12, \tfrac{m-1}{2}\right)},
        \qquad |x| \le 1,\; m > 1.

    The update with normalisation ``c`` is this law with ``scale = sqrt(c)``
    (eq. 30 for ``c = m``); use :func:`update_distribution` rather than this
    class directly.
    """

    def _argcheck(self, m):
        return (m > 1) & np.isfinite(m)

    def _get_support(self, m):
        return -np.ones_like(m), np.ones_like(m)

    def _logpdf(self, x, m):
        a = (m - 1) / 2
        # xlog1py keeps the m = 3 (uniform) case exact at the edges instead of 0 * -inf
        return special.xlog1py(a - 1, -x * x) - special.betaln(0.5, a)

    def _pdf(self, x, m):
        return np.exp(self._logpdf(x, m))

    def _cdf(self, x, m):
        a = (m - 1) / 2
        return special.betainc(a, a, (1 + x) / 2)

    def _sf(self, x, m):
        a = (m - 1) / 2
        return special.betainc(a, a, (1 - x) / 2)

    def _ppf(self, q, m):
        a = (m - 1) / 2
        return 2 * special.betaincinv(a, a, q) - 1

    def _isf(self, q, m):
        return -self._ppf(q, m)

    def _stats(self, m):
        # mean, variance, skewness, excess kurtosis of 2 Beta(a, a) - 1
        return 0.0 * m, 1.0 / m, 0.0 * m, -6.0 / (m + 2)

    def _rvs(self, m, size=None, random_state=None):
        a = (m - 1) / 2
        return 2 * random_state.beta(a, a, size=size) - 1


class abs_adam_update_gen(stats.rv_continuous):
    r"""Standardised law of :math:`|U|` (``c = 1``), support :math:`[0, 1]`.

    :math:`|U|/\sqrt{c} = \sqrt{K}` with :math:`K \sim \mathrm{Beta}(\tfrac12, \tfrac{m-1}{2})`
    (eq. 21), hence

    .. math::

        f(x; m) = \frac{2 (1 - x^2)^{(m-3)/2}}{B\left(\tfrac12, \tfrac{m-1}{2}\right)},
        \qquad F(x; m) = I_{x^2}\left(\tfrac12, \tfrac{m-1}{2}\right).
    """

    def _argcheck(self, m):
        return (m > 1) & np.isfinite(m)

    def _get_support(self, m):
        return np.zeros_like(m), np.ones_like(m)

    def _logpdf(self, x, m):
        a = (m - 1) / 2
        return np.log(2.0) + special.xlog1py(a - 1, -x * x) - special.betaln(0.5, a)

    def _pdf(self, x, m):
        return np.exp(self._logpdf(x, m))

    def _cdf(self, x, m):
        return special.betainc(0.5, (m - 1) / 2, x * x)

    def _sf(self, x, m):
        return special.betaincc(0.5, (m - 1) / 2, x * x)

    def _ppf(self, q, m):
        return np.sqrt(special.betaincinv(0.5, (m - 1) / 2, q))

    def _stats(self, m):
        mean = _abs_mean_standard(m)
        return mean, 1.0 / m - mean**2, None, None

    def _rvs(self, m, size=None, random_state=None):
        return np.sqrt(random_state.beta(0.5, (m - 1) / 2, size=size))


adam_update = adam_update_gen(name="adam_update", shapes="m")
abs_adam_update = abs_adam_update_gen(name="abs_adam_update", shapes="m", a=0.0)


def _abs_mean_standard(m):
    r""":math:`E\sqrt{K} = \Gamma(m/2) / (\sqrt{\pi}\,\Gamma((m+1)/2))`.

    The Gamma ratio is formed as ``exp(gammaln - gammaln)`` for moderate m and
    by its asymptotic series for large m, where the two log-Gammas grow (~1e8
    at m = 1e7) and their difference would lose up to eight digits.
    """
    m = np.asarray(m, dtype=np.float64)
    x = m / 2
    with np.errstate(over="ignore", invalid="ignore"):
        direct = np.exp(special.gammaln(x) - special.gammaln(x + 0.5))
    # Gamma(x) / Gamma(x + 1/2) = x^{-1/2} (1 + 1/(8x) + 1/(128 x^2) - 5/(1024 x^3) - ...); with seven
    # terms it is within 1e-14 of a 40-digit reference for x > 40, where the direct route starts to drift
    xs = np.maximum(x, 1.0)
    coef = (1.0, 1 / 8, 1 / 128, -5 / 1024, -21 / 32768, 399 / 262144, 869 / 4194304)
    series = xs**-0.5 * np.polynomial.polynomial.polyval(1 / xs, coef)
    ratio = np.where(x > 40, series, direct)
    return ratio / np.sqrt(np.pi)


def _two_point(value):
    """The m = 1 law: a point mass of 1/2 on each of -value and +value."""
    return stats.rv_discrete(name="adam_update_m1", values=([-value, value], [0.5, 0.5]))


def _frozen_args(m, c, vectorised_alternative: str, allow_one: bool = True):
    """Validated scalar ``m`` and the scale ``sqrt(c)`` of a frozen law."""
    m_arr = _check_m(m, allow_one=allow_one)
    if m_arr.ndim:
        raise TypeError(f"m must be a scalar for a frozen distribution; use {vectorised_alternative} for arrays")
    c_arr = _check_c(c, m_arr)
    if c_arr.ndim:
        raise TypeError("c must be a scalar for a frozen distribution")
    return float(m_arr), float(np.sqrt(c_arr))


def update_distribution(m, c=None):
    r"""Law of the Adam update at step :math:`m` (Theorem 1, eq. 30).

    .. math::

        U_m = \frac{X_m}{\sqrt{\frac1c \sum_{i=1}^m X_i^2}}, \qquad
        f_m(u) = \frac{1}{\sqrt{c}\, B\left(\tfrac12, \tfrac{m-1}{2}\right)}
                 \left(1 - \frac{u^2}{c}\right)^{\frac{m-3}{2}},\quad |u| \le \sqrt{c}.

    Parameters
    ----------
    m : float
        Step (number of averaged squared gradients), ``1 <= m <= 1e7``. Real
        values are allowed (``m -> 1+`` is the limit the paper discusses).
    c : float, optional
        Normalisation of the average, ``c > 0``; defaults to ``m`` (Theorem 1).
        ``c = m - 1`` is the unbiased-normalisation variant.

    Returns
    -------
    frozen distribution
        For ``m > 1`` a frozen :class:`scipy.stats.rv_continuous` (subclass
        :class:`adam_update_gen`) with support :math:`[-\sqrt c, \sqrt c]`, so
        ``.pdf``, ``.cdf``, ``.ppf``, ``.rvs``, ``.var``, ``.support``,
        ``.interval`` all work. For ``m = 1`` the update is
        :math:`\sqrt{c}\,\mathrm{sign}(X_1)`: a frozen
        :class:`scipy.stats.rv_discrete` with mass 1/2 on
        :math:`\pm\sqrt{c}` (it has ``.pmf`` instead of ``.pdf``).

    Notes
    -----
    The variance is :math:`c/m`, i.e. exactly 1 for ``c = m`` (Corollary 1),
    whatever ``m``; the law is U-shaped (bimodal) for :math:`m < 3`, uniform
    at :math:`m = 3` (eq. 33, corrected) and unimodal for :math:`m > 3`.

    Examples
    --------
    >>> from adamdist.theory import update_distribution
    >>> update_distribution(3).support()
    (np.float64(-1.7320508075688772), np.float64(1.7320508075688772))
    """
    m_val, scale = _frozen_args(m, c, "update_variance")
    if m_val == 1.0:
        return _two_point(scale)
    return adam_update(m_val, scale=scale)


def abs_update_distribution(m, c=None):
    r"""Law of :math:`|U_m|`, the magnitude of the update (eqs. 21, 28).

    .. math::

        P(|U_m| \le y) = I_{y^2/c}\left(\tfrac12, \tfrac{m-1}{2}\right), \qquad 0 \le y \le \sqrt{c}.

    Same parameters as :func:`update_distribution`. For ``m = 1`` the
    magnitude is the constant :math:`\sqrt c`, returned as a one-point
    :class:`scipy.stats.rv_discrete`.
    """
    m_val, scale = _frozen_args(m, c, "abs_update_variance")
    if m_val == 1.0:
        return stats.rv_discrete(name="abs_adam_update_m1", values=([scale], [1.0]))
    return abs_adam_update(m_val, scale=scale)


def squared_update_distribution(m, c=None):
    r"""Law of :math:`G = U_m^2 = c K` (eqs. 14, 23): a Beta(1/2, (m-1)/2) law scaled to :math:`[0, c]`.

    Its mean :math:`E[G] = c/m` (eq. 24) is the variance of the update.
    Requires ``m > 1``.
    """
    m_val, _ = _frozen_args(m, c, "update_variance", allow_one=False)  # checks c too
    return stats.beta(0.5, (m_val - 1) / 2, scale=m_val if c is None else float(c))


def gradient_share_distribution(m):
    r"""Law of :math:`K = X_m^2 / \sum_{i\le m} X_i^2`, the newest gradient's share (eq. 21).

    :math:`K \sim \mathrm{Beta}(\tfrac12, \tfrac{m-1}{2})`, mean :math:`1/m`
    (eq. 22). Requires ``m > 1``.
    """
    m_val, _ = _frozen_args(m, None, "update_variance", allow_one=False)
    return stats.beta(0.5, (m_val - 1) / 2)


def update_variance(m, c=None):
    r"""Variance of the update, :math:`\mathrm{Var}[U_m] = c/m` (Corollary 1: 1 for ``c = m``).

    Vectorised over ``m`` and ``c`` (broadcast); ``1 <= m <= 1e7``, ``c > 0``.
    """
    m_arr = _check_m(m)
    c_arr = _check_c(c, m_arr)
    return scalar_or_array(c_arr / m_arr)


def abs_update_mean(m, c=None):
    r"""Mean magnitude :math:`E|U_m| = \sqrt{c}\,\Gamma(\tfrac m2) / (\sqrt\pi\, \Gamma(\tfrac{m+1}{2}))`."""
    m_arr = _check_m(m)
    c_arr = _check_c(c, m_arr)
    return scalar_or_array(np.sqrt(c_arr) * _abs_mean_standard(m_arr))


def abs_update_variance(m, c=None):
    r"""Variance of the update's magnitude (Corollary 2).

    .. math::

        \mathrm{Var}|U_m| = \frac{c}{m} - \frac{c}{\pi}
            \left(\frac{\Gamma(m/2)}{\Gamma(\frac{m+1}{2})}\right)^2
        \;\overset{c=m}{=}\; 1 - \frac{4 m\, \Gamma(m/2)^2}{(m-1)^2 \pi\, \Gamma(\frac{m-1}{2})^2},

    increasing in :math:`m` from 0 at :math:`m = 1` to :math:`1 - 2/\pi`
    (the half-normal variance) as :math:`m \to \infty`. Vectorised.
    """
    m_arr = _check_m(m)
    c_arr = _check_c(c, m_arr)
    mean = _abs_mean_standard(m_arr)
    return scalar_or_array(c_arr * (1.0 / m_arr - mean**2))


def student_t_variance(m):
    r"""Variance predicted when numerator and denominator are taken independent.

    Treating :math:`X_m` as independent of :math:`\frac1m \sum X_i^2` makes the
    update Student-t with :math:`m` degrees of freedom (the view behind
    RAdam), whose variance is :math:`m/(m-2)` (eq. 34). It diverges for
    :math:`m \le 2`, which is returned as ``inf``: that divergence is the
    prediction being tested, not a numerical failure.
    """
    m_arr = _check_m(m)
    with np.errstate(divide="ignore"):
        out = np.where(m_arr > 2, m_arr / np.where(m_arr > 2, m_arr - 2, 1.0), np.inf)
    return scalar_or_array(out)


def _check_beta(beta):
    return check_range(beta, "beta", 0.0, 1.0, high_open=True)


def ema_weights(beta, m):
    r"""Bias-corrected exponential-average weights :math:`w_i`, :math:`i = 1..m`.

    .. math::

        w_i = \frac{(1-\beta)\beta^{m-i}}{1 - \beta^m}, \qquad \sum_i w_i = 1,

    the weights Adam puts on :math:`g_1^2, \dots, g_m^2` after bias correction
    (eqs. 8-9, 13), and on :math:`g_1, \dots, g_m` in its momentum. ``beta = 0``
    gives all weight to the newest sample; ``beta = 1`` is the limit
    :math:`\beta \to 1`, the simple average :math:`w_i = 1/m` (Theorem 1).
    This is the one implementation in the package:
    :func:`adamdist.exact.momentum_weights` and
    :func:`adamdist.exact.second_moment_weights` are this function with
    the step first.

    Examples
    --------
    >>> ema_weights(0.5, 3)
    array([0.14285714, 0.28571429, 0.57142857])
    >>> ema_weights(1.0, 4)
    array([0.25, 0.25, 0.25, 0.25])
    """
    b = check_scalar(beta, "beta", 0.0, 1.0)
    m_val = check_scalar(m, "m", 1, np.inf)
    m_int = int(m_val)
    if m_int != m_val:
        raise ValueError(f"m must be an integer >= 1 here, got {m!r}")
    i = np.arange(1, m_int + 1)
    if b == 0.0:
        return (i == m_int).astype(np.float64)
    if b == 1.0:
        return np.full(m_int, 1.0 / m_int)
    # (1 - beta) / (1 - beta**m) loses digits for beta near 1 if done naively
    norm = -math.expm1(m_int * math.log(b))
    return (1.0 - b) * b ** (m_int - i).astype(np.float64) / norm


def ema_mean_variance(beta, m):
    r"""Variance of the bias-corrected exponential average of :math:`m` i.i.d. unit-variance samples.

    .. math::

        \sum_i w_i^2 = \frac{1-\beta}{1+\beta}\,\frac{1+\beta^m}{1-\beta^m}
        \qquad \text{(eqs. 9-10, with the exponent corrected from } m-1 \text{ to } m\text{)}.

    Equals 1 at ``beta = 0`` and tends to :math:`1/m` (the simple average) as
    :math:`\beta \to 1`. Vectorised over ``beta`` and ``m`` (``m >= 1`` real).
    """
    b = _check_beta(beta)
    m_arr = check_range(m, "m", 1.0, np.inf)
    b, m_arr = np.broadcast_arrays(b, m_arr)
    out = np.ones(b.shape)
    pos = b > 0
    bp, mp = b[pos], m_arr[pos]
    bm = np.exp(mp * np.log(bp))
    # 1 - beta^m via expm1: beta -> 1 with small m would otherwise cancel
    out[pos] = (1 - bp) / (1 + bp) * (1 + bm) / (-np.expm1(mp * np.log(bp)))
    return scalar_or_array(out)


def ema_effective_samples(beta, m):
    r"""Kish effective sample size :math:`1/\sum_i w_i^2` of the bias-corrected average.

    The number of equally weighted samples that would give the same variance
    as Adam's exponential average after :math:`m` steps: about :math:`m` while
    :math:`m \ll 1/(1-\beta)`, and :math:`(1+\beta)/(1-\beta)` for large m.
    """
    return scalar_or_array(1.0 / np.asarray(ema_mean_variance(beta, m)))


def adam_effective_m(beta2, t):
    r"""The :math:`m` at which the book reads Theorem 1 for Adam at step ``t``.

    Adam's bias-corrected average of :math:`t` squared gradients is not the
    theorem's simple average; its Kish effective sample size
    (:func:`ema_effective_samples`) is the :math:`m` with the same variance:
    :math:`m = t` to 0.01% for :math:`t \le 30` at :math:`\beta_2 = 0.999`,
    and 1 for :math:`\beta_2 = 0` (the two-point law). ``beta2=None`` means
    the simple average itself (:math:`m = t`). Values within 1e-9 of 1 are 1
    exactly, so that :func:`update_distribution` gives the discrete law there.

    Examples
    --------
    >>> adam_effective_m(0.0, [1, 2, 3])
    array([1., 1., 1.])
    >>> adam_effective_m(None, [1, 2, 3])
    array([1., 2., 3.])
    >>> float(round(adam_effective_m(0.999, 20), 4))
    19.9993
    """
    t_arr = check_range(t, "t", 1.0, np.inf)
    if beta2 is None:
        return scalar_or_array(np.asarray(t_arr, dtype=np.float64))
    m = np.asarray(ema_effective_samples(beta2, t_arr), dtype=np.float64)
    return scalar_or_array(np.where(m < 1 + 1e-9, 1.0, m))


def ema_equivalent_m(beta):
    r"""The paper's rule :math:`m = 2/(1-\beta)` (eq. 12) for ``0 <= beta < 1``."""
    b = _check_beta(beta)
    return scalar_or_array(2.0 / (1.0 - b))


def ema_equivalent_beta(m):
    r"""The inverse rule :math:`\beta = (m-2)/m` (eq. 12) for ``m >= 2``."""
    m_arr = check_range(m, "m", 2.0, np.inf)
    return scalar_or_array((m_arr - 2.0) / m_arr)


def update_bound(t, beta2=1.0):
    r"""Largest possible \|update\| of Adam without momentum and with ``eps = 0`` (Proposition 1).

    With bias-corrected second-moment weights :math:`w_i` (:func:`ema_weights`),
    :math:`\hat v_t = \sum_i w_i g_i^2 \ge w_t g_t^2`, so whatever the gradients,

    .. math::

        |u_t| = \frac{|g_t|}{\sqrt{\hat v_t}} \le \frac{1}{\sqrt{w_t}}
        = \sqrt{\frac{1-\beta_2^t}{1-\beta_2}},

    which is :math:`\sqrt{t}` for the simple average (``beta2 = 1``, the support
    of eq. 30). A bounded variable is sub-Gaussian: every moment is finite at
    every step, which is the content of Proposition 1. Vectorised over ``t``
    (``t >= 1``) and ``beta2`` (``0 <= beta2 <= 1``).
    """
    t_arr = check_range(t, "t", 1.0, np.inf)
    b = check_range(beta2, "beta2", 0.0, 1.0)
    t_arr, b = np.broadcast_arrays(t_arr, b)
    shape = t_arr.shape
    t_arr, b = t_arr.reshape(-1), b.reshape(-1)
    out = np.sqrt(t_arr)
    ema = b < 1
    bt, tt = b[ema], t_arr[ema]
    safe = np.where(bt > 0, bt, 0.5)
    # (1 - beta^t) / (1 - beta) via expm1, exact as beta -> 1; beta = 0 keeps only g_t, bound 1
    out[ema] = np.sqrt(np.where(bt > 0, -np.expm1(tt * np.log(safe)) / (1 - bt), 1.0))
    return scalar_or_array(out.reshape(shape))
