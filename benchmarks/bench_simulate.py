"""Speed of the simulation engine against its floor and against torch.optim.

Three routes over the same gradient stream (N coordinates, T steps, Gaussian
gradients drawn with the same seeded generator), on the CPU:

* ``floor``: only drawing the random numbers (``normal_`` into a preallocated
  buffer) -- no simulation can be faster than this;
* ``engine``: :func:`adamdist.simulate.run` with ``optimizer="adam"``
  (update + histogram + moments + samples at every step);
* ``torch.optim``: :class:`torch.optim.Adam` fed the same gradients through
  ``.grad``, the update taken as ``(theta_t - theta_{t-1}) / lr`` and given to
  the same :class:`adamdist.results.StatsAccumulator` (whose compiled kernel
  then speeds this route up too);
* ``torch.optim + torch statistics``: the same with adamdist's compiled
  kernels switched off (``ADAMDIST_NATIVE=0``), i.e. statistics from torch
  operations alone: what the route costs without adamdist's kernels (one
  repeat only: it is slow).

Each route runs ``--repeat`` times, interleaved, and the best time is kept:
on a shared machine the minimum is the least disturbed measurement.

Usage::

    nice python benchmarks/bench_simulate.py            # N = 1e6, T = 100
    python benchmarks/bench_simulate.py --n 100000 --steps 20 --repeat 1
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from adamdist import _native
from adamdist.results import StatsAccumulator, default_edges
from adamdist.simulate import run


def floor(n: int, steps: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    g = torch.empty(n)
    for _ in range(steps):
        g.normal_(0.0, 1.0, generator=gen)


def engine(n: int, steps: int, seed: int) -> None:
    run("adam", n=n, steps=steps, seed=seed, progress=False)


def torch_optim(n: int, steps: int, seed: int, lr: float = 1e-3) -> None:
    gen = torch.Generator().manual_seed(seed)
    p = torch.zeros(n, requires_grad=True)
    opt = torch.optim.Adam([p], lr=lr)
    acc = StatsAccumulator(["u"], [n], steps, default_edges(), sample_size=2000, seed=seed)
    prev = torch.empty(n)
    u = torch.empty(n)
    grad = torch.empty(n)
    for t in range(1, steps + 1):
        p.grad = grad.normal_(0.0, 1.0, generator=gen)
        with torch.no_grad():
            prev.copy_(p)
            opt.step()
            torch.sub(p, prev, out=u).div_(lr)
        acc.set_step(t - 1, t)
        acc.record(t - 1, 0, u)
    acc.result()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: torch's choice); 1 is steadier on a busy machine")
    args = ap.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    routes = {"floor (random numbers only)": floor, "engine (adamdist.simulate.run)": engine,
              "torch.optim.Adam + same statistics": torch_optim}
    best = {k: float("inf") for k in routes}
    engine(1000, 2, args.seed)  # warm up lazy imports (torch.optim pulls in a lot on first use)
    torch_optim(1000, 2, args.seed)
    for _ in range(args.repeat):
        for name, fn in routes.items():
            t0 = time.perf_counter()
            fn(args.n, args.steps, args.seed)
            best[name] = min(best[name], time.perf_counter() - t0)
    os.environ["ADAMDIST_NATIVE"] = "0"
    t0 = time.perf_counter()
    torch_optim(args.n, args.steps, args.seed)
    best["torch.optim.Adam + torch statistics"] = time.perf_counter() - t0
    del os.environ["ADAMDIST_NATIVE"]
    base = best["floor (random numbers only)"]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())  # the machine may be shared: say how busy it was
    print(f"N = {args.n:.0e}, T = {args.steps}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"best of {args.repeat}, load average {load} on {os.cpu_count()} CPUs")
    print(f"compiled kernels: {' '.join(_native.built_with) if _native.built_with else 'none (torch route)'}")
    for name, sec in best.items():
        print(f"  {name:40s} {sec:8.3f} s  {sec / args.steps * 1e3:7.2f} ms/step  {sec / base:5.2f}x floor")
    e, o = best["engine (adamdist.simulate.run)"], best["torch.optim.Adam + same statistics"]
    print(f"  torch.optim route / engine: {o / e:.2f}x")


if __name__ == "__main__":
    main()
