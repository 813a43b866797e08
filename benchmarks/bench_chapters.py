"""Execution time of chapter notebooks, as the book build runs them (by hand, not in CI).

    python benchmarks/bench_chapters.py                       # the vision chapters, cold cache
    python benchmarks/bench_chapters.py --all                 # every chapter in the book's order
    python benchmarks/bench_chapters.py book/06_cifar10.md --top 5
    ADAMDIST_PROFILE=paper python benchmarks/bench_chapters.py --warm-cache .adamdist_cache

Each chapter (a MyST Markdown notebook) is read with jupytext and executed top to bottom
in a fresh kernel with nbclient, in its own folder like the book build does. By default the
experiment result cache (``ADAMDIST_CACHE``) points at a new empty temporary folder, so every
training run is really executed: the number is what a first build costs. ``--warm-cache DIR``
uses DIR instead (a rebuild). The slowest cells of each chapter are listed too, so a budget
overrun can be traced to a run. Nothing is written into the repository.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHAPTERS = ("book/06_cifar10.md", "book/07_mnist.md")


def execute(path: Path, timeout: int) -> tuple[float, list[tuple[float, str]]]:
    """Run one chapter; return its wall time and (seconds, first source line) per code cell."""
    import jupytext
    from nbclient import NotebookClient

    nb = jupytext.read(path)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}, record_timing=True)
    start = time.perf_counter()
    client.execute()
    total = time.perf_counter() - start
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        timing = cell.get("metadata", {}).get("execution", {})
        t0, t1 = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        if t0 and t1:
            from datetime import datetime

            seconds = (datetime.fromisoformat(t1.replace("Z", "+00:00"))
                       - datetime.fromisoformat(t0.replace("Z", "+00:00"))).total_seconds()
            first = next((line for line in cell.source.splitlines() if line.strip() and not line.startswith("#")), "")
            cells.append((seconds, first[:70]))
    return total, cells


def training_runs(cache: Path) -> list[str]:
    """One line per cached experiment result: model, batch, steps and its training time."""
    from adamdist.results import load

    lines = []
    for path in sorted(cache.glob("*.npz"), key=lambda p: p.stat().st_mtime):
        meta = load(path).metadata
        config = meta.get("config", {})
        seconds = meta.get("train_seconds")
        if seconds is None:
            continue
        steps = config.get("steps", 0) or 1
        lines.append(f"{config.get('arch', meta.get('experiment', '?')):>16} seed {config.get('seed')} "
                     f"beta1 {config.get('beta1')} batch {config.get('batch_size'):>3} steps {steps:>3}: "
                     f"{seconds:6.1f} s training, {seconds / steps:5.2f} s/step")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapters", nargs="*", help=f"MyST notebooks to run (default: {', '.join(DEFAULT_CHAPTERS)})")
    parser.add_argument("--all", action="store_true",
                        help="every executable chapter of _toc.yml, in its order, in one cache (as the build)")
    parser.add_argument("--warm-cache", metavar="DIR", help="use this result cache instead of an empty one")
    parser.add_argument("--top", type=int, default=3, help="slowest cells listed per chapter")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    if args.all and args.chapters:
        parser.error("give chapters or --all, not both")
    if args.all:
        sys.path.insert(0, str(ROOT / "_ext"))
        import bookinfo

        notebooks = {p.resolve() for p in bookinfo.chapter_sources(ROOT)}
        args.chapters = [f + ".md" for f in bookinfo.toc_files(ROOT) if (ROOT / (f + ".md")).resolve() in notebooks]
    elif not args.chapters:
        args.chapters = list(DEFAULT_CHAPTERS)

    cache = Path(args.warm_cache) if args.warm_cache else Path(tempfile.mkdtemp(prefix="adamdist-bench-"))
    os.environ["ADAMDIST_CACHE"] = str(cache.resolve())
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, profile "
          f"{os.environ.get('ADAMDIST_PROFILE', 'quick')}, data {os.environ.get('ADAMDIST_DATA', '(default)')}, "
          f"cache {cache} ({'warm' if args.warm_cache else 'cold'})")
    try:
        load = os.getloadavg()[0]
        print(f"load average before: {load:.1f} (other processes on the machine slow every number below)")
    except OSError:
        pass
    grand = 0.0
    per_chapter = []
    for chapter in args.chapters:
        path = (ROOT / chapter).resolve()
        total, cells = execute(path, args.timeout)
        grand += total
        per_chapter.append((chapter, total))
        print(f"{chapter}: {total:7.1f} s", flush=True)
        for seconds, first in sorted(cells, reverse=True)[:args.top]:
            print(f"    {seconds:7.1f} s  {first}")
    print("per chapter:")
    for chapter, total in per_chapter:
        print(f"    {total:7.1f} s  {total / grand:5.1%}  {chapter}")
    print(f"total: {grand:.1f} s ({grand / 60:.1f} min)")
    print("training runs (recorder included):")
    for line in training_runs(cache):
        print("    " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
