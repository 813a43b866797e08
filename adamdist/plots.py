"""Altair charts for the book, and the renderer that lets them display without a network.

Every chapter calls :func:`use_book_renderer` once, at the top. Chart builders take tidy
frames (one row per observation, one column per variable) and always label their axes,
with units. The builders are grouped by kind of chart (lines, histograms, grids), one builder
per kind, with the options the chapters need.

Needs the ``plots`` extra (``pip install "adamdist[plots]"``).
"""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ._optional import require

alt = require("altair", "plots", __name__)

__all__ = ["use_book_renderer", "fit_to_column", "vega_bundle", "glue", "rows_with", "line_chart", "band_chart", "ks_chart",
           "binned", "histograms", "small_multiples", "heat_map", "share_bars"]

RENDERER = "adamdist_book"
CHART_CLASS = "adamdist-chart"  # _ext/offline_assets.py adds the Vega bundle to pages with it
#: Width in px of the book's main column at a 1280 px window (the sphinx-book-theme article is
#: 688 px there); :func:`fit_to_column` lays every chart out within it.
COLUMN_PX = 680
# Space a view needs beyond its plot width: the y axis's labels and title, and the padding
# (measured on the site's charts); and the gap between concatenated or faceted views.
_AXIS_PX = 62
_PANEL_AXIS_PX = 45  # a facet panel's own y axis (its labels are short, its title is the shared one's size)
_GAP_PX = 20

# On the book's site, vegaEmbed is a global from the site's own bundle (loaded before the
# page body), so nothing is fetched. Elsewhere (Colab, Jupyter) the global is absent and the
# libraries come from the CDN in the versions this altair speaks, through RequireJS when the
# page has it (classic Notebook), since UMD scripts there register as AMD modules, not globals.
_TEMPLATE = """\
<div id="{div_id}" class="{chart_class}"></div>
<script type="text/javascript">
(function (spec, embedOpt) {{
  var el = document.getElementById("{div_id}");
  function show(vegaEmbed) {{
    vegaEmbed(el, spec, embedOpt).catch(function (err) {{
      el.textContent = "Chart failed to render: " + err;
      console.error(err);
    }});
  }}
  if (typeof window.vegaEmbed === "function") {{ show(window.vegaEmbed); return; }}
  var urls = {urls};
  if (typeof define === "function" && define.amd && typeof requirejs === "function") {{
    var noext = urls.map(function (u) {{ return u + "?noext"; }});
    requirejs.config({{paths: {{"vega": noext[0], "vega-lite": noext[1], "vega-embed": noext[2]}}}});
    require(["vega-embed"], show);
    return;
  }}
  (function load(i) {{
    if (i === urls.length) {{ show(window.vegaEmbed); return; }}
    var s = document.createElement("script");
    s.src = urls[i];
    s.onload = function () {{ load(i + 1); }};
    s.onerror = function () {{ el.textContent = "Could not load " + urls[i]; }};
    document.head.appendChild(s);
  }})(0);
}})({spec}, {embed_opt});
</script>"""

# Export buttons only: the editor and source links would send readers (and the spec) off-site.
_EMBED_OPTIONS = {"mode": "vega-lite",
                  "actions": {"export": True, "source": False, "compiled": False, "editor": False}}


def _cdn_urls() -> list[str]:
    base = "https://cdn.jsdelivr.net/npm/"
    return [f"{base}vega@{alt.VEGA_VERSION}", f"{base}vega-lite@{alt.VEGALITE_VERSION}",
            f"{base}vega-embed@{alt.VEGAEMBED_VERSION}"]


def _script_json(obj) -> str:
    # "</" inside a <script> would end it early (a title like "</b>" in the spec).
    return json.dumps(obj).replace("</", "<\\/")


