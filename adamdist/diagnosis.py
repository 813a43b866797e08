r"""Diagnose a run: which of the paper's section 6 causes explains a deviation from the law.

The paper's use for its theory is practical (Zhang & Liu, end of section 4
and section 6): record the updates once, compare them with the law, and read
off what is wrong. Section 6 lists the signatures -- a non-zero gradient mean
skews the law, a growing gradient scale keeps it bimodal, a shrinking one makes
it narrow, heavy tails give it extra modes -- and chapter 8 of the book found
one more, gradients that persist per coordinate over steps.
:func:`diagnose` turns those signatures into measured statistics of the
sampled coordinates, each compared with its own distribution under the law's
assumptions, and names a cause per tensor from a fixed vocabulary,
:data:`CAUSES`.

The rule
--------
1. **Does the law hold?** The book's rule (:mod:`adamdist.verdict`): every
   (step, tensor) is tested against the exact law of the run's betas at unit
   gradient scale, the p-values corrected together; ``holds_through`` is the
   last step :math:`M` such that the tensor's law is not rejected at steps
   :math:`1..M`.
2. **Signatures.** From a tensor's :math:`K` sampled coordinates over steps
   :math:`t = 2..T` (step 1 is the two-point law for every cause):

   ============== ===========================================================
   statistic      definition
   ============== ===========================================================
   zero share     largest share of exact zeros among a step's sampled updates; the rule
                  uses the *excess* zeros, beyond those that rounding to a grid makes (about
                  as many as sit on the grid's first value beside 0, plus 3 Poisson sd)
   distinct share median over steps of (distinct non-zero values / non-zero values)
   grid           median over steps of the smallest gaps (5% quantile) between neighbouring
                  distinct values, in standard deviations of the sample
   mean / sd      mean over steps of the sample mean over the sample sd
   slope          slope of :math:`\log(\mathrm{var}_t / \mathrm{var}^0_t)` on :math:`\log t`
                  (it must also stand out of the fit's own scatter, :data:`SLOPE_T`)
   wobble         residual sd of that fit (a step-to-step scale)
   kurtosis       mean over steps of the sample's excess kurtosis (two-sided: heavy
                  tails raise it without momentum and lower it with momentum)
   lag corr       mean correlation of a coordinate's update at :math:`t` and :math:`t - L`, :math:`L = \min(5, T-1)`
   ============== ===========================================================

   :math:`\mathrm{var}^0_t` and the distribution of every statistic under the
   law's own assumptions (i.i.d. standard normal gradients, the run's
   optimizer and betas, the same :math:`K` and steps) come from
   :data:`REPLICATES` simulated replicates (:func:`adamdist.simulate.run`),
   so each statistic has a z-score :math:`z = (s - \bar s_0) / \mathrm{sd}_0`.
3. **A signature fires** when :math:`|z| \ge` ``z`` (default :data:`Z`) *and*
   the effect is large enough to matter (:data:`EFFECT`); the share rules
   (excess zero share :math:`\ge 0.1\%`; distinct share :math:`< 0.9` on a grid of
   at least 0.05 standard deviations, coarse enough to show in a histogram
   and to move the CDF by about :math:`0.2 \times` grid) have no spread under
   the law (the law has no atoms after step 1) and use the thresholds alone.
4. **One signature explains another** (measured in the calibration, see
   :func:`adamdist.experiments.diagnosis.calibrate`): a sparse gradient also
   raises the kurtosis and the wobble, a shrinking scale raises the kurtosis
   and the lag correlation, persistence with momentum raises the slope, and so
   on (:data:`EXPLAINS`). A fired cause that another fired cause explains is
   kept as ``also`` (of two causes that can each make the other's signature,
   the one with the stronger evidence); what remains is the ``cause``. When two unexplained
   signatures remain, both are listed ("a or b"): from the updates alone they
   cannot be told apart.
5. **With the run's gradients** (``grads``: the recorder's
   ``result("grad")``, same coordinates), the gradient's own statistics are
   tested against i.i.d. normal gradients and decide the gradient-side causes;
   a run with only ``metadata["grad"]`` (the per-step mean square) decides the
   scale causes from it. The updates still decide ``quantised``.
6. **No signature**: ``consistent`` if the law holds through the last step,
   else ``unexplained`` (never a silent ``consistent``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import verdict
from .results import UpdateStats

__all__ = ["CAUSES", "EXPLAINS", "Z", "EFFECT", "SLOPE_T", "Z_RULES", "MS_SLOPE", "MS_WOBBLE", "REPLICATES",
           "SIGNATURES", "signatures", "rules", "diagnose", "Diagnosis"]

#: The fixed vocabulary of causes, with what each one means.
CAUSES = {
    "consistent": "the law holds at every recorded step and no signature is present",
    "nonzero_mean": "the gradients have a mean that is not zero across coordinates: the update is shifted",
    "growing_scale": "the gradient scale grows over steps: the update is wider than the law (section 6.1)",
    "shrinking_scale": "the gradient scale shrinks over steps: the update is narrower than the law (section 6.1)",
    "fluctuating_scale": "the gradient scale jumps from step to step (one batch larger than the running "
                         "average), without a trend",
    "heavy_tails": "heavy-tailed gradients: a peak at 0 and long tails, more modes (section 6.3)",
    "sparse": "many gradients are exactly zero (embedding rows, dead units): the update has atoms at 0",
    "persistent": "a coordinate's gradients are correlated across steps (chapter 8)",
    "quantised": "the recorded updates take few distinct values (low-precision parameters or a learning "
                 "rate below the parameters' resolution)",
    "no_gradient": "the tensor got no gradient (frozen, unused) or every update is exactly zero",
    "nonfinite": "some updates are NaN or infinite (a diverged step)",
    "empty": "the tensor has no entries",
    "unexplained": "the law fails but no signature of the vocabulary is present",
}

#: The signature statistics, in order (see the module docstring).
SIGNATURES = ("zero_share", "excess_zero_share", "distinct_share", "grid", "mean_sd", "slope", "wobble", "kurtosis", "lag_corr")

#: |z| at which a z-tested signature fires.
Z = 6.0
#: The smallest effect that fires, per statistic (beyond the law's mean; for the shares, the threshold).
EFFECT = {"zero_share": 0.001, "distinct_share": 0.9, "grid": 0.05, "mean_sd": 0.02, "slope": 0.02, "wobble": 0.01,
          "kurtosis": 0.2, "lag_corr": 0.02}
#: A trend must also stand out of its own scatter: |slope| / (its standard error) at least this.
SLOPE_T = 6.0
#: The z-tested rules: (cause, statistic, what it is, which side of the law's spread fires).
Z_RULES = (
    ("nonzero_mean", "mean_sd", "mean/sd", "two-sided"),
    ("growing_scale", "slope", "slope of log variance ratio on log step", "up"),
    ("shrinking_scale", "slope", "slope of log variance ratio on log step", "down"),
    ("fluctuating_scale", "wobble", "step-to-step sd of log variance ratio", "up"),
    ("heavy_tails", "kurtosis", "excess kurtosis", "two-sided"),
    ("persistent", "lag_corr", "lag correlation", "up"),
)
#: From a gradient mean square alone (millions of entries: thresholds on the effect, no spread).
MS_SLOPE = 0.1
MS_WOBBLE = 0.1
#: Simulated replicates of the law's assumptions behind each null distribution.
REPLICATES = 32

#: cause -> the causes whose signatures it also produces (so a fired cause explains them).
EXPLAINS = {
    "quantised": {"sparse", "nonzero_mean", "growing_scale", "shrinking_scale", "fluctuating_scale",
                  "heavy_tails", "persistent"},
    "sparse": {"heavy_tails", "growing_scale", "shrinking_scale", "fluctuating_scale", "persistent"},
    "shrinking_scale": {"heavy_tails", "persistent", "fluctuating_scale"},
    "growing_scale": {"fluctuating_scale", "heavy_tails"},
    "persistent": {"growing_scale", "fluctuating_scale", "heavy_tails"},
    "nonzero_mean": {"heavy_tails", "fluctuating_scale"},
    "heavy_tails": {"fluctuating_scale"},
    "fluctuating_scale": {"heavy_tails"},  # a scale that varies over steps is a scale mixture: heavier tails
}

_GRADIENT_SIDE = ("sparse", "nonzero_mean", "growing_scale", "shrinking_scale", "fluctuating_scale",
                  "heavy_tails", "persistent")
_MIN_COORDINATES = 8


# --------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------

def _lag(n_steps: int) -> int:
    return max(1, min(5, n_steps - 1))


def _moment_signatures(x: np.ndarray) -> dict:
    """mean/sd, log variance per step, kurtosis and lag correlation of ``x`` (..., S, K), steps 2..S.

    Vectorised over leading axes (the null's replicates); NaN entries are rows without a gradient.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(x, axis=-1)
        centred = x - mean[..., None]
        var = np.nanmean(centred ** 2, axis=-1)
        m4 = np.nanmean(centred ** 4, axis=-1)
        sd = np.sqrt(var)
        later = (slice(None),) * (x.ndim - 2) + (slice(1, None),)
        positive = var > 0
        mean_sd = np.where(positive, mean / np.where(positive, sd, 1.0), np.nan)[later]
        kurt = np.where(positive, m4 / np.where(positive, var, 1.0) ** 2 - 3.0, np.nan)[later]
        log_var = np.where(positive, np.log(np.where(positive, var, 1.0)), np.nan)
        z = centred / np.where(positive, sd, np.nan)[..., None]
        lag = _lag(x.shape[-2])
        corr = np.nanmean(z[..., lag:, :] * z[..., :-lag, :], axis=-1)
    return {"mean_sd": _nanmean(mean_sd), "kurtosis": _nanmean(kurt), "lag_corr": _nanmean(corr),
            "log_var": log_var}


def _nanmean(a):
    with np.errstate(invalid="ignore"):
        count = np.sum(np.isfinite(a), axis=-1)
        total = np.nansum(a, axis=-1)
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _trend(log_ratio: np.ndarray, steps: np.ndarray):
    """Slope of ``log_ratio`` on log(step) over steps >= 2, and the residual sd (vectorised over leading axes)."""
    keep = steps >= 2
    y = log_ratio[..., keep]
    x = np.broadcast_to(np.log(steps[keep].astype(np.float64)), y.shape)
    ok = np.isfinite(y)
    n = ok.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        xm = np.where(ok, x, 0).sum(-1) / n
        ym = np.where(ok, y, 0).sum(-1) / n
        dx = np.where(ok, x - xm[..., None], 0)
        dy = np.where(ok, y - ym[..., None], 0)
        sxx = (dx ** 2).sum(-1)
        slope = np.where(sxx > 0, (dx * dy).sum(-1) / np.where(sxx > 0, sxx, 1), np.nan)
        resid = dy - slope[..., None] * dx
        wobble = np.sqrt((resid ** 2).sum(-1) / np.maximum(n - 2, 1))
        t_slope = slope / (wobble / np.sqrt(sxx))
    enough = n >= 3
    return np.where(enough, slope, np.nan), np.where(enough, wobble, np.nan), np.where(enough, t_slope, np.nan)


def _share_signatures(x: np.ndarray) -> dict:
    rows = np.isfinite(x).all(axis=1)
    # the largest share at any step: with momentum a coordinate's update is 0 only until its first gradient
    zero_share = float(np.max(np.mean(x[rows] == 0, axis=1))) if rows.any() else math.nan
    excess = [_excess_zeros(row) for row in x[rows]]
    distinct, grid = [], []
    for row in x[1:][rows[1:]]:  # step 1 is a two-point law
        nz = row[row != 0]
        if nz.size >= 2:
            values = np.unique(nz)
            distinct.append(values.size / nz.size)
            gaps = np.diff(values)
            sd = nz.std()
            if gaps.size and sd > 0:
                # the grid's step: the smallest gaps between neighbouring values (robust to a few float accidents)
                grid.append(float(np.quantile(gaps, 0.05)) / sd)
    return {"zero_share": zero_share, "excess_zero_share": float(max(excess)) if excess else math.nan,
            "distinct_share": float(np.median(distinct)) if distinct else math.nan,
            "grid": float(np.median(grid)) if grid else math.nan}


def _excess_zeros(row: np.ndarray) -> float:
    """Share of exact zeros beyond what rounding to a grid makes.

    Rounding puts into 0 the values within half a grid step of it, about as many as land on
    the grid's first value on either side; zeros beyond the larger neighbour's count (and three
    of its Poisson standard deviations) are gradients that were 0.
    """
    zeros = int(np.sum(row == 0))
    if not zeros:
        return 0.0
    neighbours = 0
    for side in (row[row > 0], -row[row < 0]):
        if side.size:
            neighbours = max(neighbours, int(np.sum(side == side.min())))
    return max(0.0, zeros - neighbours - 3 * math.sqrt(neighbours)) / row.size


def signatures(samples, steps, reference_log_var=None) -> dict:
    r"""The signature statistics of one tensor's sampled coordinates (the module's table).

    Parameters
    ----------
    samples : array_like, shape (S, K)
        The values of the same ``K`` coordinates at steps ``steps``; rows of
        NaN are steps without a gradient and are left out.
    steps : array_like of int, shape (S,)
        1-based steps.
    reference_log_var : array_like, shape (S,), optional
        :math:`\log \mathrm{var}^0_t` of the law; the slope and wobble are of
        :math:`\log(\mathrm{var}_t) - \log \mathrm{var}^0_t`. Default 0 (a
        constant reference: the gradient route).

    Returns
    -------
    dict
        ``zero_share, excess_zero_share, distinct_share, grid, mean_sd, slope, wobble,
        kurtosis, lag_corr`` and ``slope_t`` (the slope over its standard error) (NaN where undefined: fewer than 3 steps, or a constant sample).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(20, 1000))
    >>> s = signatures(x, np.arange(1, 21))
    >>> abs(s["mean_sd"]) < 0.01, abs(s["lag_corr"]) < 0.01, s["zero_share"]
    (True, True, 0.0)
    """
    x = np.asarray(samples, dtype=np.float64)
    steps = np.asarray(steps, dtype=np.int64)
    if x.ndim != 2 or x.shape[0] != steps.size:
        raise ValueError(f"samples must have shape (steps, K) = ({steps.size}, K), got {x.shape}")
    moments = _moment_signatures(x)
    ref = 0.0 if reference_log_var is None else np.asarray(reference_log_var, dtype=np.float64)
    slope, wobble, t_slope = _trend(moments.pop("log_var") - ref, steps)
    out = _share_signatures(x)
    out.update(mean_sd=float(moments["mean_sd"]), slope=float(slope), slope_t=float(t_slope), wobble=float(wobble),
               kurtosis=float(moments["kurtosis"]), lag_corr=float(moments["lag_corr"]))
    return {k: out[k] for k in SIGNATURES + ("slope_t",)}


@dataclass(frozen=True)
class _Null:
    log_var: np.ndarray  # (S,) mean over replicates
    mean: dict
    sd: dict


def _null_from(x: np.ndarray, steps: np.ndarray, reference=None) -> _Null:
    """Null distribution of the z-tested signatures from replicates ``x`` (R, S, K)."""
    moments = _moment_signatures(x)
    log_var = moments.pop("log_var")
    ref = np.nanmean(log_var, axis=0) if reference is None else reference
    slope, wobble, _ = _trend(log_var - ref, steps)
    values = dict(moments, slope=slope, wobble=wobble)
    return _Null(log_var=ref, mean={k: float(np.nanmean(v)) for k, v in values.items()},
                 sd={k: float(np.nanstd(v, ddof=1)) for k, v in values.items()})


@functools.lru_cache(maxsize=256)
def _update_null(optimizer: str, hyper: tuple, steps: tuple, k: int, replicates: int, seed: int) -> _Null:
    """The signatures' null for updates: ``replicates`` runs of K i.i.d. standard normal coordinates in one simulation."""
    from . import simulate

    n_steps = max(steps)
    stats = simulate.run(optimizer, n=replicates * k, steps=n_steps, gradients=simulate.Normal(), seed=seed,
                         sample_size=replicates * k, record=list(steps), progress=False, **dict(hyper))
    x = stats.samples[stats.names[0]].reshape(len(steps), replicates, k).transpose(1, 0, 2)
    return _null_from(x, np.asarray(steps))


@functools.lru_cache(maxsize=256)
def _gradient_null(steps: tuple, k: int, replicates: int, seed: int) -> _Null:
    """The signatures' null for gradients: i.i.d. standard normal draws (constant reference variance 1)."""
    x = np.random.default_rng([seed, k]).standard_normal((replicates, len(steps), k))
    return _null_from(x, np.asarray(steps), reference=np.zeros(len(steps)))


# --------------------------------------------------------------------------
# the rule
# --------------------------------------------------------------------------

def _fire(stat: dict, null: _Null | None, z: float) -> dict:
    """cause -> (score, evidence) for every signature that fires."""
    fired = {}
    zero, distinct = stat["zero_share"], stat["distinct_share"]
    grid = stat.get("grid", math.nan)
    if np.isfinite(distinct) and distinct < EFFECT["distinct_share"] and np.isfinite(grid) and grid >= EFFECT["grid"]:
        fired["quantised"] = (grid / EFFECT["grid"],
                              f"only {distinct:.0%} of the non-zero sampled values are distinct, on a grid of "
                              f"{grid:.2f} standard deviations (the law's values are all distinct)")
    excess = stat.get("excess_zero_share", math.nan)
    if np.isfinite(excess) and excess >= EFFECT["zero_share"]:
        fired["sparse"] = (excess / EFFECT["zero_share"], f"up to {zero:.1%} of the sampled values of a step are "
                                                         f"exactly 0 (the law has no atom at 0)")
    if null is None:
        return fired

    def zscore(key):
        s, m, sd = stat[key], null.mean[key], null.sd[key]
        if not (np.isfinite(s) and np.isfinite(m) and np.isfinite(sd)):
            return math.nan, s, m, sd
        return (s - m) / max(sd, 1e-12), s, m, sd

    def words(label, key):
        zz, s, m, sd = zscore(key)
        return f"{label} {s:+.3f} (law: {m:+.3f} ± {sd:.3f}, z = {zz:+.1f})"

    for cause, key, label, direction in Z_RULES:
        zz, s, m, _ = zscore(key)
        if not np.isfinite(zz):
            continue
        d = s - m
        if direction == "up":
            hit = zz >= z and d >= EFFECT[key]
        elif direction == "down":
            hit = zz <= -z and d <= -EFFECT[key]
        else:
            hit = abs(zz) >= z and abs(d) >= EFFECT[key]
        if key == "slope":  # a trend must also stand out of its own scatter
            hit = hit and abs(stat["slope_t"]) >= SLOPE_T
        if hit:
            fired[cause] = (abs(zz) / z, words(label, key))
    return fired


def rules(z: float = Z) -> pd.DataFrame:
    """The rule of every cause, as :func:`diagnose` applies it: one row per (cause, route).

    Examples
    --------
    >>> table = rules()
    >>> sorted(set(table["cause"])) == sorted(c for c in CAUSES if c not in ("consistent", "unexplained"))
    True
    """
    sides = {"up": "z ≥ {z:g} and effect ≥ {e:g}", "down": "z ≤ -{z:g} and effect ≤ -{e:g}",
             "two-sided": "|z| ≥ {z:g} and |effect| ≥ {e:g}"}
    rows = [dict(cause="quantised", route="updates",
                 fires_when=f"distinct share < {EFFECT['distinct_share']:g} on a grid ≥ {EFFECT['grid']:g} sd"),
            dict(cause="sparse", route="updates or gradients",
                 fires_when=f"excess zero share ≥ {EFFECT['zero_share']:g} at some step")]
    for cause, key, label, direction in Z_RULES:
        text = f"{label}: " + sides[direction].format(z=z, e=EFFECT[key])
        if key == "slope":
            text += f", |slope / its standard error| ≥ {SLOPE_T:g}"
        rows.append(dict(cause=cause, route="updates or gradients", fires_when=text))
    rows += [dict(cause="growing_scale / shrinking_scale", route="gradient mean square",
                  fires_when=f"|slope of log mean square on log t| ≥ {MS_SLOPE:g}, |slope / se| ≥ {SLOPE_T:g}"),
             dict(cause="fluctuating_scale", route="gradient mean square",
                  fires_when=f"step-to-step sd of log mean square ≥ {MS_WOBBLE:g}"),
             dict(cause="no_gradient", route="record", fires_when="no gradient at any step, or every update 0 "
                                                                   "with zero gradients"),
             dict(cause="nonfinite", route="record", fires_when="any NaN or Inf update"),
             dict(cause="empty", route="record", fires_when="the tensor has no entries")]
    table = pd.DataFrame(rows)
    table["cause"] = table["cause"].str.split(" / ")
    return table.explode("cause", ignore_index=True)


def _scale_from_mean_square(mean_square: np.ndarray, steps: np.ndarray) -> tuple[dict, dict]:
    """Scale causes from the gradient's per-step mean square alone (N large: thresholds, no null)."""
    ms = np.asarray(mean_square, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ms = np.where(ms > 0, np.log(ms), np.nan)
    slope, wobble, t_slope = (float(v) for v in _trend(log_ms, steps))
    fired = {}
    text = f"gradient mean square ~ t^{slope:+.2f} over steps, step-to-step sd of its log {wobble:.2f}"
    if np.isfinite(slope) and abs(slope) >= MS_SLOPE and abs(t_slope) >= SLOPE_T:
        fired["growing_scale" if slope > 0 else "shrinking_scale"] = (abs(slope) / MS_SLOPE, text)
    if np.isfinite(wobble) and wobble >= MS_WOBBLE:
        fired["fluctuating_scale"] = (wobble / MS_WOBBLE, text)
    return fired, {"grad_slope": slope, "grad_wobble": wobble}


def _explains(a: str, b: str, fired: dict) -> bool:
    """Fired cause ``a`` accounts for fired cause ``b`` (of a pair that can make each other, the stronger one)."""
    if b not in EXPLAINS.get(a, ()):
        return False
    return a not in EXPLAINS.get(b, ()) or fired[a][0] >= fired[b][0]


def _primary(fired: dict) -> tuple[list, list]:
    explained = {b for a in fired for b in fired if a != b and _explains(a, b, fired)}
    primary = [c for c in fired if c not in explained] or list(fired)
    primary.sort(key=lambda c: -fired[c][0])
    also = sorted((c for c in fired if c not in primary), key=lambda c: -fired[c][0])
    return primary, also


def _holds_per_tensor(frame: pd.DataFrame, names, last_step: int) -> dict:
    out = {}
    for name in names:
        rows = frame[(frame["name"] == name) & frame["p"].notna()].sort_values("step")
        if rows.empty:
            out[name] = math.nan
            continue
        rejected = rows.loc[rows["rejected"], "step"]
        out[name] = int(rejected.min() - 1) if len(rejected) else int(rows["step"].max())
    return out


def _law_frame(stats: UpdateStats, law, tests, alpha: float, beta1, beta2) -> pd.DataFrame:
    if tests is not None:
        if law is not None:
            raise ValueError("give law or tests, not both: tests is the law test of the default law")
        if not isinstance(tests, pd.DataFrame):
            raise TypeError(f"tests must be the DataFrame of verdict.law_test(stats), got {type(tests).__name__}")
        lacking = {"step", "name", "p", "rejected"} - set(tests.columns)
        if lacking:
            raise ValueError(f"tests lacks the columns {sorted(lacking)} of verdict.law_test(stats)")
        strangers = set(tests["name"]) - set(stats.names)
        if strangers or not set(tests["step"]) <= set(stats.steps.tolist()):
            raise ValueError("tests must be the law test of this run (its tensors and steps)")
        return tests
    if law is None:
        return verdict.law_test(stats, beta1=beta1, beta2=beta2, alpha=alpha)
    if not callable(law):
        raise TypeError(f"law must be a callable step -> law (with .cdf and .var), got {type(law).__name__}")
    rows = []
    for i, t in enumerate(stats.steps):
        dist = law(int(t))
        for j, name in enumerate(stats.names):
            if name in stats.samples and not stats.no_grad[i, j]:
                x = stats.samples[name][i]
                x = x[np.isfinite(x)]
                if not x.size:
                    continue
                if hasattr(dist, "pmf") and not hasattr(dist, "pdf"):
                    # a discrete law (step 1: the two atoms of sign(g)): the exact test of the share above 0
                    _, p = verdict.sign_test(x, float(dist.sf(0)))
                else:
                    _, p = verdict.ks_test(x, dist)
                rows.append(dict(step=int(t), name=name, p=p, var_ratio=float(stats.var[i, j]) / float(dist.var())))
    frame = pd.DataFrame(rows, columns=["step", "name", "p", "var_ratio"])
    frame["rejected"] = verdict.benjamini_hochberg(frame["p"].to_numpy(), alpha) if len(frame) else []
    return frame


def _optimizer_of(stats: UpdateStats, beta1, beta2) -> tuple[str, tuple]:
    """The simulated optimizer and hyper-parameters whose i.i.d.-normal runs are the null."""
    from .capture import _is_adam_like
    from .simulate import OPTIMIZERS

    meta = stats.metadata
    if meta.get("source") == "adamdist.simulate.run":
        name = meta.get("optimizer")
        if name not in OPTIMIZERS:
            raise ValueError(f"the run's optimizer {name!r} is not one adamdist.simulate knows")
        hyper = {k: meta[k] for k in ("beta1", "beta2", "eps") if meta.get(k) is not None}
        if beta1 is not None:
            hyper["beta1"] = float(beta1)
        if beta2 is not None:
            hyper["beta2"] = float(beta2)
        return name, tuple(sorted(hyper.items()))
    recorded = meta.get("optimizer")
    if recorded is not None:
        short = str(recorded).rsplit(".", 1)[-1].lower()
        if not _is_adam_like(short):
            raise ValueError(f"diagnose explains deviations from Adam's law, and this run's optimizer is "
                             f"{recorded}: record an Adam-family optimizer (Adam, AdamW, fairseq's Adam), or "
                             f"simulate the optimizer with adamdist.simulate.run and diagnose that")
    b1, b2 = verdict._betas(stats, beta1, beta2)
    # the law is eps-free: a real network's eps is far below its gradients' scale
    return "adam", (("beta1", b1), ("beta2", b2), ("eps", 0.0))


def _check_stats(stats):
    if not isinstance(stats, UpdateStats):
        raise TypeError(f"stats must be an UpdateStats (a recording or a simulation), got {type(stats).__name__}")
    if stats.steps.size < 3:
        raise ValueError(f"diagnose needs at least 3 recorded steps (the signatures are trends over steps "
                         f"2..T), this run has {stats.steps.size}")
    if not np.array_equal(stats.steps, np.arange(1, stats.steps.size + 1)):
        raise ValueError("diagnose needs the run's steps 1, 2, 3, ... in order (the law at step t depends on "
                         f"every step before it), got steps {stats.steps[:5].tolist()}...")
    if not stats.samples:
        raise ValueError("stats has no sampled coordinates (samples): record with sample_size > 0")


def diagnose(stats: UpdateStats, *, law=None, grads=None, tests=None, z: float = Z, replicates: int = REPLICATES,
             alpha: float = verdict.ALPHA, beta1=None, beta2=None, seed: int = 0) -> "Diagnosis":
    r"""Name the cause of each tensor's deviation from the law (the module's rule).

    Parameters
    ----------
    stats : UpdateStats
        A recorded (:class:`adamdist.capture.UpdateRecorder`) or simulated
        (:func:`adamdist.simulate.run`) run of an Adam-family optimizer, with
        sampled coordinates and steps ``1..T``, ``T >= 3``. A simulation of
        another optimizer works with ``law`` given.
    law : callable, optional
        ``law(t)`` -> a law with ``cdf`` and ``var`` for step ``t``; default
        the exact law of the run's betas at unit scale (the book's rule).
    grads : UpdateStats, optional
        The run's gradients (``recorder.result("grad")`` with
        ``record_grad=True``; the same sampled coordinates). Without it, a
        run's ``metadata["grad"]`` mean squares are used for the scale causes
        when present.
    tests : DataFrame, optional
        The run's law test when it is already computed
        (``verdict.law_test(stats, beta1=..., beta2=...)`` with this
        ``alpha`` and these betas), so that it is not run twice; not with
        ``law``.
    z : float, > 0
        |z| at which a signature fires (default :data:`Z`).
    replicates : int, >= 8
        Simulated replicates behind each null distribution.
    alpha : float
        False discovery rate of the law test.
    beta1, beta2 : float, optional
        Override the run's betas.
    seed : int
        Seed of the null simulations.

    Returns
    -------
    Diagnosis

    Raises
    ------
    TypeError, ValueError
        For a non-UpdateStats, fewer than 3 steps, steps not ``1..T``, no
        sampled coordinates, a recorded optimizer outside the Adam family, or
        ``grads`` that do not match ``stats``.

    Examples
    --------
    >>> from adamdist import simulate, diagnose
    >>> run = simulate.run("adam", n=1000, steps=10, beta1=0.0, gradients=simulate.Normal(mean=0.3), seed=1,
    ...                    sample_size=1000)
    >>> diagnose(run).to_frame()["cause"].tolist()
    ['nonzero_mean']
    """
    _check_stats(stats)
    if not (isinstance(z, (int, float)) and math.isfinite(z) and z > 0):
        raise ValueError(f"z must be a positive finite number, got {z!r}")
    if not (isinstance(replicates, int) and replicates >= 8):
        raise ValueError(f"replicates must be an int >= 8 (the null's spread is estimated from them), "
                         f"got {replicates!r}")
    if grads is not None:
        if not isinstance(grads, UpdateStats):
            raise TypeError(f"grads must be the run's gradient UpdateStats (recorder.result('grad')), got "
                            f"{type(grads).__name__}")
        if grads.names != stats.names or not np.array_equal(grads.steps, stats.steps):
            raise ValueError("grads must have the same tensors and steps as stats")
    optimizer, hyper = _optimizer_of(stats, beta1, beta2)
    if law is None and optimizer not in ("adam", "fairseq_adam"):
        raise ValueError(f"the run's optimizer is {optimizer!r}; the default law is Adam's: pass law=")
    frame = _law_frame(stats, law, tests, alpha, beta1, beta2)
    last = int(stats.steps[-1])
    holds = _holds_per_tensor(frame, stats.names, last)
    mean_square = stats.metadata.get("grad") if grads is None else None
    steps = stats.steps
    rows, stat_rows = [], []
    for j, name in enumerate(stats.names):
        row, stat = _diagnose_tensor(stats, j, name, holds.get(name, math.nan), last, optimizer, hyper, grads,
                                     mean_square, z, replicates, seed, steps)
        rows.append(row)
        stat_rows.append(stat)
    run_holds = verdict.holds_through(verdict.step_shares(frame)) if len(frame) else 0
    return Diagnosis(pd.DataFrame(rows), pd.DataFrame(stat_rows), run_holds, last, dict(hyper), z)


def _diagnose_tensor(stats, j, name, holds, last, optimizer, hyper, grads, mean_square, z, replicates, seed,
                     steps):
    base = {"name": name, "holds_through": holds, "steps": last}
    sample = stats.samples.get(name)
    stat = {"name": name}

    def result(cause, score, evidence, also=()):
        return dict(base, cause=cause, score=float(score), evidence=evidence, also=", ".join(also)), stat

    total = stats.count[:, j].sum() + stats.nonfinite[:, j].sum()
    if (sample is None or sample.shape[1] == 0) and total == 0 and not stats.no_grad[:, j].all():
        return result("empty", math.nan, "the tensor has no entries")
    if stats.no_grad[:, j].all():
        return result("no_gradient", math.nan, f"no gradient at any of the {last} steps")
    if sample is None:
        raise ValueError(f"stats has no sampled coordinates for tensor {name!r}")
    bad = stats.nonfinite[:, j]
    if bad.any():
        first = int(steps[np.argmax(bad > 0)])
        return result("nonfinite", float(bad.sum()), f"{int(bad.sum())} NaN/Inf updates, the first at step {first}")
    x = np.where(stats.no_grad[:, j][:, None], np.nan, sample)
    live = x[~stats.no_grad[:, j]]
    if np.all(live == 0):
        g_live = None if grads is None else grads.samples.get(name)
        if g_live is not None and np.any(g_live[~grads.no_grad[:, j]] != 0):
            return result("quantised", math.inf, "every sampled update is exactly 0 while the gradients are "
                                                 "not: the step rounds away at the parameters' precision")
        if g_live is not None:
            return result("no_gradient", math.nan, "every sampled gradient and update is exactly 0")
        return result("no_gradient or quantised", math.nan,
                      "every sampled update is exactly 0: a frozen tensor and a step that rounds away look "
                      "the same from the updates alone (record_grad=True tells them apart)")
    k = x.shape[1]
    stat.update(signatures(x, steps))
    null = None
    if k >= _MIN_COORDINATES:
        null = _update_null(optimizer, hyper, tuple(int(s) for s in steps), k, replicates, seed)
        stat.update(signatures(x, steps, reference_log_var=null.log_var))
        for key in null.mean:
            stat[f"{key}_law"] = null.mean[key]
            stat[f"{key}_law_sd"] = null.sd[key]
    fired = _fire(stat, null, z)
    if grads is not None:
        g = grads.samples.get(name)
        if g is not None and g.shape[1] >= _MIN_COORDINATES:
            gx = np.where(grads.no_grad[:, j][:, None], np.nan, g)
            gstat = signatures(gx, steps)
            gnull = _gradient_null(tuple(int(s) for s in steps), g.shape[1], replicates, seed)
            stat.update({f"grad_{k_}": v for k_, v in gstat.items()})
            gfired = {c: (s, "gradient " + e) for c, s, e in
                      ((c, *v) for c, v in _fire(gstat, gnull, z).items()) if c != "quantised"}
            fired = {c: v for c, v in fired.items() if c not in _GRADIENT_SIDE} | gfired
    elif mean_square and name in mean_square and "mean_square" in mean_square[name]:
        ms_fired, ms_stat = _scale_from_mean_square(mean_square[name]["mean_square"], steps)
        stat.update(ms_stat)
        scale = ("growing_scale", "shrinking_scale", "fluctuating_scale")
        fired = {c: v for c, v in fired.items() if c not in scale} | ms_fired
    if not fired:
        if null is None:
            note = f"only {k} sampled coordinates: too few for the signatures"
        else:
            note = "no signature beyond the law's own spread"
        if holds == last:
            return result("consistent", _largest_z(stat, z), note)
        return result("unexplained", _largest_z(stat, z), f"the law fails at step {holds + 1} but {note}")
    primary, also = _primary(fired)
    evidence = "; ".join(fired[c][1] for c in primary)
    if len(primary) > 1:
        evidence += " (the updates alone cannot tell these apart)"
    if also:
        evidence += "; also " + "; ".join(f"{c}: {fired[c][1]}" for c in also)
    return result(" or ".join(primary), fired[primary[0]][0], evidence, also)


def _largest_z(stat, z) -> float:
    zs = [abs((stat[k] - stat[f"{k}_law"]) / stat[f"{k}_law_sd"]) for k in ("mean_sd", "slope", "wobble",
                                                                          "kurtosis", "lag_corr")
          if f"{k}_law" in stat and np.isfinite(stat[k]) and stat[f"{k}_law_sd"] > 0]
    return float(max(zs)) / z if zs else math.nan


class Diagnosis:
    """What :func:`diagnose` found: one row per tensor, and the statistics behind it.

    Attributes
    ----------
    holds_through : int
        The book's rule for the whole run (:func:`adamdist.verdict.holds_through`).
    steps : int
        The last recorded step.
    """

    def __init__(self, frame: pd.DataFrame, statistics: pd.DataFrame, holds_through: int, steps: int,
                 hyper: dict, z: float):
        self._frame = frame
        self._statistics = statistics
        self.holds_through = int(holds_through)
        self.steps = int(steps)
        self.hyper = hyper
        self.z = z

    def to_frame(self) -> pd.DataFrame:
        """One row per tensor: ``name, holds_through, steps, cause, score, evidence, also``.

        ``cause`` is a word of :data:`CAUSES` (or several joined by " or " when
        the updates cannot tell them apart); ``score`` is the evidence's
        strength (for ``consistent`` and ``unexplained``: the largest of any
        signature);
        ``also`` lists fired signatures that the cause explains. ``score`` is in units of the
        signature's firing threshold, so that signatures of different kinds compare: |z| / ``z``
        for the z-tested ones, the measured share or effect over its threshold for the others
        (at least 1 when a cause is named; below 1 for ``consistent``).
        """
        return self._frame.copy()

    def statistics(self) -> pd.DataFrame:
        """One row per tensor: every signature, its law mean and spread (``*_law``, ``*_law_sd``)."""
        return self._statistics.copy()

    def counts(self) -> pd.Series:
        """Number of tensors per cause, largest first."""
        return self._frame["cause"].value_counts()

    def failing(self) -> pd.DataFrame:
        """The rows of :meth:`to_frame` whose tensor's law fails before the last step."""
        frame = self._frame
        return frame[~(frame["holds_through"] >= self.steps)].copy()

    def where_law_fails(self, top: int = 3) -> str:
        """One phrase for a verdict row: the causes named for the tensors whose law fails, most frequent first.

        Examples
        --------
        >>> import pandas as pd
        >>> frame = pd.DataFrame({"name": list("abc"), "holds_through": [20, 3, 5], "steps": 20,
        ...                       "cause": ["consistent", "sparse", "sparse"], "score": 1.0, "evidence": "",
        ...                       "also": ""})
        >>> Diagnosis(frame, pd.DataFrame(), 3, 20, {}, Z).where_law_fails()
        'diagnosed cause where the law fails by m = 20: sparse (2 of 2 tensors)'
        """
        failing = self.failing()
        if failing.empty:
            return f"the law holds through m = {self.steps} for every tensor (diagnose: nothing to explain)"
        counts = failing["cause"].value_counts()
        listed = ", ".join(f"{c} ({k} of {len(failing)} tensors)" if i == 0 else f"{c} ({k})"
                           for i, (c, k) in enumerate(counts.head(top).items()))
        more = f", {len(counts) - top} other causes" if len(counts) > top else ""
        return f"diagnosed cause where the law fails by m = {self.steps}: {listed}{more}"

    def summary(self) -> str:
        """A short text for the whole run."""
        frame = self._frame
        n = len(frame)
        counts = ", ".join(f"{c} {k}" for c, k in self.counts().items())
        text = [f"{n} tensor{'s' if n != 1 else ''}, steps 1..{self.steps}; the law holds through "
                f"m = {self.holds_through} for the run (the book's rule). Causes: {counts}."]
        off = frame[frame["cause"] != "consistent"].sort_values("score", ascending=False, na_position="last")
        for _, row in off.head(3).iterrows():
            text.append(f"{row['name']}: {row['cause']} ({row['evidence']}).")
        return "\n".join(text)

    def __repr__(self):
        return f"Diagnosis(tensors={len(self._frame)}, steps={self.steps}, causes={dict(self.counts())})"
