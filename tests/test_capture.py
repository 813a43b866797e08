import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from adamdist.capture import UpdateRecorder, compare_with_theory, predicted_law
from adamdist.results import load
from adamdist import theory
from _opwatch import SyncWatch


def _mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def _loss(model, step):
    gen = torch.Generator().manual_seed(step)
    x, y = torch.randn(32, 6, generator=gen), torch.randn(32, 3, generator=gen)
    return (model(x) - y).pow(2).mean()


def _two_group_adam(model, lr=(1e-2, 3e-3)):
    return torch.optim.Adam([{"params": model[0].parameters(), "lr": lr[0]},
                             {"params": model[2].parameters(), "lr": lr[1]}], betas=(0.9, 0.99))


def _manual_updates(model, opt, sched, n_steps):
    """The definition, by hand: snapshot, step, (theta_t - theta_{t-1}) / lr_t."""
    group_of = {id(p): g for g, grp in enumerate(opt.param_groups) for p in grp["params"]}
    out = []
    for step in range(1, n_steps + 1):
        opt.zero_grad()
        _loss(model, step).backward()
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        lrs = [g["lr"] for g in opt.param_groups]
        opt.step()
        out.append({n: ((p.detach() - before[n]) / lrs[group_of[id(p)]]).double().reshape(-1).numpy()
                    for n, p in model.named_parameters()})
        if sched is not None:
            sched.step()
    return out


def _run(model, opt, sched, n_steps, first=1):
    for step in range(first, first + n_steps):
        opt.zero_grad()
        _loss(model, step).backward()
        opt.step()
        if sched is not None:
            sched.step()


@pytest.mark.parametrize("with_scheduler", [False, True])
def test_recorded_updates_equal_manual_computation(with_scheduler):
    n_steps = 6
    ref_model = _mlp()
    ref_opt = _two_group_adam(ref_model)
    ref_sched = torch.optim.lr_scheduler.LambdaLR(ref_opt, lambda s: 0.7 ** s) if with_scheduler else None
    manual = _manual_updates(ref_model, ref_opt, ref_sched, n_steps)

    model = _mlp()
    opt = _two_group_adam(model)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.7 ** s) if with_scheduler else None
    edges = np.linspace(-3, 3, 25)
    # sample_size above every numel: the "sample" is the whole update, so it can be compared exactly
    with UpdateRecorder(opt, model, steps=n_steps, bins=edges, sample_size=1000) as rec:
        _run(model, opt, sched, n_steps)
    stats = rec.result()
    assert stats.steps.tolist() == list(range(1, n_steps + 1))
    assert stats.names == tuple(n for n, _ in model.named_parameters())
    for i in range(n_steps):
        for j, name in enumerate(stats.names):
            u = manual[i][name]
            np.testing.assert_array_equal(stats.samples[name][i], u)  # bit for bit
            assert stats.count[i, j] == u.size and stats.nonfinite[i, j] == 0
            assert stats.mean[i, j] == pytest.approx(u.mean(), rel=1e-12, abs=1e-15)
            assert stats.var[i, j] == pytest.approx(u.var(), rel=1e-12)
            # abs=: at step 1 |u| is 1 up to eps, so its variance is ~1e-15 and only an absolute error means much
            assert stats.abs_var[i, j] == pytest.approx(np.abs(u).var(), rel=1e-12, abs=1e-12)
            np.testing.assert_array_equal(stats.hist[i, j], np.histogram(u, edges)[0])
    lrs = stats.metadata["lr_by_step"]
    if with_scheduler:
        assert lrs["3"] == pytest.approx([1e-2 * 0.7 ** 2, 3e-3 * 0.7 ** 2])
    else:
        assert lrs["3"] == [1e-2, 3e-3]
    assert stats.metadata["optimizer"] == "torch.optim.adam.Adam"
    assert stats.metadata["hyperparameters"][0]["betas"] == [0.9, 0.99]
    assert stats.metadata["shapes"]["0.weight"] == [8, 6]
    assert stats.metadata["optimizer_steps_before_attach"] is None  # attached before the first step


def test_late_attach_is_reported():
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    _run(model, opt, None, 3)
    with UpdateRecorder(opt, model, steps=1) as rec:
        _run(model, opt, None, 1, first=4)
    assert rec.result().metadata["optimizer_steps_before_attach"] == 3


def test_chosen_steps_and_partial_result():
    model = _mlp()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ref_model = _mlp()
    manual = _manual_updates(ref_model, torch.optim.AdamW(ref_model.parameters(), lr=1e-2), None, 7)
    rec = UpdateRecorder(opt, {"w": model[2].weight}, steps=[5, 2, 7], sample_size=100).attach()
    _run(model, opt, None, 5)
    mid = rec.result()  # while attached: the steps recorded so far
    assert mid.steps.tolist() == [2, 5]
    _run(model, opt, None, 3, first=6)
    rec.detach()
    stats = rec.result()
    assert stats.steps.tolist() == [2, 5, 7] and stats.names == ("w",)
    for i, step in enumerate([2, 5, 7]):
        np.testing.assert_array_equal(stats.samples["w"][i], manual[step - 1]["2.weight"])


