"""Every erratum is confirmed: the corrected formula matches an independent route, the printed one does not."""

import numpy as np
import pytest

from adamdist import errata


@pytest.mark.parametrize("erratum", errata.ERRATA, ids=lambda e: e.key)
@pytest.mark.parametrize("seed", [0, 1])
def test_erratum_is_confirmed(erratum, seed):
    frame = erratum.run(seed)
    assert len(frame) >= 1
    assert frame["corrected_ok"].all(), frame.to_string()
    assert not frame["printed_ok"].all(), frame.to_string()
    assert np.isfinite(frame[["corrected", "reference", "tol"]].to_numpy(dtype=float)).all()


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
    assert list(table.index) == ["Var U, m = 3", "P(|U| > sqrt 2), m = 3", "E[G] at m = 1"]
    assert set(table["corrected agrees"]) == {"\u2713"}
    assert "\u2717" in set(table["printed agrees"])
