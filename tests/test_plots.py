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


def test_histogram_with_density_bins_samples_into_a_density():
    rng = np.random.default_rng(1)
    draws = rng.normal(size=4000)
    grid = np.linspace(-4, 4, 50)
    density = pd.DataFrame({"x": grid, "density": np.exp(-grid**2 / 2) / np.sqrt(2 * np.pi)})
    chart = plots.histogram_with_density(draws, density, x_title="update (1)", bins=np.linspace(-2, 2, 21))
    spec = chart.to_dict()
    bars = next(v for v in spec["datasets"].values() if "bin_start" in v[0])
    widths = np.array([r["bin_end"] - r["bin_start"] for r in bars])
    mass = float(np.sum(widths * [r["density"] for r in bars]))
    # normalised by all draws: the mass in [-2, 2] is P(|Z| < 2), not 1
    assert mass == pytest.approx(np.mean(np.abs(draws) < 2), abs=1e-12)
    titles = {layer["encoding"]["x"].get("title") for layer in spec["layer"]}
    assert titles == {"update (1)"}


def test_histogram_with_density_accepts_groups_and_binned_frames():
    frame = pd.DataFrame({"value": np.r_[np.zeros(10), np.ones(10)], "step": [1] * 10 + [2] * 10})
    spec = plots.histogram_with_density(frame, group="step", x_title="u (1)", bins=4).to_dict()
    assert spec["encoding"]["color"]["field"] == "step"
    binned = pd.DataFrame({"bin_start": [0.0, 1.0], "bin_end": [1.0, 2.0], "density": [0.5, 0.5]})
    assert plots.histogram_with_density(binned, x_title="u (1)").to_dict()["mark"]["type"] == "bar"


def test_line_chart_labels_axes_and_scales():
    frame = pd.DataFrame({"t": [1, 2, 3] * 2, "var": [1.0, 1.2, 1.3, 1.0, 1.1, 1.15], "beta": [0.9] * 3 + [0.99] * 3})
    spec = plots.line_chart(frame, "t", "var", "beta", x_title="step t (1)", y_title="variance (1)",
                            log_x=True).to_dict()
    assert spec["encoding"]["x"]["title"] == "step t (1)"
    assert spec["encoding"]["x"]["scale"]["type"] == "log"
    assert spec["encoding"]["y"]["title"] == "variance (1)"
    assert spec["encoding"]["color"]["type"] == "ordinal"
