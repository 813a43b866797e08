"""Facts about the book that the Sphinx extensions, the tools and the tests all need.

Kept in one module so that the repository URL, the notebook pairing and the Colab
install cell are defined once: `_config.yml` and `pyproject.toml` stay the only sources.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the project runs on 3.11, pip installs tomli elsewhere
    import tomli as tomllib

REPO_ROOT = Path(__file__).resolve().parents[1]
COLAB = "https://colab.research.google.com/github"

# The first code cell of every chapter. Outside Colab it does nothing, so the book build
# and local runs use the already-installed package instead of a network install. On Colab it
# installs the release the notebook belongs to (a tag, never a moving branch).
INSTALL_CELL_TEMPLATE = '''\
import sys
if "google.colab" in sys.modules:  # Colab: install this book's package
    %pip install -q "adamdist[book] @ git+{url}@{ref}"'''
INSTALL_CELL_TAG = "remove-cell"
_INSTALL_URL = re.compile(r'"adamdist\[book\] @ git\+(?P<url>[^"@]+?)(?:@(?P<ref>[^"]+))?"')
_GITHUB = re.compile(r"^https://github\.com/(?P<slug>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+?)(?:\.git)?/?$")


def load_config(root: Path = REPO_ROOT) -> dict:
    with open(Path(root) / "_config.yml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def repository_url(root: Path = REPO_ROOT) -> str:
    return str(load_config(root)["repository"]["url"]).rstrip("/")


def load_pyproject(root: Path = REPO_ROOT) -> dict:
    with open(Path(root) / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def package_version(root: Path = REPO_ROOT) -> str:
    return str(load_pyproject(root)["project"]["version"])


def release_ref(root: Path = REPO_ROOT) -> str:
    """The git tag of this version (``v`` + pyproject's version): what Colab opens and installs.

    The site's workflow creates the tag on main when it does not exist yet, so a published
    page's Colab link and its notebook's install cell name the same, fixed code.
    """
    return "v" + package_version(root)


def github_slug(url: str) -> str:
    """``https://github.com/org/repo`` -> ``org/repo``; Colab can only open GitHub URLs."""
    m = _GITHUB.match(url.strip())
    if not m:
        raise ValueError(f"not a https://github.com/<org>/<repo> URL: {url!r}")
    return m["slug"]


def colab_url(notebook: str, url: str, ref: str) -> str:
    """Colab link for a repository-relative notebook path such as ``notebooks/x.ipynb`` at git ``ref``."""
    return f"{COLAB}/{github_slug(url)}/blob/{ref}/{notebook}"


def install_cell_source(url: str, ref: str) -> str:
    return INSTALL_CELL_TEMPLATE.format(url=url, ref=ref)


def install_url(cell_source: str) -> str | None:
    """The git URL that an install cell installs from, or None if it is no install cell."""
    m = _INSTALL_URL.search(cell_source)
    return m["url"] if m and "google.colab" in cell_source else None


def install_ref(cell_source: str) -> str | None:
    """The git ref (tag) that an install cell installs, or None when it names none (a moving branch)."""
    m = _INSTALL_URL.search(cell_source)
    return m["ref"] if m and "google.colab" in cell_source else None


def jupytext_formats(root: Path = REPO_ROOT) -> str:
    return load_pyproject(root)["tool"]["jupytext"]["formats"]


def is_myst_notebook(md_path: Path) -> bool:
    """True for a MyST Markdown notebook (jupytext header), False for a plain page."""
    text = Path(md_path).read_text(encoding="utf-8")
    if not text.startswith("---"):
        return False
    header = text.split("---", 2)[1]
    try:
        meta = yaml.safe_load(header) or {}
    except yaml.YAMLError:
        return False
    rep = (meta.get("jupytext") or {}).get("text_representation") or {}
    return rep.get("format_name") == "myst" and "kernelspec" in meta


def paired_notebook(md_path: Path, root: Path = REPO_ROOT) -> Path | None:
    """The ``.ipynb`` that jupytext pairs with a chapter (it may not exist yet)."""
    from jupytext.formats import long_form_multiple_formats
    from jupytext.paired_paths import InconsistentPrefixDirectory, paired_paths

    md_path = Path(md_path).resolve()
    formats = jupytext_formats(root)
    md_fmt = next(f for f in long_form_multiple_formats(formats) if f["extension"] == ".md")
    try:
        pairs = paired_paths(str(md_path), md_fmt, formats)
    except InconsistentPrefixDirectory:
        return None  # not in the chapter folder, e.g. a sub-folder: not paired
    return next((Path(p) for p, fmt in pairs if fmt["extension"] == ".ipynb"), None)


def chapter_sources(root: Path = REPO_ROOT) -> list[Path]:
    """Every MyST notebook in book/ (plain Markdown pages are not chapters to run)."""
    return sorted(p for p in (Path(root) / "book").glob("*.md") if is_myst_notebook(p))


def toc_files(root: Path = REPO_ROOT) -> list[str]:
    """Every document named in _toc.yml (root, chapters, sections, parts), in order."""
    with open(Path(root) / "_toc.yml", encoding="utf-8") as f:
        toc = yaml.safe_load(f)
    found: list[str] = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                found.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return found


def toc_entry_path(entry: str, root: Path = REPO_ROOT) -> Path | None:
    """The source file behind a toc entry (entries carry no suffix), or None if missing."""
    for suffix in ("", ".md", ".ipynb", ".rst"):
        p = Path(root) / f"{entry}{suffix}"
        if p.is_file():
            return p
    return None
