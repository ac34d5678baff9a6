#!/usr/bin/python3
"""Scaling of weft's layouts with the number of ranks, measured beside `weft plan`'s prediction.

Sweeps ranks (default 1, 2, 4) and layouts (dp, zero3, tp, pp, 3d) on one config, runs each with `weft launch`
(or --launcher, e.g. on emulated hosts: `source tests/multihost/netns_cluster.sh; cluster_up 2 1gbit 0.1ms;
cluster_hostfile /tmp/hosts 2; bench/scaling.py --launcher "tests/multihost/cluster_mpirun.sh /tmp/hosts"`) and asks
`weft plan --json` for the same layout's prediction under a `cluster:` describing the machine (--cluster). Writes
scaling.csv and three PNG plots (tokens/s, scaling efficiency and memory per rank against ranks; one colour per
layout, measured solid, predicted dashed) into --out.

Usage: .venv/bin/python bench/scaling.py [--build build] [--config configs/bench_3m.yaml] [--ranks 1,2,4]
                        [--layouts dp,zero3,tp,pp,3d] [--steps 8] [--out DIR] [--launcher "CMD ARGS"]
                        [--cluster KEY=VALUE ...] [--label TEXT]
"""
import argparse
import csv
import json
import os
import shlex
import subprocess

from weft_runs import ROOT, run_weft

# One thread per rank on a CPU core: AVX2 FMA fp32 at ~3 GHz is ~0.1 TFLOP/s peak; shared-memory collectives
# move a few GB/s. Override for another machine (e.g. --cluster inter_node_GBps=1 for a limited link).
CPU_CLUSTER = {"peak_tflops": 0.1, "gemm_efficiency": 0.6, "memory_gib": 8, "memory_GBps": 10,
               "intra_node_GBps": 4, "inter_node_GBps": 4}


def layout(name, n):
    """(dp, tp, pp, zero) of a layout on n ranks. 3d splits n's factors of two over tp, pp and dp in turn."""
    if name == "dp":
        return n, 1, 1, 0
    if name == "zero3":
        return n, 1, 1, 3
    if name == "tp":
        return 1, n, 1, 0
    if name == "pp":
        return 1, 1, n, 0
    if name == "3d":
        sizes, axis, rest = [1, 1, 1], 0, n
        while rest % 2 == 0:
            sizes[axis] *= 2
            rest //= 2
            axis = (axis + 1) % 3
        tp, pp, dp = sizes
        return dp * rest, tp, pp, 0
    raise SystemExit(f"scaling.py: unknown layout {name!r} (dp, zero3, tp, pp, 3d)")


def settings(config_batch, dp, tp, pp, zero):
    # The global batch stays the config's; a pipeline gets four micro-batches per step so its stages overlap.
    micro = max(1, config_batch // dp // (4 if pp > 1 else 1))
    return [f"parallel.dp={dp}", f"parallel.tp={tp}", f"parallel.pp={pp}", f"parallel.zero={zero}",
            f"train.micro_batch={micro}"]


def predict(build, config, n, sets, cluster):
    args = [os.path.join(build, "weft"), "plan", config, "-n", str(n), "--json"]
    for s in sets + [f"cluster.{k}={v}" for k, v in cluster.items()]:
        args += ["--set", s]
    plan = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
    return plan["prediction"], plan["mem"]


def plot(rows, out, label):
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("scaling.py: the plots need matplotlib: run it with .venv/bin/python (scripts/python_env.sh)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    layouts = list(dict.fromkeys(r["layout"] for r in rows))
    figures = [("tokens_per_s", "tokens/s", "scaling_tokens.png"),
               ("efficiency", "scaling efficiency (tokens/s / (ranks x 1-rank tokens/s))", "scaling_efficiency.png"),
               ("mem_mib", "device memory per rank (MiB)", "scaling_memory.png")]
    for key, ylabel, name in figures:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for i, lay in enumerate(layouts):
            mine = [r for r in rows if r["layout"] == lay]
            ranks = [r["ranks"] for r in mine]
            colour = f"C{i}"
            ax.plot(ranks, [r[f"measured_{key}"] for r in mine], "o-", color=colour, label=f"{lay} measured")
            ax.plot(ranks, [r[f"predicted_{key}"] for r in mine], "x--", color=colour, label=f"{lay} predicted")
        ax.set_xlabel("ranks")
        ax.set_ylabel(ylabel)
        ax.set_xticks(sorted({r["ranks"] for r in rows}))
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(os.path.join(out, name), dpi=110)
        plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--config", default="configs/bench_3m.yaml")
    parser.add_argument("--ranks", default="1,2,4")
    parser.add_argument("--layouts", default="dp,zero3,tp,pp,3d")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--out", default="scaling")
    parser.add_argument("--launcher", default="", help="command prefix taking the rank count, then weft train")
    parser.add_argument("--cluster", nargs="*", default=[], help="cluster.KEY=VALUE figures for weft plan")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    config = os.path.join(ROOT, args.config) if not os.path.isabs(args.config) else args.config
    cluster = dict(CPU_CLUSTER)
    for item in args.cluster:
        key, value = item.split("=", 1)
        cluster[key] = value
    ranks_list = [int(r) for r in args.ranks.split(",")]
    rows = []
    for lay in args.layouts.split(","):
        for n in ranks_list:
            dp, tp, pp, zero = layout(lay, n)
            sets = settings(args.global_batch, dp, tp, pp, zero) + [f"train.global_batch={args.global_batch}"]
            ms, last = run_weft(args.build, n, config, [f"train.steps={args.steps}", *sets],
                                launcher=shlex.split(args.launcher) if args.launcher and n > 1 else None)
            tokens = round(last["tokens_per_s"] * last["step_ms"] / 1e3)  # a step's tokens, from its own line
            predicted, plan_mem = predict(args.build, config, n, sets,
                                          dict(cluster, devices_per_node=cluster.get("devices_per_node", n)))
            rows.append({"layout": lay, "ranks": n, "dp": dp, "tp": tp, "pp": pp, "zero": zero,
                         "measured_step_ms": ms, "measured_tokens_per_s": tokens / ms * 1e3,
                         "predicted_step_ms": predicted["step_ms"], "predicted_tokens_per_s": predicted["tokens_per_s"],
                         "measured_mem_mib": last["mem"]["peak"] / 2**20,
                         "predicted_mem_mib": plan_mem["device_total"] / 2**20, "final_loss": last["loss"]})
            print(f"{lay:>6} x{n}: measured {ms:8.1f} ms ({tokens / ms * 1e3:8.0f} tokens/s), predicted "
                  f"{predicted['step_ms']:8.1f} ms; memory {rows[-1]['measured_mem_mib']:.1f} MiB measured, "
                  f"{rows[-1]['predicted_mem_mib']:.1f} predicted", flush=True)
    for r in rows:
        base = next(b for b in rows if b["layout"] == r["layout"] and b["ranks"] == min(ranks_list))
        for kind in ("measured", "predicted"):
            scale = r["ranks"] / base["ranks"]
            r[f"{kind}_efficiency"] = r[f"{kind}_tokens_per_s"] / (scale * base[f"{kind}_tokens_per_s"])
    with open(os.path.join(args.out, "scaling.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, args.out, args.label or f"{os.path.basename(config)}, global batch {args.global_batch}")
    print(f"wrote {args.out}/scaling.csv and scaling_{{tokens,efficiency,memory}}.png")


if __name__ == "__main__":
    main()