def test_result_since_a_step_holds_only_the_later_rows():
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    rec = UpdateRecorder(opt, model, steps=[1, 2, 4, 6], sample_size=50, record_grad=True).attach()
    _run(model, opt, None, 4)
    assert rec.result(since=1).steps.tolist() == [2, 4]  # attached: rows copied from the device
    assert rec.result(since=4).steps.size == 0
    _run(model, opt, None, 3, first=5)
    for attached in (True, False):
        whole = rec.result()
        for since, kept in ((0, [1, 2, 4, 6]), (2, [4, 6]), (3, [4, 6]), (6, []), (99, [])):
            for kind in ("update", "grad"):
                part, ref = rec.result(kind, since=since), rec.result(kind).select(steps=kept)
                assert part.steps.tolist() == kept
                _assert_same(part, ref)
                np.testing.assert_array_equal(part.no_grad, ref.no_grad)
                assert part.metadata["lr_by_step"] == {str(s): whole.metadata["lr_by_step"][str(s)] for s in kept}
        if attached:
            rec.detach()
    with pytest.raises(ValueError, match="since"):
        rec.result(since=-1)


@pytest.mark.parametrize("make_opt", [
    lambda ps: torch.optim.Adam(ps, lr=1e-2),
    lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
    lambda ps: torch.optim.RMSprop(ps, lr=1e-3, momentum=0.9),
    lambda ps: torch.optim.Adagrad(ps, lr=1e-2),
    lambda ps: torch.optim.SGD(ps, lr=1e-2, momentum=0.9, nesterov=True),
    lambda ps: torch.optim.Adam(ps, lr=torch.tensor(1e-2)),
], ids=["adam", "adamw", "rmsprop", "adagrad", "sgd", "adam-tensor-lr"])
def test_trajectory_is_bit_for_bit_unchanged(make_opt):
    plain = _mlp()
    opt = make_opt(plain.parameters())
    sched = torch.optim.lr_scheduler.StepLR(opt, 2, 0.5)
    _run(plain, opt, sched, 6)

    watched = _mlp()
    opt = make_opt(watched.parameters())
    sched = torch.optim.lr_scheduler.StepLR(opt, 2, 0.5)
    with UpdateRecorder(opt, watched, steps=[1, 2, 4, 5], record_grad=True, sample_size=7) as rec:
        _run(watched, opt, sched, 6)
    for a, b in zip(plain.parameters(), watched.parameters()):
        assert torch.equal(a, b)
    stats = rec.result()
    assert np.isfinite(stats.var).all() and (stats.nonfinite == 0).all()
    grads = rec.result("grad")
    assert grads.metadata["kind"] == "grad" and (grads.count == stats.count).all()


def test_grad_record_matches_gradient():
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with UpdateRecorder(opt, ["2.bias"], module=model, steps=1, record_grad=True, sample_size=10) as rec:
        opt.zero_grad()
        _loss(model, 1).backward()
        g = model[2].bias.grad.double().numpy().copy()
        opt.step()
    np.testing.assert_array_equal(rec.result("grad").samples["2.bias"][0], g)
    # plain SGD: the update is -grad, up to float32 rounding of the difference
    np.testing.assert_allclose(rec.result().samples["2.bias"][0], -g, rtol=1e-5, atol=1e-7)


def test_zero_lr_is_undefined_not_divided():
    model = _mlp()
    opt = torch.optim.Adam([{"params": model[0].parameters(), "lr": 0.0},
                            {"params": model[2].parameters(), "lr": 1e-2}])
    with UpdateRecorder(opt, model, steps=2) as rec:
        _run(model, opt, None, 2)
    stats = rec.result()
    first = [stats.names.index(n) for n in ("0.weight", "0.bias")]
    second = [stats.names.index(n) for n in ("2.weight", "2.bias")]
    assert (stats.count[:, first] == 0).all() and (stats.nonfinite[:, first] > 0).all()
    assert np.isnan(stats.var[:, first]).all()
    assert (stats.nonfinite[:, second] == 0).all() and np.isfinite(stats.var[:, second]).all()
    assert stats.metadata["lr_zero_steps"] == {"0.weight": [1, 2], "0.bias": [1, 2]}


def test_zero_tensor_lr_is_undefined():
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=torch.tensor(0.0))
    with UpdateRecorder(opt, model, steps=1) as rec:
        _run(model, opt, None, 1)
    stats = rec.result()
    assert (stats.count == 0).all() and "0.weight" in stats.metadata["lr_zero_steps"]


def test_save_load_roundtrip(tmp_path):
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with UpdateRecorder(opt, model, steps=3, sample_size=20) as rec:
        _run(model, opt, None, 3)
    stats = rec.result()
    stats.save(tmp_path / "cap.npz")
    back = load(tmp_path / "cap.npz")
    assert back.metadata == json.loads(json.dumps(stats.metadata))
    for f in ("steps", "count", "mean", "var", "abs_var", "skew", "hist", "underflow", "overflow"):
        np.testing.assert_array_equal(getattr(back, f), getattr(stats, f))
    for n in stats.names:
        np.testing.assert_array_equal(back.samples[n], stats.samples[n])


