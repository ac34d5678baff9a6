#!/usr/bin/python3
"""Single-rank CPU training step, weft against PyTorch eager on the same work, in one run.

Both sides: the ~3.2M-parameter GPT-2 of configs/bench_3m.yaml (4 layers, d_model 256, 8 heads, seq 128,
vocab 256), batch 8, fp32, AdamW, gradient clipping, 1 thread (OMP_NUM_THREADS=1 and OPENBLAS_NUM_THREADS=1).
Also measures sgemm alone on the step's own GEMM shapes (bench/step_gemm_ceiling) so the report can say what
fraction of the sgemm ceiling the whole step reaches.
Usage: bench/train_step_vs_pytorch.py [--build build] [--steps 30] [--json OUT]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"
import torch  # noqa: E402  (after the thread settings)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_gpt import Gpt, make_optimizer, train_step  # noqa: E402

LAYERS, D_MODEL, HEADS, VOCAB, SEQ, BATCH = 4, 256, 8, 256, 128, 8
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_weft(build, steps):
    with tempfile.TemporaryDirectory() as tmp:
        metrics = os.path.join(tmp, "metrics.jsonl")
        subprocess.run([os.path.join(build, "weft"), "train", os.path.join(ROOT, "configs/bench_3m.yaml"),
                        "--set", f"train.steps={steps}", "--metrics", metrics],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lines = [json.loads(line) for line in open(metrics)]
    steps_ms = [line["step_ms"] for line in lines if "step" in line][3:]  # skip warm-up steps
    return statistics.median(steps_ms), lines[-1]["summary"]


def run_torch(steps):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = Gpt(LAYERS, D_MODEL, HEADS, VOCAB, SEQ)
    optimizer = make_optimizer(model, 3e-4, 0.1)
    tokens = torch.randint(0, VOCAB, (BATCH, SEQ + 1))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        train_step(model, optimizer, tokens[:, :-1], tokens[:, 1:], 1.0)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times[3:]), sum(p.numel() for p in model.parameters())


def run_gemm_ceiling(build):
    out = subprocess.run([os.path.join(build, "bench", "step_gemm_ceiling"), str(LAYERS), str(D_MODEL), str(HEADS),
                          str(VOCAB), str(SEQ), str(BATCH), "10"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--json")
    args = parser.parse_args()

    tokens = BATCH * SEQ
    weft_ms, summary = run_weft(args.build, args.steps)
    torch_ms, torch_params = run_torch(args.steps)
    gemm = run_gemm_ceiling(args.build)
    step_flops = gemm["model_flops_per_token"] * tokens
    result = {
        "model": {"layers": LAYERS, "d_model": D_MODEL, "heads": HEADS, "vocab": VOCAB, "seq": SEQ, "batch": BATCH,
                  "torch_parameters": torch_params},
        "torch_version": torch.__version__,
        "weft_step_ms": weft_ms, "torch_step_ms": torch_ms,
        "weft_tokens_per_s": tokens / weft_ms * 1000.0, "torch_tokens_per_s": tokens / torch_ms * 1000.0,
        "speedup_vs_torch": torch_ms / weft_ms,
        "step_gflop": step_flops / 1e9,
        "weft_gflops": step_flops / weft_ms / 1e6, "torch_gflops": step_flops / torch_ms / 1e6,
        "sgemm_only_ms": gemm["gemm_ms"], "sgemm_gflops": gemm["gemm_gflops"],
        "weft_fraction_of_sgemm": gemm["gemm_ms"] / weft_ms,
        "weft_final_loss": summary["final_loss"],
    }
    print(f"model: {LAYERS} layers, d_model {D_MODEL}, {HEADS} heads, seq {SEQ}, vocab {VOCAB}, batch {BATCH}; "
          f"{step_flops / 1e9:.2f} GFLOP per step; 1 thread; torch {torch.__version__}")
    print(f"{'':<22}{'step ms':>10}{'tokens/s':>12}{'GFLOP/s':>10}")
    print(f"{'weft':<22}{weft_ms:>10.1f}{result['weft_tokens_per_s']:>12.0f}{result['weft_gflops']:>10.1f}")
    print(f"{'pytorch eager':<22}{torch_ms:>10.1f}{result['torch_tokens_per_s']:>12.0f}{result['torch_gflops']:>10.1f}")
    print(f"{'sgemm alone (shapes)':<22}{gemm['gemm_ms']:>10.1f}{'':>12}{gemm['gemm_gflops']:>10.1f}")
    print(f"weft / pytorch tokens/s: {result['speedup_vs_torch']:.2f}x; "
          f"weft reaches {100 * result['weft_fraction_of_sgemm']:.0f}% of the sgemm-only rate")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)


if __name__ == "__main__":
    main()
