r"""Calibration of :func:`adamdist.diagnose` on runs whose cause is known.

Each cause of :data:`adamdist.diagnosis.CAUSES` is made on purpose at several
strengths (:data:`STRENGTHS`), with :func:`adamdist.simulate.run` where a
gradient model can make it and with a real ``torch.optim.Adam`` and
:class:`adamdist.capture.UpdateRecorder` where only a live optimizer can
(updates rounded by the parameters' precision; a frozen tensor):

============== ==================================================== =====================
cause          how it is made                                       strength
============== ==================================================== =====================
consistent     :math:`g \sim \mathcal N(0, 1)` (Theorem 1's setting) --
nonzero_mean   :math:`g \sim \mathcal N(\mu, 1)`                    :math:`\mu`
growing_scale  :math:`\sigma_t = t^{a}`                              :math:`a`
shrinking_scale :math:`\sigma_t = t^{-a}`                            :math:`a`
fluctuating_scale :math:`\sigma_t = e^{s \zeta_t}`, :math:`\zeta_t \sim \mathcal N(0,1)` per step :math:`s`
heavy_tails    Student-t with :math:`\nu` degrees of freedom         :math:`1/\nu`
sparse         :class:`adamdist.simulate.Sparse`                     :math:`p_0`
persistent     :class:`adamdist.simulate.Persistent`                 :math:`\rho`
quantised      float32 parameters at 1.5, ``lr`` = ulp(1.5) / s      :math:`s` (grid of u)
no_gradient    a tensor that never gets a gradient                  --
============== ==================================================== =====================

:func:`calibrate` runs them, :func:`confusion` tabulates true against
diagnosed causes and :func:`detection` gives, per cause and :math:`\beta_1`,
the smallest strength from which the cause is named at every larger strength
and seed.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..diagnosis import diagnose

__all__ = ["STRENGTHS", "STRENGTH_NAMES", "make_run", "calibrate", "confusion", "outcomes", "detection"]

#: Strengths per cause (``None``: the cause has a single form).
STRENGTHS = {
    "consistent": (None,),
    "nonzero_mean": (0.005, 0.01, 0.02, 0.05, 0.1, 0.3),
    "growing_scale": (0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
    "shrinking_scale": (0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
    "fluctuating_scale": (0.02, 0.05, 0.1, 0.25, 0.5),
    "heavy_tails": (1 / 30, 0.1, 0.2, 1 / 3, 0.5, 1.0),
    "sparse": (0.002, 0.005, 0.01, 0.05, 0.2, 0.5),
    "persistent": (0.005, 0.01, 0.02, 0.05, 0.1, 0.3),
    "quantised": (0.001, 0.003, 0.01, 0.03, 0.1, 0.3),
    "no_gradient": (None,),
}
#: What the strength of each cause is.
STRENGTH_NAMES = {
    "nonzero_mean": "gradient mean μ (σ = 1)",
    "growing_scale": "a in σ_t = t^a",
    "shrinking_scale": "a in σ_t = t^(-a)",
    "fluctuating_scale": "s in σ_t = exp(s ζ_t)",
    "heavy_tails": "1/ν (Student-t)",
    "sparse": "share of zero gradients p₀",
    "persistent": "per-coordinate correlation ρ",
    "quantised": "grid of u = ulp(θ)/lr",
}


def _gradients(cause, strength, seed):
    from .. import simulate

    if cause == "consistent":
        return simulate.Normal()
    if cause == "nonzero_mean":
        return simulate.Normal(mean=strength)
    if cause == "growing_scale":
        return simulate.Normal(sigma=lambda t: t ** strength)
    if cause == "shrinking_scale":
        return simulate.Normal(sigma=lambda t: t ** -strength)
    if cause == "fluctuating_scale":
        zeta = np.random.default_rng([seed, 7]).standard_normal(10_000)
        return simulate.Normal(sigma=lambda t: math.exp(strength * zeta[t]))
    if cause == "heavy_tails":
        return simulate.StudentT(1 / strength)
    if cause == "sparse":
        return simulate.Sparse(strength)
    if cause == "persistent":
        return simulate.Persistent(strength)
    raise ValueError(f"cause {cause!r} is not made by a gradient model")


def _recorded(cause, strength, n, steps, beta1, seed):
    """A live torch.optim.Adam run, recorded: float32 parameters at 1.5 (one ulp), or a frozen tensor."""
    import torch

    from ..capture import UpdateRecorder

    generator = torch.Generator().manual_seed(seed)
    theta = torch.nn.Parameter(torch.full((n,), 1.5))
    frozen = torch.nn.Parameter(torch.zeros(n))
    ulp = float(np.spacing(np.float32(1.5)))
    lr = ulp / strength if cause == "quantised" else 1e-3
    optimizer = torch.optim.Adam([theta, frozen], lr=lr, betas=(beta1, 0.999))
    tracked = {"quantised": theta, "no_gradient": frozen}[cause]
    with UpdateRecorder(optimizer, {"u": tracked}, steps=steps, sample_size=n, seed=seed) as recorder:
        for _ in range(steps):
            theta.grad = torch.randn(n, generator=generator)
            optimizer.step()
    return recorder.result()


def make_run(cause: str, strength=None, *, n: int = 2000, steps: int = 30, beta1: float = 0.0, seed: int = 0):
    """One run whose cause is known (the module's table), every coordinate sampled."""
    if cause not in STRENGTHS:
        raise ValueError(f"cause must be one of {sorted(STRENGTHS)}, got {cause!r}")
    if cause in ("quantised", "no_gradient"):
        return _recorded(cause, strength, n, steps, beta1, seed)
    from .. import simulate

    return simulate.run("adam", n=n, steps=steps, beta1=beta1, beta2=0.999, gradients=_gradients(cause, strength,
                                                                                                    seed),
                        seed=seed, sample_size=n, progress=False)


def calibrate(beta1s=(0.0, 0.9), *, n: int = 2000, steps: int = 30, seeds=(0, 1), consistent_runs: int = 20,
              strengths=None, progress: bool = True) -> pd.DataFrame:
    """Diagnose every known-cause run: one row per (beta1, cause, strength, seed).

    Each cause runs at every strength with every seed of ``seeds``; the law's own setting
    (``consistent``) runs with ``consistent_runs`` seeds, so that the table shows how often a run
    that follows the law is flagged.

    Columns: ``beta1, cause, strength, seed, diagnosed, named`` (the true cause
    is the diagnosis, or one of the causes it lists as indistinguishable),
    ``alone`` (it is the only cause named), ``holds_through``, ``score``,
    ``evidence``.
    """
    strengths = STRENGTHS if strengths is None else strengths
    jobs = [(b1, cause, s, seed) for b1 in beta1s for cause, values in strengths.items() for s in values
            for seed in (range(1000, 1000 + consistent_runs) if cause == "consistent" else seeds)]
    rows = []
    for b1, cause, s, seed in tqdm(jobs, desc="calibrate diagnose", disable=not progress):
        run = make_run(cause, s, n=n, steps=steps, beta1=b1, seed=seed)
        row = diagnose(run).to_frame().iloc[0]
        named = row["cause"].split(" or ")
        rows.append(dict(beta1=b1, cause=cause, strength=s, seed=seed, diagnosed=row["cause"],
                         named=cause in named, alone=named == [cause], holds_through=row["holds_through"],
                         score=row["score"], evidence=row["evidence"]))
    return pd.DataFrame(rows)


def confusion(frame: pd.DataFrame) -> pd.DataFrame:
    """True cause (rows) against diagnosed cause (columns): the number of runs, summed over strengths and seeds."""
    table = pd.crosstab(frame["cause"], frame["diagnosed"])
    order = [c for c in STRENGTHS if c in table.index]
    return table.loc[order]


def detection(frame: pd.DataFrame) -> pd.DataFrame:
    """Per cause and beta1: the smallest strength from which the cause is named at every larger strength and seed.

    ``detected_from`` is NaN when even the strongest version is missed; ``strongest_diagnosis`` is what the
    strongest version was called.
    """
    rows = []
    for (b1, cause), group in frame.groupby(["beta1", "cause"], sort=False):
        if group["strength"].isna().all():
            rows.append(dict(beta1=b1, cause=cause, detected_from=math.nan, named_share=group["named"].mean(),
                             strongest_diagnosis=group["diagnosed"].iloc[-1]))
            continue
        by_strength = group.groupby("strength")["named"].all().sort_index()
        ok = by_strength.to_numpy()
        # the smallest strength such that it and all larger ones are named in every seed
        tail = np.flatnonzero(~ok)
        first = 0 if tail.size == 0 else tail[-1] + 1
        detected = by_strength.index[first] if first < ok.size else math.nan
        strongest = group[group["strength"] == by_strength.index[-1]]["diagnosed"].iloc[0]
        rows.append(dict(beta1=b1, cause=cause, detected_from=detected, named_share=group["named"].mean(),
                         strongest_diagnosis=strongest))
    return pd.DataFrame(rows)


def outcomes(frame: pd.DataFrame) -> pd.DataFrame:
    """Per true cause and beta1: runs, how many were named as it, called ``consistent``, or called something else.

    ``otherwise`` lists the other diagnoses with their counts: the narrow form of :func:`confusion`.
    """
    rows = []
    for (cause, b1), group in frame.groupby(["cause", "beta1"], sort=False):
        other = group[~group["named"] & (group["diagnosed"] != "consistent")]["diagnosed"].value_counts()
        rows.append({"cause": cause, "β₁": b1, "runs": len(group), "named": int(group["named"].sum()),
                     "called consistent": int(((group["diagnosed"] == "consistent") & ~group["named"]).sum()),
                     "otherwise": ", ".join(f"{c} ({k})" for c, k in other.items())})
    return pd.DataFrame(rows)
