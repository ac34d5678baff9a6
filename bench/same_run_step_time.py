#!/usr/bin/env python3
"""Compares the runs bench/same_run_step_time.sh made: per run and round the median step_ms of steps 4 and later
(docs/metrics.md), then per run the median over rounds of each side and of the paired new/old ratio; the same for
the CPU seconds of the whole job where rN.time exists; and whether every step's loss and gradient norm are
bit-identical between the sides and across rounds.

    bench/same_run_step_time.py OUT_DIR [OLD_NAME NEW_NAME]     (default side names: old new)
"""
import glob
import json
import os
import statistics
import sys


def steps(path):
    with open(path) as f:
        return [r for r in (json.loads(line) for line in f if line.strip()) if "step" in r and "loss" in r]


def cpu_seconds(path):
    try:
        with open(path) as f:
            user, system, _ = f.read().split()[-3:]
        return float(user) + float(system)
    except (OSError, ValueError):
        return None


def main():
    out = sys.argv[1]
    old, new = (sys.argv[2], sys.argv[3]) if len(sys.argv) > 3 else ("old", "new")
    print(f"{'run':14} {'rounds':>6} {'old ms':>9} {'new ms':>9} {'new/old':>8} {'paired range':>13} "
          f"{'old cpu s':>9} {'new cpu s':>9} {'new/old':>8} {'paired range':>13}  losses")
    for name in sorted(os.listdir(os.path.join(out, old))):
        medians = {old: [], new: []}
        ratios, curves, cpu = [], [], {old: [], new: [], "ratio": []}
        for path in sorted(glob.glob(os.path.join(out, old, name, "r*.jsonl"))):
            other = os.path.join(out, new, name, os.path.basename(path))
            if not os.path.exists(other):
                continue
            a, b = steps(path), steps(other)
            if len(a) < 4 or len(a) != len(b):  # a run still going (or one that failed: see OUT_DIR/log)
                continue
            curves += [[(s["step"], s["loss"], s["grad_norm"]) for s in run] for run in (a, b)]
            ma = statistics.median(s["step_ms"] for s in a[3:])
            mb = statistics.median(s["step_ms"] for s in b[3:])
            medians[old].append(ma)
            medians[new].append(mb)
            ratios.append(mb / ma)
            ca, cb = cpu_seconds(path[:-len(".jsonl")] + ".time"), cpu_seconds(other[:-len(".jsonl")] + ".time")
            if ca and cb:
                cpu[old].append(ca)
                cpu[new].append(cb)
                cpu["ratio"].append(cb / ca)
        if not ratios:
            continue
        same = all(c == curves[0] for c in curves)
        verdict = f"bit-identical over {len(curves[0])} steps" if same else "DIFFER"
        print(f"{name:14} {len(ratios):>6} {statistics.median(medians[old]):9.2f} "
              f"{statistics.median(medians[new]):9.2f} {statistics.median(ratios):8.3f} "
              f"{min(ratios):6.3f}-{max(ratios):.3f} ", end="")
        if cpu["ratio"]:
            print(f"{statistics.median(cpu[old]):9.2f} {statistics.median(cpu[new]):9.2f} "
                  f"{statistics.median(cpu['ratio']):8.3f} {min(cpu['ratio']):6.3f}-{max(cpu['ratio']):.3f} ", end="")
        else:
            print(f"{'-':>9} {'-':>9} {'-':>8} {'-':>13} ", end="")
        print(f" {verdict}")
    loads = []
    log = os.path.join(out, "log")
    if os.path.exists(log):
        with open(log) as f:
            loads = [float(line.split("load ")[1].split()[0]) for line in f if " load " in line and "round" in line]
    if loads:
        print(f"load average (1 min) at the runs' starts: {min(loads):.1f}-{max(loads):.1f}, "
              f"median {statistics.median(loads):.1f}")


if __name__ == "__main__":
    main()
