r"""One stated rule for "the law holds": tests of recorded updates against the exact law.

The paper (Zhang & Liu, section 5) compares histograms of Adam's updates with
Theorem 1 by eye and says for how many steps they agree. This module turns
that into one test, used by every chapter of the book:

1. **Reference law.** For a recorded tensor at step :math:`t`, the exact law
   of PyTorch's update for the run's own :math:`\beta_1, \beta_2` (eps-free;
   :func:`adamdist.exact.update_distribution`), with unit gradients
   (``scale="unit"``: the paper's i.i.d. assumption) or fed the tensor's own
   measured gradient scale :math:`\sigma_i = \sqrt{\overline{g_i^2}}` at steps
   :math:`i = 1..t` (``scale="measured"``: needs a run recorded with
   ``record_grad=True``). The update is invariant under a common rescaling
   of the gradients, so only the *profile* of the scale over steps matters.
   Each law's CDF is tabulated once (:func:`adamdist.exact.tabulate`, error
   below ``tol``) so that thousands of coordinates cost microseconds.
2. **Test.** Per (step, tensor), a Kolmogorov-Smirnov test of the sampled
   coordinates against the law (``scipy.stats.kstwo``, the exact
   distribution of the one-sample statistic). At :math:`t = 1` the law is
   the two-point law :math:`\operatorname{sign}(g_1)` and the test is the
   exact binomial test of the share of positive signs.
3. **Multiplicity.** The p-values of all (step, tensor) pairs of a run are
   corrected together by Benjamini-Hochberg at level :data:`ALPHA` (1%): the
   expected share of false rejections among the rejections is at most 1%.
4. **Per step**: the share of tensors for which the law is *not* rejected,
   and the median ratio of measured to predicted variance with a bootstrap
   95% interval over tensors.
5. **"The law holds through m"**: the largest :math:`M` such that at every
   step :math:`1..M` the law is not rejected for at least half of the
   tensors (:data:`HOLDS_SHARE`). 0 when step 1 already fails.

Verdicts on the paper's claims use one vocabulary, :data:`VERDICTS`.
"""

from __future__ import annotations

import functools
import math
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
from scipy import stats as _st

from . import exact
from .results import UpdateStats, ks_distance

__all__ = [
    "ALPHA",
    "HOLDS_SHARE",
    "VERDICTS",
    "ks_test",
    "sign_test",
    "benjamini_hochberg",
    "measured_scale",
    "law_test",
    "unit_law",
    "step_shares",
    "holds_through",
    "common_step_share",
    "mode_count",
    "CLAIM_COLUMNS",
    "claim",
    "claims_table",
    "grade",
]

#: Level of the Benjamini-Hochberg correction over all (step, tensor) tests of a run.
ALPHA = 0.01
#: "The law holds" at a step when it is not rejected for at least this share of tensors.
HOLDS_SHARE = 0.5
#: The fixed vocabulary of the book's verdicts on the paper's claims.
VERDICTS = ("supported", "partly supported", "contradicted", "not testable here")