def test_detach_removes_hooks_and_buffers():
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    rec = UpdateRecorder(opt, model, steps=10, record_grad=True)
    rec.attach()
    assert len(opt._optimizer_step_pre_hooks) == 1 and len(opt._optimizer_step_post_hooks) == 1
    _run(model, opt, None, 2)
    rec.detach()
    assert len(opt._optimizer_step_pre_hooks) == 0 and len(opt._optimizer_step_post_hooks) == 0
    assert rec._acc == {} and rec._lr is None
    assert all(t.snap is None for t in rec._tracked)
    _run(model, opt, None, 2)  # not recorded any more
    assert rec.result().steps.tolist() == [1, 2]
    with pytest.raises(RuntimeError, match="already detached"):
        rec.attach()


def test_param_selection_forms():
    model = _mlp()
    opt = torch.optim.Adam(model.parameters())
    assert UpdateRecorder(opt, model).names == ("0.weight", "0.bias", "2.weight", "2.bias")
    assert UpdateRecorder(opt, {"w": model[0].weight}).names == ("w",)
    assert UpdateRecorder(opt, ["2.bias"], module=model).names == ("2.bias",)
    assert UpdateRecorder(opt).names == ("group0.0", "group0.1", "group0.2", "group0.3")
    # a module: only what the optimizer holds (frozen layers are skipped)
    partial = torch.optim.Adam(model[2].parameters())
    assert UpdateRecorder(partial, model).names == ("2.weight", "2.bias")


def test_bad_input():
    model = _mlp()
    opt = torch.optim.Adam(model[2].parameters())
    with pytest.raises(ValueError, match="not in the optimizer"):
        UpdateRecorder(opt, {"w": model[0].weight})
    with pytest.raises(ValueError, match="not in the module"):
        UpdateRecorder(opt, ["2.weight", "nope.weight"], module=model)
    with pytest.raises(ValueError, match="module="):
        UpdateRecorder(opt, ["2.weight"])
    with pytest.raises(ValueError, match="steps must be an integer in"):
        UpdateRecorder(opt, model, steps=0)
    with pytest.raises(ValueError, match="steps entry"):
        UpdateRecorder(opt, model, steps=[3, -1])
    with pytest.raises(ValueError, match="at least one step"):
        UpdateRecorder(opt, model, steps=[])
    with pytest.raises(ValueError, match="strictly increasing"):
        UpdateRecorder(opt, model, bins=[0.0, 1.0, 0.5])
    with pytest.raises(ValueError, match="bins"):
        UpdateRecorder(opt, model, bins=0)
    with pytest.raises(ValueError, match="twice"):
        UpdateRecorder(opt, {"a": model[2].weight, "b": model[2].weight})
    with pytest.raises(TypeError, match="Optimizer"):
        UpdateRecorder(model, model)
    with pytest.raises(ValueError, match="record_grad"):
        rec = UpdateRecorder(opt, model).attach()
        rec.result("grad")
    with pytest.raises(RuntimeError, match="never attached"):
        UpdateRecorder(opt, model).result()


def test_adam_on_gaussian_gradients_matches_theorem_1():
    """Adam(beta1=0, tiny eps) on a linear loss <w, g_t> with g_t i.i.d. N(0, 1): Theorem 1 over the first steps.

    With beta2 = 0.999 the bias-corrected EMA is within 0.5% of the simple average for m <= 10, so the
    law is that of eq. 30 (predicted_law uses the Kish effective m, which is m to that accuracy).
    """
    n, steps = 20_000, 10
    w = torch.nn.Parameter(torch.zeros(n))
    opt = torch.optim.Adam([w], lr=1e-3, betas=(0.0, 0.999), eps=1e-30)
    gen = torch.Generator().manual_seed(123)
    with UpdateRecorder(opt, {"w": w}, steps=steps, sample_size=2000, seed=5) as rec:
        for _ in range(steps):
            opt.zero_grad()
            (w * torch.randn(n, generator=gen)).sum().backward()
            opt.step()
    stats = rec.result()
    table = compare_with_theory(stats)
    # m = 1: the law is the two-point law on +-1, but float32 rounding of g / sqrt(v_hat) moves values by an
    # ulp off +-1, which a KS distance against a point mass cannot forgive: check the atoms directly
    first = stats.samples["w"][0]
    np.testing.assert_allclose(np.abs(first), 1.0, rtol=1e-6)
    assert abs((first > 0).mean() - 0.5) < 0.05
    later = table[table["step"] > 1]
    assert (later["ks"] < later["ks_band"]).all(), later
    # Corollary 1: unit variance at every step (all 20000 entries, so a 3% band is ~4 sigma)
    np.testing.assert_allclose(table["var_measured"], 1.0, atol=0.03)
    # Corollary 2: the variance of |u| grows from 0 at m = 1
    np.testing.assert_allclose(stats.abs_var[:, 0], theory.abs_update_variance(np.arange(1, steps + 1)),
                               atol=0.02)
    # the simple-average law of Theorem 1 is what predicted_law gives this early
    assert predicted_law(stats)(5).var() == pytest.approx(theory.update_distribution(5).var(), rel=0.01)


