"""Start a chapter: book/NAME.md (MyST notebook) and its paired notebooks/NAME.ipynb.

    python tools/new_chapter.py 03_momentum --title "Momentum" [--toc]

The chapter starts with the cells every chapter needs: the Colab install cell (removed from
the book) and the book's altair renderer. --toc also lists it in _toc.yml, before the errata
and the bibliography.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "_ext"))
import bookinfo  # noqa: E402

NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")
# toc entries that stay at the end of the book
TAIL_ENTRIES = ("book/errata", "book/bibliography")


def chapter_notebook(title: str, url: str, ref: str):
    import nbformat.v4 as nbf

    install = nbf.new_code_cell(bookinfo.install_cell_source(url, ref),
                                metadata={"tags": [bookinfo.INSTALL_CELL_TAG]})
    setup = nbf.new_code_cell("from adamdist.plots import use_book_renderer\n\nuse_book_renderer()",
                              metadata={"tags": ["remove-cell"]})
    intro = nbf.new_markdown_cell(
        f"# {title}\n\n"
        "% Replace these comments with the chapter. Progress bars: plain `from tqdm import tqdm`\n"
        "% (tqdm.auto / ipywidgets break the site). Cite with {cite:p}`zhang2021distributional`.")
    nb = nbf.new_notebook(cells=[intro, install, setup])
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    # jupytext takes the code-cell language of the MyST file from here
    nb.metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3"}
    return nb


def add_to_toc(root: Path, entry: str) -> None:
    toc = root / "_toc.yml"
    lines = toc.read_text(encoding="utf-8").splitlines(keepends=True)
    if any(re.search(rf"file:\s*{re.escape(entry)}\s*$", line) for line in lines):
        return
    new = f"  - file: {entry}\n"
    for i, line in enumerate(lines):
        if any(re.search(rf"file:\s*{re.escape(t)}\s*$", line) for t in TAIL_ENTRIES):
            lines.insert(i, line[: len(line) - len(line.lstrip())] + new.lstrip())
            break
    else:
        lines.append(new)
    toc.write_text("".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="file name without suffix, e.g. 03_momentum")
    parser.add_argument("--title", required=True)
    parser.add_argument("--toc", action="store_true", help="also add the chapter to _toc.yml")
    parser.add_argument("--root", type=Path, default=bookinfo.REPO_ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if not NAME.match(args.name):
        parser.error("name: lower-case letters, digits and underscores, e.g. 03_momentum")
    root = args.root.resolve()
    md = root / "book" / f"{args.name}.md"
    if md.exists():
        parser.error(f"{md.relative_to(root)} exists already")

    import jupytext

    md.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(chapter_notebook(args.title, bookinfo.repository_url(root), bookinfo.release_ref(root)), md, fmt="md:myst")
    # The pairing itself comes from pyproject.toml's [tool.jupytext]; --sync writes the .ipynb.
    subprocess.run([sys.executable, "-m", "jupytext", "--sync", "--quiet", str(md)], cwd=root, check=True)
    notebook = bookinfo.paired_notebook(md, root)
    if notebook is None or not notebook.is_file():
        raise SystemExit(f"jupytext did not pair {md}: check [tool.jupytext] in pyproject.toml")
    if args.toc:
        add_to_toc(root, f"book/{args.name}")
    print(f"created {md.relative_to(root)} and {notebook.relative_to(root)}"
          + (" and listed it in _toc.yml" if args.toc else "; add it to _toc.yml"))
    print("after editing either file: jupytext --sync", md.relative_to(root))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
