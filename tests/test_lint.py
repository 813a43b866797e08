"""ruff, with the configuration in pyproject.toml ([tool.ruff]), over the package, tests, tools and extensions."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ["adamdist", "tests", "tools", "_ext", "benchmarks"]


def test_ruff_passes():
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", *CHECKED],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def test_ruff_reads_this_projects_configuration(tmp_path):
    # an undefined name is one of the selected checks: the linter must report it
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    return undefined_name\n")
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"),
                          str(bad)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "F821" in run.stdout, run.stdout + run.stderr