def _drawn_width(view: dict, axis_px: float = _AXIS_PX) -> float:
    """Estimated drawn width in px of a Vega-Lite (sub)spec, legends at the bottom."""
    if "hconcat" in view:
        return sum(_drawn_width(v) for v in view["hconcat"]) + _GAP_PX * (len(view["hconcat"]) - 1)
    if "vconcat" in view:
        return max(_drawn_width(v) for v in view["vconcat"])
    if "concat" in view:
        per_row = view.get("columns") or len(view["concat"])
        return max(_drawn_width(v) for v in view["concat"]) * per_row + _GAP_PX * (per_row - 1)
    if "facet" in view and "spec" in view:
        panel = _drawn_width(view["spec"], _PANEL_AXIS_PX)
        return panel * view.get("columns", 1) + _GAP_PX * (view.get("columns", 1) - 1)
    width = view.get("width")
    return (width if isinstance(width, (int, float)) else 300) + axis_px


def _fit_view(view: dict, column_px: float, datasets: dict) -> dict:
    view = dict(view)
    if "hconcat" in view:
        # Too wide side by side: the views wrap into rows of as many as fit (each fitted first).
        parts = [_fit_view(v, column_px, datasets) for v in view.pop("hconcat")]
        rows, row = [], []
        for part in parts:
            trial = row + [part]
            if row and sum(map(_drawn_width, trial)) + _GAP_PX * (len(trial) - 1) > column_px:
                rows.append(row)
                row = [part]
            else:
                row = trial
        rows.append(row)
        if len(rows) == 1:
            view["hconcat"] = rows[0]
        else:
            view["vconcat"] = [r[0] if len(r) == 1 else {"hconcat": r} for r in rows]
        return _wrap_title(view, column_px)
    if "vconcat" in view:
        view["vconcat"] = [_fit_view(v, column_px, datasets) for v in view["vconcat"]]
        return _wrap_title(view, column_px)
    if "facet" in view and "spec" in view:
        facet = view["facet"]
        if isinstance(facet, dict) and set(facet) == {"column"}:
            # a one-row facet cannot wrap: make it a wrapped facet over the same field
            view["facet"] = facet["column"]
            values = datasets.get(view.get("data", {}).get("name"), [])
            view["columns"] = len({row.get(facet["column"]["field"]) for row in values}) or 1
        if "columns" in view:
            panel = _drawn_width(view["spec"], _PANEL_AXIS_PX)
            fit = max(1, int((column_px + _GAP_PX) // (panel + _GAP_PX)))
            view["columns"] = min(view["columns"], fit)
        elif isinstance(view["facet"], dict) and "column" in view["facet"]:
            # rows and columns: the grid cannot wrap, so its panels narrow to fit
            values = datasets.get(view.get("data", {}).get("name"), [])
            n = len({row.get(view["facet"]["column"]["field"]) for row in values}) or 1
            inner = dict(view["spec"])
            # (the row headers on the left take about an axis's width too, hence the wider allowance)
            if isinstance(inner.get("width"), (int, float)) and n * (_drawn_width(inner) + _GAP_PX) > column_px:
                inner["width"] = max(50, int((column_px + _GAP_PX) / n - _GAP_PX - _AXIS_PX))
            view["spec"] = inner
            return _wrap_title(view, column_px, n * (_drawn_width(inner, _PANEL_AXIS_PX) + _GAP_PX))
        return _wrap_title(view, column_px)
    width = view.get("width")
    if isinstance(width, (int, float)) and width + _AXIS_PX > column_px:
        view["width"] = int(column_px - _AXIS_PX)
    return _wrap_title(view, column_px)


# Vega-Lite titles do not wrap by themselves; about this many px per character at the default size.
_TITLE_CHAR_PX = 6.5


def _wrap_title(view: dict, column_px: float, drawn_px: float | None = None) -> dict:
    """Break a title string that is wider than the view into lines (Vega-Lite: a list of strings).

    ``drawn_px``: the view's drawn width where :func:`_drawn_width` cannot tell it (a row x
    column facet grid, whose column count is in the data).
    """
    title = view.get("title")
    text = title.get("text") if isinstance(title, dict) else title
    if not isinstance(text, str):
        return view
    drawn_px = _drawn_width(view) if drawn_px is None else drawn_px
    per_line = max(20, int(min(column_px, drawn_px) / _TITLE_CHAR_PX))
    if len(text) <= per_line:
        return view
    lines = textwrap.wrap(text, per_line)
    view["title"] = {**title, "text": lines} if isinstance(title, dict) else lines
    return view


def fit_to_column(spec: dict, column_px: float = COLUMN_PX) -> dict:
    """A Vega-Lite spec laid out to fit a column ``column_px`` wide; the book's renderer applies it.

    * legends go below their chart, one entry per line (a legend on the right adds its width to
      the chart's, and a horizontal one can be wider than the chart);
    * a single view wider than the column is narrowed to it;
    * views side by side (``a | b``, :func:`small_multiples`) that do not fit wrap into rows;
    * a wrapped facet grid gets as many columns as fit, and a one-row facet becomes a wrapped one;
    * the background is white, so that a chart stays legible in the theme's dark mode.

    Widths are estimated from the spec (plot width plus :data:`_AXIS_PX` for the y axis);
    ``tests/test_site.py`` measures the drawn charts in a browser.

    Examples
    --------
    >>> spec = {"hconcat": [{"mark": "line", "width": 420}, {"mark": "line", "width": 420}]}
    >>> [v["width"] for v in fit_to_column(spec)["vconcat"]]
    [420, 420]
    >>> fit_to_column({"mark": "bar", "width": 900})["width"]
    618
    """
    if not isinstance(spec, dict):
        raise TypeError(f"spec must be a Vega-Lite spec (dict), got {type(spec).__name__}")
    if not column_px > 2 * _AXIS_PX:
        raise ValueError(f"column_px must exceed {2 * _AXIS_PX} px, got {column_px!r}")
    out = _fit_view(spec, column_px, spec.get("datasets", {}))
    config = dict(out.get("config", {}))
    legend = dict(config.get("legend", {}))
    # below the chart, one entry per line: a legend is then never wider than its longest label
    legend.setdefault("orient", "bottom")
    legend.setdefault("direction", "vertical")
    legend.setdefault("labelLimit", 240)
    config["legend"] = legend
    config.setdefault("background", "white")
    out["config"] = config
    return out


def vega_bundle() -> str:
    """Vega, Vega-Lite (the version altair speaks) and vega-embed as one classic script defining ``vegaEmbed``.

    From ``vl-convert-python``, offline. The book's site serves it as a file
    (``_ext/offline_assets.py``); :mod:`adamdist.report` inlines it.
    """
    import vl_convert as vlc

    major_minor = ".".join(alt.VEGALITE_VERSION.split(".")[:2])
    # An ES module body with top-level `const`s; wrapped in a function it can be a classic,
    # blocking <script> (defined before the charts' inline scripts run) whose names cannot
    # clash with other scripts on the page.
    return '(function () {\n"use strict";\n' + vlc.javascript_bundle(vl_version=major_minor) + "\n})();\n"


def _render(spec: dict, **metadata) -> dict:
    spec = fit_to_column(spec)
    div_id = f"altair-viz-{uuid.uuid4().hex}"
    html = _TEMPLATE.format(div_id=div_id, chart_class=CHART_CLASS, urls=_script_json(_cdn_urls()),
                            spec=_script_json(spec), embed_opt=_script_json(_EMBED_OPTIONS))
    return {"text/html": html, "text/plain": "<altair chart: displayed as HTML>"}


def use_book_renderer() -> None:
    """Display altair charts the way the book's site can show them offline.

    Call once at the top of a chapter. Charts embed their data in the page, so altair's
    5000-row limit is lifted: keep chart data small (bin histograms, thin curves).
    """
    alt.renderers.register(RENDERER, _render)
    alt.renderers.enable(RENDERER)
    alt.data_transformers.disable_max_rows()


def _title(name: str, title: str | None) -> str:
    return name if title is None else title


def _color_type(series: pd.Series) -> str:
    # Numbers (a step count, a beta) read best on an ordered palette; labels on a categorical one.
    return "O" if pd.api.types.is_numeric_dtype(series) else "N"


# -- values for the text, and series to draw --------------------------------------------------


def glue(name: str, value, display: bool = False):
    """Store ``value`` for ``{glue}`` references in the book's text; return it.

    The book's prose quotes numbers computed on the page through MyST-NB's glue, never typed
    by hand. Outside a book build (Colab, plain Jupyter) MyST-NB may be missing: the value
    is then shown as the cell's output instead, so the reader still sees it.
    """
    try:
        from myst_nb import glue as _glue
    except ImportError:
        from IPython.display import display as _show

        _show(f"{name} = {value!r}")
        return value
    _glue(name, value, display=display)
    return value


def rows_with(frame: pd.DataFrame, column: str, values) -> pd.DataFrame:
    """The rows of ``frame`` whose ``column`` is one of ``values``, for a chart of those series.

    A requested value without a row raises ``ValueError`` naming it and the values the frame
    has, instead of a chart that silently lacks that series (a plain ``isin`` filter drops it).

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"m": [2.0, 2.0, 3.0], "y": [1, 2, 3]})
    >>> rows_with(frame, "m", [3.0])["y"].tolist()
    [3]
    >>> rows_with(frame, "m", [1.4])
    Traceback (most recent call last):
    ...
    ValueError: rows_with: column 'm' has no rows for [1.4]; it holds [2.0, 3.0]
    """
    if column not in frame.columns:
        raise ValueError(f"rows_with: frame has no column {column!r}; columns are {list(frame.columns)}")
    values = list(values)
    if not values:
        raise ValueError("rows_with: values is empty: name at least one series to draw")
    present = set(frame[column].tolist())
    missing = [v for v in values if v not in present]
    if missing:
        raise ValueError(f"rows_with: column {column!r} has no rows for {missing}; it holds "
                         f"{sorted(present)[:20]}{' ...' if len(present) > 20 else ''}")
    return frame[frame[column].isin(values)]


# -- lines ------------------------------------------------------------------------------------


def line_chart(
    frame: pd.DataFrame,
    x: str,
    y: str,
    color: str | None = None,
    *,
    x_title: str,
    y_title: str,
    color_title: str | None = None,
    log_x: bool = False,
    log_y: bool = False,
    points: bool = False,
    title: str | None = None,
    width: int = 420,
    height: int = 260,
) -> alt.Chart:
    """Lines of ``y`` against ``x``, one per value of ``color``; titles must carry units."""
    enc = {
        "x": alt.X(f"{x}:Q", title=x_title, scale=alt.Scale(type="log" if log_x else "linear")),
        "y": alt.Y(f"{y}:Q", title=y_title, scale=alt.Scale(type="log" if log_y else "linear")),
        "tooltip": [alt.Tooltip(f"{x}:Q", format=".4g"), alt.Tooltip(f"{y}:Q", format=".4g")],
    }
    if color:
        enc["color"] = alt.Color(f"{color}:{_color_type(frame[color])}", title=_title(color, color_title))
        enc["tooltip"].append(alt.Tooltip(f"{color}:{_color_type(frame[color])}"))
    chart = alt.Chart(frame).mark_line(point=points, clip=True).encode(**enc).properties(width=width, height=height)
    return chart.properties(title=title) if title else chart


def ks_chart(frame: pd.DataFrame, x: str = "step", color: str | None = None, *, x_title: str,
             band: str | None = "ks_band", title: str | None = None, width: int = 420,
             height: int = 260) -> alt.LayerChart:
    """Kolmogorov-Smirnov distance per step, with the 99% band of a sample from the law itself.

    ``frame`` is tidy, e.g. :func:`adamdist.results.compare_with_law`'s output with a
    ``color`` column added; points above the dashed band reject the law at the 1% level.
    """
    base = line_chart(frame, x, "ks", color, x_title=x_title,
                      y_title="KS distance sup|F_n − F| (probability)", points=True,
                      width=width, height=height)
    layers = [base]
    if band is not None:
        band_frame = frame.groupby(x, as_index=False)[band].max()
        layers.append(alt.Chart(band_frame).mark_line(strokeDash=[4, 3], color="gray").encode(
            x=alt.X(f"{x}:Q"), y=alt.Y(f"{band}:Q"),
            tooltip=[alt.Tooltip(f"{band}:Q", format=".3g", title="99% band")]))
    chart = alt.layer(*layers)
    return chart.properties(title=title) if title else chart


def band_chart(frame: pd.DataFrame, x: str, y: str, low: str, high: str, color: str | None = None,
               theory: pd.DataFrame | None = None, *, x_title: str, y_title: str,
               color_title: str | None = None, theory_label: str = "theory", width: int = 360,
               height: int = 240, title: str | None = None) -> alt.LayerChart:
    """Median line with a shaded ``low``-``high`` band per ``color``, and a black theory curve.

    ``theory``: optional frame with columns ``x`` and ``y`` (same names as the data).
    Meant for a statistic over many tensors (e.g. the variance of the update of every
    tracked layer): the line is the median, the band the spread across tensors.
    """
    enc_color = (alt.Color(f"{color}:N", title=_title(color, color_title)) if color else alt.value("steelblue"))
    base = alt.Chart(frame)
    band = base.mark_area(opacity=0.2).encode(
        x=alt.X(f"{x}:Q", title=x_title), y=alt.Y(f"{low}:Q", title=y_title), y2=f"{high}:Q", color=enc_color)
    line = base.mark_line(point=True).encode(
        x=f"{x}:Q", y=f"{y}:Q", color=enc_color,
        tooltip=[alt.Tooltip(f"{x}:Q"), alt.Tooltip(f"{y}:Q", format=".3g")]
        + ([alt.Tooltip(f"{color}:N")] if color else []))
    layers = [band, line]
    if theory is not None:
        layers.append(alt.Chart(theory.assign(series=theory_label)).mark_line(
            color="black", strokeDash=[5, 3]).encode(
            x=f"{x}:Q", y=f"{y}:Q", tooltip=[alt.Tooltip("series:N"), alt.Tooltip(f"{y}:Q", format=".3g")]))
    chart = alt.layer(*layers).properties(width=width, height=height)
    return chart.properties(title=title) if title else chart


# -- histograms -----------------------------------------------------------------------------------


def binned(samples, bins: int | Sequence[float] = 60, *, value: str = "value",
           group: str | None = None) -> pd.DataFrame:
    """Tidy density-normalised bins of raw draws: columns ``left, right, density`` (and ``group``).

    ``samples``: a 1-D array of draws, or a frame with column ``value`` (and ``group``).
    The groups share one set of edges, so their bars are comparable. Each group's densities
    are normalised by all of its draws, not only those inside the edges, so that a histogram
    cut to a window still matches the full density drawn over it. Non-finite draws count as
    outside every bin.

    Examples
    --------
    >>> bins = binned([0.1, 0.2, 0.7, 5.0], bins=[0.0, 0.5, 1.0])
    >>> bins.to_dict("list")
    {'left': [0.0, 0.5], 'right': [0.5, 1.0], 'density': [1.0, 0.5]}
    """
    frame = samples if isinstance(samples, pd.DataFrame) else pd.DataFrame(
        {value: np.asarray(samples, dtype=float).ravel()})
    for column in [value] + ([group] if group else []):
        if column not in frame.columns:
            raise ValueError(f"binned: samples have no column {column!r}; columns are {list(frame.columns)}")
    values = frame[value].to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    if isinstance(bins, (int, np.integer)) and not finite.size:
        raise ValueError("binned: samples have no finite value to place the bins on")
    edges = np.histogram_bin_edges(finite, bins=bins)
    parts = []
    for key, part in (frame.groupby(group, sort=True) if group else [(None, frame)]):
        x = part[value].to_numpy(dtype=float)
        x = x[~np.isnan(x)]
        counts, _ = np.histogram(x[np.isfinite(x)], bins=edges)
        rows = pd.DataFrame({"left": edges[:-1], "right": edges[1:],
                             "density": counts / (max(len(x), 1) * np.diff(edges))})
        if group:
            rows[group] = key
        parts.append(rows)
    return pd.concat(parts, ignore_index=True)


def histograms(hist: pd.DataFrame, law: pd.DataFrame | None = None, *, x_title: str,
               facet: str | None = None, row: str | None = None, color: str | None = None,
               modes: pd.DataFrame | None = None, columns: int = 5,
               y_title: str = "probability density", sample_label: str = "measured",
               law_label: str = "law", facet_title: str | None = None,
               x_domain: Sequence[float] | None = None, independent_y: bool = True,
               width: int | None = None, height: int | None = None,
               title: str | None = None) -> alt.LayerChart | alt.FacetChart:
    """Density histograms with a law drawn over them: one view, or one panel per ``facet`` value.

    The one builder for every histogram-plus-law figure of the book.

    Parameters
    ----------
    hist : DataFrame
        Tidy bins: columns ``left, right, density`` plus the ``facet``/``row``/``color``
        columns in use, as :meth:`adamdist.results.UpdateStats.to_frame` ``("hist")`` or
        :func:`binned` give them. Infinite (under/overflow) rows are dropped; their mass
        still counts in the densities.
    law : DataFrame, optional
        Tidy curve with columns ``x, density`` (and the facet columns; a panel without rows
        shows bars only). Drawn black when ``color`` is given and ``law`` lacks that column,
        otherwise coloured as its own legend entry ``law_label``.
    facet, row : str, optional
        No ``facet``: a single view. ``facet`` alone: panels wrapped into ``columns`` per
        row. ``facet`` and ``row``: a grid of ``row`` x ``facet``.
    color : str, optional
        Column of ``hist`` whose values are overlaid as translucent bars (e.g. seeds);
        without it the bars are the single series ``sample_label``.
    modes : DataFrame, optional
        Rows ``facet, location``: located modes, drawn as dashed red rules, their count in
        each panel's header, so that a reader can check every counted peak against the bars.
    x_domain : pair of float, optional
        Shared x range; bars and curves outside it are clipped to the frame.
    width, height : int, optional
        Size of one panel (default 420 x 260 for a single view, 130 x 110 per panel).

    A requested ``facet``/``row``/``color`` column missing from ``hist``, or ``modes``
    without ``facet``, raise ``ValueError``.
    """
    keys = [c for c in (facet, row, color) if c is not None]
    for name, frame, need in (("hist", hist, keys + ["left", "right", "density"]),
                              ("law", law, [c for c in (facet, row) if c] + ["x", "density"]),
                              ("modes", modes, [facet, "location"])):
        if frame is None:
            continue
        missing = [c for c in need if c is None or c not in frame.columns]
        if missing:
            raise ValueError(f"histograms: {name} lacks column(s) {missing}"
                             + ("; modes need a facet" if name == "modes" and facet is None else ""))
    if row is not None and facet is None:
        raise ValueError("histograms: row needs facet (the column of the grid)")
    if row is not None and modes is not None:
        raise ValueError("histograms: modes are drawn per facet panel; pass no row with them")
    single = facet is None
    width = width if width is not None else (420 if single else 130)
    height = height if height is not None else (260 if single else 110)

    bars = hist[np.isfinite(hist["left"]) & np.isfinite(hist["right"])][keys + ["left", "right", "density"]]
    bars = bars.assign(series=bars[color].astype(str) if color else sample_label, kind="bars")
    parts = [bars]
    curve_colored = law is not None and (color is None or color in law.columns)
    if law is not None:
        law_keys = [c for c in (facet, row) if c] + ([color] if color and color in law.columns else [])
        parts.append(law[law_keys + ["x", "density"]].assign(
            series=law[color].astype(str) if color and color in law.columns else law_label, kind="law"))
    panel = facet
    if modes is not None:
        parts.append(modes[[facet, "location"]].assign(kind="mode"))
        # The header carries the count, so the panels are keyed by a label in the facet's order.
        counts = modes.groupby(facet).size()
        order = sorted(hist[facet].unique())
        labels = {k: f"{facet} {k}: {int(counts.get(k, 0))} modes" for k in order}
        parts = [p.assign(panel=p[facet].map(labels)) for p in parts]
        panel = "panel"
    data = pd.concat(parts, ignore_index=True)

    x_scale = alt.Scale(domain=list(x_domain)) if x_domain is not None else alt.Undefined
    if color:
        domain = alt.Undefined
    else:
        domain = [sample_label] + ([law_label] if law is not None else [])
    series = alt.Color("series:N", title=color, scale=alt.Scale(domain=domain))
    layers = [alt.Chart().transform_filter(alt.datum.kind == "bars").mark_bar(
        opacity=0.45, binSpacing=0, clip=True).encode(
        x=alt.X("left:Q", title=x_title, scale=x_scale), x2="right:Q",
        y=alt.Y("density:Q", title=y_title, stack=None), y2=alt.datum(0), color=series,
        tooltip=[alt.Tooltip("left:Q", format=".3g"), alt.Tooltip("right:Q", format=".3g"),
                 alt.Tooltip("density:Q", format=".3g")])]
    if law is not None:
        line = alt.Chart().transform_filter(alt.datum.kind == "law")
        line = (line.mark_line(strokeWidth=1.5, clip=True) if curve_colored
                else line.mark_line(strokeWidth=1.5, clip=True, color="black"))
        encoding = dict(x=alt.X("x:Q", scale=x_scale), y="density:Q")
        layers.append(line.encode(**encoding, color=series) if curve_colored else line.encode(**encoding))
    if modes is not None:
        layers.append(alt.Chart().transform_filter(alt.datum.kind == "mode").mark_rule(
            color="firebrick", strokeDash=[3, 2], clip=True).encode(
            x=alt.X("location:Q", scale=x_scale),
            tooltip=[alt.Tooltip("location:Q", format=".3g", title="mode at")]))
    chart = alt.layer(*layers, data=data).properties(width=width, height=height)
    if not single:
        if modes is not None:
            field, header_title, sort = f"{panel}:N", facet_title, list(labels.values())
        else:
            field, header_title, sort = f"{facet}:O", facet if facet_title is None else facet_title, alt.Undefined
        if row is None:
            chart = chart.facet(facet=alt.Facet(field, title=header_title, sort=sort), columns=columns)
        else:
            chart = chart.facet(column=alt.Column(field, title=header_title, sort=sort),
                                row=alt.Row(f"{row}:N", title=None))
        if independent_y:
            chart = chart.resolve_scale(y="independent")
    return chart.properties(title=title) if title else chart


# -- grids and layouts ------------------------------------------------------------------------


def small_multiples(charts, columns: int = 3) -> alt.VConcatChart:
    """Lay out a list of charts in rows of ``columns`` (each keeps its own axes and title).

    On the book's site :func:`fit_to_column` wraps the rows further where they are wider than the column.
    """
    charts = list(charts)
    if not charts:
        raise ValueError("small_multiples needs at least one chart")
    if not isinstance(columns, (int, np.integer)) or columns < 1:
        raise ValueError(f"columns must be a positive integer, got {columns!r}")
    rows = [alt.hconcat(*charts[i:i + columns]) for i in range(0, len(charts), columns)]
    return alt.vconcat(*rows)


def heat_map(frame: pd.DataFrame, x: str, y: str, value: str, *, x_title: str, y_title: str | None,
             value_title: str, domain: Sequence[float] = (0.0, 1.0), title: str | None = None,
             width: int = 520, height: int | None = None) -> alt.Chart:
    """One cell per (``x``, ``y``) coloured by ``value`` on a fixed ``domain``, e.g. architecture x step.

    ``x`` is drawn as ordered (steps), ``y`` as categories in the order of first appearance in
    ``frame``. A missing cell stays blank, so a (``x``, ``y``) pair without data is visible as such;
    duplicate pairs raise ``ValueError`` (a cell would hide one of them).
    """
    for column in (x, y, value):
        if column not in frame.columns:
            raise ValueError(f"heat_map: frame has no column {column!r}; columns are {list(frame.columns)}")
    if frame.duplicated([x, y]).any():
        raise ValueError(f"heat_map: several rows share an ({x}, {y}) pair; aggregate them first")
    order = list(dict.fromkeys(frame[y].tolist()))
    rows = len(order)
    chart = alt.Chart(frame).mark_rect().encode(
        x=alt.X(f"{x}:O", title=x_title),
        y=alt.Y(f"{y}:N", title=y_title, sort=order),
        color=alt.Color(f"{value}:Q", title=value_title, scale=alt.Scale(domain=list(domain), scheme="viridis"),
                        legend=alt.Legend(orient="bottom", direction="horizontal", gradientLength=min(width, 300))),
        tooltip=[alt.Tooltip(f"{y}:N"), alt.Tooltip(f"{x}:O"), alt.Tooltip(f"{value}:Q", format=".2f")],
    ).properties(width=width, height=height if height is not None else 22 * rows)
    return chart.properties(title=title) if title else chart


def share_bars(frame: pd.DataFrame, row: str, part: str, value: str, highlight, *, x_title: str,
               highlight_label: str, rest_label: str, title: str | None = None, width: int = 520,
               height: int | None = None) -> alt.Chart:
    """One horizontal bar per ``row``, split into its ``part`` segments of length ``value``, normalised to 1.

    The segments of ``part == highlight`` are coloured apart from the rest: a picture of one
    term's share of a sum (chapter 2: the newest squared gradient's share :math:`K` of
    :math:`\\sum_i X_i^2`, eq. 15). Negative or non-finite values raise ``ValueError``.
    """
    values = frame[value].to_numpy(dtype=float)
    if not np.isfinite(values).all() or (values < 0).any():
        raise ValueError(f"share_bars: {value!r} must be finite and non-negative")
    total = frame.groupby(row, sort=False)[value].transform("sum")
    if (total <= 0).any():
        raise ValueError(f"share_bars: every {row!r} needs a positive total")
    data = frame.assign(share=frame[value] / total,
                        kind=np.where(frame[part] == highlight, highlight_label, rest_label))
    rows = list(dict.fromkeys(frame[row].tolist()))
    chart = alt.Chart(data).mark_bar(stroke="white", strokeWidth=1).encode(
        x=alt.X("sum(share):Q", title=x_title, scale=alt.Scale(domain=[0, 1])),
        y=alt.Y(f"{row}:N", title=None, sort=rows),
        color=alt.Color("kind:N", title=None, scale=alt.Scale(domain=[highlight_label, rest_label],
                                                              range=["darkorange", "lightsteelblue"])),
        order=alt.Order(f"{part}:O", sort="descending"),
        tooltip=[alt.Tooltip(f"{row}:N"), alt.Tooltip(f"{part}:O"), alt.Tooltip("share:Q", format=".3f")],
    ).properties(width=width, height=height if height is not None else 26 * len(rows))
    return chart.properties(title=title) if title else chart
