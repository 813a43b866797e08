"""The package as users install it: the wheel and sdist, what they hold, and chapters run from the wheel.

A wheel is built from the checkout (``python -m build --no-isolation``: no download), checked
with ``twine check --strict`` and installed with ``pip --target`` into a folder outside the
repository. Subprocesses and notebook kernels then get that folder first on their path and
run in a temporary working directory, so ``import adamdist`` is the wheel, never the checkout:
what Colab has after the install cell.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "_ext"))
import bookinfo  # noqa: E402

# Chapters run whole from the wheel, and chapters whose set-up alone runs (their training runs
# take minutes): the statements named here, after every import statement of the chapter.
WHOLE_CHAPTERS = ("01_preliminaries", "02_dependent_xu", "03_beyond_simple_averaging", "05_own_training_loop")
SET_UP = {
    "04_what_shapes": "assert shapes.STEPS >= 20 and CASES",
    "06_cifar10": ("PROFILE = profile()\nconfigs = book_configs()\n"
                   "assert configs['regnetx_200mf'].batch_size == PAPER_BATCH == 128"),
    "07_mnist": "PROFILE = profile()\nconfig = mnist_config()\nassert config.batch_size == 128",
    "08_transformer": "PROFILE = profile()\nCONFIGS = tx.configs(PROFILE)\nassert CONFIGS['fairseq'].steps > 0",
}


def _run(*args, **kwargs) -> subprocess.CompletedProcess:
    run = subprocess.run(args, capture_output=True, text=True, **kwargs)
    assert run.returncode == 0, f"{' '.join(map(str, args))} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT))
    (wheel,) = out.glob("adamdist-*.whl")
    (sdist,) = out.glob("adamdist-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


@pytest.fixture(scope="module")
def installed(dists, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site-packages")
    # --no-deps: numpy, scipy, torch... are the venv's; only adamdist comes from the wheel
    _run(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--disable-pip-version-check", "--target", str(target), str(dists["wheel"]))
    return target


def _package_files() -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in (ROOT / "adamdist").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def test_twine_check_passes(dists):
    _run(sys.executable, "-m", "twine", "check", "--strict", str(dists["wheel"]), str(dists["sdist"]))


def test_wheel_holds_every_file_of_the_package(dists):
    names = set(zipfile.ZipFile(dists["wheel"]).namelist())
    missing = sorted(_package_files() - names)
    assert not missing, f"the wheel lacks {missing} (declare them in pyproject's package-data)"
    # what the package reads at run time besides its modules
    assert {"adamdist/_native/kernels.c", "adamdist/data/prepare_iwslt14.sh"} <= names
    assert not [n for n in names if n.startswith(("tests/", "book/", "_ext/"))]


def test_sdist_holds_the_package_and_its_metadata(dists):
    with tarfile.open(dists["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    missing = sorted(_package_files() - names)
    assert not missing, f"the sdist lacks {missing}"
    assert {"pyproject.toml", "README.md"} <= names


def test_extras_name_what_the_chapters_import():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def names(extra):  # the distributions an extra installs, its self-references ("adamdist[a,b]") expanded
        found = set()
        for req in extras[extra]:
            name = req.split(">")[0].split("=")[0].split("[")[0].strip()
            if name == "adamdist":
                for inner in req.split("[", 1)[1].split("]")[0].split(","):
                    found |= names(inner.strip())
            else:
                found.add(name)
        return found

    # the Colab cells install adamdist[book]: everything the chapters import
    assert {"torch", "torchvision", "altair", "vl-convert-python", "lightning", "tensorboard"} <= names("book")


BLOCK_OPTIONAL = """
import importlib.abc, sys
class _Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "torchvision", "altair", "lightning", "transformers", "tensorboard",
                                  "wandb"}:
            raise ImportError(f"{name} is not installed (blocked by the test)")
sys.meta_path.insert(0, _Refuse())
"""


def test_core_imports_and_evaluates_without_torch(installed, tmp_path):
    code = BLOCK_OPTIONAL + f"""
