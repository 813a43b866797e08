"""tools/new_chapter.py and tools/set_repository_url.py, on a scratch copy of the book's config."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "_ext"))
import bookinfo  # noqa: E402


@pytest.fixture
def book(tmp_path: Path) -> Path:
    for name in ("_config.yml", "_toc.yml", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "README.md").write_text(f"clone {bookinfo.repository_url(ROOT)}\n")
    return tmp_path


def run(tool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / tool), *args],
                          capture_output=True, text=True, check=True)


def test_new_chapter_is_paired_and_starts_with_the_install_cell(book):
    run("new_chapter.py", "07_demo", "--title", "Demo", "--toc", "--root", str(book))
    md, ipynb = book / "book" / "07_demo.md", book / "notebooks" / "07_demo.ipynb"
    assert bookinfo.is_myst_notebook(md) and ipynb.is_file()
    assert bookinfo.paired_notebook(md, book) == ipynb
    cells = [c for c in jupytext.read(ipynb).cells if c.cell_type == "code"]
    assert cells[0].source == bookinfo.install_cell_source(bookinfo.repository_url(book))
    assert "use_book_renderer()" in cells[1].source
    toc = bookinfo.toc_files(book)
    assert "book/07_demo" in toc
    # chapters go before the closing pages
    if "book/bibliography" in toc:
        assert toc.index("book/07_demo") < toc.index("book/bibliography")
    with pytest.raises(subprocess.CalledProcessError):
        run("new_chapter.py", "07_demo", "--title", "Again", "--root", str(book))


def test_set_repository_url_rewrites_config_chapters_and_notebooks(book):
    run("new_chapter.py", "07_demo", "--title", "Demo", "--root", str(book))
    new = "https://github.com/someone/adamdist-fork"
    run("set_repository_url.py", new, "--root", str(book))
    assert bookinfo.repository_url(book) == new
    for path in (book / "book" / "07_demo.md", book / "notebooks" / "07_demo.ipynb"):
        first = next(c for c in jupytext.read(path).cells if c.cell_type == "code")
        assert bookinfo.install_url(first.source) == new
    assert new in (book / "README.md").read_text()
    assert "# <-- change this one line" in (book / "_config.yml").read_text()


def test_set_repository_url_refuses_a_non_github_url(book):
    with pytest.raises(subprocess.CalledProcessError):
        run("set_repository_url.py", "https://example.org/adamdist", "--root", str(book))
    assert bookinfo.repository_url(book) == bookinfo.repository_url(ROOT)


def test_colab_url_is_built_from_the_repository():
    assert (bookinfo.colab_url("notebooks/x.ipynb", "https://github.com/org/repo", "main")
            == "https://colab.research.google.com/github/org/repo/blob/main/notebooks/x.ipynb")
