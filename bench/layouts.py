#!/usr/bin/python3
"""Parallel layouts of the same training on the same ranks: step time, memory per rank and bytes per group.

Default: the bench_3m model on 2 ranks as dp=2, tp=2 and tp=2 with sequence parallelism (global batch 8,
1 thread per rank). Usage: bench/layouts.py [--build build] [--steps 12] [--json OUT]
"""
import argparse
import json
import os

from weft_runs import ROOT, run_weft
LAYOUTS = {
    "dp=2": ["parallel.dp=2", "train.micro_batch=4"],
    "tp=2": ["parallel.tp=2", "train.micro_batch=8"],
    "tp=2 + sequence parallel": ["parallel.tp=2", "parallel.sequence_parallel=true", "train.micro_batch=8"],
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--json")
    args = parser.parse_args()
    results = {}
    print("bench_3m (3.2M parameters), global batch 8, fp32, 2 ranks x 1 thread")
    print(f"{'layout':<26}{'step ms':>9}{'tokens/s':>10}{'params MiB':>12}{'activ. MiB':>12}{'dp MiB':>8}{'tp MiB':>8}{'loss':>8}")
    for name, sets in LAYOUTS.items():
        ms, last = run_weft(args.build, 2, "configs/bench_3m.yaml", [f"train.steps={args.steps}", *sets])
        mem, comm = last["mem"], last["comm_bytes"]
        results[name] = {"step_ms": ms, "tokens_per_s": 8 * 128 / ms * 1e3, "mem": mem, "comm_bytes": comm,
                         "final_loss": last["loss"]}
        print(f"{name:<26}{ms:>9.1f}{8 * 128 / ms * 1e3:>10.0f}{mem['params'] / 2**20:>12.2f}"
              f"{mem['activations'] / 2**20:>12.2f}{comm['dp'] / 2**20:>8.2f}{comm['tp'] / 2**20:>8.2f}{last['loss']:>8.4f}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)


if __name__ == "__main__":
    main()
