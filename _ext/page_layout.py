"""Layout rules of the book's pages that the theme lacks (see static/page-layout.css).

tests/test_site.py checks the result in a browser: no page scrolls sideways at 390 px and
every chart fits the article's column at 1280 px (the charts' own sizing is
adamdist.plots.fit_to_column).
"""

from __future__ import annotations

from pathlib import Path

from sphinx.application import Sphinx

STATIC = Path(__file__).parent / "static"


def _add_static(app: Sphinx, config) -> None:
    if str(STATIC) not in map(str, config.html_static_path):
        config.html_static_path.append(str(STATIC))


def setup(app: Sphinx):
    app.connect("config-inited", _add_static)
    app.add_css_file("page-layout.css")
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
