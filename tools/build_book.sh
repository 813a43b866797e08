#!/usr/bin/env bash
# Build the book into _build/html. Any Sphinx warning, any cell that raises and any page that
# would load something from the network (see _ext/offline_assets.py) fails the build.
# Chapters are executed through the jupyter-cache in _build/.jupyter_cache: only chapters
# whose code changed run again. The first build also fetches MathJax with npm into
# .book_assets/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v jupyter-book >/dev/null; then
  echo "build_book.sh: jupyter-book not found; activate the venv (see README.md)" >&2
  exit 1
fi
# Sphinx's -W turns warnings into errors; --keep-going reports all of them before failing.
jupyter-book build -W -n --keep-going --builder html "$@" .
echo "build_book.sh: site in _build/html (open _build/html/index.html)"
