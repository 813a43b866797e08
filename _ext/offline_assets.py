"""Sphinx extension: the site loads every script from itself, never from the network.

* Vega, Vega-Lite and vega-embed: one bundle made by ``vl_convert`` (a Python dependency
  already) in the versions altair speaks, added to the pages that hold a chart; the
  renderer of ``adamdist.plots`` calls the global ``vegaEmbed`` it defines.
* MathJax 3: copied from the PyPI package ``sphinx-mathjax-offline`` (a pinned
  requirement) and served from ``_static`` (Sphinx would load it from a CDN).
* Each script once: Sphinx can list an inline script twice (see _dedupe_scripts).
* A guard: any page that would still load a script or style sheet from the network, or
  that carries ipywidgets state (MyST-NB then adds require.js, which breaks altair's
  loader), is a build warning, which ``-W`` turns into a failed build.

Generated files live in ``.book_assets/`` (git-ignored); nothing vendored is committed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)

MATHJAX_VERSION = "3.2.2"
# The SVG output needs no font files; the folders are what its menu loads on demand
# (accessibility, speech, TeX extensions for \require).
MATHJAX_ENTRY = "tex-svg-full.js"
MATHJAX_PARTS = (MATHJAX_ENTRY, "a11y/", "ui/", "sre/", "input/tex/extensions/")
VEGA_BUNDLE = "vendor/vega/vega-bundle.js"
MATHJAX_PATH = f"vendor/mathjax/{MATHJAX_ENTRY}"
MATHJAX_DISTRIBUTION = "sphinx-mathjax-offline"
MATHJAX_FOLDER = "sphinx-mathjax-offline/static/mathjax"
# adamdist.plots puts this class on every chart container.
CHART_MARKER = 'class="adamdist-chart"'
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _assets_dir(app: Sphinx) -> Path:
    return Path(app.srcdir) / ".book_assets" / "static"


def _write_if_changed(path: Path, text: str) -> None:
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def prepare_vega(static: Path) -> None:
    import altair as alt
    import vl_convert as vlc

    major_minor = ".".join(alt.VEGALITE_VERSION.split(".")[:2])
    stamp = {"vega-lite": major_minor, "vl-convert": vlc.__version__}
    stamp_file = static / "vendor" / "vega" / "versions.json"
    if stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        return
    from adamdist.plots import vega_bundle

    _write_if_changed(static / VEGA_BUNDLE, vega_bundle())
    _write_if_changed(stamp_file, json.dumps(stamp))


def mathjax_source() -> Path:
    """MathJax's ``es5`` folder as the PyPI package ``sphinx-mathjax-offline`` installs it.

    That package is only a carrier of the files here (it is not loaded as an extension,
    which would set ``mathjax_path`` itself); its version pin lives in requirements.txt.
    """
    from importlib import metadata

    try:
        dist = metadata.distribution(MATHJAX_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise ExtensionError(f"offline_assets: MathJax comes from the PyPI package {MATHJAX_DISTRIBUTION}; "
                             f"install it (pip install -r requirements.txt, or `make book`)") from None
    folder = Path(dist.locate_file(MATHJAX_FOLDER))
    entry = folder / MATHJAX_ENTRY
    if not entry.is_file():
        raise ExtensionError(f"offline_assets: {entry} is missing; reinstall {MATHJAX_DISTRIBUTION}")
    # The bundle names its own version; a package that ships another MathJax fails here,
    # not as subtly different math on the site.
    if f'VERSION="{MATHJAX_VERSION}"' not in entry.read_text(encoding="utf-8", errors="replace"):
        raise ExtensionError(f"offline_assets: {entry} is not MathJax {MATHJAX_VERSION}")
    return folder


def prepare_mathjax(static: Path) -> None:
    dest = static / "vendor" / "mathjax"
    stamp_file = dest / "version.txt"
    if stamp_file.is_file() and stamp_file.read_text().strip() == MATHJAX_VERSION:
        return
    source = mathjax_source()
    with tempfile.TemporaryDirectory(dir=static) as tmp:
        staged = Path(tmp) / "mathjax"
        for part in MATHJAX_PARTS:
            if part.endswith("/"):
                shutil.copytree(source / part, staged / part)
            else:
                staged.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source / part, staged / part)
        (staged / "version.txt").write_text(MATHJAX_VERSION + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staged), dest)


def _configure(app: Sphinx, config) -> None:
    config.mathjax_path = MATHJAX_PATH
    # Sphinx drops (with a warning) static paths that do not exist when the config is
    # validated, which is before builder-inited fills this folder.
    _assets_dir(app).mkdir(parents=True, exist_ok=True)
    config.html_static_path.append(str(_assets_dir(app)))


def _prepare(app: Sphinx) -> None:
    if app.builder.format != "html":
        return
    static = _assets_dir(app)
    prepare_vega(static)
    prepare_mathjax(static)


def _is_remote(url: str) -> bool:
    return url.startswith(("http://", "https://", "//"))


def _page_assets(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    if app.builder.format != "html":
        return
    if CHART_MARKER in context.get("body", ""):
        # A plain (blocking) <script> in <head>, so vegaEmbed exists before the body's
        # inline chart scripts run.
        app.builder.add_js_file(VEGA_BUNDLE, priority=200)


def _dedupe_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    # sphinx-thebe's inline config (`const THEBE_JS_URL = ...`) reaches every page twice, once
    # with filename None and once with '' (Sphinx's own de-duplication compares them as
    # different); the second `const` is a SyntaxError in the browser.
    seen, unique = set(), []
    for script in context.get("script_files", []):
        key = (script.filename or "", tuple(sorted((getattr(script, "attributes", {}) or {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def _guard(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    if app.builder.format != "html":
        return
    for script in context.get("script_files", []):
        src = str(script.filename or "")
        attrs = getattr(script, "attributes", {}) or {}
        if _is_remote(src):
            logger.warning("page %s would load a script from the network: %s", pagename, src,
                           location=pagename, type="offline", subtype="remote")
        if attrs.get("type") == WIDGET_STATE or "require.js" in src:
            logger.warning("page %s carries ipywidgets state (require.js); use plain `tqdm`, "
                           "not `tqdm.auto`/`tqdm.notebook`, and no ipywidgets in chapters",
                           pagename, location=pagename, type="offline", subtype="widgets")
    for sheet in context.get("css_files", []):
        href = str(getattr(sheet, "filename", sheet) or "")
        if _is_remote(href):
            logger.warning("page %s would load a style sheet from the network: %s", pagename,
                           href, location=pagename, type="offline", subtype="remote")
    if WIDGET_STATE in context.get("body", "") or "widget-view+json" in context.get("body", ""):
        logger.warning("page %s embeds an ipywidget; use plain `tqdm` and no ipywidgets",
                       pagename, location=pagename, type="offline", subtype="widgets")


def setup(app: Sphinx):
    app.connect("config-inited", _configure)
    app.connect("builder-inited", _prepare)
    app.connect("html-page-context", _page_assets)
    app.connect("html-page-context", _dedupe_scripts, priority=800)
    # After MathJax and MyST-NB have added their scripts for the page.
    app.connect("html-page-context", _guard, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
