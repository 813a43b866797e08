"""Sphinx extension: an "Open in Colab" link on every page that has a paired notebook.

sphinx-book-theme's own Colab button opens the page's source, a MyST .md file that Colab
cannot read; the Colab notebook of a chapter is its jupytext pair in notebooks/, so the
link is built here from that pair and the repository URL of _config.yml.
"""

from __future__ import annotations

import html
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging

import bookinfo

logger = logging.getLogger(__name__)

BADGE_CLASS = "adamdist-colab-badge"


def _badge(href: str) -> nodes.raw:
    # A styled link, not the usual badge image: that image lives on colab.research.google.com
    # and the site must render without network access.
    markup = (
        f'<p class="{BADGE_CLASS}-wrapper"><a class="{BADGE_CLASS} reference external" '
        f'href="{html.escape(href)}" target="_blank" rel="noopener">'
        '<span class="colab-mark">CO</span> Open this chapter in Colab</a></p>\n'
    )
    return nodes.raw("", markup, format="html")


def add_badge(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    if app.builder.format != "html":
        return
    source = Path(app.env.doc2path(docname))
    if source.suffix != ".md" or not bookinfo.is_myst_notebook(source):
        return
    root = Path(app.srcdir)
    notebook = bookinfo.paired_notebook(source, root)
    if notebook is None or not notebook.is_file():
        logger.warning("%s is a notebook chapter without its paired notebook %s "
                       "(run `jupytext --sync %s`)", source.relative_to(root),
                       notebook and notebook.relative_to(root), source.relative_to(root),
                       location=docname)
        return
    theme = app.config.html_theme_options
    # The release tag, not the branch: the notebook there installs the same release.
    href = bookinfo.colab_url(notebook.relative_to(root).as_posix(),
                              theme["repository_url"], bookinfo.release_ref(root))
    badge = _badge(href)
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is not None and section.children and isinstance(section[0], nodes.title):
        section.insert(1, badge)
    else:
        doctree.insert(0, badge)


def _add_static(app: Sphinx, config) -> None:
    config.html_static_path.append(str(Path(__file__).parent / "static"))


def setup(app: Sphinx):
    app.connect("config-inited", _add_static)
    app.add_css_file("colab-badge.css")
    app.connect("doctree-resolved", add_badge)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
