"""Real data sets for the experiments: CIFAR-10, MNIST, IWSLT14 de-en.

The data root is the environment variable ``ADAMDIST_DATA`` when set, else
``~/.cache/adamdist/data`` (see :func:`data_root`). Missing data that cannot be
downloaded raises one clear error naming the data set, the folder searched and
how to provide it; nothing is ever replaced by synthetic data.
"""

from __future__ import annotations

import os
from pathlib import Path

from .._lazy import lazy_exports

__all__ = ["data_root", "DataNotFoundError"]


class DataNotFoundError(FileNotFoundError):
    """A data set is neither on disk nor downloadable."""


def data_root() -> Path:
    """Folder holding the data sets: ``$ADAMDIST_DATA`` or ``~/.cache/adamdist/data``."""
    env = os.environ.get("ADAMDIST_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "adamdist" / "data"


# name -> submodule defining it (the submodules import torch/torchvision)
__getattr__ = lazy_exports(__name__, {
    "cifar10": "vision",
    "mnist": "vision",
    "iwslt14": "iwslt",
})
