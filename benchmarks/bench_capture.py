"""Cost of recording the update distribution during training, against two common baselines.

One training step of RegNetX-200MF (batch 128, 32x32 random inputs, 10 classes,
Adam) on the CPU, four ways, each with its own copy of the model and optimizer
so that the routes never share hooks:

* ``bare``: forward, backward, ``optimizer.step()``;
* ``adamdist``: the same with :class:`adamdist.capture.UpdateRecorder` on all
  parameters, recording every step (histogram on 80 bins, count, mean,
  variance, variance of ``|u|``, skewness, non-finite count, 2000 sampled
  coordinates per tensor);
* ``adamdist, torch route``: the same recorder with the compiled kernel off
  (``ADAMDIST_NATIVE=0``): the torch operations that a GPU runs, and what a
  CPU without a C compiler gets;
* ``adamdist, Lightning callback``: the recorder attached by
  :class:`adamdist.integrations.lightning.UpdateDistributionCallback` (``on_fit_start``), with the
  callback's per-step hook (``on_train_batch_end``) called after every step as Lightning's fit loop
  calls it; the fit loop itself is Lightning's cost, not ours (``bench_lightning_callback.py`` times
  real fits). Needs ``adamdist[lightning]``; without it the row is left out;
* ``tensorboard``: after the step, per tensor, what
  ``SummaryWriter.add_histogram(tag, p)`` computes with its defaults
  (torch/utils/tensorboard/summary.py, ``make_histogram``): the values copied
  to the host as float64, ``numpy.histogram`` on the writer's default
  ``bins="tensorflow"`` edges (+-1e-12 * 1.1^k up to 1e20, and 0: 1,549
  uneven edges, which numpy bins by sorting), the trimming of empty end bins,
  and min, max, sum and sum of squares;
* ``wandb``: per tensor, what ``wandb.watch`` runs for each logged tensor
  (wandb/integration/torch/wandb_torch.py, ``TorchHistory.log_tensor_stats``):
  a clone, the finiteness checks (two ``isfinite`` passes, one synchronising),
  ``min``/``max`` read on the host, ``torch.histc`` on 64 bins, the counts and
  edges copied to the host;
* ``... lean``: stripped-down versions that keep only the core of each tool,
  a stricter bar: ``numpy.histogram`` on adamdist's own 80 even bins plus the
  four sums (TensorBoard), and ``min``/``max`` plus ``histc`` (wandb).

Neither baseline serialises or writes anything (protocol buffers, event
files, the wandb run's queue), which tilts the comparison in their favour.
The baselines histogram the parameters themselves, as those tools usually do,
so they are spared the snapshot and the difference that the update needs. The
``(updates)`` variants log what the recorder logs: a snapshot before the step
(one ``_foreach_copy_``), then the update ``(theta_t - theta_{t-1}) / lr``
(``_foreach_sub_`` and a division), logged the baseline's way.

The routes run interleaved, round after round, and we report medians:
the machine is shared, so a single timing means little. Besides whole
training steps we time, many more times, the optimizer step plus the logging
alone (on the gradients of the last backward pass): its difference from the
bare route is the logging cost, far less noisy than a difference of whole
steps. Overheads are that cost over the median bare training step. The ratios
to the recorder are printed twice: from medians, and from each route's best
round (its floor, without what a busy machine adds).

A GPU could not be timed here; what decides the cost there is the number of
operations launched and of values read back to the host per step. The last
table counts them on the CPU: every aten operation of the logging (the
optimizer's own subtracted) and those that read a value back
(``_local_scalar_dense``: ``.item()``, ``float()``, ``bool()``). Host copies
(``.cpu()``) are no-ops on a CPU and are not counted; the TensorBoard routes
make one per tensor.

Usage::

    nice python benchmarks/bench_capture.py --threads 1     # 5 + 21 rounds
    # --threads 1 on a shared machine: with several intra-op threads competing for busy cores, the many
    # small per-tensor operations of every route slow down unpredictably
    python benchmarks/bench_capture.py --rounds 2 --tail-rounds 5 --model torchvision
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import types

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from adamdist.capture import UpdateRecorder
from adamdist.results import default_edges

EDGES = default_edges()


def build_model(which: str):
    """The CIFAR RegNetX-200MF of adamdist.models when present, else torchvision's ImageNet layout."""
    if which in ("auto", "adamdist"):
        try:
            from adamdist.models.vision import regnetx_200mf
            return regnetx_200mf(num_classes=10), "adamdist.models.vision.regnetx_200mf (CIFAR stem, strides 1,1,2,2)"
        except ImportError:
            if which == "adamdist":
                raise
    from torchvision.models import regnet

    # torchvision ships no regnet_x_200mf builder; these are the paper's (Radosavovic et al. 2020) RegNetX-200MF
    # parameters, as in torchvision's own regnet_x_400mf builder
    params = regnet.BlockParams.from_init_params(depth=13, w_0=24, w_a=36.44, w_m=2.49, group_width=8)
    return regnet.RegNet(params, num_classes=10), "torchvision RegNet with RegNetX-200MF parameters (ImageNet layout)"


