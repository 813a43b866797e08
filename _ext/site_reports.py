"""Sphinx extension: reports that chapters write during the build are served as pages of the site.

A chapter that makes a report (``python -m adamdist report``) writes it into the folder named by
the environment variable ``ADAMDIST_SITE_REPORTS``, which this extension points at the site's
``reports/`` folder before any chapter runs (the kernel inherits it). Such a chapter is executed
on every read (``mystnb: execution_mode: force`` in its front matter): the execution cache
would give back its outputs without running it, and the report with them would be missing.

A chapter whose report is missing from the site is read (and so run) again, and a report that
is still missing when the build ends is an error: the page would link to nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

#: The pages that write reports, and the files each writes into reports/.
REPORTS = {"book/05_own_training_loop": ("mnist_updates.html",)}
FOLDER = "reports"
ENV = "ADAMDIST_SITE_REPORTS"


def _folder(app: Sphinx) -> Path:
    return Path(app.outdir) / FOLDER


def point_chapters_at_the_site(app: Sphinx) -> None:
    if app.builder.format != "html":
        return
    _folder(app).mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = str(_folder(app))


def missing(app: Sphinx, docname: str) -> list[str]:
    return [name for name in REPORTS[docname] if not (_folder(app) / name).is_file()]


def read_again_when_missing(app: Sphinx, env, added, changed, removed) -> list[str]:
    if app.builder.format != "html":
        return []
    return [doc for doc in REPORTS if doc in env.found_docs and doc not in added | changed and missing(app, doc)]


def check_reports_written(app: Sphinx, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    lost = {doc: missing(app, doc) for doc in REPORTS}
    lost = {doc: names for doc, names in lost.items() if names}
    if lost:
        raise ExtensionError(f"reports missing from the site ({_folder(app)}): {lost}; their pages link to them. "
                             f"The page that writes a report must have `mystnb: execution_mode: force`.")


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", point_chapters_at_the_site)
    app.connect("env-get-outdated", read_again_when_missing)
    app.connect("build-finished", check_reports_written)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
