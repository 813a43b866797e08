"""tools/new_chapter.py and tools/set_repository_url.py, on a scratch copy of the book's config."""

from __future__ import annotations

import os
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
    assert cells[0].source == bookinfo.install_cell_source(bookinfo.repository_url(book), bookinfo.release_ref(book))
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
        assert bookinfo.install_ref(first.source) == bookinfo.release_ref(book)
    assert new in (book / "README.md").read_text()
    assert "# <-- change this one line" in (book / "_config.yml").read_text()


def test_set_repository_url_refuses_a_non_github_url(book):
    with pytest.raises(subprocess.CalledProcessError):
        run("set_repository_url.py", "https://example.org/adamdist", "--root", str(book))
    assert bookinfo.repository_url(book) == bookinfo.repository_url(ROOT)


def test_sync_rewrites_install_cells_to_this_versions_tag(book):
    run("new_chapter.py", "07_demo", "--title", "Demo", "--root", str(book))
    pyproject = book / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(f'version = "{bookinfo.package_version(ROOT)}"',
                                                       'version = "9.8.7"'))
    assert bookinfo.release_ref(book) == "v9.8.7"
    run("set_repository_url.py", "--sync", "--root", str(book))
    for path in (book / "book" / "07_demo.md", book / "notebooks" / "07_demo.ipynb"):
        first = next(c for c in jupytext.read(path).cells if c.cell_type == "code")
        assert bookinfo.install_ref(first.source) == "v9.8.7"
        assert bookinfo.install_url(first.source) == bookinfo.repository_url(ROOT)


def test_install_ref_is_none_for_a_moving_branch():
    cell = 'import sys\nif "google.colab" in sys.modules:\n    %pip install -q "adamdist[book] @ git+https://github.com/o/r"'
    assert bookinfo.install_url(cell) == "https://github.com/o/r"
    assert bookinfo.install_ref(cell) is None


def test_colab_url_is_built_from_the_repository():
    assert (bookinfo.colab_url("notebooks/x.ipynb", "https://github.com/org/repo", "main")
            == "https://colab.research.google.com/github/org/repo/blob/main/notebooks/x.ipynb")


def test_fairseq_check_explains_what_it_needs():
    """tools/compare_with_fairseq.py runs by hand in its own environment; here it must say so and stop cleanly."""
    import importlib.util

    if importlib.util.find_spec("fairseq") is not None:
        pytest.skip("fairseq is installed: run the check itself")
    env = {k: v for k, v in os.environ.items() if k != "ADAMDIST_DATA"}
    script = str(ROOT / "tools" / "compare_with_fairseq.py")
    out = subprocess.run([sys.executable, script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "ADAMDIST_DATA" in out.stderr
    out = subprocess.run([sys.executable, script], env={**env, "ADAMDIST_DATA": "/nonexistent"},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "fairseq is not installed" in out.stderr


def test_gpu_check_parses_and_says_so_without_a_gpu():
    import torch

    script = ROOT / "tools" / "gpu_check.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine: run tools/gpu_check.sh itself")
    run = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "no CUDA device" in run.stderr, run.stdout + run.stderr
