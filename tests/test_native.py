"""The compiled-kernel build cache and loader (adamdist._native): damaged caches, required mode, $CC."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from adamdist import _native
from adamdist.results import StatsAccumulator, default_edges

CC = shutil.which("cc")
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler")


def _fresh(monkeypatch, cache, **env):
    """Forget this process's kernel, so that the next library() call looks at ``cache`` again."""
    monkeypatch.setattr(_native, "_lib", None)
    monkeypatch.setattr(_native, "_tried", False)
    monkeypatch.setattr(_native, "built_with", None)
    monkeypatch.setenv("ADAMDIST_KERNEL_CACHE", str(cache))
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def _variance(x):
    acc = StatsAccumulator(["a"], [x.numel()], 1, default_edges(), sample_size=0, seed=0)
    acc.set_step(0, 1)
    acc.record(0, 0, x)
    return acc.result().var[0, 0]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A cache holding the best build of the kernel, and the flags it was built with."""
    if CC is None:
        pytest.skip("no C compiler")
    cache = tmp_path_factory.mktemp("built")
    with pytest.MonkeyPatch.context() as mp:
        _fresh(mp, cache, ADAMDIST_NATIVE="1")
        mp.delenv("CC", raising=False)
        _native.library()
        flags = list(_native.built_with)
    return cache, flags


# The child summarises a tensor with the kernel (ADAMDIST_NATIVE=1: no torch route to hide behind).
_CHILD = """
import json, torch
from adamdist import _native
from adamdist.results import StatsAccumulator, default_edges
assert _native.library() is not None
x = torch.linspace(-1, 1, 100_001)
acc = StatsAccumulator(["a"], [x.numel()], 1, default_edges(), sample_size=0, seed=0)
acc.set_step(0, 1)
acc.record(0, 0, x)
s = acc.result()
print(json.dumps({"built_with": _native.built_with, "count": int(s.count[0, 0]), "var": float(s.var[0, 0]),
                  "hist": s.hist[0, 0].tolist()}))