def tensorboard_default_bins() -> np.ndarray:
    """SummaryWriter's ``bins="tensorflow"`` edges, built as its constructor builds them."""
    positive = []
    v = 1e-12
    while v < 1e20:
        positive.append(v)
        v *= 1.1
    return np.array([-b for b in reversed(positive)] + [0.0] + positive)


TENSORBOARD_BINS = tensorboard_default_bins()


def tensorboard(tensors, bins=TENSORBOARD_BINS):
    for p in tensors:
        values = p.detach().cpu().numpy().astype(float).reshape(-1)
        counts, limits = np.histogram(values, bins=bins)
        # add_histogram keeps the bins from the first to the last non-empty one
        occupied = np.cumsum(counts > 0)
        start, end = np.searchsorted(occupied, [0, occupied[-1] - 1], side="right")
        start, end = int(start), int(end) + 1
        counts = counts[start - 1:end] if start > 0 else np.concatenate([[0], counts[:end]])
        limits = limits[start:end + 1]
        values.min(), values.max(), values.sum(), values.dot(values)


def tensorboard_lean(tensors):
    for p in tensors:
        x = p.detach().cpu().numpy()
        np.histogram(x, bins=EDGES)
        x.min(), x.max(), x.sum(), np.dot(x.ravel(), x.ravel())


def wandb(tensors, bins=64):
    for p in tensors:
        flat = p.detach().clone().reshape(-1)
        if flat.numel() == 0 or (~torch.isfinite(flat)).all().item():
            continue
        if not torch.isfinite(flat).all():
            flat = flat[torch.isfinite(flat)]
        lo, hi = flat.min().item(), flat.max().item()  # host synchronisations
        if lo == hi:
            continue
        counts = flat.histc(bins=bins, min=lo, max=hi).cpu().clone()
        counts.tolist(), torch.linspace(lo, hi, steps=bins + 1).tolist()


def wandb_lean(tensors):
    for p in tensors:
        x = p.detach()
        lo, hi = x.min().item(), x.max().item()  # host synchronisation per tensor
        torch.histc(x, bins=64, min=lo, max=hi).cpu()


BASELINES = {"tensorboard": tensorboard, "tensorboard lean": tensorboard_lean, "wandb": wandb,
             "wandb lean": wandb_lean}


class UpdateLogger:
    """A baseline's histogram of the update: snapshot in a pre-step hook, difference and log after."""

    def __init__(self, opt, log):
        self.params = [p for g in opt.param_groups for p in g["params"]]
        self.snaps = [torch.empty_like(p) for p in self.params]
        self.opt, self.log = opt, log
        opt.register_step_pre_hook(self.pre)

    def pre(self, *_):
        with torch.no_grad():
            torch._foreach_copy_(self.snaps, self.params)

    def after_step(self):
        with torch.no_grad():
            torch._foreach_sub_(self.snaps, self.params)  # theta_{t-1} - theta_t
            lr = self.opt.param_groups[0]["lr"]
            torch._foreach_div_(self.snaps, -lr)
            self.log(self.snaps)