def test_adam_with_momentum_matches_the_exact_law():
    """Adam(0.9, 0.999) on Gaussian gradients: adamdist.exact's law (momentum included), steps 2 and 3."""
    n, steps = 20_000, 3
    w = torch.nn.Parameter(torch.zeros(n))
    opt = torch.optim.Adam([w], lr=1e-3, betas=(0.9, 0.999), eps=1e-30)
    gen = torch.Generator().manual_seed(7)
    with UpdateRecorder(opt, {"w": w}, steps=steps, sample_size=2000, seed=1) as rec:
        for _ in range(steps):
            opt.zero_grad()
            (w * torch.randn(n, generator=gen)).sum().backward()
            opt.step()
    table = compare_with_theory(rec.result().select(steps=[2, 3]), exact=True)
    assert (table["ks"] < table["ks_band"]).all(), table
    np.testing.assert_allclose(table["var_ratio"], 1.0, atol=0.04)
    # Theorem 1 does not apply with momentum, and says so
    with pytest.raises(ValueError, match="exact=True"):
        compare_with_theory(rec.result())


def test_predicted_law_refuses_momentum():
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), betas=(0.9, 0.999))
    with UpdateRecorder(opt, model, steps=1) as rec:
        _run(model, opt, None, 1)
    with pytest.raises(ValueError, match="beta1"):
        predicted_law(rec.result())
    # told to ignore the momentum, and with beta2 = 0: the two-point law (m_eff = 1) at every step
    assert predicted_law(rec.result(), beta1=0.0, beta2=0.0)(3).var() == pytest.approx(1.0)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dist_runs(tmp_path_factory):
    """One 2-process gloo run (DDP, then FSDP2) on the CPU, shared by the two tests that read it."""
    out = tmp_path_factory.mktemp("dist")
    worker = Path(__file__).with_name("_capture_dist_worker.py")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(worker), "all", str(_free_port()), str(out)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


_FIELDS = ("count", "nonfinite", "hist", "underflow", "overflow", "mean", "var", "abs_var", "skew")


def _assert_same(a, b):
    for f in _FIELDS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    for n in a.names:
        np.testing.assert_array_equal(a.samples[n], b.samples[n])


@pytest.mark.slow  # 13 s on an idle 2-core machine, 25 s when shared: two spawned Pythons with torch
def test_ddp_identical_on_every_rank_rank0_pays(dist_runs):
    info = [json.loads((dist_runs / f"ddp_info_{r}.json").read_text()) for r in (0, 1)]
    assert info[0]["plain_is_none"] is False and info[1]["plain_is_none"] is True  # only rank 0 recorded
    assert info[0]["n_hooks"] == info[1]["n_hooks"] == 0
    # rank 1 pays nothing for rec0: no hooks, no buffers
    assert info[0]["hooks_while_attached"] == 4 and info[1]["hooks_while_attached"] == 2
    assert info[0]["rec0_buffers"] == 1 and info[1]["rec0_buffers"] == 0
    bcast = [load(dist_runs / f"ddp_broadcast_{r}.npz") for r in (0, 1)]
    own = [load(dist_runs / f"ddp_all_{r}.npz") for r in (0, 1)]
    _assert_same(bcast[0], bcast[1])
    _assert_same(own[0], own[1])  # replicas really agree: each rank's own record is the same
    _assert_same(bcast[0], own[0])
    assert bcast[1].metadata["recorded_on_ranks"] == [0] and own[1].metadata["recorded_on_ranks"] == [1]


@pytest.mark.slow
def test_fsdp2_shards_combine_to_whole_tensor(dist_runs):
    got = [load(dist_runs / f"fsdp_{r}.npz") for r in (0, 1)]
    _assert_same(got[0], got[1])
    stats, ref = got[0], load(dist_runs / "fsdp_ref_0.npz")
    assert stats.metadata["sharded"] == list(stats.names)
    for f in ("count", "nonfinite", "hist", "underflow", "overflow"):
        np.testing.assert_array_equal(getattr(stats, f), getattr(ref, f), err_msg=f)
    for f in ("mean", "var", "abs_var", "skew"):  # Chan's combination vs the direct two-pass moments
        np.testing.assert_allclose(getattr(stats, f), getattr(ref, f), rtol=1e-9, atol=1e-10, err_msg=f)
    samples = np.load(dist_runs / "fsdp_refsample_0.npz")
    for n in stats.names:  # the same global coordinates, from whichever rank holds them
        np.testing.assert_array_equal(stats.samples[n], samples[n])
    grads = load(dist_runs / "fsdp_grad_0.npz")
    assert (grads.count == stats.count).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_host_sync_in_the_step_on_cuda():
    model = _mlp().cuda()
    opt = torch.optim.Adam(model.parameters(), lr=torch.tensor(1e-2, device="cuda"), capturable=True)
    x, y = torch.randn(32, 6, device="cuda"), torch.randn(32, 3, device="cuda")
    with UpdateRecorder(opt, model, steps=3, record_grad=True) as rec:
        for _ in range(3):
            opt.zero_grad()
            (model(x) - y).pow(2).mean().backward()
            torch.cuda.set_sync_debug_mode("error")
            try:
                opt.step()
            finally:
                torch.cuda.set_sync_debug_mode("default")
    assert rec.result().metadata["device"].startswith("cuda")


