"""Import an unmodified fairseq 0.12.2 on Python 3.11 or later: ``fairseq = import_fairseq()``.

Used by ``compare_with_fairseq.py`` (a sibling script); nothing in the installed fairseq is edited.

The one patch
-------------
Python 3.11 rejects a dataclass field default whose class is unhashable (``__hash__ is None``),
and instances of ordinary (``eq=True``, not frozen) dataclasses are unhashable. fairseq 0.12.2
writes such defaults, e.g. ``common: CommonConfig = CommonConfig()`` in
``fairseq/dataclass/configs.py``, so a plain ``import fairseq`` fails with::

    ValueError: mutable default <class 'fairseq.dataclass.configs.CommonConfig'> for field common
    is not allowed: use default_factory

:func:`import_fairseq` wraps the private ``dataclasses._get_field`` while fairseq is being
imported: a default that is an unhashable dataclass *instance* skips that one check and is kept
as the field's plain ``default``, the shared instance, exactly as Python 3.10 (which fairseq
0.12.2 was written for) keeps it. Every other field goes through the original function, and the
wrapper is removed before :func:`import_fairseq` returns, so dataclasses defined later behave
as usual.

Turning these defaults into ``default_factory`` instead (what fairseq's main branch later did in
its source) would not do: 0.12.2's ``hydra_init`` reads
``FairseqConfig.__dataclass_fields__[k].default`` and needs the instances there.
"""

from __future__ import annotations

import dataclasses
import importlib

__all__ = ["import_fairseq", "PATCHES_APPLIED", "FAIRSEQ_MODULES"]

# Everything compare_with_fairseq.py uses; these modules define more config dataclasses, so
# they are imported while the patch is active.
FAIRSEQ_MODULES = (
    "fairseq.models.transformer",
    "fairseq.criterions.label_smoothed_cross_entropy",
    "fairseq.data",
    "fairseq.tasks.translation",
    "fairseq.optim.adam",
)

PATCHES_APPLIED: list[str] = []


def _unhashable_instance(x) -> bool:
    return dataclasses.is_dataclass(x) and not isinstance(x, type) and type(x).__hash__ is None


def _patched_get_field(original):
    """``dataclasses._get_field`` that accepts an unhashable dataclass instance as a default."""

    def _get_field(cls, a_name, a_type, *args, **kwargs):
        default = cls.__dict__.get(a_name, dataclasses.MISSING)
        if _unhashable_instance(default):  # `common: CommonConfig = CommonConfig()`
            # Hide the instance from the hashability check, then put it back as the default.
            setattr(cls, a_name, None)
            try:
                f = original(cls, a_name, a_type, *args, **kwargs)
            finally:
                setattr(cls, a_name, default)
            f.default = default
            return f
        if isinstance(default, dataclasses.Field) and _unhashable_instance(default.default):
            # `x: C = field(default=C())`; the check reads Field.default
            instance, default.default = default.default, None
            try:
                f = original(cls, a_name, a_type, *args, **kwargs)
            finally:
                default.default = instance
            f.default = instance
            return f
        return original(cls, a_name, a_type, *args, **kwargs)

    return _get_field


def import_fairseq(modules=FAIRSEQ_MODULES):
    """Import fairseq and ``modules`` with the dataclass patch active; return the ``fairseq`` package.

    Parameters
    ----------
    modules : iterable of str
        Submodules to import while the patch is active (any fairseq module that defines a
        config dataclass must be first imported here).

    Returns
    -------
    module
        ``fairseq``.
    """
    original = getattr(dataclasses, "_get_field", None)
    if original is None:
        raise RuntimeError("dataclasses._get_field is missing in this Python; the fairseq shim needs updating")
    dataclasses._get_field = _patched_get_field(original)
    try:
        fairseq = importlib.import_module("fairseq")
        for name in modules:
            importlib.import_module(name)
    finally:
        dataclasses._get_field = original
    PATCHES_APPLIED.append("dataclasses._get_field accepts unhashable dataclass-instance defaults "
                           "(Python 3.10 behaviour), during the import of fairseq only")
    return fairseq
