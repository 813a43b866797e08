import os
import signal
import stat
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from adamdist import _native
from adamdist.results import StatsAccumulator, compare_with_law, default_edges, load


def _accumulate(values_per_step, edges, sample_size=50):
    names = ["a", "b"]
    acc = StatsAccumulator(names, [v.numel() for v in values_per_step[0]], len(values_per_step), edges,
                           sample_size=sample_size, seed=3)
    for slot, tensors in enumerate(values_per_step):
        acc.set_step(slot, slot + 1)
        for j, t in enumerate(tensors):
            acc.record(slot, j, t)
    return acc.result(metadata={"optimizer": "test"})


@pytest.mark.parametrize("route", ["native", "torch"])
def test_accumulator_matches_numpy(route, monkeypatch):
    if route == "torch":
        monkeypatch.setenv("ADAMDIST_NATIVE", "0")
    gen = torch.Generator().manual_seed(0)
    steps = [[torch.randn(1000, generator=gen) * 2, torch.rand(7, 9, generator=gen) - 0.3] for _ in range(3)]
    steps[1][0][5] = float("nan")
    steps[2][1][0, 0] = float("inf")
    edges = np.linspace(-3, 3, 13)
    stats = _accumulate(steps, edges)
    for i, tensors in enumerate(steps):
        for j, t in enumerate(tensors):
            x = t.double().numpy().ravel()
            bad = ~np.isfinite(x)
            x = x[~bad]
            assert stats.count[i, j] == x.size and stats.nonfinite[i, j] == bad.sum()
            assert stats.mean[i, j] == pytest.approx(x.mean(), rel=1e-12)
            assert stats.var[i, j] == pytest.approx(x.var(), rel=1e-12)
            assert stats.abs_var[i, j] == pytest.approx(np.abs(x).var(), rel=1e-12)
            skew = ((x - x.mean()) ** 3).mean() / x.var() ** 1.5
            assert stats.skew[i, j] == pytest.approx(skew, rel=1e-10, abs=1e-12)
            hist, _ = np.histogram(x, edges)
            np.testing.assert_array_equal(stats.hist[i, j], hist)
            assert stats.underflow[i, j] == (x < edges[0]).sum()
            assert stats.overflow[i, j] == (x > edges[-1]).sum()
    # the same coordinates are sampled at every step
    s = stats.samples["a"]
    assert s.shape == (3, 50)
    full = [t[0].double().numpy().ravel() for t in steps]
    idx = np.flatnonzero(np.isin(full[0], s[0]))
    np.testing.assert_array_equal(full[2][idx], s[2])
    assert stats.samples["b"].shape == (3, 50)


def test_all_nonfinite_gives_nan_moments_not_crash():
    stats = _accumulate([[torch.full((10,), float("nan")), torch.ones(4)]], default_edges())
    assert stats.count[0, 0] == 0 and stats.nonfinite[0, 0] == 10
    assert np.isnan(stats.mean[0, 0])
    assert stats.var[0, 1] == 0 and np.isnan(stats.skew[0, 1])