"""


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


DAMAGE = {"truncated": lambda data: data[: len(data) // 2],
          "header-flip": lambda data: _flip(data, 1),  # b"\x7fELF" -> b"\x7f\xbaLF"
          "code-flip": lambda data: _flip(data, len(data) // 2)}  # the middle of the file is machine code


@needs_cc
@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_cached_library_is_rebuilt(built, damage, tmp_path):
    """Half a library (SIGBUS when loaded), a flipped byte in its ELF header (a silent slower build) or in
    its code (a crash or wrong numbers): the next process rebuilds the best variant, gets the right statistics, exits 0."""
    good, flags = built
    cache = tmp_path / "cache"
    shutil.copytree(good, cache)
    (lib,) = cache.glob("kernels-*.so")
    damaged = DAMAGE[damage](lib.read_bytes())
    lib.write_bytes(damaged)
    env = {**os.environ, "ADAMDIST_KERNEL_CACHE": str(cache), "ADAMDIST_NATIVE": "1"}
    env.pop("CC", None)
    child = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr
    out = json.loads(child.stdout.splitlines()[-1])
    assert out["built_with"] == flags  # the same variant, rebuilt, not a slower one
    x = torch.linspace(-1, 1, 100_001).double().numpy()
    assert out["count"] == x.size and out["var"] == pytest.approx(x.var(), rel=1e-12)
    np.testing.assert_array_equal(out["hist"], np.histogram(x, default_edges())[0])
    assert all(p.read_bytes() != damaged for p in cache.glob("kernels-*.so"))  # the damaged file is gone


@needs_cc
def test_cached_library_that_fails_to_load_is_rebuilt(built, tmp_path, monkeypatch):
    """A cached build that the loader refuses once is rebuilt, not skipped for a slower variant."""
    good, flags = built
    shutil.copytree(good, tmp_path / "cache")
    _fresh(monkeypatch, tmp_path / "cache", ADAMDIST_NATIVE="1")
    monkeypatch.delenv("CC", raising=False)
    real, refused = _native.ctypes.CDLL, []

    def refuse_first(path, *args, **kwargs):
        if not refused:
            refused.append(path)
            raise OSError(f"{path}: cannot open shared object file (simulated)")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(_native.ctypes, "CDLL", refuse_first)
    assert _native.library() is not None
    assert refused and _native.built_with == flags


@needs_cc
def test_slower_variant_only_after_a_compiler_error_and_announced(tmp_path, monkeypatch):
    """A compiler that refuses -march=native gets the portable build, with a warning that says so."""
    picky = tmp_path / "picky-cc"
    picky.write_text(f'#!/bin/sh\nfor a in "$@"; do case "$a" in -march=native) echo "no $a" >&2; exit 1;; esac; done\n'
                     f'exec {CC} "$@"\n')
    picky.chmod(0o755)
    _fresh(monkeypatch, tmp_path / "cache", CC=str(picky), ADAMDIST_NATIVE="auto")
    with pytest.warns(RuntimeWarning, match=r"(?s)without -march=native.*no -march=native"):
        assert _native.library() is not None
    assert "-march=native" not in _native.built_with and "-fopenmp" in _native.built_with
    x = torch.randn(10_000, generator=torch.Generator().manual_seed(0))
    assert _variance(x) == pytest.approx(x.double().numpy().var(), rel=1e-12)


def test_required_kernel_raises_on_every_call(tmp_path, monkeypatch):
    _fresh(monkeypatch, tmp_path / "cache", CC=str(tmp_path / "no-such-compiler"), ADAMDIST_NATIVE="1")
    for _ in range(3):
        with pytest.raises(RuntimeError, match="ADAMDIST_NATIVE=1.*no C compiler"):
            _native.library()


def test_required_mode_read_at_each_call(tmp_path, monkeypatch):
    """A process that failed in auto mode (one warning, torch route) and is then switched to required raises."""
    _fresh(monkeypatch, tmp_path / "cache", CC=str(tmp_path / "no-such-compiler"), ADAMDIST_NATIVE="auto")
    with pytest.warns(RuntimeWarning, match="compiled kernels are unavailable"):
        assert _native.library() is None
    assert _native.library() is None  # announced once, not on every call
    monkeypatch.setenv("ADAMDIST_NATIVE", "1")
    with pytest.raises(RuntimeError, match="ADAMDIST_NATIVE=1.*no C compiler"):
        _native.library()
    monkeypatch.setenv("ADAMDIST_NATIVE", "0")
    assert _native.library() is None


@needs_cc
def test_cc_with_flags_is_split_like_a_shell(tmp_path, monkeypatch):
    """CC='"/path with space/cc" -O2' is a compiler and its flags, not 'no compiler'."""
    folder = tmp_path / "my compilers"
    folder.mkdir()
    os.symlink(CC, folder / "cc")
    cc = f"{shlex.quote(str(folder / 'cc'))} -O2"
    _fresh(monkeypatch, tmp_path / "cache", CC=cc, ADAMDIST_NATIVE="1")
    assert _native.library() is not None
    assert _native.built_with[:2] == [str(folder / "cc"), "-O2"]
    x = torch.randn(10_000, generator=torch.Generator().manual_seed(1))
    assert _variance(x) == pytest.approx(x.double().numpy().var(), rel=1e-12)


def test_cc_that_cannot_be_split_is_named(tmp_path, monkeypatch):
    _fresh(monkeypatch, tmp_path / "cache", CC='"gcc -O2', ADAMDIST_NATIVE="1")
    with pytest.raises(RuntimeError, match=r"CC=.*gcc -O2"):
        _native.library()


# The C kernel and the Python side share two tables written twice by hand; these tests read the
# C source and fail as soon as the two drift apart.
_KERNEL_SOURCE = (Path(_native.__file__).parent / "kernels.c").read_text(encoding="utf-8")


def _c_struct_fields(name: str) -> list[tuple[str, str]]:
    body = re.search(r"typedef struct \{(?P<body>.*?)\}\s*" + name + ";", _KERNEL_SOURCE, re.S).group("body")
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    fields = []
    for decl in filter(None, (d.strip() for d in body.split(";"))):
        ctype, field = decl.rsplit(None, 1)
        fields.append((field.lstrip("*"), "pointer" if "*" in decl else ctype.split()[-1]))
    return fields


def test_the_job_layout_is_the_c_structs():
    from adamdist.results import _JOB_DTYPE

    kind = {"pointer": np.dtype(np.uintp), "double": np.dtype(np.float64), "int64_t": np.dtype(np.int64)}
    c_fields = _c_struct_fields("job_t")
    assert [f for f, _ in c_fields] == list(_JOB_DTYPE.names)
    assert [kind[k] for _, k in c_fields] == [_JOB_DTYPE.fields[f][0] for f in _JOB_DTYPE.names]
    assert _JOB_DTYPE.itemsize == 8 * len(c_fields)  # every field 8 bytes: no padding on either side


def test_the_optimizer_codes_are_the_c_kernels_cases():
    from adamdist.simulate import OPTIMIZERS

    cases = {int(code): name for code, name in re.findall(r"case (\d+): /\* (\w+)", _KERNEL_SOURCE)}
    assert cases == {opt.code: name for name, opt in OPTIMIZERS.items()}
