"""Argument checks shared by the public functions.

Every check raises ``ValueError`` (bad value) or ``TypeError`` (bad type) with a
message naming the argument and the allowed range, so a user sees at once what
to change.
"""

from __future__ import annotations

import numbers
import os

import numpy as np


def as_float_array(value, name: str) -> np.ndarray:
    """Return ``value`` as a float64 array; reject non-numeric input and NaN."""
    if isinstance(value, (str, bytes, bool, np.bool_)) or value is None:
        raise TypeError(f"{name} must be a real number or an array of real numbers, got {type(value).__name__}")
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a real number or an array of real numbers, got {value!r}") from exc
    if raw.dtype.kind not in "iuf":  # booleans (True is no step count or rate), complex, objects, text
        raise TypeError(f"{name} must be a real number or an array of real numbers, got {value!r}")
    arr = raw.astype(np.float64, copy=False)
    if np.isnan(arr).any():
        raise ValueError(f"{name} must not be NaN")
    return arr


def check_range(value, name: str, low=-np.inf, high=np.inf, *, low_open=False,
                high_open=False, allow_inf=False) -> np.ndarray:
    """Validate that every entry of ``value`` lies in the stated interval.

    ``low_open``/``high_open`` make the corresponding end exclusive. Infinite
    entries are rejected unless ``allow_inf`` is set (and the interval allows them).
    """
    arr = as_float_array(value, name)
    if not allow_inf and np.isinf(arr).any():
        raise ValueError(f"{name} must be finite, got {value!r}")
    too_low = arr <= low if low_open else arr < low
    too_high = arr >= high if high_open else arr > high
    if too_low.any() or too_high.any():
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise ValueError(f"{name} must lie in {left}{low}, {high}{right}, got {value!r}")
    return arr


def check_scalar(value, name: str, low=-np.inf, high=np.inf, **interval) -> float:
    """:func:`check_range` for an argument that must be one real number (not an array)."""
    arr = check_range(value, name, low, high, **interval)
    if arr.ndim:
        raise TypeError(f"{name} must be a single real number, got an array of shape {arr.shape}")
    return float(arr)


def check_int(value, name: str, low: int | None = None, high: int | None = None) -> int:
    """Validate a scalar integer (bools are rejected) within optional bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value}")
    return value


def scalar_or_array(arr: np.ndarray):
    """Scalars in, scalars out: unwrap 0-d arrays to Python floats."""
    arr = np.asarray(arr)
    return float(arr) if arr.ndim == 0 else arr


SEED_MAX = 2**63 - 1
"""Largest seed accepted: what torch's and numpy's generators both take."""


def check_seed(value, name: str = "seed") -> int:
    """Validate a seed: an integer in ``[0, 2**63 - 1]`` (bools rejected)."""
    return check_int(value, name, low=0, high=SEED_MAX)


def available_memory(device=None) -> int | None:
    """Bytes that can still be allocated on ``device`` (the host when None or a CPU), or None if unknown.

    On the host: the smaller of the kernel's ``MemAvailable`` and what the
    process's cgroup (a container's limit) leaves; on CUDA: the free memory
    the driver reports.
    """
    if device is not None and getattr(device, "type", str(device).split(":")[0]) == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    limits = []
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            cap = fh.read().strip()
        with open("/sys/fs/cgroup/memory.current") as fh:
            used = int(fh.read().strip())
        if cap != "max":
            limits.append(max(int(cap) - used, 0))
    except (OSError, ValueError):
        pass
    if not limits:
        try:
            limits.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError, AttributeError):
            return None
    return min(limits)


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.1f} GiB"


def check_memory(needed: float, what: str, names: str, device=None) -> None:
    """Refuse up front an allocation of ``needed`` bytes that cannot fit.

    Raises ``ValueError`` naming the arguments that set the size (``names``),
    the estimate and what is available, instead of letting the kernel's
    out-of-memory killer end the process.
    """
    available = available_memory(device)
    if available is not None and needed > available:
        where = "on the host" if device is None or getattr(device, "type", "cpu") == "cpu" else f"on {device}"
        raise ValueError(f"{what} needs about {_gib(needed)} {where} but only {_gib(available)} is available; "
                         f"reduce {names}")
