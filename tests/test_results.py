import numpy as np
import pandas as pd
import pytest
import torch

from adamdist.results import StatsAccumulator, UpdateStats, compare_with_law, default_edges, load


def _accumulate(values_per_step, edges, sample_size=50):
    names = ["a", "b"]
    acc = StatsAccumulator(names, [v.numel() for v in values_per_step[0]], len(values_per_step), edges,
                           sample_size=sample_size, seed=3)
    for slot, tensors in enumerate(values_per_step):
        acc.set_step(slot, slot + 1)
        for j, t in enumerate(tensors):
            acc.record(slot, j, t)
    return acc.result(metadata={"optimizer": "test"})


def test_accumulator_matches_numpy():
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
