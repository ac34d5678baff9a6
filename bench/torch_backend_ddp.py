"""DDP (or FSDP2 with --fsdp: fully_shard per block, then the root) over backend "weft" or gloo against its ideal
(issue 17): the ~3.2M-parameter GPT of configs/bench_3m.yaml, global batch 8, 1 thread per rank, AdamW and clipping
(bench/torch_gpt.py). Run as every rank of

    PYTHONPATH=python mpirun -np 2 .venv/bin/python bench/torch_backend_ddp.py --backend weft|gloo [--bf16] [--fsdp]
    PYTHONPATH=python mpirun -np 1 .venv/bin/python bench/torch_backend_ddp.py --backend none   # the ideal's half

With --backend none one process trains the per-rank batch (4) without DDP; the ideal of 2 ranks is twice its
tokens/s. Rank 0 prints the median step time (after 3 warm-up steps) and tokens/s."""
import argparse
import os
import statistics
import sys
import time
from datetime import timedelta

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_gpt import Gpt, make_optimizer, train_step  # noqa: E402

LAYERS, D_MODEL, HEADS, VOCAB, SEQ, GLOBAL_BATCH, PER_RANK = 4, 256, 8, 256, 128, 8, 4


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["weft", "gloo", "none"], required=True)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--fsdp", action="store_true", help="FSDP2 (fully_shard per block) instead of DDP")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rank, size = int(os.environ.get("OMPI_COMM_WORLD_RANK", 0)), int(os.environ.get("OMPI_COMM_WORLD_SIZE", 1))
    torch.manual_seed(0)
    model = Gpt(LAYERS, D_MODEL, HEADS, VOCAB, SEQ)
    if args.backend != "none":
        if args.backend == "weft":
            import weft.torch  # noqa: F401  registers the backend
        store = f"/tmp/weft_ddp_bench_{os.environ.get('OMPI_MCA_orte_ess_jobid', os.getppid())}"
        dist.init_process_group(args.backend, init_method=f"file://{store}", rank=rank, world_size=size,
                                timeout=timedelta(seconds=300))
        if args.fsdp:
            from torch.distributed.device_mesh import DeviceMesh
            from torch.distributed.fsdp import fully_shard
            mesh = DeviceMesh.from_group(dist.group.WORLD, "cpu")
            for block in model.blocks:
                fully_shard(block, mesh=mesh)
            fully_shard(model, mesh=mesh)
        else:
            model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = make_optimizer(model, 3e-4, 0.1)
    tokens = torch.randint(0, VOCAB, (PER_RANK, SEQ + 1))
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        train_step(model, optimizer, tokens[:, :-1], tokens[:, 1:], 1.0, torch.bfloat16 if args.bf16 else None)
        times.append(time.perf_counter() - start)
    if rank == 0:
        step = statistics.median(times[3:])
        kind = "FSDP2" if args.fsdp and args.backend != "none" else "DDP" if args.backend != "none" else "alone"
        print(f"backend {args.backend} ranks {size} {kind} {'bf16' if args.bf16 else 'fp32'}: step {step * 1e3:.1f} ms, "
              f"{PER_RANK * size * SEQ / step:.0f} tokens/s", flush=True)
    if args.backend != "none":
        dist.destroy_process_group()
        if rank == 0 and os.path.exists(store):
            os.remove(store)


if __name__ == "__main__":
    main()
