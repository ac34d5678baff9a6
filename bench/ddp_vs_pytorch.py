#!/usr/bin/python3
"""Data-parallel training, weft against PyTorch 2.15 DistributedDataParallel (gloo), in one run.

Both sides: the ~3.2M-parameter GPT-2 of configs/bench_3m.yaml, global batch 8 (4 per rank on 2 ranks), AdamW,
clipping, 1 thread per rank, on 1 and 2 ranks; in fp32 and in bf16 (weft's precision.compute: bf16, PyTorch's
torch.autocast("cpu", bfloat16)). PyTorch's ranks are spawned processes with torchrun's environment (gloo over
127.0.0.1). PyTorch 2.15 comes from .venv (bench/pytorch_venv.sh).
Usage: bench/ddp_vs_pytorch.py [--build build] [--steps 20] [--precisions fp32,bf16] [--json OUT]
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_env import ROOT, use_pytorch_venv  # noqa: E402

use_pytorch_venv()
import torch  # noqa: E402  (after the thread settings, in the venv)
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

from torch_gpt import Gpt, make_optimizer, train_step  # noqa: E402
from weft_runs import run_weft  # noqa: E402

LAYERS, D_MODEL, HEADS, VOCAB, SEQ, GLOBAL_BATCH = 4, 256, 8, 256, 128, 8


def torch_worker(rank, ranks, steps, port, bf16, results):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(ranks),
                      LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", rank=rank, world_size=ranks)
    torch.manual_seed(0)
    model = DistributedDataParallel(Gpt(LAYERS, D_MODEL, HEADS, VOCAB, SEQ))
    optimizer = make_optimizer(model, 3e-4, 0.1)
    tokens = torch.randint(0, VOCAB, (GLOBAL_BATCH // ranks, SEQ + 1))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        train_step(model, optimizer, tokens[:, :-1], tokens[:, 1:], 1.0, torch.bfloat16 if bf16 else None)
        times.append((time.perf_counter() - start) * 1000.0)
    if rank == 0:
        results.put(statistics.median(times[3:]))
    dist.destroy_process_group()


def run_torch(ranks, steps, port, bf16):
    results = mp.get_context("spawn").SimpleQueue()
    mp.spawn(torch_worker, args=(ranks, steps, port, bf16, results), nprocs=ranks, join=True)
    return results.get()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--json")
    args = parser.parse_args()
    tokens = GLOBAL_BATCH * SEQ
    result = {}
    print(f"GPT-2 {LAYERS}x{D_MODEL}, seq {SEQ}, global batch {GLOBAL_BATCH}, 1 thread per rank, torch {torch.__version__}")
    print(f"{'precision':>9}{'ranks':>6}{'weft ms':>10}{'weft tok/s':>12}{'torch ms':>10}{'torch tok/s':>13}"
          f"{'weft/torch':>12}")
    for precision in args.precisions.split(","):
        rows = []
        for ranks in (1, 2):
            weft_ms, last = run_weft(args.build, ranks, "configs/bench_3m.yaml",
                                     [f"train.steps={args.steps}", f"train.micro_batch={GLOBAL_BATCH // ranks}",
                                      f"precision.compute={precision}", "train.threads=1"], warmup=3)
            torch_ms = run_torch(ranks, args.steps, 29500 + ranks, precision == "bf16")
            result[f"{precision}_{ranks}_ranks"] = {
                "weft_step_ms": weft_ms, "torch_step_ms": torch_ms, "weft_tokens_per_s": tokens / weft_ms * 1e3,
                "torch_tokens_per_s": tokens / torch_ms * 1e3, "weft_dp_bytes_per_step": last["comm_bytes"]["dp"]}
            rows.append((ranks, weft_ms, torch_ms))
            print(f"{precision:>9}{ranks:>6}{weft_ms:>10.1f}{tokens / weft_ms * 1e3:>12.0f}{torch_ms:>10.1f}"
                  f"{tokens / torch_ms * 1e3:>13.0f}{torch_ms / weft_ms:>11.2f}x", flush=True)
        (_, w1, t1), (_, w2, t2) = rows
        print(f"{precision} scaling 1 -> 2 ranks: weft {w1 / w2:.2f}x, torch DDP {t1 / t2:.2f}x")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)


if __name__ == "__main__":
    main()
