"""Steps per second of the transformer training at 1,024 and 4,096 tokens per step (by hand, not in CI).

    python benchmarks/bench_transformer_tokens.py                   # 4 steps each, 1 thread
    python benchmarks/bench_transformer_tokens.py --steps 6 --threads 2 --tokens 1024 2048 4096

Chapter 8 (``book/08_transformer.md``) trains fairseq's ``transformer_iwslt_de_en`` for its
``quick`` profile with 1,024 tokens per step, a quarter of fairseq's ``--max-tokens 4096`` that
the paper's setting uses. This script measures what that choice saves: the same training loop
the chapter runs (:func:`adamdist.experiments.transformer.train`, with the update and gradient
recorder attached, on the IWSLT14 split of the quick profile), a few steps per batch size, in one
process, so every ratio is against the 1,024-token baseline measured in the same run on the same
machine. The first step of each run is left out of the median (allocation, first-touch costs).
Nothing is cached or written. The data is read from ``ADAMDIST_DATA`` as in the book.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import time


def measure(max_tokens: int, steps: int, split: str, device: str) -> dict:
    """Train ``steps`` steps at ``max_tokens`` tokens per batch; return per-step timings."""
    from adamdist.experiments import transformer as tx

    config = dataclasses.replace(tx.configs("quick")["fairseq"], max_tokens=max_tokens, steps=steps, split=split,
                                 device=device)
    start = time.perf_counter()
    update, _ = tx.train(config, progress=False)
    total = time.perf_counter() - start
    log = update.metadata["log"]
    seconds = log["seconds"][1:] if len(log["seconds"]) > 1 else log["seconds"]
    median = statistics.median(seconds)
    return {"max_tokens": max_tokens, "steps": steps, "target_tokens_per_step": statistics.mean(log["ntokens"]),
            "median_s_per_step": median, "steps_per_s": 1.0 / median, "total_s": total}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[1024, 4096],
                        help="max tokens per step; the first is the baseline (default: 1024 4096)")
    parser.add_argument("--steps", type=int, default=4, help="training steps per batch size (default 4)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--split", default="valid", help="IWSLT14 split to train on (default: valid, as quick)")
    parser.add_argument("--device", default="auto", help="torch device (default: CUDA when available)")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step is left out of the median)")

    import torch

    torch.set_num_threads(args.threads)
    rows = [measure(t, args.steps, args.split, args.device) for t in args.tokens]
    base = rows[0]
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} thread(s), device {args.device}, {args.steps} steps each, split {args.split}")
    header = (f"{'max tokens':>10} {'target tok/step':>15} {'s/step':>8} {'steps/s':>8} "
              f"{'steps/s vs base':>15} {'tokens/s vs base':>16}")
    print(header)
    for r in rows:
        speed = r["steps_per_s"] / base["steps_per_s"]
        tokens = speed * r["target_tokens_per_step"] / base["target_tokens_per_step"]
        print(f"{r['max_tokens']:>10} {r['target_tokens_per_step']:>15.0f} {r['median_s_per_step']:>8.2f} "
              f"{r['steps_per_s']:>8.3f} {speed:>15.3f} {tokens:>16.3f}")


if __name__ == "__main__":
    main()