def _watch_recorder_hooks(opt, attach):
    """Run attach() between two pairs of step hooks that switch a SyncWatch on around the recorder's own."""
    watch = SyncWatch()

    def on(*_):
        watch.__enter__()

    def off(*_):
        watch.__exit__(None, None, None)

    opt.register_step_pre_hook(on)
    opt.register_step_post_hook(on)
    rec = attach()
    opt.register_step_pre_hook(off)
    opt.register_step_post_hook(off)
    return watch, rec


@pytest.mark.parametrize("tensor_lr", [False, True])
def test_device_route_never_reads_a_value_back_inside_the_step(tensor_lr, monkeypatch):
    """The torch route (what CUDA runs) checked on the CPU: no op inside the hooks waits for the device.

    With no GPU here, the CUDA test above cannot run; this one watches every aten op the recorder's hooks
    call, with float and tensor learning rates, gradients recorded too.
    """
    monkeypatch.setenv("ADAMDIST_NATIVE", "0")  # the CPU then takes the route CUDA takes
    model = _mlp()
    lr = torch.tensor(1e-2) if tensor_lr else 1e-2
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    watch, rec = _watch_recorder_hooks(opt, lambda: UpdateRecorder(opt, model, steps=3, record_grad=True).attach())
    for step in range(1, 4):
        opt.zero_grad()
        _loss(model, step).backward()
        opt.step()
    rec.detach()
    assert "bucketize" in watch.ops and "index_select" in watch.ops  # the watch saw the route's work
    assert watch.syncing == []
    assert np.isfinite(rec.result().var).all()


@pytest.mark.parametrize("op,expected", [
    (lambda p: float(p.detach().sum()), "_local_scalar_dense"),
    (lambda p: torch.repeat_interleave(p.detach(), torch.tensor([1, 2, 3])), "repeat_interleave"),
    (lambda p: torch.segment_reduce(p.detach(), "sum", lengths=torch.tensor([1, 2])), "segment_reduce"),
])
def test_sync_watch_catches_a_value_read_back(op, expected):
    """The watch above can fail: a hook that reads a value back (or lets an op do it) is caught."""
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def reads_back(*_):
        op(model[2].bias)

    watch, _ = _watch_recorder_hooks(opt, lambda: opt.register_step_post_hook(reads_back))
    _loss(model, 1).backward()
    opt.step()
    assert expected in watch.syncing


@pytest.mark.parametrize("shape,ranges", [((5, 7), {0: (3, 5)}), ((4, 6), {1: (3, 6)}), ((3, 4, 5), {0: (0, 2), 2: (2, 5)}),
                                          ((5, 7), {0: (5, 5)})])
def test_local_sample_maps_global_coordinates_into_the_shard(shape, ranges):
    """The shard bookkeeping behind FSDP2 (Shard(0)) and other DTensor layouts (Shard(d), several mesh dims)."""
    from adamdist.capture import _local_sample

    full = np.arange(np.prod(shape)).reshape(shape) * 10
    local = full[tuple(slice(*ranges.get(d, (0, n))) for d, n in enumerate(shape))]
    global_idx = np.sort(np.random.default_rng(0).choice(full.size, size=min(17, full.size), replace=False))
    cols, local_idx = _local_sample(global_idx, shape, local.shape, ranges)
    held = [i for i, g in enumerate(global_idx) if local.size and np.isin(full.ravel()[g], local)]
    assert cols.tolist() == held
    np.testing.assert_array_equal(local.ravel()[local_idx], full.ravel()[global_idx[cols]])


def _mixed_model(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 5))
    model[0].weight.data = model[0].weight.data.to(memory_format=torch.channels_last)  # not contiguous
    model[2].bias.data = model[2].bias.data.double()  # another dtype in the same optimizer
    return model


def _mixed_run(native: bool, monkeypatch):
    monkeypatch.setenv("ADAMDIST_NATIVE", "1" if native else "0")
    model = _mixed_model()
    opt = torch.optim.Adam([{"params": [model[0].weight, model[0].bias], "lr": torch.tensor(0.01)},
                            {"params": model[2].parameters(), "lr": 0.003}])
    with UpdateRecorder(opt, model, steps=4, sample_size=7, record_grad=True) as rec:
        for step in range(1, 5):
            gen = torch.Generator().manual_seed(step)
            opt.zero_grad()
            out = model[:2](torch.randn(8, 3, 6, 6, generator=gen))
            model[2].bias.grad = None
            (torch.nn.functional.linear(out, model[2].weight).sum() + model[2].bias.sum() * 0.5).backward()
            if step == 3:
                opt.param_groups[1]["lr"] = 0.0  # undefined updates, both routes
            opt.step()
    monkeypatch.delenv("ADAMDIST_NATIVE")
    return rec.result(), rec.result("grad")


def test_torch_route_with_a_missing_gradient(monkeypatch):
    """A tensor without a gradient at some step (frozen for a while): the rest of its chunk is still recorded,
    and the gradient statistics equal the compiled kernel's."""
    from adamdist import _native

    if _native.library() is None:
        pytest.skip("no C compiler")
    results = []
    for native in ("1", "0"):
        monkeypatch.setenv("ADAMDIST_NATIVE", native)
        model = _mlp()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        with UpdateRecorder(opt, model, steps=3, sample_size=5, record_grad=True) as rec:
            for step in range(1, 4):
                opt.zero_grad()
                model[0].bias.requires_grad_(step != 2)
                _loss(model, step).backward()
                opt.step()
        results.append(rec.result("grad"))
    fast, slow = results
    j = fast.names.index("0.bias")
    assert fast.count[1, j] == slow.count[1, j] == 0 and fast.count[0, j] == 8
    np.testing.assert_array_equal(fast.count, slow.count)
    np.testing.assert_array_equal(fast.hist, slow.hist)
    np.testing.assert_allclose(fast.var, slow.var, rtol=1e-12)
    for name in fast.names:
        np.testing.assert_array_equal(fast.samples[name], slow.samples[name])


