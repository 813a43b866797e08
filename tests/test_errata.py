"""Every erratum is confirmed: the corrected formula matches an independent route, the printed one does not."""

import re
from pathlib import Path

import numpy as np
import pytest

from adamdist import errata

PAPER = Path(__file__).resolve().parents[2] / "shared" / "paper" / "paper.txt"


@pytest.mark.parametrize("erratum", errata.ERRATA, ids=lambda e: e.key)
@pytest.mark.parametrize("seed", [0, 1])
def test_erratum_is_confirmed(erratum, seed):
    frame = erratum.run(seed)
    assert len(frame) >= 1
    assert frame["corrected_ok"].all(), frame.to_string()
    assert not frame["printed_ok"].all(), frame.to_string()
    assert np.isfinite(frame[["printed", "corrected", "reference", "tol"]].to_numpy(dtype=float)).all()
    assert erratum.confirmed(seed)


@pytest.mark.parametrize("erratum", errata.ERRATA, ids=lambda e: e.key)
def test_erratum_check_can_fail(erratum):
    # the verdict is not built in: with the printed value in the corrected column the check must fail,
    # and every row that separates the two does so by more than its tolerance
    frame = erratum.run(0)
    swapped = frame.assign(corrected_ok=frame["printed_ok"], printed_ok=frame["corrected_ok"])
    assert not errata._confirmed(swapped)
    failing = frame[~frame["printed_ok"]]
    gap = np.abs(failing["printed"].astype(float) - failing["reference"])
    assert (gap > failing["tol"]).all()


@pytest.mark.parametrize("erratum", errata.ERRATA, ids=lambda e: e.key)
def test_erratum_is_described(erratum):
    assert erratum.where and erratum.section and erratum.note
    assert erratum.printed != erratum.corrected


def test_keys_unique_and_lookup():
    keys = [e.key for e in errata.ERRATA]
    assert len(keys) == len(set(keys))
    assert errata.get("eq33-m3-update").where == "Eq. (33)"
    with pytest.raises(ValueError, match="no erratum"):
        errata.get("eq99")


def test_check_all_is_tidy():
    table = errata.check_all(seed=3)
    assert set(table["key"]) == {e.key for e in errata.ERRATA}
    assert {"printed", "corrected", "reference", "route", "printed_ok", "corrected_ok", "confirmed"} <= set(table.columns)
    assert table.confirmed.all()


def test_summary_table():
    table = errata.summary(["eq33-m3-update", "eq16-m1"], seed=0)
    assert list(table.index) == ["Var U, m = 3, c = m", "P(|U| > sqrt 2), m = 3, c = m",
                                 "Var U, m = 3, c = m - 1", "E[G] at m = 1"]
    assert set(table["corrected agrees"]) == {"\u2713"}
    assert "\u2717" in set(table["printed agrees"])


def test_eq32_33_are_the_c_m_minus_1_laws():
    # the printed laws are right under c = m - 1 and wrong under eq. (30)'s c = m
    for key in ["eq32-m2-update", "eq33-m3-update"]:
        frame = errata.get(key).run(0)
        under_m1 = frame["quantity"].str.endswith("c = m - 1")
        assert under_m1.any() and frame.loc[under_m1, "printed_ok"].all()
        assert not frame.loc[~under_m1, "printed_ok"].any()


def test_eq11_reading_with_eq12_m():
    frame = errata.get("eq11-limit").run(0)
    long_run = frame["quantity"].str.startswith("long-run")
    assert long_run.sum() == 3 and frame.loc[long_run, "printed_ok"].all()
    assert not frame.loc[~long_run, "printed_ok"].any()


def test_quoted_bounds_are_parsed():
    assert errata._quoted_bound("fig3-caption") == 10
    assert errata._quoted_bound("sec52") == 20


@pytest.mark.skipif(not PAPER.is_file(), reason="the paper's text is not at hand")
@pytest.mark.parametrize("key", sorted(errata.PAPER_QUOTES))
def test_quotes_are_verbatim(key):
    paper = PAPER.read_text(encoding="utf-8").replace("\u00a0", " ")  # its text layer has no-break spaces
    for text, formula in errata.PAPER_QUOTES[key]:
        assert text in paper, text
        if formula is not None:
            assert re.search(re.escape(text) + r".{0,40}?" + re.escape(formula), paper, re.S), (text, formula)


def test_fig2_erratum_is_about_figure_2_only():
    # Figure 1's property 3 (bimodal to unimodal as m grows) is right; only Figure 2's caption is wrong
    e = errata.get("fig2-transition")
    assert "Figure 1" not in e.where
    frame = e.run(0).set_index("quantity")
    assert frame.loc["first m at which the law is not U-shaped", "reference"] == 3.0
    assert frame.loc["law at m = 2 is U-shaped (1 = yes, 0 = unimodal)", "reference"] == 1.0


def test_c_m_minus_1_mode_is_at_zero():
    frame = errata.get("mode-g-c-m1").run(0)
    assert (frame["reference"] < 0.05 * frame["printed"]).all()
    assert not frame["printed_ok"].any()
