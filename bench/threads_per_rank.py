#!/usr/bin/python3
"""Threads against ranks on one host: weft's bench_3m step (global batch 8) as 1 rank x 1 thread, 1 rank x 2
threads (train.threads=2) and 2 ranks x 1 thread (data parallel, 4 samples each), alternating in every round.
Prints each layout's median tokens/s over the rounds, and the rounds themselves.
Usage: bench/threads_per_rank.py [--build build] [--steps 12] [--rounds 3] [--precision fp32]
"""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from weft_runs import ROOT, run_weft  # noqa: E402

LAYOUTS = [("1 rank x 1 thread", 1, 1, 8), ("1 rank x 2 threads", 1, 2, 8), ("2 ranks x 1 thread", 2, 1, 4)]
TOKENS = 8 * 128


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args()
    rounds = {name: [] for name, *_ in LAYOUTS}
    for _ in range(args.rounds):
        for name, ranks, threads, micro in LAYOUTS:
            sets = [f"train.steps={args.steps}", f"train.threads={threads}", f"train.micro_batch={micro}",
                    f"precision.compute={args.precision}"]
            ms, _ = run_weft(args.build, ranks, "configs/bench_3m.yaml", sets, warmup=3)
            rounds[name].append(TOKENS / ms * 1000.0)
    print(f"bench_3m, global batch 8, {args.precision}, {args.steps} steps per run, {args.rounds} rounds")
    print(f"{'layout':<22}{'tokens/s':>10}   rounds")
    for name, values in rounds.items():
        print(f"{name:<22}{statistics.median(values):>10.0f}   {', '.join(f'{v:.0f}' for v in values)}")


if __name__ == "__main__":
    main()