def test_frames_and_roundtrip(tmp_path):
    gen = torch.Generator().manual_seed(1)
    stats = _accumulate([[torch.randn(200, generator=gen), torch.randn(30, generator=gen)] for _ in range(4)],
                        default_edges(3.0, 12))
    moments = stats.to_frame("moments")
    assert {"step", "name", "count", "mean", "var", "abs_var", "skew", "nonfinite"} <= set(moments.columns)
    assert moments["step"].tolist()[:2] == [1, 1] and moments["step"].max() == 4
    hist = stats.to_frame("hist")
    assert {"step", "name", "left", "right", "count"} <= set(hist.columns)
    totals = hist.groupby(["step", "name"])["count"].sum().to_numpy()
    np.testing.assert_array_equal(np.sort(totals), np.sort(stats.count.ravel()))
    dens = hist[np.isfinite(hist.left) & np.isfinite(hist.right)]
    sample = stats.to_frame("sample")
    assert list(sample.columns) == ["step", "name", "value"]
    assert len(sample) == 4 * (50 + 30)
    path = tmp_path / "sub" / "stats.npz"
    stats.save(path)
    back = load(path)
    assert back.names == stats.names and back.metadata == {"optimizer": "test"}
    for f in ("count", "mean", "var", "hist", "underflow", "overflow"):
        np.testing.assert_array_equal(getattr(back, f), getattr(stats, f))
    np.testing.assert_array_equal(back.samples["b"], stats.samples["b"])
    pd.testing.assert_frame_equal(back.to_frame("hist"), hist)
    assert [p.name for p in path.parent.iterdir()] == ["stats.npz"]  # no temporary left behind
    assert dens["density"].ge(0).all()


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    stats = _accumulate([[torch.ones(3), torch.ones(3)]], default_edges())
    path = tmp_path / "stats.npz"
    stats.save(path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(RuntimeError):
        stats.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.npz"]


def test_compare_with_theory_detects_agreement_and_disagreement():
    rng = np.random.default_rng(0)
    m_steps = np.arange(1, 7)
    g = rng.standard_normal((6, 20000))
    u = g / np.sqrt(np.cumsum(g**2, axis=0) / m_steps[:, None])  # Theorem 1's recursion
    wrong = rng.standard_t(5, size=(6, 2000))
    stats = _accumulate([[torch.from_numpy(u[i]), torch.from_numpy(wrong[i])] for i in range(6)],
                        default_edges(), sample_size=2000)
    table = compare_with_law(stats)
    good = table[table.name == "a"]
    bad = table[(table.name == "b") & (table.step >= 2)]
    assert (good.ks < good.ks_band).all()
    assert (bad.ks > bad.ks_band).all()
    assert np.allclose(good.var_ratio, 1, atol=0.05)


@pytest.mark.parametrize("edges, msg", [([0.0], "at least 2"), ([0, 1, 1], "strictly increasing"),
                                        ([0, np.inf], "finite")])
def test_bad_edges(edges, msg):
    with pytest.raises(ValueError, match=msg):
        StatsAccumulator(["a"], [3], 1, edges)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_steps"):
        StatsAccumulator(["a"], [3], 0, default_edges())
    with pytest.raises(ValueError, match="unique"):
        StatsAccumulator(["a", "a"], [3, 3], 1, default_edges())
    with pytest.raises(TypeError, match="bins"):
        default_edges(2.0, 3.5)
    stats = _accumulate([[torch.ones(3), torch.ones(3)]], default_edges())
    with pytest.raises(ValueError, match="kind"):
        stats.to_frame("histogram")
    with pytest.raises(ValueError, match="not in this result"):
        stats.select(names=["zzz"])
    with pytest.raises(ValueError, match="were not recorded"):
        stats.select(steps=[5])


def test_ks_distance_exact_for_continuous_and_discrete():
    from scipy import stats as st

    from adamdist.results import ks_distance
    from adamdist.theory import update_distribution

    x = np.random.default_rng(2).standard_normal(500)
    assert ks_distance(x, st.norm.cdf) == pytest.approx(st.kstest(x, st.norm.cdf).statistic, abs=1e-12)
    signs = np.where(np.random.default_rng(3).random(1000) < 0.5, -1.0, 1.0)
    law = update_distribution(1)
    frac = (signs < 0).mean()
    assert ks_distance(signs, law.cdf) == pytest.approx(abs(frac - 0.5), abs=1e-12)
    with pytest.raises(ValueError, match="non-empty"):
        ks_distance([], st.norm.cdf)


def test_compare_snaps_float_rounding_onto_the_m1_atoms():
    signs = np.where(np.random.default_rng(4).random(4000) < 0.5, -1.0, 1.0) * np.float32(0.99999994)
    stats = _accumulate([[torch.from_numpy(signs), torch.from_numpy(signs)]], default_edges(), sample_size=4000)
    table = compare_with_law(stats)
    assert (table.ks < table.ks_band).all()


# -- the compiled kernel (adamdist._native) against the torch route -----------------------------------------

def _record_once(x, edges, sample_size=10, native=True, monkeypatch=None):
    if not native:
        monkeypatch.setenv("ADAMDIST_NATIVE", "0")
    acc = StatsAccumulator(["a"], [x.numel()], 1, edges, sample_size=sample_size, seed=5)
    acc.set_step(0, 1)
    acc.record(0, 0, x)
    if not native:
        monkeypatch.delenv("ADAMDIST_NATIVE")
    return acc.result()


NONUNIFORM = np.concatenate([-np.geomspace(5, 0.01, 20), [0.0], np.geomspace(0.01, 5, 20)])


@pytest.mark.parametrize("edges", [default_edges(), np.linspace(-3, 3, 13), np.linspace(-1.37, 2.9, 51),
                                   np.linspace(0.1, 0.7, 7), NONUNIFORM], ids=["default", "13", "51", "7", "geom"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_native_kernel_equals_torch_route(edges, dtype, monkeypatch):
    """Histogram bin for bin (edges included), counts, samples bit for bit, moments to float64 rounding."""
    if _native.library() is None:
        pytest.skip("no C compiler: the torch route is all there is")
    rng = np.random.default_rng(0)
    on_grid = rng.integers(-120, 120, 20_000) * 0.05  # many values on, or within rounding of, an edge
    vals = np.concatenate([edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf), on_grid,
                           rng.standard_normal(50_000) * 3 + 0.5, [7.0, 0.0, -1e30, 1e30, np.nan, np.inf, -np.inf]])
    rng.shuffle(vals)  # non-finite entries land in different blocks and chunks
    x = torch.tensor(vals, dtype=dtype)
    a = _record_once(x, edges, sample_size=500)
    b = _record_once(x, edges, sample_size=500, native=False, monkeypatch=monkeypatch)
    ref, _ = np.histogram(vals[np.isfinite(vals)].astype(x.numpy().dtype).astype(np.float64), edges)
    np.testing.assert_array_equal(a.hist[0, 0], ref)
    for field in ("hist", "underflow", "overflow", "count", "nonfinite"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    np.testing.assert_array_equal(a.samples["a"], b.samples["a"])
    assert a.nonfinite[0, 0] == 3
    # moments without the +-1e30 pair, which no summation order survives
    keep = np.isfinite(vals) & (np.abs(vals) < 1e29)
    y = torch.tensor(vals[keep], dtype=dtype)
    s = _record_once(y, edges)
    v = y.double().numpy()
    assert s.mean[0, 0] == pytest.approx(v.mean(), rel=1e-12)
    assert s.var[0, 0] == pytest.approx(v.var(), rel=1e-12)
    assert s.abs_var[0, 0] == pytest.approx(np.abs(v).var(), rel=1e-12)
    assert s.skew[0, 0] == pytest.approx(((v - v.mean()) ** 3).mean() / v.var() ** 1.5, rel=1e-10)


def test_native_kernel_large_mean_and_edge_cases():
    """A mean far larger than the spread loses no digits; constant, empty-of-finite and tiny tensors."""
    if _native.library() is None:
        pytest.skip("no C compiler")
    gen = torch.Generator().manual_seed(0)
    x = 1e4 + torch.randn(200_000, generator=gen, dtype=torch.float64) * 1e-3
    s = _record_once(x, default_edges())
    v = x.numpy()
    assert s.var[0, 0] == pytest.approx(v.var(), rel=1e-9)
    assert s.abs_var[0, 0] == pytest.approx(np.abs(v).var(), rel=1e-9)
    assert s.overflow[0, 0] == v.size
    const = _record_once(torch.full((1000,), 0.25), default_edges())
    assert const.var[0, 0] == 0 and const.abs_var[0, 0] == 0 and np.isnan(const.skew[0, 0])
    nan = _record_once(torch.full((70_000,), float("nan")), default_edges())
    assert nan.count[0, 0] == 0 and nan.nonfinite[0, 0] == 70_000 and np.isnan(nan.mean[0, 0])
    one = _record_once(torch.tensor([4.0]), default_edges())  # the last edge belongs to the last bin
    assert one.hist[0, 0, -1] == 1 and one.overflow[0, 0] == 0


def test_native_batch_of_updates_matches_manual_difference():
    """NativeBatch.run(before=...) summarises (before - after) / neg_lr without writing it out."""
    if _native.library() is None:
        pytest.skip("no C compiler")
    gen = torch.Generator().manual_seed(2)
    after = [torch.randn(n, generator=gen) for n in (5, 40_000, 100_000)]
    before = [a + 1e-3 * torch.randn(a.shape, generator=gen) for a in after]
    lr = 1e-3
    names = ["p0", "p1", "p2"]
    acc = StatsAccumulator(names, [a.numel() for a in after], 2, default_edges(), sample_size=0)
    out = [torch.zeros((2, 3), dtype=torch.float64) for _ in after]
    batch = acc.native_batch([0, 1, 2], [a.numel() for a in after], torch.float32,
                             samples=[(torch.tensor([0, 2, 4]), None, o) for o in out])
    batch.run(1, after, before=before, neg_lr=-lr)
    acc.set_step(1, 1)
    s = acc.result().select(steps=[1])
    for j, (a, b) in enumerate(zip(after, before)):
        u = (b - a).div_(-lr)  # what the recorder's torch route computes
        ref = _record_once(u, default_edges(), sample_size=0)
        np.testing.assert_array_equal(s.hist[0, j], ref.hist[0, 0])
        assert s.var[0, j] == pytest.approx(ref.var[0, 0], rel=1e-12)
        np.testing.assert_array_equal(out[j][1], u[[0, 2, 4]].double().numpy())
    with pytest.raises(ValueError, match="does not match this batch"):
        batch.run(0, [a.double() for a in after], before=before, neg_lr=-lr)


def test_native_kernel_build_failure_is_announced(tmp_path, monkeypatch):
    monkeypatch.setattr(_native, "_lib", None)
    monkeypatch.setattr(_native, "_tried", False)
    monkeypatch.setenv("ADAMDIST_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("ADAMDIST_NATIVE", "auto")
    with pytest.warns(RuntimeWarning, match="compiled kernels are unavailable"):
        assert _native.library() is None
    # the torch route still gives the statistics
    s = _record_once(torch.tensor([0.5, -0.5, 0.25]), default_edges())
    assert s.count[0, 0] == 3 and s.var[0, 0] == pytest.approx(np.var([0.5, -0.5, 0.25]))
    monkeypatch.setattr(_native, "_tried", False)
    monkeypatch.setenv("ADAMDIST_NATIVE", "1")
    with pytest.raises(RuntimeError, match="ADAMDIST_NATIVE=1"):
        _native.library()
    monkeypatch.setenv("ADAMDIST_NATIVE", "sometimes")
    with pytest.raises(ValueError, match="ADAMDIST_NATIVE"):
        _native.library()


def test_native_kernel_is_built_once_into_the_cache(tmp_path, monkeypatch):
    if _native.library() is None:
        pytest.skip("no C compiler")
    monkeypatch.setattr(_native, "_lib", None)
    monkeypatch.setattr(_native, "_tried", False)
    monkeypatch.setenv("ADAMDIST_KERNEL_CACHE", str(tmp_path))
    assert _native.library() is not None
    built = list(tmp_path.glob("kernels-*.so"))
    assert len(built) == 1 and not list(tmp_path.glob("*.tmp*"))
    stamp = built[0].stat().st_mtime_ns
    monkeypatch.setattr(_native, "_tried", False)
    assert _native.library() is not None
    assert built[0].stat().st_mtime_ns == stamp  # loaded, not rebuilt


def test_native_kernel_present_where_required():
    """CI sets ADAMDIST_NATIVE=1, so the fast path is what its tests exercise (not only the fallback)."""
    if _native.native_mode() != "required":
        pytest.skip("ADAMDIST_NATIVE is not 1")
    assert _native.library() is not None


def test_native_kernel_builds_without_openmp_or_native_arch(tmp_path, monkeypatch):
    """A compiler that knows neither -fopenmp nor -march=native (Apple's clang, say) still gets the kernel."""
    import shutil

    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    picky = tmp_path / "picky-cc"
    picky.write_text(f'#!/bin/sh\nfor a in "$@"; do case "$a" in -fopenmp|-march=native) exit 1;; esac; done\n'
                     f'exec {cc} "$@"\n')
    picky.chmod(0o755)
    monkeypatch.setattr(_native, "_lib", None)
    monkeypatch.setattr(_native, "_tried", False)
    monkeypatch.setattr(_native, "built_with", None)
    monkeypatch.setenv("ADAMDIST_KERNEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(picky))
    monkeypatch.setenv("ADAMDIST_NATIVE", "auto")
    assert _native.library() is not None
    assert "-fopenmp-simd" in _native.built_with and "-march=native" not in _native.built_with
    x = torch.randn(100_000, generator=torch.Generator().manual_seed(0))
    s = _record_once(x, default_edges())
    np.testing.assert_array_equal(s.hist[0, 0], np.histogram(x.double().numpy(), default_edges())[0])
    assert s.var[0, 0] == pytest.approx(x.double().numpy().var(), rel=1e-12)


def test_device_batch_launches_the_same_operations_for_any_number_of_tensors():
    """What a GPU pays for is launches: DeviceBatch's count must not grow with the tensors it covers."""
    from _opwatch import SyncWatch

    counts = []
    for k in (2, 5, 60):  # (one tensor alone takes a few extra views: repeat_interleave's fast path)
        sizes = [7 * (i + 1) for i in range(k)]
        acc = StatsAccumulator([f"t{i}" for i in range(k)], sizes, 1, default_edges(), sample_size=0)
        batch = acc.device_batch(list(range(k)), sizes, samples=(torch.arange(k), torch.zeros(1, k, dtype=torch.float64),
                                                                 torch.arange(k)))
        values = torch.randn(sum(sizes))
        with SyncWatch() as watch:
            batch.run(0, values)
        counts.append(len(watch.ops))
        for i, chunk in enumerate(values.split(sizes)):  # and the rows are each tensor's own
            np.testing.assert_allclose(acc.result().var[0, i], chunk.double().var(unbiased=False).item(), rtol=1e-12)
    assert counts[0] == counts[1] == counts[2] < 60


def _saved_payload(tmp_path):
    """A good file's entries, to build damaged variants from."""
    stats = _accumulate([[torch.ones(3), torch.ones(3)]], default_edges())
    good = tmp_path / "good.npz"
    stats.save(good)
    with np.load(good) as data:
        return good, {k: data[k] for k in data.files}


def _write_npz(path, payload):
    with open(path, "wb") as fh:
        np.savez(fh, **payload)


@pytest.mark.parametrize("damage", ["truncated", "flipped_bytes", "empty", "text", "npy", "random_npz", "plain_zip",
                                    "object_array", "missing_key", "bad_json", "names_not_a_list",
                                    "wrong_shape", "text_counts", "version_not_a_number"])
def test_load_rejects_damaged_or_foreign_files(tmp_path, damage):
    good, payload = _saved_payload(tmp_path)
    path = tmp_path / "bad.npz"
    raw = good.read_bytes()
    if damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "flipped_bytes":
        mid = len(raw) // 3
        path.write_bytes(raw[:mid] + bytes(b ^ 0xFF for b in raw[mid:mid + 64]) + raw[mid + 64:])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "text":
        path.write_text("steps,mean\n1,0.5\n")
    elif damage == "npy":
        with open(path, "wb") as fh:
            np.save(fh, np.arange(3))
    elif damage == "plain_zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("format_version", "1")
    elif damage == "random_npz":
        _write_npz(path, {"x": np.random.default_rng(0).normal(size=10)})
    else:
        if damage == "object_array":
            payload["mean"] = np.array([[{"a": 1}, None]], dtype=object)
        elif damage == "missing_key":
            del payload["hist"]
        elif damage == "bad_json":
            payload["metadata_json"] = np.array("{not json")
        elif damage == "names_not_a_list":
            payload["names_json"] = np.array('{"a": 1}')
        elif damage == "wrong_shape":
            payload["mean"] = np.zeros((5, 7))
        elif damage == "text_counts":
            payload["count"] = np.full(payload["count"].shape, "x")
        elif damage == "version_not_a_number":
            payload["format_version"] = np.array("one")
        _write_npz(path, payload)
    with pytest.raises(ValueError) as info:
        load(path)
    assert type(info.value) is ValueError  # not JSONDecodeError, nor numpy's own errors
    message = str(info.value)
    assert str(path) in message and "allow_pickle" not in message


def test_load_of_a_missing_file_stays_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nothing.npz")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_saved_file_gets_the_umask_permissions(tmp_path, umask, mode):
    stats = _accumulate([[torch.ones(3), torch.ones(3)]], default_edges())
    old = os.umask(umask)
    try:
        stats.save(tmp_path / "stats.npz")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "stats.npz").stat().st_mode) == mode


_SAVE_IN_CHILD = """
import os, signal, sys
import numpy as np
from adamdist.results import UpdateStats

z = np.zeros((1, 1))
stats = UpdateStats(steps=[1], names=["w"], edges=[0.0, 1.0], count=z, mean=z, var=z, abs_var=z, skew=z,
                    nonfinite=z, hist=np.zeros((1, 1, 1)), underflow=z, overflow=z)
real = np.savez_compressed

def halfway(fh, **payload):
    fh.write(b"PK partial")
    fh.flush()
    if sys.argv[1] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    print("writing", flush=True)
    sys.stdin.readline()  # the parent says when to finish
    fh.seek(0)
    fh.truncate()
    real(fh, **payload)

np.savez_compressed = halfway
stats.save(sys.argv[2])
"""


def test_save_cleans_up_temporaries_of_killed_saves(tmp_path):
    child = subprocess.run([sys.executable, "-c", _SAVE_IN_CHILD, "kill", str(tmp_path / "child.npz")],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]  # the killed save's leftover
    _accumulate([[torch.ones(3), torch.ones(3)]], default_edges()).save(tmp_path / "stats.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.npz"]


def test_save_keeps_the_temporary_of_a_save_still_running(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", _SAVE_IN_CHILD, "wait", str(tmp_path / "child.npz")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "writing\n", child.stderr.read()
        _accumulate([[torch.ones(3), torch.ones(3)]], default_edges()).save(tmp_path / "stats.npz")
        assert len([p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]) == 1
        child.stdin.write("\n")
        child.stdin.close()
        assert child.wait(timeout=120) == 0, child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["child.npz", "stats.npz"]
    assert load(tmp_path / "child.npz").names == ("w",)


def test_ks_band_is_the_kolmogorov_quantile():
    from scipy import stats as st

    from adamdist.results import ks_band

    # one sample: the finite-n 99% quantile of D_n approaches K_0.99 / sqrt(n)
    assert ks_band(20_000) == pytest.approx(st.kstwo.ppf(0.99, 20_000), rel=5e-3)
    # two equal samples of one law: sqrt(2 / n) times the same constant
    assert ks_band(500, 500) == pytest.approx(ks_band(250))
    assert ks_band(np.array([100, 400])).tolist() == pytest.approx([ks_band(100), ks_band(100) / 2])
    with pytest.raises(ValueError, match="sample sizes must be positive"):
        ks_band(0)
    with pytest.raises(ValueError, match="level must lie in"):
        ks_band(10, level=1.0)


def test_merge_shards_equals_the_whole_tensor():
    from adamdist.results import merge_shards

    rng = np.random.default_rng(4)
    edges = default_edges()
    whole = [torch.as_tensor(3.0 + rng.standard_normal(5000) * rng.uniform(0.5, 2)) for _ in range(3)]
    cuts = (0, 1200, 1201, 5000)  # uneven shards, one of a single entry
    shards = [[w[a:b] for w in whole] for a, b in zip(cuts[:-1], cuts[1:])]

    def summary(columns):
        stats = _accumulate([[c, c] for c in columns], edges)
        abs_sum = np.array([[float(c.abs().sum())] * 2 for c in columns])
        return stats, abs_sum

    ref, _ = summary(whole)
    merged = merge_shards([summary(s) for s in shards], 0)
    for f in ("count", "nonfinite", "hist", "underflow", "overflow"):
        np.testing.assert_array_equal(merged[f], getattr(ref, f)[:, 0], err_msg=f)
    for f in ("mean", "var", "abs_var", "skew"):
        np.testing.assert_allclose(merged[f], getattr(ref, f)[:, 0], rtol=1e-9, err_msg=f)
    alone = merge_shards([summary(whole)], 1)
    np.testing.assert_array_equal(alone["var"], ref.var[:, 1])
