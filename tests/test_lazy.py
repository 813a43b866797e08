"""adamdist._lazy: names resolved on first use, so that importing a package does not import its heavy modules."""

import subprocess
import sys

import pytest

from adamdist._lazy import lazy_exports


def test_a_name_is_resolved_from_its_module_and_others_are_attribute_errors():
    getattr_ = lazy_exports("adamdist", {"default_edges": "results"})
    from adamdist.results import default_edges

    assert getattr_("default_edges") is default_edges
    with pytest.raises(AttributeError, match="module 'adamdist' has no attribute 'nothing'"):
        getattr_("nothing")


def test_importing_the_package_does_not_import_the_lazy_modules():
    code = ("import sys, adamdist; import adamdist.data; "
            "heavy = [m for m in ('adamdist.diagnosis', 'torchvision') if m in sys.modules]; "
            "assert not heavy, heavy; adamdist.diagnose; assert 'adamdist.diagnosis' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