@pytest.mark.parametrize("chunk", [None, 40])
def test_native_and_torch_routes_record_the_same(chunk, monkeypatch):
    """Contiguous float32/64 CPU tensors go through the compiled kernel, the rest through torch: same results.

    The torch route summarises tensors of one group and dtype in chunks; ``chunk=40`` splits them into
    several (and puts a larger tensor alone in one).
    """
    from adamdist import _native, capture

    if _native.library() is None:
        pytest.skip("no C compiler")
    if chunk is not None:
        monkeypatch.setattr(capture, "_CHUNK_ENTRIES", chunk)
    fast, slow = _mixed_run(True, monkeypatch), _mixed_run(False, monkeypatch)
    for a, b in zip(fast, slow):
        for field in ("count", "nonfinite", "hist", "underflow", "overflow", "steps"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        for field in ("mean", "var", "abs_var"):  # atol: a constant update's variance is rounding noise
            np.testing.assert_allclose(getattr(a, field), getattr(b, field), rtol=1e-12, atol=1e-15)
        spread = np.nan_to_num(a.var) > 1e-12
        np.testing.assert_allclose(a.skew[spread], b.skew[spread], rtol=1e-9)
        for name in a.names:
            np.testing.assert_array_equal(a.samples[name], b.samples[name])
    upd = fast[0]
    j = upd.names.index("2.weight")
    assert upd.nonfinite[2, j] == upd.count[1, j] and upd.count[2, j] == 0  # step 3: lr 0 in group 1


# -- faults in the user's training loop (issue: no silent failures) ---------------------------------------
@pytest.mark.parametrize("native", ["1", "0"])
def test_add_param_group_after_attach_does_not_break_the_step(native, monkeypatch):
    monkeypatch.setenv("ADAMDIST_NATIVE", native)
    model = _mlp()
    opt = torch.optim.Adam(model[0].parameters(), lr=1e-2)
    with UpdateRecorder(opt, model, steps=4, sample_size=5) as rec:
        _run(model, opt, None, 2)
        with pytest.warns(RuntimeWarning, match="groups added since are not recorded"):
            opt.add_param_group({"params": list(model[2].parameters()), "lr": 1e-3})
            _run(model, opt, None, 2, first=3)
    stats = rec.result()
    assert stats.steps.tolist() == [1, 2, 3, 4]
    assert stats.names == ("0.weight", "0.bias")
    assert np.isfinite(stats.var).all()


def test_add_param_group_warning_cannot_escape_into_the_step_under_W_error():
    model = _mlp()
    opt = torch.optim.Adam(model[0].parameters(), lr=1e-2)
    with UpdateRecorder(opt, model, steps=3, sample_size=5) as rec:
        _run(model, opt, None, 1)
        opt.add_param_group({"params": list(model[2].parameters())})
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            _run(model, opt, None, 2, first=2)
    assert rec.result().steps.tolist() == [1, 2, 3]


def test_load_state_dict_after_attach_keeps_recording():
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with UpdateRecorder(opt, model, steps=4, sample_size=5) as rec:
        _run(model, opt, None, 2)
        state = opt.state_dict()
        state["param_groups"][0]["lr"] = 5e-3
        opt.load_state_dict(state)
        _run(model, opt, None, 2, first=3)
    stats = rec.result()
    assert stats.steps.tolist() == [1, 2, 3, 4]
    assert [stats.metadata["lr_by_step"][str(s)][0] for s in (2, 3)] == [1e-2, 5e-3]


@pytest.mark.parametrize("record_grad", [False, True])
@pytest.mark.parametrize("native", ["1", "0"])
def test_a_step_that_raises_is_not_counted(record_grad, native, monkeypatch):
    """4 calls of step(closure), the 2nd raising: rows are the 3 completed steps, equal to a clean run's."""
    monkeypatch.setenv("ADAMDIST_NATIVE", native)

    def record(fail_at):
        model = _mlp()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        with UpdateRecorder(opt, model, steps=5, sample_size=5, record_grad=record_grad) as rec:
            done = 0
            for call in range(1, 5):
                def closure():
                    opt.zero_grad()
                    loss = _loss(model, done + 1)
                    loss.backward()
                    if call == fail_at:
                        raise RuntimeError("the data loader failed")
                    return loss
                try:
                    opt.step(closure)
                    done += 1
                except RuntimeError:
                    pass
        return rec, opt

    rec, opt = record(fail_at=2)
    clean, _ = record(fail_at=None)
    for kind in ("update", "grad") if record_grad else ("update",):
        stats, ref = rec.result(kind), clean.result(kind).select(steps=[1, 2, 3])
        assert stats.steps.tolist() == [1, 2, 3]
        assert int(opt.state[next(iter(opt.state))]["step"]) == 3
        np.testing.assert_array_equal(stats.hist, ref.hist)
        np.testing.assert_allclose(stats.var, ref.var, rtol=1e-12)
        np.testing.assert_array_equal(stats.count, ref.count)
    compare_with_theory(rec.result().select(steps=[2, 3]), beta1=0.0)


def test_a_fault_inside_a_hook_stops_recording_but_not_training(monkeypatch):
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    rec = UpdateRecorder(opt, model, steps=4, sample_size=5).attach()
    _run(model, opt, None, 2)

    def broken(*args, **kwargs):
        raise MemoryError("device out of memory")

    monkeypatch.setattr(rec, "_after_step", broken)
    with pytest.warns(RuntimeWarning, match="stopped recording at optimizer step 3"):
        _run(model, opt, None, 2, first=3)  # no exception reaches the loop
    assert int(opt.state[model[0].weight]["step"]) == 4
    with pytest.warns(RuntimeWarning, match="stopped recording after step 2"):
        stats = rec.result()
    assert stats.steps.tolist() == [1, 2]
    assert stats.metadata["recording_error"] == "MemoryError: device out of memory"
    rec.detach()


def test_huge_steps_are_refused_before_allocating(monkeypatch):
    from adamdist import _validation

    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    monkeypatch.setattr(_validation, "available_memory", lambda device=None: 100 * 2**20)
    rec = UpdateRecorder(opt, model, steps=200_000)
    with pytest.raises(ValueError, match=r"needs about .* GiB on the host but only 0\.1 GiB is available; "
                                         r"reduce steps"):
        rec.attach()
    UpdateRecorder(opt, model, steps=100).attach().detach()  # a normal size still fits the same budget


def test_memory_estimate_bounds_what_attach_allocates():
    """The estimate is an upper bound within a small factor of the buffers' real size."""
    model = torch.nn.Linear(300, 200)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    rec = UpdateRecorder(opt, model, steps=500, sample_size=100, record_grad=True)
    estimate = rec._buffer_bytes(rec._tracked, 2)
    rec.attach()
    real = sum(b.numel() * b.element_size() for b in
               [*rec._sample_buf.values(), *rec._abs_sum.values(), rec._lr] +
               [x for a in rec._acc.values() for x in (a._hist, a._moments, a._counts)] +
               [t.snap for t in rec._tracked])
    rec.detach()
    assert real <= estimate <= 3 * real + 40 * (1 << 22)


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_seed_out_of_range_is_refused_at_the_call(seed):
    model = _mlp()
    opt = torch.optim.Adam(model.parameters())
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 9223372036854775807\]"):
        UpdateRecorder(opt, model, seed=seed)


