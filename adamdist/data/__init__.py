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

__all__ = ["data_root", "DataNotFoundError", "DataDamagedError", "download_timeout"]

DEFAULT_DOWNLOAD_TIMEOUT = 60.0
"""Seconds a download may go without receiving data before it is given up (``ADAMDIST_DOWNLOAD_TIMEOUT``)."""


class DataNotFoundError(FileNotFoundError):
    """A data set is neither on disk nor downloadable."""


class DataDamagedError(DataNotFoundError):
    """A data set's file is on disk but damaged (truncated, unreadable); ``path`` names it."""

    def __init__(self, path, problem: str):
        self.path = Path(path)
        super().__init__(f"{self.path} is damaged: {problem}. Delete it and provide the data set again "
                         f"(or let the download replace it)")


def download_timeout(timeout=None) -> float:
    """The download timeout in seconds: ``timeout`` if given, else ``$ADAMDIST_DOWNLOAD_TIMEOUT``, else 60."""
    if timeout is None:
        env = os.environ.get("ADAMDIST_DOWNLOAD_TIMEOUT")
        if not env:
            return DEFAULT_DOWNLOAD_TIMEOUT
        try:
            timeout = float(env)
        except ValueError:
            raise ValueError(f"ADAMDIST_DOWNLOAD_TIMEOUT must be a number of seconds > 0, got {env!r}") from None
        name = "ADAMDIST_DOWNLOAD_TIMEOUT"
    else:
        name = "download_timeout"
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
        raise ValueError(f"{name} must be a number of seconds in (0, inf), got {timeout!r}")
    return float(timeout)


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
