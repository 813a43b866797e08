"""adamdist.plots: the book's altair renderer and the generic chart builders."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

alt = pytest.importorskip("altair")
plots = pytest.importorskip("adamdist.plots")


@pytest.fixture
def renderer():
    previous = alt.renderers.active
    plots.use_book_renderer()
    yield
    alt.renderers.enable(previous)


def test_renderer_emits_a_div_and_an_inline_script_for_the_global_vega_embed(renderer):
    chart = alt.Chart(pd.DataFrame({"x": range(6000), "y": range(6000)})).mark_point().encode(x="x", y="y")
    bundle = chart._repr_mimebundle_()
    bundle = bundle[0] if isinstance(bundle, tuple) else bundle
    html = bundle["text/html"]
    assert f'class="{plots.CHART_CLASS}"' in html
    assert "window.vegaEmbed" in html
    # no script tag with a src: on the site nothing may be fetched; the CDN is only a fallback in JS
    assert not re.search(r"<script[^>]*\bsrc=", html)
    spec = json.loads(re.search(r"\}\)\((\{.*\}), \{\"mode\"", html, re.S).group(1))
    assert len(spec["datasets"][next(iter(spec["datasets"]))]) == 6000  # no MaxRowsError


def test_script_json_cannot_close_the_script_tag():
    assert "</script>" not in plots._script_json({"title": "</script><b>"})


def _values(spec):
    (values,) = spec["datasets"].values()
    return pd.DataFrame(values)


def test_binned_normalises_by_all_draws_on_shared_edges():
    rng = np.random.default_rng(1)
    draws = rng.normal(size=4000)
    bins = plots.binned(draws, bins=np.linspace(-2, 2, 21))
    mass = float(np.sum((bins.right - bins.left) * bins.density))
    # normalised by all draws: the mass in [-2, 2] is P(|Z| < 2), not 1
    assert mass == pytest.approx(np.mean(np.abs(draws) < 2), abs=1e-12)
    frame = pd.DataFrame({"value": np.r_[np.zeros(10), np.ones(9), np.nan], "step": [1] * 10 + [2] * 10})
    grouped = plots.binned(frame, bins=4, group="step")
    assert set(grouped.step) == {1, 2}
    edges = grouped.groupby("step").left.apply(list)
    assert edges[1] == edges[2]  # the groups share their edges
    # NaN is no draw; +-inf is a draw outside every bin
    assert float(((grouped.right - grouped.left) * grouped.density)[grouped.step == 2].sum()) == pytest.approx(1.0)
    with_inf = plots.binned([0.0, 0.5, np.inf, -np.inf], bins=[0.0, 1.0])
    assert with_inf.density.tolist() == [0.5]
    with pytest.raises(ValueError, match="no column 'u'"):
        plots.binned(frame, value="u")
    with pytest.raises(ValueError, match="no finite value"):
        plots.binned([np.nan, np.inf], bins=10)


def test_histograms_single_view_draws_bars_and_the_law_with_a_legend():
    grid = np.linspace(-4, 4, 50)
    law = pd.DataFrame({"x": grid, "density": np.exp(-grid**2 / 2) / np.sqrt(2 * np.pi)})
    bins = plots.binned(np.random.default_rng(0).normal(size=500), bins=20)
    spec = plots.histograms(bins, law, x_title="update (1)", sample_label="simulated", law_label="eq. (6)",
                            title="m = 2").to_dict()
    assert "facet" not in spec and spec["title"] == "m = 2"
    bars, curve = spec["layer"]
    assert bars["mark"]["type"] == "bar" and curve["mark"]["type"] == "line" and curve["mark"]["clip"]
    assert bars["encoding"]["x"]["title"] == "update (1)"
    assert bars["encoding"]["y"]["title"] == "probability density"
    assert bars["encoding"]["color"]["scale"]["domain"] == ["simulated", "eq. (6)"]
    values = _values(spec)
    assert set(values.kind) == {"bars", "law"} and len(values[values.kind == "bars"]) == 20
    bare = plots.histograms(bins, x_title="u (1)").to_dict()
    assert bare["layer"][0]["encoding"]["color"]["scale"]["domain"] == ["measured"]


def test_histograms_facets_wrap_or_grid_and_drop_overflow_rows():
    hist = pd.DataFrame({"step": [1, 1, 1, 2, 2, 3], "case": "iid", "left": [-np.inf, 0, 1, 0, 1, 0],
                         "right": [0, 1, 2, 1, 2, 1], "density": [0.1, 0.5, 0.4, 0.2, 0.8, 1.0]})
    law = pd.DataFrame({"step": 2, "case": "iid", "x": [0.0, 0.5], "density": [0.3, 0.4]})
    wrapped = plots.histograms(hist, law, facet="step", facet_title="step m", columns=2, x_title="u (1)",
                               x_domain=[-1, 3]).to_dict()
    assert wrapped["facet"]["field"] == "step" and wrapped["columns"] == 2
    assert wrapped["facet"]["title"] == "step m" and wrapped["resolve"]["scale"]["y"] == "independent"
    assert wrapped["spec"]["layer"][0]["encoding"]["x"]["scale"]["domain"] == [-1, 3]
    values = _values(wrapped)
    assert np.isfinite(values.loc[values.kind == "bars", "left"]).all()  # under/overflow rows dropped
    grid = plots.histograms(hist, law, facet="step", row="case", x_title="u (1)", independent_y=False).to_dict()
    assert grid["facet"]["column"]["field"] == "step" and grid["facet"]["row"]["field"] == "case"
    assert "resolve" not in grid
    with pytest.raises(ValueError, match="row needs facet"):
        plots.histograms(hist, row="case", x_title="u (1)")
    with pytest.raises(ValueError, match=r"hist lacks column\(s\) \['seed'\]"):
        plots.histograms(hist, facet="step", color="seed", x_title="u (1)")
    with pytest.raises(ValueError, match="law lacks"):
        plots.histograms(hist, law.drop(columns="x"), facet="step", x_title="u (1)")


def test_histograms_overlay_colours_and_mark_located_modes():
    hist = pd.DataFrame({"step": [1, 1, 2, 2], "seed": [0, 1, 0, 1], "left": 0.0, "right": 1.0,
                         "density": [1.0, 0.9, 1.1, 1.0]})
    law = pd.DataFrame({"step": [1, 2], "x": [0.5, 0.5], "density": [1.0, 1.0]})
    spec = plots.histograms(hist, law, facet="step", color="seed", x_title="u (1)").to_dict()
    bars, curve = spec["spec"]["layer"]
    assert bars["encoding"]["color"]["title"] == "seed" and curve["mark"]["color"] == "black"
    assert set(_values(spec).query("kind == 'bars'").series) == {"0", "1"}
    modes = pd.DataFrame({"step": [1, 2, 2], "location": [0.2, 0.3, 0.7]})
    marked = plots.histograms(hist, facet="step", modes=modes, columns=2, x_title="u (1)").to_dict()
    assert marked["facet"]["sort"] == ["step 1: 1 modes", "step 2: 2 modes"]
    rule = marked["spec"]["layer"][-1]
    assert rule["mark"]["type"] == "rule" and rule["encoding"]["x"]["field"] == "location"
    assert len(_values(marked).query("kind == 'mode'")) == 3
    with pytest.raises(ValueError, match="modes need a facet"):
        plots.histograms(hist, modes=modes, x_title="u (1)")


def test_line_chart_labels_axes_and_scales():
    frame = pd.DataFrame({"t": [1, 2, 3] * 2, "var": [1.0, 1.2, 1.3, 1.0, 1.1, 1.15], "beta": [0.9] * 3 + [0.99] * 3})
    spec = plots.line_chart(frame, "t", "var", "beta", x_title="step t (1)", y_title="variance (1)",
                            log_x=True).to_dict()
    assert spec["encoding"]["x"]["title"] == "step t (1)"
    assert spec["encoding"]["x"]["scale"]["type"] == "log"
    assert spec["encoding"]["y"]["title"] == "variance (1)"
    assert spec["encoding"]["color"]["type"] == "ordinal"


def test_rows_with_refuses_a_series_the_data_does_not_have():
    import pandas as pd
    import pytest

    from adamdist import plots

    frame = pd.DataFrame({"m": [1.25, 1.5, 1.5, 2.0], "y": [0, 1, 2, 3]})
    assert plots.rows_with(frame, "m", [1.5, 2.0])["y"].tolist() == [1, 2, 3]
    # chapter 2 once asked for m = 1.4 on a quarter-step grid: its curve was silently absent
    with pytest.raises(ValueError, match=r"no rows for \[1.4\]"):
        plots.rows_with(frame, "m", [1.4, 2.0])
    with pytest.raises(ValueError, match="no column"):
        plots.rows_with(frame, "step", [1])
    with pytest.raises(ValueError, match="empty"):
        plots.rows_with(frame, "m", [])


def test_all_names_every_public_builder():
    import inspect

    from adamdist import plots

    public = {n for n, f in inspect.getmembers(plots, inspect.isfunction)
              if f.__module__ == plots.__name__ and not n.startswith("_")}
    assert public == set(plots.__all__)


def test_fit_to_column_wraps_narrows_and_moves_legends():
    import pandas as pd
    import pytest

    from adamdist import plots

    frame = pd.DataFrame({"x": [1, 2, 1, 2], "y": [1, 2, 2, 1], "c": ["a", "a", "b", "b"]})
    line = plots.line_chart(frame, "x", "y", "c", x_title="x (1)", y_title="y (1)", width=420)
    # side by side they need ~960 px: the fitted spec stacks them, each within the column
    pair = plots.fit_to_column((line | line).to_dict())
    assert "hconcat" not in pair and len(pair["vconcat"]) == 2
    assert all(plots._drawn_width(v) <= plots.COLUMN_PX for v in pair["vconcat"])
    assert pair["config"]["legend"]["orient"] == "bottom" and pair["config"]["background"] == "white"
    # two small ones still fit side by side
    small = plots.line_chart(frame, "x", "y", x_title="x (1)", y_title="y (1)", width=250)
    assert "hconcat" in plots.fit_to_column((small | small).to_dict())
    wide = plots.fit_to_column(line.properties(width=1000).to_dict())
    assert plots._drawn_width(wide) <= plots.COLUMN_PX
    # a wrapped facet grid keeps as many columns as fit; a one-row facet becomes a wrapped one
    hist = pd.DataFrame({"step": [1, 2, 3, 4, 5, 6], "left": 0.0, "right": 1.0, "density": 1.0})
    grid = plots.fit_to_column(plots.histograms(hist, facet="step", x_title="u (1)", columns=6, width=120).to_dict())
    assert 1 <= grid["columns"] < 6 and plots._drawn_width(grid) <= plots.COLUMN_PX
    row = alt.Chart(hist).mark_bar().encode(x="left:Q", y="density:Q").properties(width=130).facet(
        column="step:O")
    row = plots.fit_to_column(row.to_dict())
    assert row["facet"]["field"] == "step" and plots._drawn_width(row) <= plots.COLUMN_PX
    # a long title is broken into lines instead of widening the chart
    titled = plots.fit_to_column(line.properties(title="word " * 60).to_dict())
    assert isinstance(titled["title"], list) and len(titled["title"]) > 1
    with pytest.raises(TypeError):
        plots.fit_to_column("not a spec")
    with pytest.raises(ValueError, match="column_px"):
        plots.fit_to_column({}, column_px=10)


def test_heat_map_draws_one_cell_per_pair_and_refuses_duplicates():
    import pandas as pd
    import pytest

    from adamdist import plots

    frame = pd.DataFrame({"step": [1, 2, 1, 2], "arch": ["b", "b", "a", "a"], "share": [1.0, 0.5, 0.2, 0.0]})
    spec = plots.heat_map(frame, "step", "arch", "share", x_title="step m", y_title="network",
                          value_title="share").to_dict()
    assert spec["mark"]["type"] == "rect" and spec["encoding"]["y"]["sort"] == ["b", "a"]
    assert spec["encoding"]["color"]["scale"]["domain"] == [0.0, 1.0] and spec["height"] == 44
    with pytest.raises(ValueError, match="several rows"):
        plots.heat_map(pd.concat([frame, frame]), "step", "arch", "share", x_title="s", y_title="a", value_title="v")
    with pytest.raises(ValueError, match="no column"):
        plots.heat_map(frame, "m", "arch", "share", x_title="s", y_title="a", value_title="v")


def test_share_bars_normalises_each_row_and_marks_the_highlighted_part():
    import pandas as pd
    import pytest

    from adamdist import plots

    frame = pd.DataFrame({"draw": ["a"] * 3 + ["b"] * 3, "i": [1, 2, 3] * 2, "x2": [1.0, 1.0, 2.0, 3.0, 0.5, 0.5]})
    chart = plots.share_bars(frame, "draw", "i", "x2", 3, x_title="share of the sum (fraction)",
                             highlight_label="newest", rest_label="earlier")
    data = chart.data
    assert data.groupby("draw")["share"].sum().round(12).tolist() == [1.0, 1.0]
    assert data.loc[data["i"] == 3, "share"].round(3).tolist() == [0.5, 0.125]
    assert set(data.loc[data["i"] == 3, "kind"]) == {"newest"}
    with pytest.raises(ValueError, match="non-negative"):
        plots.share_bars(frame.assign(x2=-1.0), "draw", "i", "x2", 3, x_title="s", highlight_label="n",
                         rest_label="e")


def test_band_and_ks_charts_draw_their_layers():
    frame = pd.DataFrame({"step": [1, 2, 1, 2], "median": [1.0, 1.1, 0.9, 1.0], "low": 0.8, "high": 1.2,
                          "arch": ["a", "a", "b", "b"]})
    theory = pd.DataFrame({"step": [1, 2], "median": [1.0, 1.0]})
    band = plots.band_chart(frame, "step", "median", "low", "high", "arch", theory, x_title="step m",
                            y_title="Var[u] (1)").to_dict()
    marks = [layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"] for layer in band["layer"]]
    assert marks == ["area", "line", "line"]  # band, median, theory
    ks = pd.DataFrame({"step": [1, 2, 1, 2], "ks": [0.01, 0.02, 0.03, 0.01], "ks_band": 0.036, "run": list("aabb")})
    chart = plots.ks_chart(ks, color="run", x_title="step m").to_dict()
    band_layer = chart["layer"][1]
    assert band_layer["encoding"]["y"]["field"] == "ks_band"
    assert "sup|F_n" in chart["layer"][0]["encoding"]["y"]["title"]


def test_small_multiples_lays_out_rows_of_charts():
    hist = pd.DataFrame({"left": [0, 1, 0], "density": [0.5, 0.5, 0.2]})
    one = plots.line_chart(hist, "left", "density", x_title="x (1)", y_title="y (1)")
    rows = plots.small_multiples([one, one, one], columns=2).to_dict()["vconcat"]
    assert [len(r["hconcat"]) for r in rows] == [2, 1]
    with pytest.raises(ValueError, match="at least one"):
        plots.small_multiples([], columns=2)
    with pytest.raises(ValueError, match="columns"):
        plots.small_multiples([plots.line_chart(hist, "left", "density", x_title="x", y_title="y")], columns=0)


def test_glue_returns_the_value_and_shows_it_without_myst_nb(monkeypatch, capsys):
    import sys

    calls = []
    fake = type(sys)("myst_nb")
    fake.glue = lambda name, value, display=False: calls.append((name, value, display))
    monkeypatch.setitem(sys.modules, "myst_nb", fake)
    assert plots.glue("ratio", 0.5) == 0.5 and calls == [("ratio", 0.5, False)]
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # outside a book build (Colab, plain Jupyter)
    assert plots.glue("ratio", 0.25) == 0.25
    assert "ratio = 0.25" in capsys.readouterr().out
