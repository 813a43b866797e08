"""The paper's claims about its CIFAR-10 and MNIST experiments, tested on the book's runs.

Every run is one of :func:`adamdist.experiments.vision.book_configs`, loaded
from the experiment cache (or trained, with a loud warning, when the cache
does not have it). Every test is the rule of :mod:`adamdist.verdict`
against the exact law of the run's own Adam (:func:`law_frame`); those tests
cost seconds to minutes, so their tables are cached on disk too, keyed by the
run's config and by the source code of the modules that compute them.

:func:`cifar_claims` and :func:`mnist_claims` return verdict rows
(:func:`adamdist.verdict.claim`) for chapters 6 and 7; :func:`book_claims`
collects every chapter's rows for the book's summary page.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import os
import tempfile
import warnings

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from .. import exact, verdict
from ..diagnosis import diagnose
from ..verdict import claim, grade
from . import vision
from .common import cache_dir, config_hash

__all__ = ["load_run", "law_frame", "steps_holding", "bimodal_share", "law_modes", "vision_results",
           "cifar_claims", "mnist_claims", "book_claims", "FIGURE_STEPS"]

#: The paper's figure horizon: its statements about CIFAR-10 are about m = 1..20.
FIGURE_STEPS = 20
#: The run with momentum (β1 = 0.9), tested against both laws.
MOMENTUM = "regnetx_200mf/beta1=0.9"
#: Which runs the measured-scale test is made for (it costs one exact law per tensor and step).
MEASURED = ("regnetx_200mf", "mnist")


def load_run(name, run_profile=None):
    """The run ``name`` of :func:`~adamdist.experiments.vision.book_configs`, from the cache.

    Warns loudly (``RuntimeWarning``) before training a run the cache does not hold.
    """
    configs = vision.book_configs(run_profile)
    if name not in configs:
        raise ValueError(f"unknown run {name!r}; the book's runs are {sorted(configs)}")
    config = configs[name]
    path = cache_dir() / f"{type(config).__name__}-{config_hash(config)}.npz"
    if not path.exists():
        warnings.warn(f"the experiment cache {cache_dir()} has no result for the run {name!r}: TRAINING IT NOW "
                      "(minutes on a CPU)", RuntimeWarning, stacklevel=2)
    return vision.run(config)


def _code_hash() -> str:
    sources = "".join(inspect.getsource(m) for m in (verdict, exact, _law_frame_compute))
    return hashlib.sha256(sources.encode()).hexdigest()[:12]


def _law_frame_compute(stats, scale, drop_zeros, beta1, workers):
    return verdict.law_test(stats, scale, beta1=beta1, drop_zeros=drop_zeros, workers=workers)


def law_frame(name, scale="unit", drop_zeros=False, beta1=None, last=None, run_profile=None,
              workers=2) -> pd.DataFrame:
    """:func:`adamdist.verdict.law_test` of the run ``name``, cached on disk.

    Parameters
    ----------
    name : str
        A run of :func:`~adamdist.experiments.vision.book_configs`.
    scale, drop_zeros, beta1 : optional
        As in :func:`adamdist.verdict.law_test` (``beta1`` overrides the run's, to test a run
        against another optimizer's law).
    last : int, optional
        Test only steps ``1..last``.
    run_profile : str, optional
        ``"quick"`` or ``"paper"``; default :func:`~adamdist.experiments.common.profile`.
    workers : int
        Processes for the measured-scale laws.

    Returns
    -------
    DataFrame
        The law test's rows. The cache file (CSV in ``<cache>/law_tests``) is named by a
        hash of the run's config, these options and the source of :mod:`adamdist.verdict`
        and :mod:`adamdist.exact`, so a change to the rule or to the laws recomputes. It is
        written atomically; an unreadable one is reported and recomputed.
    """
    if scale not in ("unit", "measured"):
        raise ValueError(f"scale must be 'unit' or 'measured', got {scale!r}")
    if last is not None and (not isinstance(last, (int, np.integer)) or last < 1):
        raise ValueError(f"last must be a positive integer (a step), got {last!r}")
    configs = vision.book_configs(run_profile)
    if name not in configs:
        raise ValueError(f"unknown run {name!r}; the book's runs are {sorted(configs)}")
    options = f"{config_hash(configs[name])}|{scale}|{drop_zeros}|{beta1}|{last}|{_code_hash()}"
    key = hashlib.sha256(options.encode()).hexdigest()[:16]
    folder = cache_dir() / "law_tests"
    path = folder / f"{key}.csv"
    if path.exists():
        try:
            frame = pd.read_csv(path)
            if list(frame.columns) != list(_COLUMNS) or frame.empty:
                raise ValueError("unexpected columns or no rows")
            return frame
        except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            warnings.warn(f"ignoring an unreadable law-test cache file {path} ({exc}); recomputing",
                          RuntimeWarning, stacklevel=2)
    stats = load_run(name, run_profile)
    if last is not None:
        stats = stats.select(steps=[int(m) for m in stats.steps if m <= last])
    frame = _law_frame_compute(stats, scale, drop_zeros, beta1, workers)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            frame.to_csv(fh, index=False)
        os.replace(tmp, path)
    except OSError as exc:
        warnings.warn(f"could not cache the law test in {folder} ({exc}); returning it uncached",
                      RuntimeWarning, stacklevel=2)
    return frame


#: Columns of a law test (:func:`adamdist.verdict.law_test`).
_COLUMNS = ("step", "name", "n_sample", "ks", "p", "rejected", "var_measured", "var_predicted", "var_ratio",
            "zero_share", "table_error")


def steps_holding(shares, last=None) -> float:
    """Share of the steps ``1..last`` at which the law holds (not rejected for at least half the tensors).

    Parameters
    ----------
    shares : DataFrame
        :func:`adamdist.verdict.step_shares` of a law test (``step``, ``share_not_rejected``).
    last : int, optional
        Count only steps up to ``last`` (all by default).

    Examples
    --------
    >>> import pandas as pd
    >>> shares = pd.DataFrame({"step": [1, 2, 3, 4], "share_not_rejected": [1.0, 0.5, 0.2, 0.9]})
    >>> steps_holding(shares), steps_holding(shares, last=2)
    (0.75, 1.0)
    """
    s = shares if last is None else shares[shares["step"] <= last]
    return float((s["share_not_rejected"] >= verdict.HOLDS_SHARE).mean())


def bimodal_share(stats, last=None) -> pd.DataFrame:
    """Per step: the share of tensors whose sampled non-zero updates have two or more modes
    (:func:`adamdist.verdict.mode_count`)."""
    rows = []
    for i, m in enumerate(stats.steps):
        if last is not None and m > last:
            break
        modes = [verdict.mode_count(stats.samples[n][i]) for n in stats.names if n in stats.samples]
        rows.append({"step": int(m), "bimodal share": float(np.mean(np.asarray(modes) >= 2))})
    return pd.DataFrame(rows)


def law_modes(steps, beta1=0.0, beta2=0.999) -> pd.DataFrame:
    """Per step: modes of the exact law's density (2 at m = 1, the two atoms), by the same rule."""
    rows = []
    for m in steps:
        law = exact.update_distribution(int(m), beta1, beta2)
        modes = 2 if isinstance(law, exact.TwoPointUpdateDistribution) else verdict.mode_count(law=law)
        rows.append({"step": int(m), "law modes": modes})
    return pd.DataFrame(rows)


def _last_majority_bimodal(share):
    over = share.loc[share["bimodal share"] > 0.5, "step"]
    return int(over.max()) if len(over) else 0


def vision_results(run_profile=None, names=None) -> dict:
    """Per run of :func:`~adamdist.experiments.vision.book_configs`: the stats, the unit-scale law test and its
    per-step shares, and (for the runs in :data:`MEASURED`) the measured-scale ones.

    Keys of each entry: ``stats``, ``unit``, ``unit_shares``; ``measured``, ``measured_shares``
    and ``diagnosis`` (:func:`adamdist.diagnose`) for :data:`MEASURED`; ``theorem1_shares`` for :data:`MOMENTUM`; ``nonzero``,
    ``nonzero_shares`` for ``"mnist"`` (the non-zero coordinates only).
    """
    configs = vision.book_configs(run_profile)
    out = {}
    for name in (configs if names is None else names):
        stats = load_run(name, run_profile)
        entry = {"stats": stats, "unit": law_frame(name, "unit", run_profile=run_profile)}
        entry["unit_shares"] = verdict.step_shares(entry["unit"])
        if name in MEASURED:
            entry["measured"] = law_frame(name, "measured", drop_zeros=(name == "mnist"), run_profile=run_profile)
            entry["measured_shares"] = verdict.step_shares(entry["measured"])
            # which of the paper's causes explains where the law fails (the run's gradient mean squares decide
            # the scale causes)
            entry["diagnosis"] = diagnose(stats, tests=entry["unit"])
        if name == MOMENTUM:
            # the same run against Theorem 1's β1 = 0 law, over the figures' steps
            entry["theorem1_shares"] = verdict.step_shares(
                law_frame(name, beta1=0.0, last=FIGURE_STEPS, run_profile=run_profile))
        if name == "mnist":
            entry["nonzero"] = law_frame(name, "unit", drop_zeros=True, run_profile=run_profile)
            entry["nonzero_shares"] = verdict.step_shares(entry["nonzero"])
        out[name] = entry
    return out


def _setting(stats):
    c = stats.metadata["config"]
    return (f"{c.get('arch', 'MNIST CNN')}, batch {c['batch_size']}, {int(stats.steps.max())} steps, seed {c['seed']}, "
            f"β1 = {c['beta1']}, β2 = {c['beta2']}, {len(stats.names)} tensors")


def _batches(results, names) -> str:
    """The batch sizes of the runs ``names``, as the setting column states them (e.g. ``batch 128 (a, b), 32 (c)``)."""
    by_batch = {}
    for name in names:
        by_batch.setdefault(results[name]["stats"].metadata["config"]["batch_size"], []).append(name)
    if len(by_batch) == 1:
        return f"batch {next(iter(by_batch))}"
    return "batch " + ", ".join(f"{b} ({', '.join(n)})" for b, n in sorted(by_batch.items(), reverse=True))


def _steps(stats) -> int:
    return int(stats.steps.max())


def _gradient_trend(stats, first=10):
    """Median over tensors of (mean square gradient over the last ``first`` steps) / (over the first ones)."""
    ratios = [np.mean(np.asarray(g["mean_square"])[-first:]) / np.mean(np.asarray(g["mean_square"])[:first])
              for g in stats.metadata["grad"].values()]
    return float(np.median(ratios))


def cifar_claims(results) -> list:
    """Verdict rows of chapter 6 from :func:`vision_results` (every rule stated in its row)."""
    main = results["regnetx_200mf"]
    n = FIGURE_STEPS
    rows = []
    held = steps_holding(main["unit_shares"], n)
    rows.append(claim(
        "RegNetX-200MF's updates follow the predicted law over the first 20 steps",
        "§5.1, Figure 2",
        f"law holds at {held:.0%} of steps 1-{n}; holds through m = {verdict.holds_through(main['unit_shares'])} "
        f"(rule: supported if ≥ 90% of steps, partly if ≥ 50%); {main['diagnosis'].where_law_fails()}",
        _setting(main["stats"]), grade(held, 0.9, 0.5), "06_cifar10.md#verdicts"))
    held100 = steps_holding(main["unit_shares"])
    mnist = results["mnist"]
    held_mnist = steps_holding(mnist["unit_shares"])
    diff = held100 - held_mnist
    rows.append(claim(
        "Agreement lasts much longer for RegNetX than for MNIST",
        "§5.2",
        f"law holds at {held100:.0%} of {_steps(main['stats'])} steps for RegNetX, {held_mnist:.0%} of "
        f"{_steps(mnist['stats'])} for MNIST "
        f"(rule: supported if RegNetX leads by ≥ 20 points and holds at ≥ 50% of steps; partly if it leads)",
        f"RegNetX-200MF and the MNIST CNN, {_batches(results, ['regnetx_200mf', 'mnist'])}, "
        + (f"{_steps(main['stats'])} steps" if _steps(main["stats"]) == _steps(mnist["stats"]) else
           f"{_steps(main['stats'])} and {_steps(mnist['stats'])} steps") + ", seed 0",
        "supported" if diff >= 0.2 and held100 >= 0.5 else ("partly supported" if diff > 0 else "contradicted"),
        "07_mnist.md#verdicts"))
    ratios = pd.concat([results[a]["unit_shares"].query(f"step <= {n}") for a in
                        ("regnetx_200mf", "mobilenet_v2", "shufflenet_v2")])
    close = float(ratios["var_ratio_median"].between(0.8, 1.25).mean())
    rows.append(claim(
        "Var[u] stays close to 1 (Corollary 1) for RegNetX, MobileNet and ShuffleNet",
        "§5.2, Figure 3 (left)",
        f"median variance ratio within [0.8, 1.25] at {close:.0%} of the {len(ratios)} (network, step) pairs, range "
        f"{ratios['var_ratio_median'].min():.2f}-{ratios['var_ratio_median'].max():.2f} "
        "(rule: supported if ≥ 90%, partly if ≥ 50%)",
        f"{_batches(results, ['regnetx_200mf', 'mobilenet_v2', 'shufflenet_v2'])}, steps 1-{n}", grade(close, 0.9, 0.5), "06_cifar10.md#figure-3-the-variance-of-u-and-of-u"))
    abs_frame = pd.concat([vision.step_summary(vision.comparison(results[a]["stats"].select(
        steps=list(range(2, n + 1))))) for a in ("regnetx_200mf", "mobilenet_v2", "shufflenet_v2")])
    abs_close = float(abs_frame["abs_var_ratio_median"].between(0.8, 1.25).mean())
    rows.append(claim(
        "Var[|u|] grows with m as Corollary 2 predicts",
        "§5.2, Figure 3 (middle)",
        f"median ratio measured/predicted Var[|u|] within [0.8, 1.25] at {abs_close:.0%} of (network, step) pairs, "
        f"m = 2-{n} (rule: supported if ≥ 90%, partly if ≥ 50%)",
        f"{_batches(results, ['regnetx_200mf', 'mobilenet_v2', 'shufflenet_v2'])}, steps 2-{n}",
        grade(abs_close, 0.9, 0.5), "06_cifar10.md#figure-3-the-variance-of-u-and-of-u"))
    seed_held = {s: steps_holding(results[k]["unit_shares"], n) for s, k in
                 ((0, "regnetx_200mf"), (1, "regnetx_200mf/seed1"), (2, "regnetx_200mf/seed2"))}
    spread = max(seed_held.values()) - min(seed_held.values())
    rows.append(claim(
        "The picture does not depend on the initialisation seed",
        "Figure 8",
        "law holds at " + ", ".join(f"{v:.0%} (seed {s})" for s, v in seed_held.items())
        + f" of steps 1-{n} (rule: supported if the spread is ≤ 15 points, partly if ≤ 30)",
        f"RegNetX-200MF, {_batches(results, ['regnetx_200mf', 'regnetx_200mf/seed1', 'regnetx_200mf/seed2'])}, "
        f"steps 1-{n}, seeds 0-2", grade(spread, 0.15, 0.30, higher_is_better=False),
        "06_cifar10.md#figure-8-three-seeds"))
    appendix = {a: steps_holding(results[a]["unit_shares"], n) for a in vision.APPENDIX_ARCHITECTURES}
    agreeing = float(np.mean([v >= 0.5 for v in appendix.values()]))
    rows.append(claim(
        "The other architectures of the appendix agree with the law as well",
        "Appendix, Figures 9-16",
        f"{sum(v >= 0.5 for v in appendix.values())} of {len(appendix)} architectures hold the law at ≥ 50% of "
        f"steps 1-{n} (rule: supported if all do, partly if half do)",
        f"{len(appendix)} architectures, {_batches(results, list(appendix))}, steps 1-{n}",
        grade(agreeing, 1.0, 0.5), "06_cifar10.md#figures-9-to-16-the-appendix-architectures"))
    deviating = {a: float(results[a]["unit_shares"].query(f"step <= {n}")["var_ratio_median"].median())
                 for a, v in appendix.items() if v < 0.9}
    larger = [a for a, r in deviating.items() if r > 1.0]
    rows.append(claim(
        "Where an architecture deviates, its update variance is smaller than predicted (always)",
        "Appendix A",
        (f"deviating (law holds at < 90% of steps): {', '.join(deviating) or 'none'}; median variance ratio > 1 "
         f"for {', '.join(larger) or 'none'} (rule: contradicted if any deviating one is larger)"),
        f"{len(appendix)} architectures, {_batches(results, list(appendix))}, steps 1-{n}",
        "not testable here" if not deviating else ("contradicted" if larger else "supported"),
        "06_cifar10.md#figures-9-to-16-the-appendix-architectures"))
    data_last = _last_majority_bimodal(bimodal_share(main["stats"], n))
    law = law_modes(range(1, n + 1), 0.0, main["stats"].metadata["config"]["beta2"])
    law_last = int(law.loc[law["law modes"] >= 2, "step"].max())
    rows.append(claim(
        "The law is bimodal for m < 3 and unimodal after",
        "Theorem 1, Figure 2",
        f"most tensors bimodal through m = {data_last}; the exact law for these betas through m = {law_last} "
        "(rule: supported if they differ by at most one step)",
        _setting(main["stats"]), "supported" if abs(data_last - law_last) <= 1 else "contradicted",
        "06_cifar10.md#figure-2-the-update-step-by-step"))
    held_m = steps_holding(main["measured_shares"])
    common = verdict.common_step_share(main["unit"])
    rows.append(claim(
        "(Beyond the paper) The deviations are a step-wide gradient scale: fed each tensor's measured scale, "
        "the exact law holds",
        "§6 (time-varying scale)",
        f"law holds at {held_m:.0%} of {_steps(main['stats'])} steps with the measured scale, {held100:.0%} with unit "
        "gradients; "
        f"{common:.0%} of the variation of log Var ratio is common to the step "
        f"(rule: supported if ≥ 90% of steps, partly if ≥ 50%); {main['diagnosis'].where_law_fails()}",
        _setting(main["stats"]), grade(held_m, 0.9, 0.5), "06_cifar10.md#what-the-deviations-are"))
    # the sweep is the profile's (vision.BATCH_SWEEP); its batch-128 point is the main run
    batch_runs = {int(name.removeprefix("regnetx_200mf/batch")): name for name in results
                  if name.startswith("regnetx_200mf/batch")}
    batch_runs[vision.PAPER_BATCH] = "regnetx_200mf"
    batches = sorted(batch_runs)
    by_batch = {b: steps_holding(results[batch_runs[b]]["unit_shares"], n) for b in batches}
    rho = float(spearmanr(batches, [by_batch[b] for b in batches]).statistic)
    rows.append(claim(
        "(This book's earlier page) A smaller batch suits the theory better",
        "not in the paper",
        "law holds at " + ", ".join(f"{v:.0%} (batch {b})" for b, v in by_batch.items())
        + f" of steps 1-{n}; Spearman ρ(batch, share) = {rho:.2f} "
          "(rule: supported if ρ ≤ -0.8, partly if ρ ≤ -0.4)",
        f"RegNetX-200MF, batches {', '.join(map(str, batches))}, steps 1-{n}",
        "not testable here" if math.isnan(rho) else grade(-rho, 0.8, 0.4), "06_cifar10.md#does-the-batch-size-matter"))
    mom = results[MOMENTUM]
    theorem1 = mom["theorem1_shares"]
    held_t1, held_exact = steps_holding(theorem1, n), steps_holding(mom["unit_shares"], n)
    rows.append(claim(
        "The law of Theorem 1 is for Adam without momentum (β1 = 0)",
        "§3 (assumptions)",
        f"with β1 = 0.9 the β1 = 0 law holds at {held_t1:.0%} of steps 1-{n}, the exact law with momentum at "
        f"{held_exact:.0%} (rule: supported if the β1 = 0 law fails at ≥ 90% of steps, partly if ≥ 50%)",
        _setting(mom["stats"]), grade(1.0 - held_t1, 0.9, 0.5), "06_cifar10.md#with-momentum-the-common-default-beta-1-0-9"))
    return rows


def mnist_claims(results) -> list:
    """Verdict rows of chapter 7 from :func:`vision_results` (needs ``"mnist"``)."""
    mn = results["mnist"]
    stats = mn["stats"]
    through = verdict.holds_through(mn["unit_shares"])
    later = steps_holding(mn["unit_shares"].query("step > 10"))
    rows = [claim(
        "The MNIST CNN agrees with the law for m ≤ 10 and deviates after",
        "§5.2",
        f"holds through m = {through}; after m = 10 the law holds at {later:.0%} of steps "
        "(rule: supported if it holds through ≥ 10 and at < 50% of later steps; contradicted if it fails before 10)"
        f"; {mn['diagnosis'].where_law_fails()}",
        _setting(stats),
        "contradicted" if through < 10 else ("supported" if later < 0.5 else "partly supported"),
        "07_mnist.md#verdicts")]
    nz_through = verdict.holds_through(mn["nonzero_shares"])
    zero = float(mn["unit"]["zero_share"].max())
    rows.append(claim(
        "(Beyond the paper) MNIST's early failure is its exact zeros",
        "§5.2",
        f"up to {zero:.0%} of a tensor's sampled coordinates are exactly 0; on the non-zero ones the law holds "
        f"through m = {nz_through} (rule: supported if that is ≥ 10)",
        _setting(stats), "supported" if nz_through >= 10 else "contradicted", "07_mnist.md#exact-zeros"))
    trend = _gradient_trend(stats)
    rows.append(claim(
        "MNIST deviates because the gradient's variance increases",
        "§5.2",
        f"median over tensors of the mean square gradient, steps 91-100 over steps 1-10: {trend:.2f} "
        "(rule: supported if ≥ 1.5, partly if ≥ 1; below 1 the scale shrinks: contradicted); "
        f"{mn['diagnosis'].where_law_fails()}",
        _setting(stats), grade(trend, 1.5, 1.0), "07_mnist.md#is-the-gradient-s-variance-growing"))
    held_m = steps_holding(mn["measured_shares"])
    rows.append(claim(
        "(Beyond the paper) Fed the measured gradient scale, the exact law describes MNIST's non-zero updates",
        "§6 (time-varying scale)",
        f"law holds at {held_m:.0%} of {_steps(stats)} steps (non-zero coordinates; rule: supported if ≥ 90%, "
        "partly if ≥ 50%)",
        _setting(stats), grade(held_m, 0.9, 0.5), "07_mnist.md#the-measured-scale"))
    return rows


def book_claims(run_profile=None) -> pd.DataFrame:
    """Every chapter's verdict rows (chapters 4, 6, 7 and 8), with a ``chapter`` column, from the cached runs."""
    from . import shapes, transformer

    results = vision_results(run_profile)
    parts = [("4 What shapes the update", shapes.book_claims()),
             ("6 CIFAR-10", cifar_claims(results)),
             ("7 MNIST", mnist_claims(results)),
             ("8 Transformer", transformer.book_claims(run_profile))]
    frames = [verdict.claims_table(rows).assign(chapter=chapter) for chapter, rows in parts]
    return pd.concat(frames, ignore_index=True)
