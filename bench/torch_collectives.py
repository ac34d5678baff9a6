"""all_reduce, reduce_scatter_tensor and all_gather_into_tensor through torch.distributed: backend "weft" against
gloo in the same job, fp32, 1 KiB - 64 MiB. Run as every rank of

    PYTHONPATH=python mpirun -np 2 .venv/bin/python bench/torch_collectives.py [--max-bytes B]

Rank 0 prints a table: per size and op the median time over the repetitions and the bus bandwidth (nccl-tests'
definition) of each backend, and weft's speed-up."""
import argparse
import os
import statistics
import time
from datetime import timedelta

import torch
import torch.distributed as dist

import weft.torch  # noqa: F401


def busbw_factor(op, size):
    return 2 * (size - 1) / size if op == "all_reduce" else (size - 1) / size


def run(op, group, count, size):
    """Returns a callable doing one operation on `count` fp32 elements (the total buffer)."""
    if op == "all_reduce":
        t = torch.ones(count)
        return lambda: dist.all_reduce(t, group=group)
    if op == "reduce_scatter":
        big, small = torch.ones(count), torch.empty(count // size)
        return lambda: dist.reduce_scatter_tensor(small, big, group=group)
    big, small = torch.empty(count), torch.ones(count // size)
    return lambda: dist.all_gather_into_tensor(big, small, group=group)


def median_seconds(call, group, repetitions):
    call()  # warm-up
    times = []
    for _ in range(repetitions):
        dist.barrier(group=group)
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--min-bytes", type=int, default=1 << 10)
    parser.add_argument("--max-bytes", type=int, default=64 << 20)
    args = parser.parse_args()
    rank, size = int(os.environ["OMPI_COMM_WORLD_RANK"]), int(os.environ["OMPI_COMM_WORLD_SIZE"])
    store = f"/tmp/weft_torch_bench_{os.environ.get('OMPI_MCA_orte_ess_jobid', os.getppid())}"
    dist.init_process_group("weft", init_method=f"file://{store}", rank=rank, world_size=size,
                            timeout=timedelta(seconds=300))
    gloo = dist.new_group(backend="gloo")
    if rank == 0:
        print(f"| op | bytes | weft us | gloo us | weft busbw GB/s | gloo busbw GB/s | weft / gloo |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for op in ("all_reduce", "reduce_scatter", "all_gather"):
        nbytes = args.min_bytes
        while nbytes <= args.max_bytes:
            count = nbytes // 4 // size * size
            repetitions = max(5, min(200, (256 << 20) // (nbytes * 4)))
            weft_s = median_seconds(run(op, None, count, size), None, repetitions)
            gloo_s = median_seconds(run(op, gloo, count, size), gloo, repetitions)
            factor = busbw_factor(op, size) * count * 4 / 1e9
            if rank == 0:
                print(f"| {op} | {count * 4} | {weft_s * 1e6:.1f} | {gloo_s * 1e6:.1f} | {factor / weft_s:.2f} | "
                      f"{factor / gloo_s:.2f} | {gloo_s / weft_s:.2f}x |", flush=True)
            nbytes *= 4
    dist.destroy_process_group()
    if rank == 0 and os.path.exists(store):
        os.remove(store)


if __name__ == "__main__":
    main()
