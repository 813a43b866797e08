"""Point the book at its GitHub repository: python tools/set_repository_url.py URL

The URL lives in _config.yml (repository.url); the Colab links are built from it, and each
chapter's install cell installs adamdist from it, at this version's tag (``v`` + the version
in pyproject.toml). This rewrites the old URL everywhere it is written out: _config.yml,
README.md, book/*.md and notebooks/*.ipynb (the chapter and its notebook change together,
so they stay in sync), and sets every install cell's tag to this version's.

    python tools/set_repository_url.py --sync   # after a version bump: only the tags
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "_ext"))
import bookinfo  # noqa: E402


def files_to_rewrite(root: Path) -> list[Path]:
    candidates = [root / "_config.yml", root / "README.md"]
    candidates += sorted((root / "book").glob("**/*.md"))
    candidates += sorted((root / "notebooks").glob("**/*.ipynb"))
    return [p for p in candidates if p.is_file()]


def set_repository_url(root: Path, new: str | None = None) -> list[Path]:
    """Rewrite the repository URL to ``new`` (None: keep it) and every install cell's tag."""
    old = bookinfo.repository_url(root)
    new = old if new is None else new.rstrip("/")
    bookinfo.github_slug(new)  # Colab links need a GitHub URL
    ref = bookinfo.release_ref(root)
    # Not followed by a name character: https://github.com/x/adamdist must not also match
    # https://github.com/x/adamdist-data. An install cell's "@<ref>" is replaced as a whole.
    install = re.compile(r"(adamdist\[book\] @ git\+)" + re.escape(old) + r"(?:@[^\"\\\s]+)?(?=\\?\")")
    pattern = re.compile(re.escape(old) + r"(?![\w.-])")
    changed = []
    for path in files_to_rewrite(root):
        text = path.read_text(encoding="utf-8")
        updated = install.sub(lambda m: f"{m[1]}{new}@{ref}", text)
        updated = pattern.sub(new, updated)
        if updated != text:
            path.write_text(updated, encoding="utf-8")
            changed.append(path)
    if bookinfo.repository_url(root) != new:
        raise SystemExit(f"_config.yml: repository.url is not {old!r}; edit it by hand")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", nargs="?", help="https://github.com/<org>/<repo>")
    parser.add_argument("--sync", action="store_true",
                        help="keep the URL; set every install cell's tag to this version's")
    parser.add_argument("--root", type=Path, default=bookinfo.REPO_ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root = args.root.resolve()
    if (args.url is None) != args.sync:
        parser.error("give either a URL or --sync")
    try:
        changed = set_repository_url(root, args.url)
    except ValueError as err:
        parser.error(str(err))
    for path in changed:
        print("rewrote", path.relative_to(root))
    if not changed:
        print("nothing to change")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
