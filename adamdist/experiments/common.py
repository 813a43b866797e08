"""Profiles, device choice and the on-disk result cache shared by the experiments."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import warnings
from datetime import datetime
from pathlib import Path
from typing import Callable

from .. import __version__
from ..results import UpdateStats, load

__all__ = ["PROFILES", "profile", "default_device", "source_hash", "config_hash", "cache_dir", "cached",
           "pick_layer"]

PROFILES = ("quick", "paper")
PACKAGE_DIR = Path(__file__).resolve().parents[1]
#: Files whose changes cannot change a result: charts are drawn from results, never feed them.
_NOT_RESULT_CODE = ("plots.py",)


def profile() -> str:
    """The run profile from ``ADAMDIST_PROFILE``: ``"quick"`` (default) or ``"paper"``.

    ``quick`` uses the same models and real data with fewer steps or smaller
    batches, so the whole book builds on a 2-core CPU; ``paper`` uses the
    paper's settings and is meant for a GPU.
    """
    value = os.environ.get("ADAMDIST_PROFILE", "quick").strip().lower()
    if value not in PROFILES:
        raise ValueError(f"ADAMDIST_PROFILE must be one of {PROFILES}, got {value!r}")
    return value


def default_device():
    """CUDA when available, else the CPU: the same code runs on both."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@functools.lru_cache(maxsize=8)
def source_hash(package_dir: Path = PACKAGE_DIR) -> str:
    """Hash of the package's source (every ``.py`` and ``.c`` file but the chart builders).

    Part of every result's cache key (:func:`config_hash`), so that a change to the code
    that computes results recomputes them instead of silently loading old ones. Computed
    once per process and folder (the files do not change under a running program).

    Examples
    --------
    >>> len(source_hash()) == 16 and source_hash() == source_hash()
    True
    """
    package_dir = Path(package_dir)
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*")):
        if path.suffix not in (".py", ".c") or path.name in _NOT_RESULT_CODE or "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def config_hash(config) -> str:
    """Stable hash of a config dataclass: its fields, its type, adamdist's version and :func:`source_hash`."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config must be a dataclass instance, got {type(config).__name__}")
    payload = {
        "type": f"{type(config).__module__}.{type(config).__qualname__}",
        "fields": dataclasses.asdict(config),
        "adamdist": __version__,
        "source": source_hash(),
    }
    text = json.dumps(payload, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_dir() -> Path:
    """``$ADAMDIST_CACHE`` or ``.adamdist_cache`` in the current folder."""
    return Path(os.environ.get("ADAMDIST_CACHE", ".adamdist_cache")).expanduser()


def cached(config, compute: Callable[[], UpdateStats], folder=None) -> UpdateStats:
    """Load the result of ``config`` from disk, or compute and store it.

    The file name is the config's hash (:func:`config_hash`: fields, version and
    the package's source), so a changed config or a changed library recomputes and
    an unchanged one loads. Writing is atomic (:meth:`UpdateStats.save`): an
    interrupted run leaves no half-written result behind.

    Nothing a damaged or unwritable cache does loses a run:

    * a cache file that cannot be read (truncated, corrupted, from another
      format version) is moved aside to ``<name>.corrupt-<timestamp>`` in the
      same folder, with a ``RuntimeWarning`` naming both files, and the result
      is recomputed;
    * if the result cannot be written (a read-only folder, ``ADAMDIST_CACHE``
      or ``folder`` naming a file, a full disk), a ``RuntimeWarning`` names the
      folder and the reason and the computed result is returned uncached.
    """
    hint = "set ADAMDIST_CACHE to a writable folder" if folder is None else "pass a writable folder"
    folder = cache_dir() if folder is None else Path(folder)
    path = folder / f"{type(config).__name__}-{config_hash(config)}.npz"
    if path.exists():
        try:
            return load(path)
        except ValueError as exc:
            _set_aside(path, exc)
    result = compute()
    if not isinstance(result, UpdateStats):
        raise TypeError(f"compute must return UpdateStats, got {type(result).__name__}")
    try:
        result.save(path)
    except OSError as exc:
        reason = "it is a file, not a folder" if folder.exists() and not folder.is_dir() else exc.strerror or exc
        warnings.warn(f"could not write to the experiment cache {folder} ({reason}): the result is returned but "
                      f"not cached; {hint}", RuntimeWarning, stacklevel=2)
    return result


def _set_aside(path: Path, problem: ValueError) -> None:
    """Move an unreadable cache file out of the way, keeping it for inspection."""
    aside = path.with_name(f"{path.name}.corrupt-{datetime.now():%Y%m%dT%H%M%S%f}")
    try:
        os.replace(path, aside)
    except OSError as exc:
        done = f"could not move it aside ({exc.strerror or exc})"
    else:
        done = f"moved it to {aside}"
    warnings.warn(f"ignoring an unreadable cache file: {problem}; {done}; recomputing the result",
                  RuntimeWarning, stacklevel=3)


def pick_layer(names, seed: int = 0, *, numels: dict | None = None, min_numel: int = 0) -> str:
    """One tensor drawn uniformly with ``numpy.random.default_rng(seed)``: a seeded, not hand-picked, choice.

    Among ``names`` (in their order), or, with ``numels``, among those with at least
    ``min_numel`` entries (the paper's appendix: "random layers with more than 1e4
    parameters").

    Examples
    --------
    >>> pick_layer(["a", "b", "c"], seed=0)
    'c'
    >>> pick_layer(["a", "b", "c"], seed=0, numels={"a": 5, "b": 20_000, "c": 9}, min_numel=10_000)
    'b'
    """
    import numpy as np

    names = list(names)
    if not names:
        raise ValueError("names is empty")
    eligible = names if numels is None else [n for n in names if numels[n] >= min_numel]
    if not eligible:
        raise ValueError(f"no tensor has at least {min_numel} entries")
    return eligible[int(np.random.default_rng(seed).integers(len(eligible)))]

