"""Benchmark: exact CDF of the Adam update (adamdist.exact) versus Monte Carlo.

Run by hand, on one core:

    python benchmarks/bench_exact.py [--t 100] [--points 200] [--mc-samples 200000]

For each case it times (best of ``--repeats``)

* building the distribution (one eigen-decomposition of a (t-1) x (t-1) matrix),
* ``cdf`` at ``--points`` points spread over the bulk of the law,
* the naive route: simulating the Adam recursion for ``--mc-samples`` draws and
  evaluating the empirical CDF at the same points.

The Monte Carlo error at n draws is measured against the exact CDF and
extrapolated with the 1/sqrt(n) law to the n that reaches 1e-6 absolute
(about 1e12 draws); the time is extrapolated linearly in n. Both routes run in
the same process, so the printed ratio compares like with like. No assertions:
timings depend on the machine.
"""

from __future__ import annotations

import os

# One core, as the specification asks: pin BLAS/OpenMP before numpy loads.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy import special  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from adamdist.exact import tabulate, update_distribution  # noqa: E402

TARGET = 1e-6


def best_time(fn, repeats):
    best = math.inf
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def run_case(label, t, beta1, beta2, sigma, mean, points, mc_samples, repeats, seed):
    build_s, dist = best_time(lambda: update_distribution(t, beta1, beta2, sigma=sigma, mean=mean), repeats)
    lo, hi = dist.interval(1 - 1e-6)
    x = np.linspace(lo, hi, points)
    cdf_s, F = best_time(lambda: dist.cdf(x), repeats)

    def monte_carlo():
        u = np.sort(dist.rvs(mc_samples, random_state=seed))
        return np.searchsorted(u, x, side="right") / u.size

    mc_s, F_mc = best_time(monte_carlo, repeats)
    # the verdicts' route (adamdist.verdict.law_test): tabulate once at tol 1e-3, then interpolate
    # the 2,000 sampled coordinates of one tensor
    table_s, table = best_time(lambda: tabulate(dist, tol=1e-3), repeats)
    x_ks = np.linspace(lo, hi, 2000)
    interp_s, _ = best_time(lambda: table.cdf(x_ks), repeats)
    mc_err = float(np.abs(F_mc - F).max())
    n_needed = mc_samples * (mc_err / TARGET) ** 2
    mc_needed_s = mc_s * n_needed / mc_samples
    extra = ""
    if beta1 == 0.0 and beta2 == 1.0 and sigma is None and mean is None:
        exact = special.betainc((t - 1) / 2, (t - 1) / 2, (1 + x / math.sqrt(t)) / 2)
        extra = f"   max |F - eq.30| = {np.abs(F - exact).max():.1e}"
    print(f"{label}\n"
          f"  build            {build_s * 1e3:8.1f} ms\n"
          f"  exact cdf        {cdf_s * 1e3:8.1f} ms for {points} points ({points / cdf_s:,.0f} points/s){extra}\n"
          f"  tabulated cdf    {table_s * 1e3:8.1f} ms to tabulate (tol 1e-3, {table.error_bound:.1e} bound), "
          f"{interp_s * 1e3:.2f} ms for 2,000 points ({2000 / interp_s:,.0f} points/s)\n"
          f"  Monte Carlo      {mc_s * 1e3:8.1f} ms for n = {mc_samples:.0e}: sup error {mc_err:.1e}\n"
          f"  MC to {TARGET:.0e}     ~{mc_needed_s:8.2e} s  (n ~ {n_needed:.1e}, extrapolated by 1/sqrt(n))\n"
          f"  ratio MC/exact   ~{mc_needed_s / cdf_s:8.1e}   (at n = {mc_samples:.0e} already "
          f"{mc_s / cdf_s:.1f}x)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--t", type=int, default=100)
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--mc-samples", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=12345)
    args = parser.parse_args(argv)
    t = args.t
    print(f"adamdist.exact benchmark: t = {t}, one core (BLAS threads = {os.environ['OPENBLAS_NUM_THREADS']}), "
          f"best of {args.repeats}\n")
    cases = [
        ("PyTorch defaults: beta1=0.9, beta2=0.999, N(0,1) gradients", 0.9, 0.999, None, None),
        ("Theorem 1 setting: beta1=0, simple average, N(0,1) gradients", 0.0, 1.0, None, None),
        ("section 6: beta1=0.9, beta2=0.999, sigma_i = i, mean_i = -i", 0.9, 0.999,
         (lambda i: float(i)), (lambda i: -float(i))),
    ]
    for label, b1, b2, sigma, mean in cases:
        run_case(label, t, b1, b2, sigma, mean, args.points, args.mc_samples, args.repeats, args.seed)
        print()


if __name__ == "__main__":
    main()
