"""Lazy re-exports, so that ``import adamdist.data`` does not import torchvision
(or a sibling module that is heavy) before a name from it is used."""

from __future__ import annotations

import importlib


def lazy_exports(package: str, exports: dict[str, str]):
    """Return a module ``__getattr__`` resolving ``name`` from ``package.exports[name]``."""

    def __getattr__(name: str):
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__