def _finite_sample(sample, name="sample"):
    x = np.asarray(sample, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError(f"{name} must hold at least one value")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or Inf: a test of a law needs finite updates")
    return x


def ks_test(sample, law):
    r"""One-sample Kolmogorov-Smirnov test of ``sample`` against a continuous ``law``.

    The statistic is :math:`D_n = \sup_x |F_n(x) - F(x)|`
    (:func:`adamdist.results.ks_distance`) and the p-value is
    :math:`P(D_n \ge d)` under the law, from the exact finite-``n``
    distribution ``scipy.stats.kstwo(n)``.

    Parameters
    ----------
    sample : array_like of finite floats
    law : object with ``cdf`` (a frozen scipy law, an exact law or its
        :func:`adamdist.exact.tabulate` table)

    Returns
    -------
    (float, float)
        The distance and the p-value.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import stats
    >>> d, p = ks_test(np.random.default_rng(0).normal(size=500), stats.norm())
    >>> p > 0.01
    True
    """
    x = _finite_sample(sample)
    d = ks_distance(x, law.cdf)
    return d, float(_st.kstwo.sf(d, x.size))


def sign_test(sample, p_plus=0.5):
    r"""Exact binomial test of the share of positive entries against ``p_plus``.

    The law at step 1 is :math:`u = \operatorname{sign}(g_1)`, a two-point
    law with :math:`P(u > 0) = p_+` (:class:`adamdist.exact.TwoPointUpdateDistribution`);
    a KS test of two atoms is a test of this one share.

    Returns
    -------
    (float, float)
        The KS distance of the two-point law (:math:`|\hat p_+ - p_+|` plus
        the mass of exact zeros, which the law does not have) and the p-value
        (two-sided; exact zeros count as failures of the law: p = 0).
    """
    x = _finite_sample(sample)
    if not 0.0 <= p_plus <= 1.0:
        raise ValueError(f"p_plus must be in [0, 1], got {p_plus}")
    positive = int((x > 0).sum())
    zeros = int((x == 0).sum())
    d = abs(positive / x.size - p_plus) + zeros / x.size
    if zeros:
        return d, 0.0
    return d, float(_st.binomtest(positive, x.size, p_plus).pvalue)


def benjamini_hochberg(pvalues, alpha=ALPHA):
    r"""Benjamini-Hochberg step-up procedure: which hypotheses to reject at false discovery rate ``alpha``.

    With sorted p-values :math:`p_{(1)} \le \dots \le p_{(n)}`, reject the
    :math:`k` smallest where :math:`k = \max\{i : p_{(i)} \le i\alpha/n\}`.
    NaN p-values (tests not made) are neither counted nor rejected.

    Examples
    --------
    >>> benjamini_hochberg([0.001, 0.2, 0.004, float("nan")], alpha=0.01).tolist()
    [True, False, True, False]
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    out = np.zeros(p.shape, dtype=bool)
    valid = np.flatnonzero(~np.isnan(p.ravel()))
    if not valid.size:
        return out
    flat = p.ravel()[valid]
    if ((flat < 0) | (flat > 1)).any():
        raise ValueError("pvalues must lie in [0, 1]")
    order = np.argsort(flat)
    n = flat.size
    below = flat[order] <= alpha * np.arange(1, n + 1) / n
    if below.any():
        k = int(np.flatnonzero(below).max()) + 1
        chosen = valid[order[:k]]
        out.ravel()[chosen] = True
    return out


def measured_scale(stats: UpdateStats) -> dict:
    r"""Per tensor, the measured gradient scale :math:`\sigma_t = \sqrt{\overline{g_t^2}}` at each recorded step.

    Read from ``stats.metadata["grad"][name]["mean_square"]`` (runs recorded
    with ``record_grad=True``). Raises ``ValueError`` naming what is missing.
    """
    grad = stats.metadata.get("grad")
    if not grad:
        raise ValueError("this run has no gradient record (metadata['grad']); record it with record_grad=True "
                         "to test against the law at the measured gradient scale")
    out = {}
    for name in stats.names:
        if name not in grad:
            raise ValueError(f"metadata['grad'] has no entry for tensor {name!r}")
        ms = np.asarray(grad[name]["mean_square"], dtype=np.float64)
        if ms.size != stats.steps.size:
            raise ValueError(f"metadata['grad'][{name!r}] has {ms.size} steps, the run {stats.steps.size}")
        out[name] = np.sqrt(ms)
    return out


def _betas(stats, beta1, beta2):
    # an experiment states its config, a simulation its betas; a recorder keeps the optimizer's param groups
    config = dict(stats.metadata.get("config", {}))
    if "beta2" not in config and "beta2" in stats.metadata:
        config = {"beta1": stats.metadata.get("beta1", 0.0), "beta2": stats.metadata["beta2"]}
    groups = stats.metadata.get("hyperparameters") or []
    betas = {tuple(g["betas"]) for g in groups if isinstance(g, dict) and "betas" in g}
    if "beta2" not in config and len(betas) == 1:
        config.setdefault("beta1", betas.copy().pop()[0])
        config["beta2"] = betas.pop()[1]
    b1 = config.get("beta1", 0.0) if beta1 is None else beta1
    b2 = config.get("beta2") if beta2 is None else beta2
    if b2 is None:
        raise ValueError("beta2 is not in the run's metadata (its 'config', a simulation's 'beta2', or one pair "
                         "of betas in its recorded param groups): pass beta2")
    return float(b1), float(b2)


def _law_row(t, beta1, beta2, sigma, sample, tol, drop_zeros):
    """Build one measured-scale law and test one sample; module level, so worker processes can run it."""
    law = exact.update_distribution(t, beta1, beta2, sigma=sigma)
    if not isinstance(law, exact.TwoPointUpdateDistribution):
        law = exact.tabulate(law, tol=tol)
    return _row_with_law(law, sample, drop_zeros)


def law_test(stats: UpdateStats, scale="unit", *, beta1=None, beta2=None, alpha=ALPHA, tol=1e-3,
             drop_zeros=False, workers=1) -> pd.DataFrame:
    r"""Test every recorded tensor at every step against the exact law (the module's rule, steps 1-3).

    Parameters
    ----------
    stats : UpdateStats
        A recorded run with sampled coordinates (``stats.samples``); the signs
        of :math:`(\theta_t - \theta_{t-1})/\mathrm{lr}` do not matter, the laws
        tested here being symmetric.
    scale : {"unit", "measured"}
        Unit gradients (the paper's assumption), or each tensor's measured
        gradient scale profile (:func:`measured_scale`).
    beta1, beta2 : float, optional
        Default: the run's ``metadata["config"]``.
    alpha : float
        False discovery rate of the Benjamini-Hochberg correction.
    tol : float
        Error of each tabulated CDF (:func:`adamdist.exact.tabulate`); the
        default 1e-3 is under 5% of the KS 99% band of 2,000 coordinates.
    drop_zeros : bool
        Test only the non-zero coordinates (exact zeros are coordinates whose
        gradient was exactly zero, e.g. behind a dead ReLU; the Gaussian laws
        have none). ``zero_share`` is reported either way.
    workers : int
        Processes for the measured-scale laws (one law per tensor and step).

    Returns
    -------
    DataFrame
        One row per (step, tensor) with a gradient: ``step, name, n_sample,
        ks, p, rejected, var_measured, var_predicted, var_ratio, zero_share,
        table_error``. ``var_measured`` is the variance of all of the tensor's
        entries (of the non-zero ones with ``drop_zeros``: from the sample).
    """
    if scale not in ("unit", "measured"):
        raise ValueError(f"scale must be 'unit' or 'measured', got {scale!r}")
    if not stats.samples:
        raise ValueError("stats has no sampled coordinates (samples): nothing to test")
    b1, b2 = _betas(stats, beta1, beta2)
    sigmas = measured_scale(stats) if scale == "measured" else None
    jobs, keys = [], []
    for i, t in enumerate(stats.steps):
        if i != t - 1:
            raise ValueError("law_test needs the run's steps 1, 2, 3, ... in order (the law at step t "
                             f"depends on every step before it), got steps {stats.steps[:5].tolist()}...")
        for j, name in enumerate(stats.names):
            if name not in stats.samples or stats.no_grad[i, j]:
                continue
            sigma = None if sigmas is None else sigmas[name][: i + 1]
            if sigma is not None and not (np.isfinite(sigma).all() and (sigma > 0).all()):
                continue  # a step without a gradient scale has no law to test against
            jobs.append((int(t), b1, b2, sigma, stats.samples[name][i], tol, drop_zeros))
            keys.append((i, j, name))
    if scale == "unit":
        rows = [_row_with_law(unit_law(job[0], b1, b2, tol), job[4], drop_zeros) for job in jobs]
    elif workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rows = list(pool.map(_law_row_star, jobs, chunksize=16))
    else:
        rows = [_law_row(*job) for job in jobs]
    columns = ["step", "name", "n_sample", "ks", "p", "rejected", "var_measured", "var_predicted", "var_ratio",
               "zero_share", "table_error"]
    if not rows:  # every tensor frozen at every step: nothing to test
        return pd.DataFrame({c: pd.Series(dtype=bool if c == "rejected" else object if c == "name" else float)
                             for c in columns})
    frame = pd.DataFrame(rows)
    frame.insert(0, "name", [k[2] for k in keys])
    frame.insert(0, "step", [int(stats.steps[k[0]]) for k in keys])
    frame["var_measured"] = [_measured_var(stats, i, j, name, drop_zeros) for i, j, name in keys]
    frame["var_ratio"] = frame["var_measured"] / frame["var_predicted"]
    frame["rejected"] = benjamini_hochberg(frame["p"].to_numpy(), alpha)
    return frame[columns]


@functools.lru_cache(maxsize=1024)
def unit_law(t: int, beta1: float, beta2: float, tol: float = 1e-3):
    """The exact law of Adam's update at step ``t`` with unit gradients, tabulated to ``tol``.

    The two-point law at ``t = 1``; :func:`adamdist.exact.tabulate` of
    :func:`adamdist.exact.update_distribution` after it. Tabulating costs tens
    of milliseconds and every tensor of every run at these betas shares it, so
    the tables are kept (a pure function of its arguments, memoised).
    """
    law = exact.update_distribution(int(t), float(beta1), float(beta2))
    return law if isinstance(law, exact.TwoPointUpdateDistribution) else exact.tabulate(law, tol=tol)


def _law_row_star(job):
    return _law_row(*job)


def _row_with_law(law, sample, drop_zeros):
    x = sample[np.isfinite(sample)]
    zero_share = float((x == 0).mean()) if x.size else math.nan
    if drop_zeros:
        x = x[x != 0]
    if not x.size:
        return dict(n_sample=0, ks=math.nan, p=math.nan, var_predicted=math.nan, zero_share=zero_share,
                    table_error=math.nan)
    if isinstance(law, exact.TwoPointUpdateDistribution):
        d, p = sign_test(x, law.p_plus)
        return dict(n_sample=x.size, ks=d, p=p, var_predicted=law.var(), zero_share=zero_share, table_error=0.0)
    d, p = ks_test(x, law)
    return dict(n_sample=x.size, ks=d, p=p, var_predicted=law.var(), zero_share=zero_share,
                table_error=law.error_bound)


def _measured_var(stats, i, j, name, drop_zeros):
    if not drop_zeros:
        return float(stats.var[i, j])
    x = stats.samples[name][i]
    x = x[np.isfinite(x) & (x != 0)]
    return float(x.var()) if x.size else math.nan


def step_shares(frame: pd.DataFrame, n_boot=2000, seed=0) -> pd.DataFrame:
    """Per step (the module's rule, step 4): tensors tested, share not rejected, median variance ratio with a
    bootstrap 95% interval over tensors (``n_boot`` resamples, ``seed`` explicit)."""
    rng = np.random.default_rng(seed)
    rows = []
    for step, group in frame.groupby("step", sort=True):
        tested = group[group["p"].notna()]
        ratios = tested["var_ratio"].to_numpy(dtype=np.float64)
        ratios = ratios[np.isfinite(ratios)]
        if ratios.size:
            boot = np.median(ratios[rng.integers(0, ratios.size, (n_boot, ratios.size))], axis=1)
            low, high = np.quantile(boot, [0.025, 0.975])
        else:
            low = high = math.nan
        rows.append(dict(step=int(step), tensors=len(tested),
                         share_not_rejected=float((~tested["rejected"]).mean()) if len(tested) else math.nan,
                         var_ratio_median=float(np.median(ratios)) if ratios.size else math.nan,
                         var_ratio_low=float(low), var_ratio_high=float(high)))
    return pd.DataFrame(rows)


def holds_through(shares: pd.DataFrame, threshold=HOLDS_SHARE) -> int:
    """The largest M with ``share_not_rejected >= threshold`` at every step 1..M (0 if step 1 fails).

    Examples
    --------
    >>> import pandas as pd
    >>> holds_through(pd.DataFrame({"step": [1, 2, 3, 4], "share_not_rejected": [1.0, 0.8, 0.2, 0.9]}))
    2
    """
    shares = shares.sort_values("step")
    steps = shares["step"].to_numpy()
    if steps.size and not np.array_equal(steps, np.arange(1, steps.size + 1)):
        raise ValueError("holds_through needs the shares of steps 1, 2, 3, ... without gaps")
    ok = shares["share_not_rejected"].to_numpy() >= threshold
    return int(steps.size if ok.all() else np.argmin(ok))


def common_step_share(frame: pd.DataFrame, column="var_ratio") -> float:
    r"""Share of the variation of :math:`\log(\text{column})` over steps that is common to all tensors of a step.

    Each tensor's log ratio is centred over its steps (its own level removed);
    the share is :math:`SS_\text{step} / SS_\text{total}` of the centred values,
    where :math:`SS_\text{step}` is that of the per-step means: 1 when every
    tensor moves together from step to step (a step-wide gradient scale), 0
    when the tensors move independently.
    """
    data = frame[["step", "name", column]].dropna()
    data = data[data[column] > 0]
    y = np.log(data[column].to_numpy())
    y = y - data.assign(y=y).groupby("name")["y"].transform("mean").to_numpy()
    step_mean = pd.Series(y).groupby(data["step"].to_numpy()).transform("mean").to_numpy()
    total = float(np.sum(y ** 2))
    return float(np.sum(step_mean ** 2) / total) if total > 0 else math.nan


def mode_count(sample=None, law=None, bins=40, drop_zeros=True) -> int:
    r"""Number of modes of a sample's histogram or of a law's density, by one rule.

    The rule is :func:`adamdist.simulate.count_modes` (a peak counts when its
    prominence is a visible share of the tallest bin and beyond the Poisson
    noise of the counts). A sample is binned into ``bins`` equal bins over its
    range, after dropping exact zeros by default (coordinates without a
    gradient, which the Gaussian laws do not have). A ``law`` (anything with
    ``pdf`` and a finite support; ``sample`` is then ignored) is evaluated at
    ``8 * bins`` points across its support and counted as a noise-free
    histogram, so the law's own transition is located with the same rule.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> mode_count(np.concatenate([rng.normal(-3, 0.5, 3000), rng.normal(3, 0.5, 3000)]))
    2
    """
    from .simulate import count_modes

    if law is not None:
        support = law.support() if callable(law.support) else law.support
        x = np.linspace(support[0], support[1], 8 * bins + 2)[1:-1]
        y = np.asarray(law.pdf(x), dtype=np.float64)
        if not np.isfinite(y).all() or y.max() <= 0:
            raise ValueError("mode_count: the law's density is not finite and positive on its support")
        return count_modes(y / y.max() * 1e12)
    x = _finite_sample(sample)
    if drop_zeros:
        x = x[x != 0]
    if x.size < 10:
        raise ValueError(f"mode_count needs at least 10 values (non-zero ones with drop_zeros), got {x.size}")
    hist, _ = np.histogram(x, bins=bins)
    return count_modes(hist)


#: Columns of a verdict table, in order.
CLAIM_COLUMNS = ("claim", "paper", "measured", "setting", "verdict", "section")


def claim(claim, paper, measured, setting, verdict, section=""):
    """One row of a verdict table: the paper's claim in the book's words and what the runs say.

    Parameters
    ----------
    claim : str
        The claim, in the book's words.
    paper : str
        Where the paper makes it (section, figure or equation).
    measured : str
        The measured number(s) behind the verdict, as text (computed by the caller).
    setting : str
        Steps, batch, seeds, ... of the runs measured.
    verdict : str
        One of :data:`VERDICTS`, decided by a rule the caller states.
    section : str
        Link target in the book (a MyST target or ``chapter#anchor``), may be empty.
    """
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    for key, value in dict(claim=claim, paper=paper, measured=measured, setting=setting).items():
        if not isinstance(value, str) or not value.strip():
            raise TypeError(f"{key} must be a non-empty string, got {value!r}")
    return dict(claim=claim, paper=paper, measured=measured, setting=setting, verdict=verdict, section=section)


def claims_table(rows) -> pd.DataFrame:
    """A verdict table (one row per :func:`claim`), columns :data:`CLAIM_COLUMNS`."""
    rows = list(rows)
    if not rows:
        raise ValueError("claims_table needs at least one claim")
    return pd.DataFrame(rows, columns=list(CLAIM_COLUMNS))


def grade(value, supported, partly, higher_is_better=True):
    """Map a measured number onto :data:`VERDICTS` with two stated thresholds.

    ``supported`` if ``value`` reaches ``supported``, ``partly supported`` if it
    reaches ``partly``, else ``contradicted`` (reversed with
    ``higher_is_better=False``); NaN gives ``not testable here``.

    Examples
    --------
    >>> grade(0.95, 0.9, 0.5), grade(0.6, 0.9, 0.5), grade(0.1, 0.9, 0.5)
    ('supported', 'partly supported', 'contradicted')
    """
    value = float(value)
    if math.isnan(value):
        return "not testable here"
    sign = 1.0 if higher_is_better else -1.0
    if sign * value >= sign * supported:
        return "supported"
    if sign * value >= sign * partly:
        return "partly supported"
    return "contradicted"
