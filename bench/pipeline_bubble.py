#!/usr/bin/python3
"""Pipeline bubble measured from `--trace` timelines, against the textbook (p-1)/(m+p-1).

For each step after the first, each rank's bubble is the share of the pipeline phase (first forward to last
backward over all ranks) in which that rank computes nothing. The model: configs/bench_3m.yaml at 4 layers,
global batch 8, micro-batches of 1 (m = 8), 1 thread per rank.
Usage: bench/pipeline_bubble.py [--build build] [--steps 5]
"""
import argparse
import glob
import json
import os
import subprocess
import tempfile

from weft_runs import ROOT


def compute_spans(path):
    events = json.load(open(path))["traceEvents"]
    return [(e["ts"], e["ts"] + e["dur"], e["name"]) for e in events if e.get("ph") == "X" and e.get("cat") == "compute"]


def measure(build, pp, schedule, steps, virtual_stages=1):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        trace = os.path.join(tmp, "t.json")
        subprocess.run([os.path.join(build, "weft"), "launch", "-n", str(pp), os.path.join(ROOT, "configs/bench_3m.yaml"),
                        "--set", f"parallel.pp={pp}", "--set", f"parallel.schedule={schedule}", "--set", "train.micro_batch=1",
                        "--set", f"parallel.virtual_stages={virtual_stages}",
                        "--set", f"train.steps={steps}", "--trace", trace], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ranks = [compute_spans(p) for p in sorted(glob.glob(trace + ".rank*"))]
    bubbles = []
    # Steps are separated by each rank's "optimizer" span; measure steps 2..steps.
    for step in range(1, steps):
        windows = []
        for spans in ranks:
            marks = [s for s in spans if s[2] == "optimizer"]
            start = marks[step - 1][1]
            end = marks[step][0]
            windows.append([s for s in spans if s[0] >= start and s[1] <= end and s[2] != "optimizer"])
        begin = min(w[0][0] for w in windows)
        finish = max(w[-1][1] for w in windows)
        for w in windows:
            busy = sum(b - a for a, b, _ in w)
            bubbles.append(1.0 - busy / (finish - begin))
    return sum(bubbles) / len(bubbles)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    m = 8
    print(f"bench_3m, m = {m} micro-batches of 1 sample, 1 thread per rank")
    print(f"{'pp':>3} {'schedule':>12} {'measured':>9} {'(p-1)/(vm+p-1)':>15}")
    for pp, schedule, v in ((2, "gpipe", 1), (2, "1f1b", 1), (2, "interleaved", 2), (4, "gpipe", 1), (4, "1f1b", 1)):
        bubble = measure(args.build, pp, schedule, args.steps, v)
        print(f"{pp:>3} {schedule:>12} {100 * bubble:>8.1f}% {100 * (pp - 1) / (v * m + pp - 1):>14.1f}%")


if __name__ == "__main__":
    main()
