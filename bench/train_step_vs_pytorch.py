#!/usr/bin/python3
"""Single-rank CPU training step, weft against PyTorch 2.15 on the same work, in one run.

Both sides: GPT-2 (pre-LayerNorm, tied embedding, tanh GELU), AdamW, gradient clipping, 1 thread. Shapes:
bench_3m (configs/bench_3m.yaml: 4 layers, d_model 256, 8 heads, seq 128, vocab 256, batch 8) and 6x384
(6 layers, d_model 384, 6 heads, seq 256, vocab 256, batch 4). weft in fp32 and precision.compute bf16;
PyTorch eager and torch.compile, each in fp32 and under torch.autocast("cpu", bfloat16). The sides alternate
in every round, and each figure is the median over rounds of each run's median step. Also times the GEMMs
alone on the step's own shapes (bench/step_gemm_ceiling, fp32 and bf16 operands): the whole step's share of
that rate is its efficiency.

PyTorch 2.15 comes from PyPI into .venv (bench/pytorch_venv.sh, made on first use); the script re-runs itself
under that interpreter. Usage: bench/train_step_vs_pytorch.py [--build build] [--steps 12] [--rounds 3]
[--shapes bench_3m,6x384] [--no-compile] [--json OUT]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_env import ROOT, use_pytorch_venv  # noqa: E402

use_pytorch_venv()
import torch  # noqa: E402  (after the thread settings, in the venv)
from torch_gpt import Gpt, make_optimizer, train_step  # noqa: E402
from weft_runs import run_weft  # noqa: E402

SHAPES = {
    "bench_3m": dict(layers=4, d_model=256, heads=8, vocab=256, seq=128, batch=8),
    "6x384": dict(layers=6, d_model=384, heads=6, vocab=256, seq=256, batch=4),
}


def weft_step_ms(build, shape, steps, precision):
    s = SHAPES[shape]
    sets = [f"model.layers={s['layers']}", f"model.d_model={s['d_model']}", f"model.heads={s['heads']}",
            f"model.vocab_size={s['vocab']}", f"model.seq_len={s['seq']}", f"train.micro_batch={s['batch']}",
            f"train.global_batch={s['batch']}", f"train.steps={steps}", f"precision.compute={precision}",
            "train.threads=1"]
    ms, last = run_weft(build, 1, "configs/bench_3m.yaml", sets, warmup=3)
    return ms


class TorchSide:
    """One PyTorch model and optimizer per (shape, mode), kept across rounds (compiled once)."""

    def __init__(self, shape, compiled, bf16):
        s = SHAPES[shape]
        torch.manual_seed(0)
        self.model = Gpt(s["layers"], s["d_model"], s["heads"], s["vocab"], s["seq"])
        self.optimizer = make_optimizer(self.model, 3e-4, 0.1)
        self.step_model = torch.compile(self.model) if compiled else self.model
        self.autocast = torch.bfloat16 if bf16 else None
        self.tokens = torch.randint(0, s["vocab"], (s["batch"], s["seq"] + 1))

    def step_ms(self, steps, warmup=3):
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            train_step(self.step_model, self.optimizer, self.tokens[:, :-1], self.tokens[:, 1:], 1.0, self.autocast)
            times.append((time.perf_counter() - start) * 1000.0)
        return statistics.median(times[warmup:])


def gemm_ceiling(build, shape, dtype):
    s = SHAPES[shape]
    out = subprocess.run([os.path.join(build, "bench", "step_gemm_ceiling"), str(s["layers"]), str(s["d_model"]),
                          str(s["heads"]), str(s["vocab"]), str(s["seq"]), str(s["batch"]), "7", "--dtype", dtype],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def bench_shape(args, shape):
    s = SHAPES[shape]
    tokens = s["batch"] * s["seq"]
    sides = {"weft fp32": None, "weft bf16": None, "torch eager fp32": TorchSide(shape, False, False),
             "torch eager bf16": TorchSide(shape, False, True)}
    if not args.no_compile:
        sides["torch compile fp32"] = TorchSide(shape, True, False)
        sides["torch compile bf16"] = TorchSide(shape, True, True)
        for name in ("torch compile fp32", "torch compile bf16"):
            sides[name].step_ms(2, warmup=0)  # compiles outside the timed rounds
    ms = {name: [] for name in sides}
    gemm = {"fp32": [], "bf16": []}
    for _ in range(args.rounds):
        for name, side in sides.items():
            if side is None:
                ms[name].append(weft_step_ms(args.build, shape, args.steps, name.split()[1]))
            else:
                ms[name].append(side.step_ms(args.steps))
        for dtype in gemm:
            gemm[dtype].append(gemm_ceiling(args.build, shape, dtype))
    step = {name: statistics.median(values) for name, values in ms.items()}
    flops = gemm["fp32"][0]["model_flops_per_token"] * tokens
    result = {"shape": dict(s, name=shape), "tokens_per_step": tokens, "step_gflop": flops / 1e9,
              "step_ms": step, "tokens_per_s": {n: tokens / v * 1000.0 for n, v in step.items()},
              "rounds": {n: v for n, v in ms.items()}}
    for dtype in gemm:
        gemm_ms = statistics.median(g["gemm_ms"] for g in gemm[dtype])
        rate = gemm["fp32"][0]["gemm_flops"] / gemm_ms / 1e6  # GFLOP/s of the GEMMs the step issues, alone
        result[f"gemm_only_ms_{dtype}"] = gemm_ms
        result[f"gemm_only_gflops_{dtype}"] = rate
        # The step's model FLOP/s (attention's whole seq x seq products counted, as MFU does) as a share of that
        # rate; weft's causal row blocks skip the masked products, so its GEMMs do a little less than the model
        # FLOPs, and the share of the step's time its GEMMs alone would take is reported beside it.
        result[f"efficiency_{dtype}"] = flops / step[f"weft {dtype}"] / 1e6 / rate
        result[f"gemm_time_share_{dtype}"] = gemm_ms / step[f"weft {dtype}"]
    return result


def report(r):
    s = r["shape"]
    print(f"\n{s['name']}: {s['layers']} layers, d_model {s['d_model']}, {s['heads']} heads, seq {s['seq']}, "
          f"batch {s['batch']}; {r['step_gflop']:.2f} GFLOP per step; 1 thread; torch {torch.__version__}")
    print(f"{'':<22}{'step ms':>10}{'tokens/s':>12}{'GFLOP/s':>10}")
    for name, ms in r["step_ms"].items():
        print(f"{name:<22}{ms:>10.1f}{r['tokens_per_s'][name]:>12.0f}{r['step_gflop'] / ms * 1000:>10.1f}")
    for dtype in ("fp32", "bf16"):
        print(f"{'GEMMs alone ' + dtype:<22}{r['gemm_only_ms_' + dtype]:>10.1f}{'':>12}"
              f"{r['gemm_only_gflops_' + dtype]:>10.1f}   weft {dtype} step at "
              f"{100 * r['efficiency_' + dtype]:.0f}% of it (its GEMMs alone: "
              f"{100 * r['gemm_time_share_' + dtype]:.0f}% of its time)")
    t = r["tokens_per_s"]
    ratios = [("weft fp32 / torch eager fp32", "weft fp32", "torch eager fp32"),
              ("weft bf16 / torch eager bf16", "weft bf16", "torch eager bf16"),
              ("weft bf16 / torch compile bf16", "weft bf16", "torch compile bf16"),
              ("weft fp32 / torch compile fp32", "weft fp32", "torch compile fp32"),
              ("weft bf16 / weft fp32", "weft bf16", "weft fp32")]
    for label, a, b in ratios:
        if a in t and b in t:
            print(f"{label}: {t[a] / t[b]:.2f}x")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shapes", default="bench_3m,6x384")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = [bench_shape(args, shape) for shape in args.shapes.split(",")]
    for r in results:
        report(r)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)


if __name__ == "__main__":
    main()
