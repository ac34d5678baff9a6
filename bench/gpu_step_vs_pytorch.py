#!/usr/bin/python3
"""Single-GPU training step, weft's CUDA engine beside PyTorch on the same work, in one run.

Both sides, for two shapes (bench_3m: 4 layers, d_model 256, seq 128, vocab 256, batch 8; GPT-2 small: 12
layers, d_model 768, seq 1024, vocab 50304, batch 4; tied embeddings): AdamW and gradient clipping, fp32 and
bf16 (weft: precision.compute bf16 with fp32 masters; PyTorch: autocast to bf16), PyTorch eager and
torch.compile. Reports the median step time of each and weft's tokens/s and MFU (from its metrics).
Usage: bench/gpu_step_vs_pytorch.py [--build build] [--steps 12] [--json OUT]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_gpt import Gpt, make_optimizer  # noqa: E402

SHAPES = {  # name: (layers, d_model, heads, vocab, seq, batch)
    "bench_3m": (4, 256, 8, 256, 128, 8),
    "gpt2_small": (12, 768, 12, 50304, 1024, 4),
}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARMUP = 3  # steps left out of the median (allocator growth, cuBLAS heuristics, compilation)


def run_weft(build, steps, precision, shape):
    layers, d_model, heads, vocab, seq, batch = shape
    with tempfile.TemporaryDirectory() as tmp:
        metrics = os.path.join(tmp, "metrics.jsonl")
        sets = {"device": "cuda", "precision.compute": precision, "train.steps": steps, "model.layers": layers,
                "model.d_model": d_model, "model.heads": heads, "model.vocab_size": vocab, "model.seq_len": seq,
                "train.global_batch": batch, "train.micro_batch": batch}
        args = [os.path.join(build, "weft"), "train", os.path.join(ROOT, "configs/bench_3m.yaml"), "--metrics", metrics]
        for key, value in sets.items():
            args += ["--set", f"{key}={value}"]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, timeout=600)
        rows = [json.loads(line) for line in open(metrics)]
    steps = [row for row in rows if "step" in row and "step_ms" in row][WARMUP:]
    return statistics.median(row["step_ms"] for row in steps), statistics.median(row["mfu"] for row in steps)


def run_torch(steps, precision, compiled, shape):
    layers, d_model, heads, vocab, seq, batch = shape
    torch.manual_seed(0)
    torch.set_default_device("cuda")  # Gpt builds its mask on the default device
    model = Gpt(layers, d_model, heads, vocab, seq)
    optimizer = make_optimizer(model, 3e-4, 0.1)
    forward = torch.compile(model) if compiled else model
    tokens = torch.randint(0, vocab, (batch, seq + 1))
    times = []
    for _ in range(steps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = forward(tokens[:, :-1], tokens[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss.item()
        times.append((time.perf_counter() - start) * 1000.0)
    torch.set_default_device("cpu")
    return statistics.median(times[WARMUP:])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False  # weft's fp32 GEMMs are plain fp32 too
    rows = []
    print(f"GPU: {torch.cuda.get_device_name()}; torch {torch.__version__}; ratios > 1 mean weft is faster")
    print(f"{'shape':>10} {'precision':>9} {'weft ms':>9} {'weft tok/s':>10} {'weft mfu':>8} {'eager ms':>9} "
          f"{'compiled ms':>11} {'eager/weft':>10} {'compiled/weft':>13}")
    for name, shape in SHAPES.items():
        for precision in ("fp32", "bf16"):
            weft_ms, weft_mfu = run_weft(args.build, args.steps, precision, shape)
            eager_ms = run_torch(args.steps, precision, False, shape)
            compiled_ms = run_torch(args.steps, precision, True, shape)
            tokens_per_s = shape[4] * shape[5] / weft_ms * 1e3
            rows.append({"shape": name, "precision": precision, "weft_ms": weft_ms, "weft_tokens_per_s": tokens_per_s,
                         "weft_mfu": weft_mfu, "eager_ms": eager_ms, "compiled_ms": compiled_ms})
            print(f"{name:>10} {precision:>9} {weft_ms:9.1f} {tokens_per_s:10.0f} {weft_mfu:8.3f} {eager_ms:9.1f} "
                  f"{compiled_ms:11.1f} {eager_ms / weft_ms:10.2f} {compiled_ms / weft_ms:13.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, out, indent=1)


if __name__ == "__main__":
    main()
