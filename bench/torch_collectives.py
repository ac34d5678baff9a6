"""all_reduce, reduce_scatter_tensor and all_gather_into_tensor through torch.distributed over one backend (weft or
gloo), fp32, 1 KiB - 64 MiB. Run as every rank of

    PYTHONPATH=python mpirun -np 2 .venv/bin/python bench/torch_collectives.py --backend weft|gloo [--max-bytes B]

(weft's groups are MPI groups), or of

    PYTHONPATH=python .venv/bin/python -m torch.distributed.run --standalone --nproc_per_node 2 \
        bench/torch_collectives.py --backend weft|gloo [--ops all_reduce]

(no MPI: weft's groups are socket groups over torchrun's store). One job per backend: weft's MPI progress thread
polls, so a gloo group beside it in the same job would share the cores with it. Rank 0 prints per op and size the
median time over the repetitions and the bus bandwidth (nccl-tests' definition)."""
import argparse
import os
import statistics
import time
from datetime import timedelta

import torch
import torch.distributed as dist



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
    parser.add_argument("--backend", choices=["weft", "gloo"], required=True)
    parser.add_argument("--min-bytes", type=int, default=1 << 10)
    parser.add_argument("--max-bytes", type=int, default=64 << 20)
    parser.add_argument("--ops", default="all_reduce,reduce_scatter,all_gather")
    args = parser.parse_args()
    if args.backend == "weft":
        import weft.torch  # noqa: F401  registers the backend
    store = None
    if "OMPI_COMM_WORLD_RANK" in os.environ:
        rank, size = int(os.environ["OMPI_COMM_WORLD_RANK"]), int(os.environ["OMPI_COMM_WORLD_SIZE"])
        store = f"/tmp/weft_torch_bench_{os.environ.get('OMPI_MCA_orte_ess_jobid', os.getppid())}"
        dist.init_process_group(args.backend, init_method=f"file://{store}", rank=rank, world_size=size,
                                timeout=timedelta(seconds=300))
    else:  # torchrun: RANK, WORLD_SIZE, MASTER_ADDR/PORT
        rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        dist.init_process_group(args.backend, timeout=timedelta(seconds=300))
    if rank == 0:
        print(f"| op | bytes | {args.backend} us | {args.backend} busbw GB/s |")
        print("| --- | ---: | ---: | ---: |")
    for op in args.ops.split(","):
        nbytes = args.min_bytes
        while nbytes <= args.max_bytes:
            count = nbytes // 4 // size * size
            repetitions = max(5, min(200, (256 << 20) // (nbytes * 4)))
            seconds = median_seconds(run(op, None, count, size), None, repetitions)
            if rank == 0:
                gbytes = busbw_factor(op, size) * count * 4 / 1e9
                print(f"| {op} | {count * 4} | {seconds * 1e6:.1f} | {gbytes / seconds:.2f} |", flush=True)
            nbytes *= 4
    dist.destroy_process_group()
    if rank == 0 and store and os.path.exists(store):
        os.remove(store)


if __name__ == "__main__":
    main()
