"""The shared argument and memory checks (adamdist._validation)."""

import pytest

from adamdist import _validation
from adamdist._validation import available_memory, check_memory, check_seed


@pytest.mark.parametrize("seed", [0, 1, 2**63 - 1])
def test_check_seed_accepts_the_range_both_generators_take(seed):
    assert check_seed(seed) == seed


@pytest.mark.parametrize("seed, error, words", [
    (-1, ValueError, r"seed must be an integer in \[0, 9223372036854775807\], got -1"),
    (2**64, ValueError, "seed must be an integer in"),
    (True, TypeError, "seed must be an integer, got bool"),
    (1.0, TypeError, "seed must be an integer, got float"),
])
def test_check_seed_names_the_argument_and_the_range(seed, error, words):
    with pytest.raises(error, match=words):
        check_seed(seed, "seed")


def test_available_memory_is_a_positive_byte_count_on_this_host():
    free = available_memory()
    assert isinstance(free, int) and free > 0


def test_check_memory_refuses_what_cannot_fit_and_says_how_much(monkeypatch):
    monkeypatch.setattr(_validation, "available_memory", lambda device=None: 2**30)
    check_memory(2**29, "a run", "n")
    with pytest.raises(ValueError, match=r"a run needs about 4\.0 GiB on the host but only 1\.0 GiB is "
                                         r"available; reduce n \(and steps\)"):
        check_memory(4 * 2**30, "a run", "n (and steps)")


def test_check_memory_passes_when_the_free_memory_is_unknown(monkeypatch):
    monkeypatch.setattr(_validation, "available_memory", lambda device=None: None)
    check_memory(1e30, "a run", "n")