@pytest.mark.parametrize("make_opt, warns", [
    (lambda p: torch.optim.SGD(p, lr=1e-2), True),
    (lambda p: torch.optim.RMSprop(p, lr=1e-3), True),
    (lambda p: torch.optim.Adam(p, lr=1e-3, betas=(0.0, 0.999)), False),
    (lambda p: torch.optim.AdamW(p, lr=1e-3, betas=(0.0, 0.999)), False),
])
def test_comparing_a_non_adam_run_with_theorem_1_warns(make_opt, warns):
    import warnings

    model = _mlp()
    opt = make_opt(model.parameters())
    with UpdateRecorder(opt, model, steps=3, sample_size=20) as rec:
        _run(model, opt, None, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compare_with_theory(rec.result())
    said = [str(w.message) for w in caught if "describe Adam's update" in str(w.message)]
    assert len(said) == (1 if warns else 0)
    if warns:
        assert type(opt).__name__ in said[0]


@pytest.mark.parametrize("native", ["1", "0"])
def test_a_tensor_without_gradient_is_flagged_and_not_scored(native, monkeypatch):
    monkeypatch.setenv("ADAMDIST_NATIVE", native)
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.0, 0.999))
    model[2].bias.requires_grad_(False)  # frozen from the start: grad stays None
    with UpdateRecorder(opt, model, steps=3, sample_size=5, record_grad=True) as rec:
        for step in range(1, 4):
            opt.zero_grad(set_to_none=True)
            model[0].bias.requires_grad_(step != 2)  # no gradient at step 2 only
            _loss(model, step).backward()
            opt.step()
    for kind in ("update", "grad"):
        stats = rec.result(kind)
        frame = stats.to_frame("moments").set_index(["step", "name"])
        assert frame.loc[(2, "0.bias"), "no_grad"] and not frame.loc[(1, "0.bias"), "no_grad"]
        assert frame.loc[(slice(None), "2.bias"), "no_grad"].all()
        assert frame["no_grad"].sum() == 4
    table = compare_with_theory(rec.result()).set_index(["step", "name"])
    assert np.isnan(table.loc[(2, "0.bias"), "ks"]) and np.isnan(table.loc[(2, "0.bias"), "var_ratio"])
    assert table.loc[(slice(None), "2.bias"), "ks"].isna().all()
    assert np.isfinite(table.loc[(3, "0.bias"), "ks"])