class OpCounter(TorchDispatchMode):
    """Counts aten operations, and those that read a value back to the host."""

    def __init__(self):
        super().__init__()
        self.ops = self.reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        self.reads += func._schema.name == "aten::_local_scalar_dense"
        return func(*args, **(kwargs or {}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="timed whole training steps per route")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--tail-rounds", type=int, default=21, help="timed optimizer steps (+ logging) per route")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--model", choices=["auto", "adamdist", "torchvision"], default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda: where the model, the data and the recorder live")
    args = ap.parse_args()
    device = torch.device(args.device)
    # on a GPU a timer must wait for the queued kernels, or it times the launches only
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if args.threads:
        torch.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, generator=gen).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=gen).to(device)
    try:
        from adamdist.integrations.lightning import UpdateDistributionCallback
    except ImportError:
        UpdateDistributionCallback = None
    lightning_route = [] if UpdateDistributionCallback is None else ["adamdist, Lightning callback"]
    routes = ["bare", "adamdist", "adamdist, torch route", *lightning_route, *BASELINES,
              *(f"{b} (updates)" for b in BASELINES)]
    trainers = {}
    runs, description = {}, None
    for route in routes:
        torch.manual_seed(0)
        model, description = build_model(args.model)
        model.to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        rec = None
        if route.startswith("adamdist") and route not in lightning_route:
            saved = os.environ.get("ADAMDIST_NATIVE")
            os.environ["ADAMDIST_NATIVE"] = "0" if route.endswith("torch route") else (saved or "auto")
            try:  # the route is fixed at attach()
                rec = UpdateRecorder(opt, model, steps=args.warmup + args.rounds + args.tail_rounds + 1,
                                     sample_size=2000).attach()
            finally:
                if saved is None:
                    del os.environ["ADAMDIST_NATIVE"]
                else:
                    os.environ["ADAMDIST_NATIVE"] = saved
        elif route == "adamdist, Lightning callback":
            # what Lightning hands the callback: the trainer's optimizers, rank 0, its loggers (none here)
            trainers[route] = types.SimpleNamespace(optimizers=[opt], is_global_zero=True, loggers=[])
            rec = UpdateDistributionCallback(steps=args.warmup + args.rounds + args.tail_rounds + 1, sample_size=2000)
            rec.on_fit_start(trainers[route], model)
        elif route.endswith("(updates)"):
            rec = UpdateLogger(opt, BASELINES[route.removesuffix(" (updates)")])
        runs[route] = (model, opt, rec)
    n_params = sum(p.numel() for p in runs["bare"][0].parameters())
    n_tensors = len(list(runs["bare"][0].parameters()))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(route, log_only=False):
        model, opt, logger = runs[route]
        sync()
        t0 = time.perf_counter()
        if not log_only:
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
        sync()
        t1 = time.perf_counter()
        opt.step()
        if route in BASELINES:
            BASELINES[route](model.parameters())
        elif route.endswith("(updates)"):
            logger.after_step()
        elif route in trainers:
            logger.on_train_batch_end(trainers[route], model, None, None, 0)
        sync()
        t2 = time.perf_counter()
        return t2 - t0, t2 - t1

    # Phase 1: whole training steps, the routes interleaved round by round.
    whole = {r: [] for r in routes}
    for i in range(args.warmup + args.rounds):
        for route in routes:
            w, _ = step(route)
            if i >= args.warmup:
                whole[route].append(w)
    # Phase 2: the part after backward() alone (gradients kept from the last backward), many more rounds:
    # its difference from the bare route is the logging cost, without the forward/backward noise.
    tail = {r: [] for r in routes}
    for _ in range(args.tail_rounds):
        for route in routes:
            tail[route].append(step(route, log_only=True)[1])
    # Phase 3: one more optimizer step + logging per route, every operation counted.
    counts = {}
    for route in routes:
        with OpCounter() as counter:
            step(route, log_only=True)
        counts[route] = (counter.ops, counter.reads)
    for route in trainers:
        runs[route][2].on_fit_end(trainers[route], runs[route][0])
    rec = runs["adamdist"][2]
    t0 = time.perf_counter()
    stats = rec.result()
    t_result = time.perf_counter() - t0
    rec.detach()
    assert stats.steps.size == args.warmup + args.rounds + args.tail_rounds + 1
    assert np.isfinite(stats.var).all()

    med = {r: statistics.median(whole[r]) for r in routes}
    tmed = {r: statistics.median(tail[r]) for r in routes}
    bare = med["bare"]
    cost = {r: tmed[r] - tmed["bare"] for r in routes}
    print(f"model: {description}; {n_params:,} parameters in {n_tensors} tensors; batch {args.batch}x3x32x32; "
          f"Adam; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}")
    print(f"whole steps: {args.rounds} rounds after {args.warmup} warm-up; optimizer step + logging: "
          f"{args.tail_rounds} rounds; routes interleaved; median (min-max)\n")
    print(f"{'route':<29}{'whole step [ms]':>26}{'opt.step+logging [ms]':>26}{'logging [ms]':>14}{'% of bare':>11}")
    for r in routes:
        w, a = whole[r], tail[r]
        print(f"{r:<29}{med[r] * 1e3:>9.0f} ({min(w) * 1e3:7.0f}-{max(w) * 1e3:7.0f})"
              f"{tmed[r] * 1e3:>9.1f} ({min(a) * 1e3:6.1f}-{max(a) * 1e3:6.1f})"
              f"{cost[r] * 1e3:>14.1f}{100 * cost[r] / bare:>10.1f}%")
    if trainers:
        extra = cost["adamdist, Lightning callback"] - cost["adamdist"]
        print(f"\nLightning callback against the bare recorder: {extra * 1e3:+.2f} ms per step, "
              f"{100 * extra / bare:+.2f}% of the bare training step")
    spread = (max(whole["bare"]) - min(whole["bare"])) / bare
    print(f"\nadamdist overhead: {100 * cost['adamdist'] / bare:.1f}% of the bare training step "
          f"(whole-step medians differ by {100 * (med['adamdist'] / bare - 1):+.1f}%, but the bare step alone "
          f"spans {100 * spread:.0f}% of its median across rounds here)")
    # medians include what the machine's state adds to each route (allocation, cache misses); the best
    # rounds are each route's floor: both are printed, since the shared machine makes either one noisy
    best = {r: min(tail[r]) - min(tail["bare"]) for r in routes}
    print(f"\n{'route':<29}{'logging, median [ms]':>22}{'x adamdist':>12}{'logging, best [ms]':>20}{'x adamdist':>12}")
    for r in routes[1:]:
        ratio = cost[r] / cost["adamdist"] if cost["adamdist"] > 0 else float("inf")
        ratio_best = best[r] / best["adamdist"] if best["adamdist"] > 0 else float("inf")
        print(f"{r:<29}{cost[r] * 1e3:>22.1f}{ratio:>12.1f}{best[r] * 1e3:>20.1f}{ratio_best:>12.1f}")
    print(f"result(): {t_result * 1e3:.0f} ms, once, for {stats.steps.size} steps x {len(stats.names)} tensors")
    print(f"\nper logging step, on a GPU each a launch or a wait (counted on the CPU; Adam's own "
          f"{counts['bare'][0]} operations subtracted):")
    print(f"{'route':<29}{'aten operations':>16}{'values read back':>18}")
    for r in routes[1:]:
        print(f"{r:<29}{counts[r][0] - counts['bare'][0]:>16}{counts[r][1] - counts['bare'][1]:>18}")


if __name__ == "__main__":
    main()
