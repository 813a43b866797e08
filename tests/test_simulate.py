import re

import numpy as np
import pytest
import torch

from adamdist.optim import FairseqAdam
from adamdist.results import compare_with_law, default_edges
from adamdist.simulate import (OPTIMIZERS, Cauchy, GradientModel, Mixture, Normal, StudentT, count_modes,
                               mode_table, run, sparse_spikes)


def _gaussian_stream(n, steps, seed):
    """The gradients run() draws for Normal(): one normal_ per step from a generator seeded with seed."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.empty(n).normal_(0.0, 1.0, generator=gen) for _ in range(steps)]


def _torch_updates(opt_cls, kwargs, grads):
    """Updates of a torch.optim optimizer: theta is reset to 0 before each step, so theta_t (lr = 1) is u_t."""
    p = torch.zeros(grads[0].numel(), requires_grad=True)
    opt = opt_cls([p], lr=1.0, foreach=False, **kwargs)
    out = []
    for g in grads:
        with torch.no_grad():
            p.zero_()  # the optimizer state does not depend on theta (no weight decay)
        p.grad = g.clone()
        opt.step()
        out.append(p.detach().clone().double().numpy())
    return np.stack(out)


@pytest.mark.parametrize("optimizer, kw, opt_cls, torch_kw", [
    ("adam", dict(beta1=0.9, beta2=0.999, eps=1e-8), torch.optim.Adam, dict(betas=(0.9, 0.999), eps=1e-8)),
    ("adam", dict(beta1=0.0, beta2=0.9, eps=1e-3), torch.optim.Adam, dict(betas=(0.0, 0.9), eps=1e-3)),
    ("rmsprop", dict(beta2=0.99, eps=1e-8), torch.optim.RMSprop, dict(alpha=0.99, eps=1e-8)),
    ("rmsprop", dict(beta1=0.5, beta2=0.9, eps=1e-6), torch.optim.RMSprop, dict(alpha=0.9, eps=1e-6, momentum=0.5)),
    ("adagrad", dict(eps=1e-10), torch.optim.Adagrad, dict(eps=1e-10)),
    ("fairseq_adam", dict(beta1=0.9, beta2=0.98, eps=1e-3), lambda params, foreach, **kw: FairseqAdam(params, **kw),
     dict(betas=(0.9, 0.98), eps=1e-3)),
])
@pytest.mark.parametrize("route", ["compiled", "torch"])
def test_identical_to_torch_optim(optimizer, kw, opt_cls, torch_kw, route, monkeypatch):
    """The torch route repeats torch.optim's operations: the same bits. The compiled kernel agrees to
    float32 rounding: torch's vectorised CPU sqrt is not correctly rounded (the kernel's is), and
    momentum carries that last-bit difference along, so the tolerance is a few ulps of the terms (|u| ~ 1)."""
    from adamdist import _native

    if route == "torch":
        monkeypatch.setenv("ADAMDIST_NATIVE", "0")
    elif _native.library() is None:
        pytest.skip("no C compiler")
    n, steps, seed = 400, 7, 5
    stats = run(optimizer, n=n, steps=steps, seed=seed, sample_size=n, **kw)
    assert stats.metadata["kernel"] == route
    expected = _torch_updates(opt_cls, torch_kw, _gaussian_stream(n, steps, seed))
    # sample_size >= n keeps every coordinate, in order
    if route == "torch":
        np.testing.assert_array_equal(stats.samples["u"], expected)
    else:
        np.testing.assert_allclose(stats.samples["u"], expected, rtol=2.5e-7, atol=1e-6)
    np.testing.assert_allclose(stats.mean[:, 0], expected.mean(axis=1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("beta1", [0.0, 0.7])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_and_torch_routes_agree(optimizer, beta1, dtype, monkeypatch):
    from adamdist import _native

    if _native.library() is None:
        pytest.skip("no C compiler")
    if optimizer == "adagrad" and beta1:
        pytest.skip("adagrad has no momentum")
    kw = dict(n=3000, steps=12, seed=4, beta1=beta1, dtype=dtype, sample_size=3000,
              gradients=Normal(mean=lambda t: 0.1 * t, sigma=lambda t: 1.0 / t))
    fast = run(optimizer, **kw)
    monkeypatch.setenv("ADAMDIST_NATIVE", "0")
    slow = run(optimizer, **kw)
    assert (fast.metadata["kernel"], slow.metadata["kernel"]) == ("compiled", "torch")
    eps = torch.finfo(dtype).eps
    scale = np.abs(slow.samples["u"]).max()
    np.testing.assert_allclose(fast.samples["u"], slow.samples["u"], rtol=4 * eps, atol=16 * eps * scale)


def test_laprop_follows_paper_equations():
    n, steps, seed, b1, b2, eps = 300, 6, 2, 0.8, 0.95, 1e-6
    stats = run("laprop", n=n, steps=steps, seed=seed, beta1=b1, beta2=b2, eps=eps, sample_size=n, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    nt = np.zeros(n)
    mt = np.zeros(n)
    for t in range(1, steps + 1):
        g = torch.empty(n, dtype=torch.float64).normal_(0.0, 1.0, generator=gen).numpy()
        nt = b2 * nt + (1 - b2) * g**2  # eq. 2
        mt = b1 * mt + (1 - b1) * g / (np.sqrt(nt / (1 - b2**t)) + eps)  # eq. 3
        np.testing.assert_allclose(stats.samples["u"][t - 1], -mt / (1 - b1**t), rtol=1e-12)  # eq. 4
    # without momentum the two orderings coincide
    a = run("laprop", n=n, steps=4, beta1=0.0, sample_size=n)
    b = run("adam", n=n, steps=4, beta1=0.0, sample_size=n)
    np.testing.assert_allclose(a.samples["u"], b.samples["u"], rtol=1e-6)


def test_simple_average_matches_theorem_1():
    stats = run("average", n=60_000, steps=8, seed=11)
    table = compare_with_law(stats)  # default law: Theorem 1 with c = m
    assert (table.ks < table.ks_band).all(), table
    np.testing.assert_allclose(table.var_ratio, 1.0, atol=0.03)
    # step 1: u = -sign(g), two point masses
    assert set(np.unique(stats.samples["u"][0])) == {-1.0, 1.0}


def test_adagrad_is_the_scaled_simple_average():
    a = run("adagrad", n=500, steps=5, eps=0.0, sample_size=500, dtype=torch.float64)
    b = run("average", n=500, steps=5, sample_size=500, dtype=torch.float64)
    np.testing.assert_allclose(a.samples["u"] * np.sqrt(np.arange(1, 6))[:, None], b.samples["u"], rtol=1e-12)


def test_cauchy_gradients_give_trimodal_updates_gaussian_do_not():
    edges = default_edges(5.0, 100)
    cauchy = mode_table(run("average", n=50_000, steps=10, gradients=Cauchy(), edges=edges, seed=0))
    gauss = mode_table(run("average", n=50_000, steps=10, edges=edges, seed=0))
    assert (cauchy.modes[cauchy.step >= 3] >= 3).all(), cauchy
    assert (gauss.modes[gauss.step >= 4] == 1).all() and gauss.modes.max() <= 2, gauss


def test_time_dependent_normal_and_skew():
    # increasing sigma keeps the m <= 2 bimodality longer than i.i.d. gradients (Figure 5)
    edges = default_edges(5.0, 100)
    rising = mode_table(run("average", n=50_000, steps=6, gradients=Normal(sigma=lambda t: t), edges=edges))
    assert (rising.modes[rising.step <= 5] == 2).all(), rising
    # a negative gradient mean gives positive updates with a long left tail, less skewed later (Figure 6)
    skewed = run("average", n=50_000, steps=10, gradients=Normal(mean=-1.0))
    assert (skewed.mean[:, 0] > 0).all()
    assert skewed.skew[0, 0] < -1 and skewed.skew[-1, 0] > skewed.skew[0, 0]
    # the update is invariant to the scale of the gradients
    a = run("average", n=300, steps=4, gradients=Normal(sigma=7.0), sample_size=300, dtype=torch.float64)
    b = run("average", n=300, steps=4, sample_size=300, dtype=torch.float64)
    np.testing.assert_allclose(a.samples["u"], b.samples["u"], rtol=1e-12)


def test_reproducible_and_seed_dependent():
    kw = dict(n=3000, steps=4, gradients=sparse_spikes(0.05, 10.0))
    a, b, c = run(seed=3, **kw), run(seed=3, **kw), run(seed=4, **kw)
    for f in ("hist", "mean", "var", "skew", "abs_var", "underflow", "overflow"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    np.testing.assert_array_equal(a.samples["u"], b.samples["u"])
    assert not np.array_equal(a.samples["u"], c.samples["u"])


def test_memory_does_not_scale_with_n_times_steps():
    edges = default_edges(3.0, 30)
    small = run(n=100, steps=6, edges=edges, sample_size=50)
    big = run(n=20_000, steps=6, edges=edges, sample_size=50)
    for f in ("hist", "mean", "count"):
        assert getattr(small, f).shape == getattr(big, f).shape
    assert big.hist.shape == (6, 1, 30) and big.samples["u"].shape == (6, 50)
    assert big.count[:, 0].tolist() == [20_000] * 6
    sub = run(n=1000, steps=50, record=[1, 10, 50], edges=edges)
    assert sub.steps.tolist() == [1, 10, 50] and sub.hist.shape == (3, 1, 30)


def test_nonfinite_values_are_counted_not_mixed_in():
    def half_zero(step, n, generator, device, dtype):
        g = torch.randn(n, generator=generator, device=device, dtype=dtype)
        g[: n // 2] = 0.0  # exactly zero gradients: 0 / (0 + eps) is NaN when eps = 0
        return g

    stats = run("adam", n=1000, steps=3, eps=0.0, gradients=half_zero)
    assert stats.nonfinite[:, 0].tolist() == [500] * 3 and stats.count[:, 0].tolist() == [500] * 3
    assert np.isfinite(stats.mean).all() and stats.hist.sum() + stats.underflow.sum() + stats.overflow.sum() == 1500
    ok = run("adam", n=1000, steps=3, gradients=half_zero)  # default eps > 0
    assert ok.nonfinite.sum() == 0


def test_gradient_protocols():
    class Ones:  # duck-typed: anything with .sample works
        def sample(self, step, n, generator, device, dtype):
            return torch.full((n,), float(step), device=device, dtype=dtype)

    stats = run("average", n=50, steps=3, gradients=Ones())
    assert stats.metadata["gradients"]["model"] == "callable"
    # g_t = t: u_t = -t / sqrt(mean(1..t^2))
    expected = [-t / np.sqrt(np.mean(np.arange(1, t + 1) ** 2)) for t in (1, 2, 3)]
    np.testing.assert_allclose(stats.mean[:, 0], expected, rtol=1e-6)

    class Shifted(GradientModel):
        def sample(self, step, n, generator, device, dtype, out=None):
            return torch.randn(n, generator=generator, device=device, dtype=dtype) + 1

    assert run(n=100, steps=2, gradients=Shifted()).metadata["gradients"] == {"model": "Shifted"}
    with pytest.raises(ValueError, match="shape"):
        run(n=10, steps=1, gradients=lambda s, n, g, d, t: torch.zeros(n + 1))
    with pytest.raises(TypeError, match="torch.Tensor"):
        run(n=10, steps=1, gradients=lambda s, n, g, d, t: np.zeros(n))


def test_gradient_models_sample_what_they_say():
    gen = torch.Generator().manual_seed(0)
    t5 = StudentT(5).sample(1, 200_000, gen, "cpu", torch.float64)
    assert t5.var().item() == pytest.approx(5 / 3, rel=0.05)
    spikes = sparse_spikes(p=0.1, scale=100.0).sample(1, 200_000, gen, "cpu", torch.float32)
    assert (spikes.abs() > 10).double().mean().item() == pytest.approx(0.1 * 0.92, rel=0.05)
    mix = Mixture([Normal(-5.0, 0.1), Normal(5.0, 0.1)], [1, 3]).sample(1, 100_000, gen, "cpu", torch.float32)
    assert (mix > 0).double().mean().item() == pytest.approx(0.75, abs=0.01)
    c = Cauchy().sample(1, 100_000, gen, "cpu", torch.float32)
    assert c.abs().median().item() == pytest.approx(1.0, rel=0.03)  # median of |standard Cauchy| is 1
    assert Normal(mean=lambda t: -t, sigma=2).sample(3, 10_000, gen, "cpu", torch.float64).mean().item() \
        == pytest.approx(-3, abs=0.1)


def test_metadata():
    stats = run("laprop", n=100, steps=2, beta1=0.5, seed=9, gradients=StudentT(3))
    md = stats.metadata
    assert md["optimizer"] == "laprop" and md["beta1"] == 0.5 and md["beta2"] == 0.999 and md["eps"] == 1e-8
    assert md["seed"] == 9 and md["device"] == "cpu" and md["torch_version"] == torch.__version__
    assert md["gradients"] == {"model": "StudentT", "nu": 3.0, "scale": 1.0}
    assert md["n"] == 100 and md["steps"] == 2


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(optimizer="adamw"), ValueError, "optimizer must be one of"),
    (dict(n=0), ValueError, r"n must be an integer in \[1"),
    (dict(n=10.5), TypeError, "n must be an integer"),
    (dict(steps=0), ValueError, "steps"),
    (dict(beta1=1.0), ValueError, r"beta1 must lie in \[0.0, 1.0\)"),
    (dict(beta2=-0.1), ValueError, "beta2"),
    (dict(eps=-1e-8), ValueError, "eps"),
    (dict(eps="small"), TypeError, "eps"),
    (dict(optimizer="adagrad", beta2=0.9), ValueError, "beta2 is not a hyper-parameter"),
    (dict(optimizer="adagrad", beta1=0.9), ValueError, "beta1 must be 0"),
    (dict(gradients=3), TypeError, "gradients"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(sample_size=-1), ValueError, "sample_size"),
    (dict(record=[0, 1]), ValueError, "record"),
    (dict(dtype=torch.float16), ValueError, "dtype"),
    (dict(edges=[1.0, 0.0]), ValueError, "edges"),
    (dict(device="not-a-device"), ValueError, "device"),
    (dict(gradients=Normal(sigma=lambda t: -1.0)), ValueError, r"sigma\(1\)"),
])
def test_bad_input(kwargs, exc, match):
    args = dict(n=10, steps=2)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        run(**args)


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="sigma"):
        Normal(sigma=0.0)
    with pytest.raises(ValueError, match="nu"):
        StudentT(0)
    with pytest.raises(ValueError, match="weights"):
        Mixture([Normal(), Normal()], [1.0])
    with pytest.raises(ValueError, match="p must lie"):
        sparse_spikes(p=1.5)


def test_count_modes_rule():
    x = np.linspace(-4, 4, 81)
    bump = lambda c, w: np.exp(-0.5 * ((x[:-1] - c) / w) ** 2)  # noqa: E731
    assert count_modes(np.round(1e5 * bump(0, 1))) == 1
    assert count_modes(np.round(1e5 * (bump(-2, 0.5) + bump(2, 0.5)))) == 2
    assert count_modes(np.round(1e5 * (bump(-3, 0.3) + bump(0, 0.3) + bump(3, 0.3)))) == 3
    assert count_modes(np.zeros(10)) == 0
    assert count_modes([0, 0, 5, 0]) == 1  # a single occupied bin
    rng = np.random.default_rng(0)
    assert count_modes(rng.poisson(1000, size=60)) == 1  # Poisson noise on a flat law is not a mode
    assert count_modes(np.r_[1e4, np.zeros(10), 1e4]) == 2  # edge bins count
    with pytest.raises(ValueError, match="1-d"):
        count_modes(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="non-negative"):
        count_modes([1, -1])


def test_optimizer_registry_defaults_match_torch():
    assert OPTIMIZERS["adam"].defaults == {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    assert OPTIMIZERS["rmsprop"].defaults["beta2"] == 0.99  # torch's alpha
    assert OPTIMIZERS["adagrad"].defaults["eps"] == 1e-10


def test_progress_bar_goes_to_stderr(capsys):
    run(n=10, steps=3, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda():
    a = run("adam", n=20_000, steps=5, device="cuda", seed=1)
    b = run("adam", n=20_000, steps=5, device="cuda", seed=1)
    np.testing.assert_array_equal(a.hist, b.hist)
    assert a.metadata["device"].startswith("cuda")
    c = run("average", n=100_000, steps=6, device="cuda")
    assert (compare_with_law(c).ks < compare_with_law(c).ks_band).all()


def test_recorded_histograms_chart_without_overflow_rows():
    pytest.importorskip("altair")
    import pandas as pd

    from adamdist.plots import histograms

    stats = run("average", n=2000, steps=3, edges=default_edges(3.0, 30))
    hist = stats.to_frame("hist").assign(case="iid")
    law = pd.DataFrame({"step": 2, "case": "iid", "x": [0.0, 0.5], "density": [0.3, 0.4]})
    spec = histograms(hist, law, facet="step", row="case", x_title="update u (1)", sample_label="simulation",
                      law_label="exact law").to_dict()
    values = spec["datasets"][next(iter(spec["datasets"]))]
    assert {v["series"] for v in values} == {"simulation", "exact law"}
    assert all(np.isfinite(v["left"]) for v in values if v["series"] == "simulation")  # no under/overflow rows
    assert sum(v["series"] == "simulation" for v in values) == 3 * 30


def test_adam_with_momentum_matches_exact_law():
    """torch.optim.Adam's recursion (beta1 = 0.9, EMA preconditioner) against adamdist.exact's exact law."""
    exact = pytest.importorskip("adamdist.exact")
    steps = [2, 5, 10]
    stats = run("adam", n=50_000, steps=10, beta1=0.9, beta2=0.999, eps=0.0, record=steps,
                gradients=Normal(mean=0.3), seed=4)
    # exact describes +a.g / sqrt(g.W g); the step taken is its negative, i.e. the law with the mean negated
    table = compare_with_law(stats, lambda m: exact.update_distribution(m, 0.9, 0.999, mean=-0.3))
    assert (table.ks < table.ks_band).all(), table
    np.testing.assert_allclose(table.var_ratio, 1.0, atol=0.04)


# -- refused up front, not killed by the kernel (issue: no silent failures) --------------------------------
def test_a_run_too_large_for_memory_is_refused_with_the_estimate():
    from _isolated import run_isolated

    child = run_isolated("""
        from adamdist.simulate import run
        try:
            run("adam", n=4_000_000_000, steps=2)
        except ValueError as exc:
            print(exc)
    """)
    assert child.returncode == 0, child.stderr[-2000:]
    assert re.search(r"simulate\.run \(n = 4000000000 coordinates.*needs about \d+\.\d GiB on the host but only "
                     r".* GiB is available; reduce n", child.stdout), child.stdout


def test_recorded_steps_count_in_the_estimate(monkeypatch):
    from adamdist import _validation
    from adamdist.simulate import run

    monkeypatch.setattr(_validation, "available_memory", lambda device=None: 2**30)
    run("adam", n=1000, steps=10, sample_size=10)
    with pytest.raises(ValueError, match=r"200000 recorded steps.*reduce n \(or the recorded steps"):
        run("adam", n=1000, steps=200_000, sample_size=2000)


_BUDGET_SCRIPT = r"""
import resource, sys, torch
from adamdist import simulate
from adamdist.simulate import Mixture, Normal, StudentT

