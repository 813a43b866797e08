"""Cost of adamdist's Lightning callback against the bare recorder, in real Lightning fits (by hand, not in CI).

The model of ``bench_capture.py`` (RegNetX-200MF, batch 128, 32x32 random inputs, Adam) trained by
``lightning.Trainer`` three ways, in rounds that alternate the three, each fit from the same seed:

* ``lightning``: the fit alone;
* ``recorder``: an :class:`adamdist.capture.UpdateRecorder` attached at fit start by a minimal
  callback (what a user would write by hand);
* ``callback``: :class:`adamdist.integrations.lightning.UpdateDistributionCallback` with the same
  recorder settings (``log_every=None``: the comparison is the callback's own cost; logging cost
  is the loggers').

Per fit, the median step time (``on_train_batch_start`` to ``on_train_batch_end``, the first two steps
left out). The callback's overhead is reported relative to the bare recorder's, both against the
``lightning`` fit of the same round; on a shared machine that difference is within the noise of the
step, so the time the callback spends in its own per-step hook is also measured directly.

Usage::

    nice python benchmarks/bench_lightning_callback.py --threads 1 --rounds 3 --steps 8
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench_capture import build_model


def main():
    import lightning.pytorch as L

    from adamdist.capture import UpdateRecorder
    from adamdist.integrations.lightning import UpdateDistributionCallback

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps per fit (the first two not timed)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch * args.steps, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (args.batch * args.steps,), generator=gen)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=args.batch)

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net, _ = build_model("auto")

        def training_step(self, batch, batch_idx):
            return torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    class Timer(L.Callback):
        def __init__(self):
            self.times = []

        def on_train_batch_start(self, *a):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, *a):
            self.times.append(time.perf_counter() - self.t0)

    class ByHand(L.Callback):
        def on_fit_start(self, trainer, pl_module):
            self.rec = UpdateRecorder(trainer.optimizers[0], pl_module, steps=args.steps, sample_size=2000).attach()

        def on_fit_end(self, trainer, pl_module):
            self.rec.result()
            self.rec.detach()

    class TimedCallback(UpdateDistributionCallback):
        """The callback, with the time spent in its own per-step hook measured (the rest is the recorder's)."""

        own = []

        def on_train_batch_end(self, *a, **k):
            t0 = time.perf_counter()
            super().on_train_batch_end(*a, **k)
            self.own.append(time.perf_counter() - t0)

    def fit(extra):
        torch.manual_seed(0)
        timer = Timer()
        trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=args.steps, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            callbacks=[timer, *extra])
        trainer.fit(Module(), data)
        return statistics.median(timer.times[2:])

    routes = {"lightning": lambda: [], "recorder": lambda: [ByHand()],
              "callback": lambda: [TimedCallback(steps=args.steps, sample_size=2000)]}
    times = {r: [] for r in routes}
    for _ in range(args.rounds):
        for route, extra in routes.items():
            times[route].append(fit(extra()))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.rounds} rounds of "
          f"{args.steps} steps at batch {args.batch}; median step time per fit")
    print(f"{'route':<12}{'step [ms], median of rounds':>30}{'rounds [ms]':>40}")
    for route, t in times.items():
        print(f"{route:<12}{statistics.median(t) * 1e3:>30.0f}{'  '.join(f'{v * 1e3:.0f}' for v in t):>40}")
    rec = [r - b for r, b in zip(times["recorder"], times["lightning"])]
    cb = [c - b for c, b in zip(times["callback"], times["lightning"])]
    base = statistics.median(times["lightning"])
    print(f"\nrecorder overhead: {100 * statistics.median(rec) / base:.1f}% of the Lightning step; "
          f"callback: {100 * statistics.median(cb) / base:.1f}%; callback minus recorder: "
          f"{100 * (statistics.median(cb) - statistics.median(rec)) / base:+.1f}% of the step "
          f"(the bare step itself varied by {100 * (max(times['lightning']) - min(times['lightning'])) / base:.0f}% "
          f"between rounds)")
    own = statistics.median(TimedCallback.own)
    print(f"the callback's own work per step (its on_train_batch_end; the hooks inside the step are the "
          f"recorder's): median {own * 1e6:.1f} us = {100 * own / base:.4f}% of the step")


if __name__ == "__main__":
    main()
