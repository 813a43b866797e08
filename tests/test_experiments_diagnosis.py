"""Tests of adamdist.experiments.diagnosis: the calibration's runs, its confusion table and detection strengths."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("torch")

from adamdist.experiments import diagnosis as calibration  # noqa: E402


def test_calibrate_confusion_and_detection_on_a_small_grid():
    strengths = {"consistent": (None,), "nonzero_mean": (0.001, 0.1, 0.3), "sparse": (0.05, 0.2),
                 "no_gradient": (None,)}
    frame = calibration.calibrate((0.0,), n=1000, steps=20, seeds=(0, 1), consistent_runs=3, strengths=strengths,
                                  progress=False)
    assert len(frame) == 3 + 2 * (3 + 2 + 1)
    assert frame.loc[frame["cause"] == "consistent", "diagnosed"].eq("consistent").all()
    table = calibration.confusion(frame)
    assert list(table.index) == ["consistent", "nonzero_mean", "sparse", "no_gradient"]
    assert table.to_numpy().sum() == len(frame)
    assert table.loc["sparse", "sparse"] == 4
    found = calibration.detection(frame).set_index("cause")
    # a mean of 0.001 sd is beyond what 1,000 coordinates can see; 0.1 is not
    assert found.loc["nonzero_mean", "detected_from"] == 0.1
    assert found.loc["sparse", "detected_from"] == 0.05
    assert math.isnan(found.loc["consistent", "detected_from"])
    assert found.loc["no_gradient", "named_share"] == 1.0
    narrow = calibration.outcomes(frame).set_index("cause")
    assert narrow.loc["nonzero_mean", "runs"] == 6 and narrow.loc["nonzero_mean", "named"] == 4
    assert narrow.loc["nonzero_mean", "called consistent"] == 2


def test_detection_reports_a_cause_missed_at_its_strongest():
    import pandas as pd

    frame = pd.DataFrame(dict(beta1=0.0, cause="heavy_tails", strength=[0.1, 0.5], seed=0,
                              diagnosed=["heavy_tails", "consistent"], named=[True, False]))
    row = calibration.detection(frame).iloc[0]
    assert math.isnan(row["detected_from"]) and row["strongest_diagnosis"] == "consistent"


def test_make_run_makes_what_it_says():
    quantised = calibration.make_run("quantised", 0.1, n=500, steps=5)
    values = quantised.samples["u"][1:]
    grid = 0.1
    assert np.allclose(values / grid, np.round(values / grid), atol=1e-3)  # u on a grid of 0.1
    frozen = calibration.make_run("no_gradient", n=100, steps=5)
    assert frozen.no_grad.all()
    with pytest.raises(ValueError, match="cause must be one of"):
        calibration.make_run("gremlins")
