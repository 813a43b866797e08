"""adamdist.report and ``python -m adamdist report``: a self-contained HTML report of a saved recording."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("altair")
pytest.importorskip("torch")

from adamdist import report  # noqa: E402
from adamdist.simulate import Normal, run  # noqa: E402

CHROMIUM = os.environ.get("ADAMDIST_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    # Adam without momentum on i.i.d. Gaussian gradients: the exact law is the truth, so the rule must hold
    stats = run("adam", n=3000, steps=12, beta1=0.0, beta2=0.999, eps=0.0, seed=5, sample_size=1000)
    path = tmp_path_factory.mktemp("run") / "run.npz"
    stats.save(path)
    return stats, path


def test_report_states_the_rule_and_its_verdict(recording):
    stats, _ = recording
    page = report.build_report(stats, steps=[1, 2, 5, 10], title="<sim>")
    assert page.startswith("<!DOCTYPE html>") and "&lt;sim&gt;" in page  # the title is escaped
    assert "the law holds through <b>m = 12</b>" in page
    assert page.count("vegaEmbed(\"#chart") == 3  # shares, variance ratio, one tensor's histograms
    assert "<script src" not in page and "https://" not in page.split("<script>", 1)[0]
    assert "<h2>Diagnosis</h2>" in page and "Causes: consistent 1." in page


def test_the_report_diagnoses_a_deviation_or_says_why_not(recording):
    stats = run("adam", n=2000, steps=12, beta1=0.0, beta2=0.999, seed=2, sample_size=1000,
                gradients=Normal(mean=0.3))
    assert "<td>nonzero_mean</td>" in report.build_report(stats, steps=[2])
    few = report.build_report(stats.select(steps=[1, 2]), steps=[2])
    assert "<b>No diagnosis for this run:</b> diagnose needs at least 3 recorded steps" in few


def test_a_law_that_does_not_fit_is_rejected(recording):
    stats, _ = recording
    # the same run read against the momentum law (beta1 = 0.9): wrong from step 2 on
    page = report.build_report(stats, beta1=0.9, steps=[2])
    assert "the law holds through <b>m = 1</b>" in page


def test_command_line_writes_the_file_and_reports_errors(recording, tmp_path, capsys):
    _, path = recording
    out = tmp_path / "r.html"
    assert report.main([str(path), "-o", str(out), "--steps", "1,3"]) == 0
    assert out.read_text().endswith("</html>\n") and "wrote" in capsys.readouterr().out
    assert report.main([str(tmp_path / "missing.npz"), "-o", str(out)]) == 2
    assert "missing.npz" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        report.main([str(path), "--beta2", "1.5"])
    assert "beta must be in [0, 1)" in capsys.readouterr().err
    with pytest.raises(TypeError, match="UpdateStats"):
        report.build_report({})


def test_module_entry_point():
    done = subprocess.run([sys.executable, "-m", "adamdist", "report", "--help"], capture_output=True, text=True,
                          check=True)
    assert "self-contained HTML report" in done.stdout and "--beta1" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "adamdist", "nonsense"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown command" in bad.stderr


def test_report_renders_in_a_browser_with_no_network(recording, tmp_path):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    _, path = recording
    out = tmp_path / "report.html"
    assert report.main([str(path), "-o", str(out)]) == 0
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        outside, errors = [], []
        context.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                      else (outside.append(route.request.url), route.abort()))
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(out.as_uri(), wait_until="load")
        page.wait_for_function("document.querySelectorAll('.chart svg.marks').length === 3", timeout=20_000)
        page.set_viewport_size({"width": 390, "height": 844})  # a phone: wide tables scroll in their own box
        sideways = page.evaluate("() => document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth")
        browser.close()
    assert errors == [] and outside == []
    assert sideways <= 1, f"at 390 px the report scrolls sideways by {sideways} px"