model = {"normal": None, "student": StudentT(3.0), "mixture": Mixture([Normal(), StudentT(2.0)], [0.5, 0.5])}
model, share = model[sys.argv[1]], float(sys.argv[2])
for dtype in (torch.float32, torch.float64):  # warm up the allocator, the kernel and every code path
    simulate.run("adam", n=1000, steps=2, gradients=model, dtype=dtype)


class Estimate(Exception):
    pass


def estimate_only(nbytes, *args, **kwargs):
    raise Estimate(nbytes)


simulate.check_memory = estimate_only
try:
    simulate.run("adam", n=4_000_000, steps=3, gradients=model, dtype=torch.float64)
except Estimate as said:
    estimate = said.args[0]
simulate.check_memory = lambda *args, **kwargs: None
# the run gets exactly `share` of the estimate as new address space
vm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, (vm + int(share * estimate), resource.RLIM_INFINITY))
try:
    simulate.run("adam", n=4_000_000, steps=3, gradients=model, dtype=torch.float64)
    print("fits")
except (MemoryError, RuntimeError):
    print("does not fit")
"""


@pytest.mark.parametrize("model", ["normal", "student", "mixture"])
def test_memory_estimate_is_an_upper_bound_within_a_small_factor(model):
    """Given the estimate as new address space the run fits; given a quarter of it, it does not."""
    import subprocess
    import sys

    for share, expected in ((1.0, "fits"), (0.25, "does not fit")):
        out = subprocess.run([sys.executable, "-c", _BUDGET_SCRIPT, model, str(share)], capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip() == expected, (share, out.stdout, out.stderr[-2000:])


@pytest.mark.parametrize("seed", [-1, 2**64, 2**63])
def test_seed_out_of_range_is_refused_at_the_call(seed):
    from adamdist.simulate import run

    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 9223372036854775807\]"):
        run("adam", n=10, steps=1, seed=seed)


def test_sparse_gradients_are_exact_zeros_at_the_stated_rate():
    import torch

    from adamdist import simulate

    model = simulate.Sparse(0.3)
    g = model.sample(1, 100_000, torch.Generator().manual_seed(0), "cpu", torch.float32)
    assert (g == 0).float().mean().item() == pytest.approx(0.3, abs=0.01)
    assert g[g != 0].std().item() == pytest.approx(1.0, abs=0.02)
    assert model.describe() == {"model": "Sparse", "p_zero": 0.3, "base": {"model": "Normal", "mean": 0.0,
                                                                           "sigma": 1.0}}
    with pytest.raises(ValueError, match="p_zero"):
        simulate.Sparse(1.0)


def test_persistent_gradients_correlate_across_steps_at_rho():
    import torch

    from adamdist import simulate

    model = simulate.Persistent(0.4)
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([model.sample(t, 50_000, gen, "cpu", torch.float64) for t in (1, 2, 3, 10)])
    corr = torch.corrcoef(draws)
    assert corr[0, 1].item() == pytest.approx(0.4, abs=0.02) and corr[0, 3].item() == pytest.approx(0.4, abs=0.02)
    assert draws.std(dim=1).numpy() == pytest.approx(1.0, abs=0.02)
    again = simulate.run("adam", n=1000, steps=4, gradients=simulate.Persistent(0.4), seed=3)
    same = simulate.run("adam", n=1000, steps=4, gradients=simulate.Persistent(0.4), seed=3)
    assert np.array_equal(again.samples["u"], same.samples["u"])  # the component comes from the run's seed
    with pytest.raises(ValueError, match="rho"):
        simulate.Persistent(1.5)


def _draws(model, n, steps, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return np.stack([model.sample(t, n, gen, "cpu", torch.float64).numpy() for t in range(1, steps + 1)])


def test_recorded_gradient_streams():
    from adamdist.simulate import Bootstrap, Replay, TimeShuffled

    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 50))
    np.testing.assert_array_equal(_draws(Replay(x), 50, 6), x)
    shuffled = _draws(TimeShuffled(x, seed=3), 50, 6)  # each coordinate keeps its values, not their order
    np.testing.assert_array_equal(np.sort(shuffled, axis=0), np.sort(x, axis=0))
    assert not np.array_equal(shuffled, x)
    boot = _draws(Bootstrap(x), 400, 6)  # each step's values, drawn from that step's recording
    assert all(np.isin(boot[t], x[t]).all() for t in range(6))
    assert Replay(x).describe() == {"model": "Replay", "steps": 6, "coordinates": 50}
    assert TimeShuffled(x, seed=3).describe()["seed"] == 3
    with pytest.raises(ValueError, match="n = 50"):
        Replay(x).sample(1, 49, None, "cpu", torch.float64)
    with pytest.raises(ValueError, match="6 steps"):
        Bootstrap(x).sample(7, 10, torch.Generator(), "cpu", torch.float64)
    with pytest.raises(ValueError, match="NaN or inf"):
        Replay(np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="shape"):
        Replay(np.ones(3))


def test_sparse_student_t_has_the_measured_zeros_scale_and_tails():
    from scipy import stats

    from adamdist.simulate import SparseStudentT

    steps, n = 4, 200_000
    zf, scale = np.array([0.1, 0.4, np.nan, 0.0]), np.array([1.0, 2.0, 3.0, 0.5])
    model = SparseStudentT(zf, [3.0, 3.0], scale)
    g = _draws(model, n, steps)
    for t in range(steps):
        nonzero = g[t][g[t] != 0]
        assert (g[t] == 0).mean() == pytest.approx(np.nan_to_num(zf)[t], abs=0.005)
        assert np.median(np.abs(nonzero)) == pytest.approx(scale[t], rel=0.02)
    assert stats.kstest(g[3] / 0.5 * float(stats.t(3).ppf(0.75)), stats.t(3).cdf).statistic < 0.005
    flat = _draws(SparseStudentT(zf, 3.0, scale, varying=False, sparse=False), n, steps)
    assert (flat != 0).all() and np.median(np.abs(flat[1])) == pytest.approx(1.0, rel=0.02)
    assert model.describe()["nu"] == 3.0 and model.describe()["zero_fraction"][2] == 0.0
    with pytest.raises(ValueError, match="zero_fraction"):
        SparseStudentT([1.0], 3.0, [1.0])
    with pytest.raises(ValueError, match="scale"):
        SparseStudentT([0.1], 3.0, [0.0])
