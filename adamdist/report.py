"""A self-contained HTML report of a saved recording: ``python -m adamdist report RUN.npz -o report.html``.

For one :class:`~adamdist.results.UpdateStats` file (:meth:`UpdateStats.save`), the report
shows what the book shows for its own runs:

* the run (optimizer, betas, steps, tensors);
* the book's verdict rule (:mod:`adamdist.verdict`): every tensor at every step tested
  against the exact law of the run's :math:`(\\beta_1, \\beta_2)` (KS test, Benjamini-Hochberg
  at 1%), the share of tensors not rejected per step with the median variance ratio and its
  bootstrap interval, and "the law holds through m";
* the diagnosis (:func:`adamdist.diagnose`): per tensor, which of the paper's section 6
  causes explains a deviation from the law, with the measured evidence;
* per tensor, histograms at a few steps against that law's density.

The page needs no network: the Vega bundle (from ``vl-convert-python``) is inlined once and
every chart is drawn by it. Needs the ``plots`` extra (altair, vl-convert-python).
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from . import exact, verdict
from .results import UpdateStats, load

__all__ = ["build_report", "main", "DEFAULT_STEPS"]

#: Steps drawn as histograms (those recorded).
DEFAULT_STEPS = (1, 2, 3, 5, 10, 20, 50, 100)


def _law_curves(steps, beta1, beta2, x_domain, points=241) -> pd.DataFrame:
    x = np.linspace(*x_domain, points)
    parts = []
    for t in steps:
        law = exact.update_distribution(int(t), beta1, beta2)
        if isinstance(law, exact.TwoPointUpdateDistribution):
            continue  # point masses: no density to draw
        lo, hi = law.support()
        inside = x[(x > lo) & (x < hi)]
        parts.append(pd.DataFrame({"step": int(t), "x": inside, "density": law.pdf(inside)}))
    return pd.concat(parts, ignore_index=True) if parts else None


def _chart_html(chart, index: int) -> str:
    from .plots import fit_to_column

    spec = fit_to_column(chart.to_dict())
    payload = json.dumps(spec).replace("</", "<\\/")
    return (f'<div id="chart{index}" class="chart"></div>\n<script>vegaEmbed("#chart{index}", {payload}, '
            f'{{"mode": "vega-lite", "actions": {{"export": true, "source": false, "compiled": false, '
            f'"editor": false}}}}).catch(function (e) {{ document.getElementById("chart{index}").textContent = '
            f'"Chart failed: " + e; console.error(e); }});</script>')


def _table(frame: pd.DataFrame) -> str:
    # in its own scrolling box: a wide table must not widen a phone's page
    return ('<div class="wide">' + frame.to_html(index=False, border=0, classes="table",
                                                 float_format=lambda v: f"{v:.4g}", na_rep="—") + "</div>")


def build_report(stats: UpdateStats, *, title: str = "Update distribution report", beta1: float | None = None,
                 beta2: float | None = None, steps=DEFAULT_STEPS, max_tensors: int = 12) -> str:
    r"""The report's HTML (one string, no external resources).

    Parameters
    ----------
    stats : UpdateStats
        A recording with sampled coordinates, steps 1, 2, 3, ... (the verdict needs them).
    beta1, beta2 : float, optional
        The law's betas; default: the run's (recorded param groups or ``metadata["config"]``).
    steps : sequence of int
        Steps drawn as histograms (those that were recorded).
    max_tensors : int
        Histograms for at most this many tensors (the largest first); the verdict covers all.
    """
    from . import plots

    if not isinstance(stats, UpdateStats):
        raise TypeError(f"stats must be an UpdateStats, got {type(stats).__name__}")
    if isinstance(max_tensors, bool) or not isinstance(max_tensors, int) or max_tensors < 1:
        raise ValueError(f"max_tensors must be a positive int, got {max_tensors!r}")
    b1, b2 = verdict._betas(stats, beta1, beta2)
    tests = verdict.law_test(stats, beta1=b1, beta2=b2)
    shares = verdict.step_shares(tests)
    through = verdict.holds_through(shares)
    meta = stats.metadata
    # experiments store entries per tensor; a recorder stores shapes
    numel = dict(meta.get("numel") or {n: int(np.prod(shape)) for n, shape in (meta.get("shapes") or {}).items()})
    sections, index = [], 0

    run_rows = pd.DataFrame({"": ["optimizer", "beta1, beta2", "steps recorded", "tensors", "sampled coordinates"],
                             "value": [str(meta.get("optimizer", "not recorded")), f"{b1:g}, {b2:g}",
                                       f"{stats.steps[0]}-{stats.steps[-1]} ({stats.steps.size})",
                                       str(len(stats.names)),
                                       str(max((v.shape[1] for v in stats.samples.values()), default=0))]})
    sections.append("<h2>The run</h2>" + _table(run_rows))

    holds = (f"the law holds through <b>m = {through}</b>" if through else
             "the law is rejected already at <b>m = 1</b>")
    sections.append(
        "<h2>Verdict</h2>"
        f"<p>Rule (as in the book, <code>adamdist.verdict</code>): at every step, each tensor's sampled updates "
        f"are tested against the exact law of Adam's update for β₁ = {b1:g}, β₂ = {b2:g} and i.i.d. Gaussian "
        f"gradients (Kolmogorov-Smirnov; Benjamini-Hochberg at 1% over all {len(tests)} tests). The law holds "
        f"through m when at least {verdict.HOLDS_SHARE:.0%} of the tensors are not rejected at every step 1..m. "
        f"For this run {holds}.</p>")
    shares_chart = plots.line_chart(shares, "step", "share_not_rejected", x_title="step m (optimizer steps)",
                                    y_title="tensors not rejected (share)", points=True,
                                    title="Share of tensors consistent with the exact law")
    ratio_chart = plots.band_chart(shares.assign(series="median over tensors"), "step", "var_ratio_median",
                                   "var_ratio_low", "var_ratio_high", x_title="step m (optimizer steps)",
                                   y_title="Var[u] measured / predicted (1)",
                                   title="Variance ratio (median, bootstrap 95% interval)")
    for chart in (shares_chart, ratio_chart):
        sections.append(_chart_html(chart, index))
        index += 1
    sections.append("<details><summary>Per step</summary>" + _table(shares) + "</details>")
    sections.append(_diagnosis_section(stats, b1, b2, tests))

    shown_steps = [int(s) for s in steps if int(s) in set(stats.steps.tolist())]
    order = sorted(stats.names, key=lambda n: -int(numel.get(n, 0)))[:max_tensors]
    if shown_steps:
        curves = _law_curves(shown_steps, b1, b2, (-4, 4))
        hist_parts = []
        for name in order:
            hist = stats.select([name], steps=shown_steps).to_frame("hist")
            chart = plots.histograms(hist, curves, facet="step", facet_title="step m", columns=4,
                                     x_title="update u = Δθ/η (1)", x_domain=(-4, 4), law_label="exact law",
                                     width=120, height=90, title=name)
            per_tensor = tests[tests.name == name]
            rejected = per_tensor.loc[per_tensor.rejected, "step"].tolist()
            hist_parts.append(f"<h3>{html.escape(name)}</h3><p>{int(numel.get(name, 0)):,} entries; rejected at "
                              f"{len(rejected)} of {len(per_tensor)} steps"
                              + (f" (first at m = {rejected[0]})" if rejected else "") + ".</p>"
                              + _chart_html(chart, index))
            index += 1
        sections.append("<h2>Histograms against the exact law</h2>" + "".join(hist_parts))
    sections.append("<details><summary>Every test</summary>" + _table(tests) + "</details>")

    style = ("body{font-family:system-ui,sans-serif;max-width:760px;margin:2em auto;padding:0 1em;color:#222}"
             ".table{border-collapse:collapse;font-size:0.85em}.table td,.table th{padding:2px 8px;"
             "border-bottom:1px solid #ddd;text-align:right}.chart{margin:1em 0;max-width:100%;overflow-x:auto}"
             ".wide{max-width:100%;overflow-x:auto}code{overflow-wrap:anywhere}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{html.escape(title)}"
            f"</title><style>{style}</style>\n<script>{plots.vega_bundle()}</script></head><body>"
            f"<h1>{html.escape(title)}</h1>" + "\n".join(sections)
            + "<p><small>Made by adamdist (Zhang &amp; Liu, UAI 2021: the distribution of Adam's update).</small>"
              "</p></body></html>\n")


def _diagnosis_section(stats, beta1, beta2, tests) -> str:
    """Which of the paper's causes explains each tensor's deviation (:func:`adamdist.diagnose`), or why it cannot."""
    from .diagnosis import diagnose

    head = ("<h2>Diagnosis</h2><p>Per tensor, <code>adamdist.diagnose</code>: the signatures of the paper's "
            "section 6 causes in the sampled updates, each against its spread under the law's own assumptions "
            "(see the book's chapter 4 for the rule and its calibration).</p>")
    try:
        diagnosis = diagnose(stats, beta1=beta1, beta2=beta2, tests=tests)
    except ValueError as exc:
        return head + f"<p><b>No diagnosis for this run:</b> {html.escape(str(exc))}</p>"
    frame = diagnosis.to_frame()[["name", "holds_through", "cause", "score", "evidence"]]
    summary = html.escape(diagnosis.summary().splitlines()[0])
    return head + f"<p>{summary}</p>" + _table(frame.sort_values("score", ascending=False, na_position="last"))


def _write_atomically(path: Path, text: str) -> None:
    from .results import _create_temporary

    fd, tmp = _create_temporary(os.path.dirname(os.path.abspath(path)), suffix=".html")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _steps(text: str):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"steps must be integers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"steps must be positive integers, got {text!r}")
    return values


def _beta(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and 0 <= value < 1):
        raise argparse.ArgumentTypeError(f"a beta must be in [0, 1), got {text!r}")
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m adamdist report",
        description="Write a self-contained HTML report (no network needed to view it) of a saved recording "
                    "(UpdateStats.save): the book's verdict rule against the exact law of the run's betas, the "
                    "variance ratio per step, and histograms against the law.")
    parser.add_argument("run", type=Path, help="the recording, an .npz file written by UpdateStats.save")
    parser.add_argument("-o", "--output", type=Path, default=None, help="HTML file to write (default: RUN.html)")
    parser.add_argument("--beta1", type=_beta, default=None, help="the law's beta1 (default: the run's)")
    parser.add_argument("--beta2", type=_beta, default=None, help="the law's beta2 (default: the run's)")
    parser.add_argument("--steps", type=_steps, default=list(DEFAULT_STEPS),
                        help="steps to draw as histograms, e.g. 1,2,5,10 (default: %(default)s, those recorded)")
    parser.add_argument("--max-tensors", type=int, default=12, help="histograms for this many of the largest "
                                                                    "tensors (default: %(default)s)")
    parser.add_argument("--title", default=None, help="the page's title (default: the file's name)")
    args = parser.parse_args(argv)
    output = args.output or args.run.with_suffix(".html")
    try:
        stats = load(args.run)
        text = build_report(stats, title=args.title or f"Update distribution: {args.run.name}", beta1=args.beta1,
                            beta2=args.beta2, steps=args.steps, max_tensors=args.max_tensors)
    except (OSError, ValueError, TypeError) as err:
        print(f"adamdist report: {err}", file=sys.stderr)
        return 2
    _write_atomically(output, text)
    print(f"adamdist report: wrote {output}")
    return 0
