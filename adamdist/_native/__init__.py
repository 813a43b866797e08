"""adamdist's compiled CPU kernels (``kernels.c``), built on first use and loaded with ctypes.

:class:`adamdist.results.StatsAccumulator` summarises CPU tensors with one
pass of ``adamdist_stats`` instead of a dozen torch operations, and
:func:`adamdist.simulate.run` steps its optimizers with ``adamdist_step``
(one pass instead of eight). The source is plain
C99 with OpenMP and needs no Python or torch headers, so building it takes a
second with any C compiler: ``$CC``, split into words as a shell would (so
``CC="ccache gcc -O2"`` works; its flags come before adamdist's), else ``cc``.

The shared library is cached under ``$ADAMDIST_KERNEL_CACHE`` (default
``~/.cache/adamdist/kernels``) as ``kernels-<build>-<size>-<checksum>.so``:
``<build>`` hashes the source, the command and the platform, and the size and
checksum of the library's own bytes are recorded in its name by the single
atomic rename that publishes it. A cached library is verified against them
before it is loaded (once per process); a truncated or otherwise damaged one,
or one the loader refuses, is deleted and rebuilt, so a damaged cache costs a
second's build instead of a crash.

The fastest build the compiler accepts is used (:data:`built_with` tells
which); a slower one only when the compiler refuses the faster flags, and
that is announced with a :class:`RuntimeWarning`. Without a working compiler
both use their torch route, which gives the same results (to float rounding)
more slowly; that is announced once with a :class:`RuntimeWarning`, never
silently. ``ADAMDIST_NATIVE=0`` turns the kernel off deliberately (no
warning); ``ADAMDIST_NATIVE=1`` makes a failed build an error instead of a
warning, raised by every call (CI sets it). The variable is read at each call.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shlex
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
_error: Exception | None = None  # why this process's build failed: ADAMDIST_NATIVE=1 raises it on every call
built_with: list[str] | None = None
"""Command of the loaded build: compiler, flags (``None`` before the first :func:`library` call or without one)."""


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


def _compiler() -> list[str]:
    """``$CC`` split into words as a shell would (a compiler and its own flags), else ``["cc"]``."""
    value = os.environ.get("CC", "")
    try:
        words = shlex.split(value) or ["cc"]
    except ValueError as exc:
        raise RuntimeError(f"CC={value!r} cannot be split into words as a shell would: {exc}") from None
    if shutil.which(words[0]) is None:
        raise RuntimeError(f"no C compiler {words[0]!r} on PATH (set CC to choose one)")
    return words


def _checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def _intact(path: Path) -> bool:
    """Whether ``path`` holds what its name records: its size, then its checksum."""
    *_, size, checksum = path.stem.split("-")
    try:
        return path.stat().st_size == int(size) and _checksum(path.read_bytes()) == checksum
    except (OSError, ValueError):
        return False


def _build(command: list[str], key: str) -> Path:
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
    os.close(fd)
    try:
        proc = subprocess.run([*command, str(_SOURCE), "-o", tmp, "-lm"], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{command[0]} failed with status {proc.returncode}:\n{proc.stderr.strip()}")
        data = Path(tmp).read_bytes()
        target = cache / f"kernels-{key}-{len(data)}-{_checksum(data)}.so"
        # one atomic rename publishes the whole library and, in its name, the size and checksum to verify
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _load(command: list[str]) -> ctypes.CDLL:
    """The library ``command`` builds: a cached copy that verifies and loads, else a fresh build."""
    key = hashlib.sha256(b"\0".join([_SOURCE.read_bytes(), shlex.join(command).encode(), platform.machine().encode(),
                                     sys.platform.encode(), _cpu_signature()])).hexdigest()[:16]
    for path in sorted(_cache_dir().glob(f"kernels-{key}-*-*.so")):
        if _intact(path):
            try:
                return ctypes.CDLL(str(path))
            except OSError:
                pass  # as good as damaged: rebuilt below
        with contextlib.suppress(OSError):  # gone already (another process) or a read-only cache
            path.unlink()
    return ctypes.CDLL(str(_build(command, key)))


def _declare(lib: ctypes.CDLL) -> None:
    lib.adamdist_stats.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_void_p,
                                   ctypes.c_int64, ctypes.c_int, ctypes.c_double, ctypes.c_double, ctypes.c_int]
    lib.adamdist_stats.restype = ctypes.c_int
    lib.adamdist_step.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                  ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int]
    lib.adamdist_step.restype = ctypes.c_int


def _load_fastest() -> tuple[ctypes.CDLL, list[str]]:
    """The first variant that builds and loads, and its command; warns when it is not the fastest."""
    compiler = _compiler()
    refused = []
    for variant in _VARIANTS:
        command = [*compiler, *_FLAGS, *variant]
        try:
            lib = _load(command)
        except (OSError, RuntimeError) as exc:
            refused.append(f"{' '.join(variant)}: {exc}")
            continue
        _declare(lib)
        if refused:
            missing = " ".join(flag for flag in _VARIANTS[0] if flag not in variant)
            warnings.warn(f"adamdist's compiled kernels were built without {missing} and run more slowly, because "
                          f"the faster builds failed (set CC to a compiler that takes them):\n" + "\n".join(refused),
                          RuntimeWarning, stacklevel=4)
        return lib, command
    raise RuntimeError("every build failed:\n" + "\n".join(refused))


def library():
    """The loaded kernel (a ``ctypes.CDLL``), or ``None`` when it is off or cannot be built.

    Built (or verified in the cache and loaded) at most once per process;
    ``ADAMDIST_NATIVE`` is read at every call. Import torch before calling:
    its bundled OpenMP runtime is then the one the kernel links against.

    Returns
    -------
    ctypes.CDLL or None
        ``None`` when ``ADAMDIST_NATIVE=0``, or when no build works and the mode
        is auto (announced by a ``RuntimeWarning`` on the first call).

    Raises
    ------
    RuntimeError
        On every call while ``ADAMDIST_NATIVE=1`` and the kernel could not be
        built, with the compiler's error.
    ValueError
        If ``ADAMDIST_NATIVE`` has a value other than 0, 1 or auto.

    Warns
    -----
    RuntimeWarning
        When the kernel is unavailable in auto mode, or when the compiler
        refused the fastest build and a slower one is used (see ``built_with``).
    """
    global _lib, _tried, _error, built_with
    mode = native_mode()
    if mode == "off":
        return None
    if not _tried:
        _tried = True
        try:
            _lib, built_with = _load_fastest()
            _error = None
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            _lib, _error = None, exc
            if mode == "auto":
                warnings.warn(f"adamdist's compiled kernels are unavailable ({exc}); statistics and simulations on "
                              f"the CPU use the torch route instead: same results, several times slower. Install a "
                              f"C compiler (e.g. apt install gcc) or set ADAMDIST_NATIVE=0 to silence this.",
                              RuntimeWarning, stacklevel=3)
    if _lib is None and mode == "required":
        raise RuntimeError(f"ADAMDIST_NATIVE=1 but adamdist's compiled kernels could not be built: {_error}") from _error
    return _lib
