"""adamdist's compiled CPU kernels (``kernels.c``), built on first use and loaded with ctypes.

:class:`adamdist.results.StatsAccumulator` summarises CPU tensors with one
pass of ``adamdist_stats`` instead of a dozen torch operations, and
:func:`adamdist.simulate.run` steps its optimizers with ``adamdist_step``
(one pass instead of eight). The source is plain
C99 with OpenMP and needs no Python or torch headers, so building it takes a
second with any C compiler (``$CC``, else ``cc``). The shared library is
cached under ``$ADAMDIST_KERNEL_CACHE`` (default
``~/.cache/adamdist/kernels``), named by a hash of the source, the flags and
the platform, and written atomically, so concurrent processes never load a
half-written file.

Without a working compiler both use their torch route, which gives the same
results (to float rounding) more slowly; that is announced once with a
:class:`RuntimeWarning`, never silently. ``ADAMDIST_NATIVE=0`` turns the
kernel off deliberately (no warning); ``ADAMDIST_NATIVE=1`` makes a failed
build an error instead of a warning (CI sets it).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

__all__ = ["library", "native_mode"]

_SOURCE = Path(__file__).with_name("kernels.c")
_FLAGS = ["-O3", "-std=c99", "-fPIC", "-shared", "-ffp-contract=off", "-fno-math-errno"]
# -ffp-contract=off: no fused multiply-adds but the ones written out, so (a - b) / lr rounds exactly as
# torch's separate operations do. -fno-math-errno: sqrt becomes one (vector) instruction.
# Tried in order, the first that builds wins:
# -march=native doubles the speed (wide vectors); the library is then only good for this CPU, which is why
# the CPU's feature flags are part of its name. -fopenmp spreads the work over torch's threads; compilers
# without OpenMP (Apple's clang) get -fopenmp-simd: vector loops, one thread.
_VARIANTS = (["-march=native", "-fopenmp"], ["-fopenmp"], ["-march=native", "-fopenmp-simd"], ["-fopenmp-simd"])

_lib = None
_tried = False
built_with: list[str] | None = None
"""Flags of the loaded build (``None`` before the first :func:`library` call or without one)."""


def native_mode() -> str:
    """``"off"``, ``"auto"`` (default) or ``"required"``, from ``ADAMDIST_NATIVE``."""
    value = os.environ.get("ADAMDIST_NATIVE", "").strip().lower()
    if value in ("0", "off", "false", "no"):
        return "off"
    if value in ("1", "on", "true", "yes", "required"):
        return "required"
    if value in ("", "auto"):
        return "auto"
    raise ValueError(f"ADAMDIST_NATIVE must be 0 (off), 1 (required) or auto, got {value!r}")


def _cache_dir() -> Path:
    root = os.environ.get("ADAMDIST_KERNEL_CACHE")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "adamdist" / "kernels"


def _cpu_signature() -> bytes:
    """What identifies this CPU's instruction set (the ``flags`` line of /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.encode()
    except OSError:
        pass
    return platform.processor().encode()


def _build(compiler: str, flags: list[str]) -> Path:
    source = _SOURCE.read_bytes()
    key = hashlib.sha256(b"\0".join([source, " ".join(flags).encode(), compiler.encode(), platform.machine().encode(),
                                     sys.platform.encode(), _cpu_signature()])).hexdigest()[:16]
    target = _cache_dir() / f"kernels-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        proc = subprocess.run([compiler, *flags, str(_SOURCE), "-o", tmp, "-lm"],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{compiler} failed with status {proc.returncode}:\n{proc.stderr.strip()}")
        os.replace(tmp, target)  # atomic: another process sees the old state or the whole library
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def library():
    """The loaded kernel (a ``ctypes.CDLL``), or ``None`` when it is off or cannot be built.

    Built at most once per process. Import torch before calling: its bundled
    OpenMP runtime is then the one the kernel links against.
    """
    global _lib, _tried, built_with
    mode = native_mode()
    if mode == "off":
        return None
    if _tried:
        return _lib
    _tried = True
    compiler = os.environ.get("CC") or "cc"
    try:
        if shutil.which(compiler) is None:
            raise RuntimeError(f"no C compiler {compiler!r} on PATH (set CC to choose one)")
        errors = []
        for variant in _VARIANTS:
            try:
                lib = ctypes.CDLL(str(_build(compiler, _FLAGS + variant)))
                built_with = [compiler, *_FLAGS, *variant]
                break
            except (OSError, RuntimeError) as exc:
                errors.append(f"{' '.join(variant)}: {exc}")
        else:
            raise RuntimeError("every build failed:\n" + "\n".join(errors))
        lib.adamdist_stats.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_void_p,
                                       ctypes.c_int64, ctypes.c_int, ctypes.c_double, ctypes.c_double,
                                       ctypes.c_int]
        lib.adamdist_stats.restype = ctypes.c_int
        lib.adamdist_step.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                      ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int]
        lib.adamdist_step.restype = ctypes.c_int
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        if mode == "required":
            raise RuntimeError(f"ADAMDIST_NATIVE=1 but adamdist's compiled kernels could not be built: {exc}") from exc
        warnings.warn(f"adamdist's compiled kernels are unavailable ({exc}); statistics and simulations on the "
                      f"CPU use the torch route instead: same results, several times slower. Install a C compiler "
                      f"(e.g. apt install gcc) or set ADAMDIST_NATIVE=0 to silence this.",
                      RuntimeWarning, stacklevel=3)
        return None
    _lib = lib
    return _lib
