#!/usr/bin/python3
"""ZeRO stages side by side on 2 ranks: step time against stage 0, measured memory per rank against the plan,
and the largest model that fits a fixed per-rank memory budget under each stage.

Model: configs/bench_3m.yaml (4 layers, d_model 256), global batch 8 (4 per rank), 1 thread per rank.
Usage: bench/zero_stages.py [--build build] [--steps 12] [--budget-mib 64] [--json OUT]
"""
import argparse
import json
import os
import subprocess

from weft_runs import ROOT, mib, run_weft
CONFIG = os.path.join(ROOT, "configs/bench_3m.yaml")


def plan(build, ranks, sets):
    args = [os.path.join(build, "weft"), "plan", CONFIG, "-n", str(ranks), "--json", "--set", "train.micro_batch=4"]
    for s in sets:
        args += ["--set", s]
    return json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--budget-mib", type=float, default=64.0)
    parser.add_argument("--json")
    args = parser.parse_args()
    result = {"stages": [], "largest": []}
    print("ZeRO stages on 2 ranks, bench_3m model (3.2M parameters), fp32, global batch 8, 1 thread per rank")
    print(f"{'stage':>5}{'step ms':>10}{'vs 0':>7}{'params':>10}{'grads':>9}{'optim':>9}{'planned':>10}{'dp MiB':>9}")
    base = None
    for stage in range(4):
        sets = [f"parallel.zero={stage}"]
        ms, last = run_weft(args.build, 2, "configs/bench_3m.yaml",
                            [f"train.steps={args.steps}", "train.micro_batch=4", *sets])
        planned = plan(args.build, 2, sets)
        mem = last["mem"]
        base = base or ms
        states = mem["params"] + mem["grads"] + mem["optimizer"]
        planned_states = planned["mem"]["params"] + planned["mem"]["grads"] + planned["mem"]["optimizer"]
        print(f"{stage:>5}{ms:>10.1f}{ms / base:>6.2f}x{mib(mem['params']):>10.2f}{mib(mem['grads']):>9.2f}"
              f"{mib(mem['optimizer']):>9.2f}{mib(planned_states):>10.2f}{mib(last['comm_bytes']['dp']):>9.2f}")
        result["stages"].append({"stage": stage, "step_ms": ms, "ratio_vs_stage0": ms / base, "mem": mem,
                                 "planned_mem": planned["mem"], "dp_bytes": last["comm_bytes"]["dp"],
                                 "measured_equals_plan": states == planned_states})
    print(f"largest model (d_model 256, 8 heads) whose model states fit {args.budget_mib:.0f} MiB per rank, fp32:")
    for ranks in (2, 8):
        row = []
        for stage in range(4):
            layers = 0
            while True:
                p = plan(args.build, ranks, [f"parallel.zero={stage}", f"model.layers={layers + 1}",
                                             f"train.global_batch={4 * ranks}"])
                m = p["mem"]
                if mib(m["params"] + m["grads"] + m["optimizer"]) > args.budget_mib or layers >= 256:
                    break
                layers += 1
            params = plan(args.build, ranks, [f"model.layers={max(layers, 1)}", f"train.global_batch={4 * ranks}"])["parameters"]
            row.append((stage, layers, params))
            result["largest"].append({"ranks": ranks, "stage": stage, "layers": layers, "parameters": params})
        print(f"  {ranks} ranks: " + ", ".join(f"ZeRO {s}: {l} layers ({p / 1e6:.1f}M params)" for s, l, p in row))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)


if __name__ == "__main__":
    main()
