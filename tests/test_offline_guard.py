"""_ext/offline_assets.py: what makes a page fail the build, and the de-duplication of scripts."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from sphinx.builders.html._assets import _CascadingStyleSheet, _JavaScript

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "_ext"))
import offline_assets  # noqa: E402

APP = SimpleNamespace(builder=SimpleNamespace(format="html"))


@pytest.fixture
def warnings(monkeypatch):
    seen: list[str] = []
    monkeypatch.setattr(offline_assets.logger, "warning", lambda msg, *args, **kw: seen.append(msg % args))
    return seen


def guard(scripts=(), css=(), body=""):
    context = {"script_files": list(scripts), "css_files": list(css), "body": body}
    offline_assets._guard(APP, "page", "page.html", context, None)


def test_local_assets_pass(warnings):
    guard([_JavaScript("_static/vendor/vega/vega-bundle.js"), _JavaScript(None, body="var x = 1")],
          [_CascadingStyleSheet("_static/styles/theme.css")], body='<div class="adamdist-chart"></div>')
    assert warnings == []


@pytest.mark.parametrize("scripts, css, body, reason", [
    ([_JavaScript("https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js")], [], "", "network"),
    ([_JavaScript("//unpkg.com/x.js")], [], "", "network"),
    ([], [_CascadingStyleSheet("https://fonts.googleapis.com/css")], "", "network"),
    ([_JavaScript("https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.4/require.min.js")], [], "", "require.js"),
    ([_JavaScript(None, type="application/vnd.jupyter.widget-state+json", body="{}")], [], "", "ipywidgets"),
    ([], [], '<script type="application/vnd.jupyter.widget-view+json">{}</script>', "ipywidget"),
])
def test_network_assets_and_widgets_are_build_warnings(warnings, scripts, css, body, reason):
    guard(scripts, css, body)
    assert warnings and any(reason in w for w in warnings)


def test_duplicate_inline_scripts_are_dropped():
    # sphinx-thebe's config arrives once with filename None and once with ''
    context = {"script_files": [_JavaScript(None, body="const A = 1"), _JavaScript("", body="const A = 1"),
                                _JavaScript("_static/a.js")]}
    offline_assets._dedupe_scripts(APP, "page", "page.html", context, None)
    assert [(s.filename, s.attributes.get("body")) for s in context["script_files"]] == [
        (None, "const A = 1"), ("_static/a.js", None)]


def test_mathjax_comes_from_the_pypi_package_without_npm(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools-here"))  # no npm, no node
    offline_assets.prepare_mathjax(tmp_path)
    dest = tmp_path / "vendor" / "mathjax"
    assert (dest / offline_assets.MATHJAX_ENTRY).is_file()
    assert f'VERSION="{offline_assets.MATHJAX_VERSION}"' in (dest / offline_assets.MATHJAX_ENTRY).read_text()
    for part in offline_assets.MATHJAX_PARTS:
        assert (dest / part).exists(), part
    assert (dest / "version.txt").read_text().strip() == offline_assets.MATHJAX_VERSION
    assert list(tmp_path.iterdir()) == [tmp_path / "vendor"]  # the staging folder is gone


def test_a_package_with_another_mathjax_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "mathjax"
    fake.mkdir()
    (fake / offline_assets.MATHJAX_ENTRY).write_text('e.VERSION="3.0.0"')

    class _Dist:
        def locate_file(self, name):
            return fake

    monkeypatch.setattr("importlib.metadata.distribution", lambda name: _Dist())
    with pytest.raises(Exception, match="is not MathJax 3.2.2"):
        offline_assets.mathjax_source()
