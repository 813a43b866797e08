"""Chapters (book/*.md, MyST notebooks) and their Colab notebooks (notebooks/*.ipynb).

The two files of a chapter are paired by jupytext; they must hold the same cells, the
notebook is committed without outputs, and its first code cell installs adamdist on Colab
from the repository URL in _config.yml.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "_ext"))
import bookinfo  # noqa: E402

CHAPTERS = bookinfo.chapter_sources(ROOT)
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# Widget progress bars and other ipywidgets make MyST-NB put require.js on the page.
WIDGETS = re.compile(r"tqdm\.(auto|notebook|autonotebook)|from tqdm import (auto|notebook|autonotebook)\b"
                     r"|from tqdm\.(auto|notebook|autonotebook) import|\bipywidgets\b")


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _cells(nb) -> list[tuple[str, str, list[str]]]:
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in nb.cells]


def _first_code_cell(nb):
    return next((c for c in nb.cells if c.cell_type == "code"), None)


def test_toc_entries_exist():
    missing = [e for e in bookinfo.toc_files(ROOT) if bookinfo.toc_entry_path(e, ROOT) is None]
    assert not missing, f"_toc.yml names files that do not exist: {missing}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=_name)
def test_chapter_is_in_the_toc(chapter):
    # only_build_toc_files: a chapter missing from the toc is silently left out of the book
    entry = chapter.relative_to(ROOT).with_suffix("").as_posix()
    assert entry in bookinfo.toc_files(ROOT), f"add `- file: {entry}` to _toc.yml"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=_name)
def test_chapter_and_notebook_hold_the_same_cells(chapter):
    notebook = bookinfo.paired_notebook(chapter, ROOT)
    assert notebook is not None and notebook.is_file(), (
        f"{_name(chapter)} has no paired notebook: run `jupytext --sync {_name(chapter)}`")
    assert _cells(jupytext.read(chapter)) == _cells(jupytext.read(notebook)), (
        f"{_name(chapter)} and {_name(notebook)} differ: run `jupytext --sync {_name(chapter)}` "
        "(the newer file wins)")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=_name)
def test_chapter_starts_with_the_colab_install_cell(chapter):
    cell = _first_code_cell(jupytext.read(chapter))
    assert cell is not None, f"{_name(chapter)} has no code cell"
    expected = bookinfo.install_cell_source(bookinfo.repository_url(ROOT), bookinfo.release_ref(ROOT))
    assert cell.source.strip() == expected, (
        f"{_name(chapter)}: the first code cell must be the install cell of tools/new_chapter.py "
        f"(python tools/set_repository_url.py --sync rewrites it)")
    assert bookinfo.INSTALL_CELL_TAG in cell.metadata.get("tags", [])


@pytest.mark.parametrize("chapter", CHAPTERS, ids=_name)
def test_chapter_uses_no_widgets(chapter):
    code = "\n".join(c.source for c in jupytext.read(chapter).cells if c.cell_type == "code")
    found = sorted({m.group(0) for m in WIDGETS.finditer(code)})
    assert not found, f"{_name(chapter)} uses {found}: use plain `from tqdm import tqdm`"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=_name)
def test_chapter_with_charts_enables_the_book_renderer(chapter):
    code = "\n".join(c.source for c in jupytext.read(chapter).cells if c.cell_type == "code")
    if re.search(r"\baltair\b|adamdist\.plots|from adamdist import plots", code):
        assert "use_book_renderer()" in code, (
            f"{_name(chapter)} draws charts: call adamdist.plots.use_book_renderer() at the top")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=_name)
def test_notebook_is_committed_without_outputs(notebook):
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{_name(notebook)}: cells {dirty} carry outputs; clear them "
                       "(jupyter nbconvert --clear-output --inplace, or jupytext --sync from the .md)")
    assert "widgets" not in nb.get("metadata", {}), f"{_name(notebook)} carries ipywidgets state"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=_name)
def test_notebook_installs_from_the_configured_repository(notebook):
    cell = _first_code_cell(jupytext.read(notebook))
    assert cell is not None, f"{_name(notebook)} has no code cell"
    url = bookinfo.install_url(cell.source)
    assert url is not None, f"{_name(notebook)}: the first code cell is not the Colab install cell"
    assert url == bookinfo.repository_url(ROOT), (
        f"{_name(notebook)} installs from {url}, _config.yml says {bookinfo.repository_url(ROOT)}: "
        "run python tools/set_repository_url.py")
    ref = bookinfo.install_ref(cell.source)
    # Colab must install the code the notebook was written for: a release tag, not a branch
    assert ref == bookinfo.release_ref(ROOT), (
        f"{_name(notebook)} installs ref {ref!r}, this version's tag is {bookinfo.release_ref(ROOT)!r}: "
        "run python tools/set_repository_url.py --sync")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=_name)
def test_notebook_belongs_to_a_chapter(notebook):
    chapter = ROOT / "book" / f"{notebook.stem}.md"
    assert chapter in CHAPTERS, f"{_name(notebook)} has no chapter {_name(chapter)} to pair with"
