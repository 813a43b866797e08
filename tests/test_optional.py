"""adamdist._optional: a missing optional dependency names the extra that installs it."""

import pytest

from adamdist._optional import require


def test_require_returns_the_module():
    import math

    assert require("math", "none", "a test") is math


def test_missing_module_names_the_extra_and_the_user():
    with pytest.raises(ImportError, match=r'adamdist.plots needs not_a_module_xyz.*pip install "adamdist\[plots\]"') as err:
        require("not_a_module_xyz", "plots", "adamdist.plots")
    assert err.value.name == "not_a_module_xyz"
    assert isinstance(err.value.__cause__, ModuleNotFoundError)