def test_half_precision_updates_rounded_away_are_reported_once():
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 64).half()
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    with UpdateRecorder(opt, model, steps=3, sample_size=200) as rec:
        for step in range(3):
            opt.zero_grad()
            model(torch.randn(8, 64).half()).float().pow(2).mean().backward()
            opt.step()
    with pytest.warns(RuntimeWarning, match=r"exactly 0: weight \(\d\d\.\d% of them, float16, lr 1e-05\)"):
        rec.result()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rec.result()  # once is enough


def test_float32_updates_do_not_warn_about_half_precision():
    import warnings

    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    with UpdateRecorder(opt, model, steps=2, sample_size=20) as rec:
        _run(model, opt, None, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rec.result()


def test_a_hook_fault_that_cannot_even_be_described_stays_out_of_the_step(monkeypatch):
    """Under -W error, and with an exception whose message itself raises: the step still runs clean."""
    import warnings

    class Opaque(Exception):
        def __str__(self):
            raise RuntimeError("no message")

    def broken(*args, **kwargs):
        raise Opaque()

    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    rec = UpdateRecorder(opt, model, steps=4, sample_size=5).attach()
    _run(model, opt, None, 1)
    monkeypatch.setattr(rec, "_after_step", broken)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _run(model, opt, None, 2, first=2)
    assert int(opt.state[model[0].weight]["step"]) == 3
    with pytest.warns(RuntimeWarning, match="stopped recording after step 1"):
        stats = rec.result()
    assert stats.steps.tolist() == [1] and stats.metadata["recording_error"].startswith("Opaque")
    rec.detach()


@pytest.mark.parametrize("steps", ["10**12", "range(1, 10**13, 3)", "range(10**12, 0, -1)"])
def test_steps_too_many_to_list_are_refused_with_the_estimate(steps):
    """Such steps used to be listed one by one at construction, until the process ran out of memory."""
    from _isolated import run_isolated

    child = run_isolated(f"""
        import torch
        from adamdist.capture import UpdateRecorder

        model = torch.nn.Linear(3, 2)
        rec = UpdateRecorder(torch.optim.Adam(model.parameters()), model, steps={steps})
        try:
            rec.attach()
        except ValueError as exc:
            print(exc)
    """, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    assert re.search(r"buffers for \d+ recorded steps needs about \d+\.\d GiB on the host but only .* GiB is "
                     r"available; reduce steps", child.stdout), child.stdout


def test_a_long_range_of_steps_records_the_steps_it_names():
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with UpdateRecorder(opt, model, steps=range(7, 0, -3), sample_size=5) as rec:
        _run(model, opt, None, 8)
    assert rec.result().steps.tolist() == [1, 4, 7]
    with pytest.raises(ValueError, match=r"steps entry must be an integer in \[1, 9223372036854775807\], got 0"):
        UpdateRecorder(opt, model, steps=range(0, 5))
    with pytest.raises(ValueError, match="steps must name at least one step"):
        UpdateRecorder(opt, model, steps=range(5, 1))


class FusedAdam(torch.optim.Adam):
    """Stands for the vendors' Adam implementations (apex, DeepSpeed, bitsandbytes): named Adam, not torch's."""


@pytest.mark.parametrize("make_opt, warns", [
    (lambda p: FusedAdam(p, lr=1e-3, betas=(0.0, 0.999)), False),
    (lambda p: torch.optim.NAdam(p, lr=1e-3, betas=(0.0, 0.999)), True),
    (lambda p: torch.optim.Adamax(p, lr=1e-3, betas=(0.0, 0.999)), True),
    (lambda p: torch.optim.RAdam(p, lr=1e-3, betas=(0.0, 0.999)), True),
], ids=["fused-adam", "nadam", "adamax", "radam"])
def test_adam_variants_by_name(make_opt, warns):
    import warnings

    model = _mlp()
    opt = make_opt(model.parameters())
    with UpdateRecorder(opt, model, steps=2, sample_size=20) as rec:
        _run(model, opt, None, 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predicted_law(rec.result())
    assert sum("describe Adam's update" in str(w.message) for w in caught) == (1 if warns else 0)


def test_simulated_laprop_is_the_papers_optimizer_and_compares_without_warning():
    import warnings

    from adamdist.simulate import run

    stats = run("laprop", n=2000, steps=3, beta1=0.0, sample_size=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compare_with_theory(stats)
    with pytest.warns(UserWarning, match="rmsprop"):
        compare_with_theory(run("rmsprop", n=2000, steps=3, sample_size=100))


def test_select_parameters_is_the_recorders_selection():
    from adamdist.capture import select_parameters

    model = _mlp()
    opt = _two_group_adam(model)
    chosen = select_parameters(opt, model)
    assert [(n, g) for n, _, g in chosen] == [("0.weight", 0), ("0.bias", 0), ("2.weight", 1), ("2.bias", 1)]
    assert chosen[2][1] is model[2].weight
    assert [n for n, _, _ in select_parameters(opt)] == ["group0.0", "group0.1", "group1.0", "group1.1"]
    assert [n for n, _, _ in select_parameters(opt, ["2.bias"], module=model)] == ["2.bias"]
    with pytest.raises(ValueError, match="selected twice"):
        select_parameters(opt, {"a": model[0].weight, "b": model[0].weight})
    with pytest.raises(ValueError, match="not in the optimizer"):
        select_parameters(torch.optim.Adam(model[0].parameters()), {"w": model[2].weight})