sys.path.insert(0, {str(installed)!r})
import pathlib
import adamdist
from adamdist import exact, theory
assert pathlib.Path(adamdist.__file__).resolve().is_relative_to(pathlib.Path({str(installed)!r}).resolve()), adamdist.__file__
law = theory.update_distribution(10)
assert abs(law.var() - 1.0) < 1e-12
ex = exact.update_distribution(10, beta1=0.0, beta2=1.0)
assert abs(float(ex.cdf(0.5)) - float(law.cdf(0.5))) < 1e-8
assert not any(m.split(".")[0] in {{"torch", "torchvision", "altair"}} for m in sys.modules)
print("ok", adamdist.__version__)
"""
    run = _run(sys.executable, "-I", "-c", code, cwd=tmp_path)
    assert run.stdout.startswith("ok")


@pytest.mark.parametrize("module, extra", [("capture", "torch"), ("simulate", "torch"), ("optim", "torch"),
                                           ("plots", "plots"), ("integrations.lightning", "lightning"),
                                           ("integrations.hf", "hf"), ("integrations.tensorboard", "tensorboard"),
                                           ("integrations.wandb", "wandb")])
def test_without_its_extra_a_module_says_what_to_install(module, extra, installed, tmp_path):
    code = BLOCK_OPTIONAL + f"""
sys.path.insert(0, {str(installed)!r})
try:
    import adamdist.{module}
except ImportError as err:
    print(err)
else:
    raise SystemExit("adamdist.{module} imported without its extra")
"""
    run = _run(sys.executable, "-I", "-c", code, cwd=tmp_path)
    assert f'pip install "adamdist[{extra}]"' in run.stdout and f"adamdist.{module} needs" in run.stdout


def _kernel_env(installed: Path, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(installed)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["ADAMDIST_CACHE"] = str(tmp_path / "cache")  # a user's first run: nothing cached
    return env


def _execute(nb, installed: Path, tmp_path: Path, monkeypatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    check = nbformat.v4.new_code_cell(
        "import pathlib, adamdist\n"
        f"assert pathlib.Path(adamdist.__file__).resolve().is_relative_to(pathlib.Path({str(installed)!r}).resolve()), "
        "adamdist.__file__")
    nb.cells.insert(0, check)
    for name, value in _kernel_env(installed, tmp_path).items():
        monkeypatch.setenv(name, value)
    work = tmp_path / "work"
    work.mkdir()
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(work)}}).execute()


@pytest.mark.slow
@pytest.mark.parametrize("chapter", WHOLE_CHAPTERS)
def test_chapter_runs_from_the_installed_wheel(chapter, installed, tmp_path, monkeypatch):
    if chapter == "05_own_training_loop" and not os.environ.get("ADAMDIST_DATA"):
        pytest.skip("chapter 5 trains on MNIST: set ADAMDIST_DATA (CI does)")
    nb = jupytext.read(ROOT / "notebooks" / f"{chapter}.ipynb")
    _execute(nb, installed, tmp_path, monkeypatch)


def _imports_of(nb) -> str:
    """Every top-level import statement of the notebook's code cells, in order."""
    lines = []
    for cell in nb.cells:
        if cell.cell_type != "code" or bookinfo.install_url(cell.source) is not None:
            continue  # not code, or the Colab install cell
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.parse(source).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                lines.append(ast.unparse(node))
    return "\n".join(lines)


@pytest.mark.parametrize("chapter", sorted(SET_UP))
def test_chapter_set_up_runs_from_the_installed_wheel(chapter, installed, tmp_path, monkeypatch):
    import nbformat

    source = jupytext.read(ROOT / "notebooks" / f"{chapter}.ipynb")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(_imports_of(source)),
                                         nbformat.v4.new_code_cell(SET_UP[chapter])])
    nb.metadata = source.metadata
    _execute(nb, installed, tmp_path, monkeypatch)


def test_install_cells_pin_this_versions_tag():
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        first = next(c for c in jupytext.read(notebook).cells if c.cell_type == "code")
        assert bookinfo.install_ref(first.source) == bookinfo.release_ref(ROOT), notebook.name
