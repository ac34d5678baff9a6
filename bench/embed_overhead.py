"""The cost of the embedding API (docs/benchmarks.md "Embedding overhead"), run from the repository root with the
project's .venv python and a built build/:

  .venv/bin/python bench/embed_overhead.py train        # Trainer.train from Python against `weft train`, bench_3m
  .venv/bin/python bench/embed_overhead.py collectives  # Communicator on NumPy against `weft bench collectives`

Each side runs several times alternately (A B A B ...) so that load from other processes hits both alike; the best
of each side is compared. Python's step is timed around Trainer.step() (the C call, the metrics JSON and its
parsing), the CLI's is its own step_ms: the difference is the API's overhead.
"""
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
WEFT = os.path.join(ROOT, "build", "weft")
CONFIG = os.path.join(ROOT, "configs", "bench_3m.yaml")
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-x", "PYTHONPATH", "-x", "WEFT_LIBRARY",
          "-x", "OMP_NUM_THREADS", "-x", "OPENBLAS_NUM_THREADS"]
SIZES = [1 << 20, 4 << 20, 16 << 20, 64 << 20]
OPS = ["all_reduce", "reduce_scatter", "all_gather", "broadcast"]


def environment():
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.setdefault("WEFT_LIBRARY", os.path.join(ROOT, "build", "libweft.so"))
    return env


def cli_tokens_per_s(steps):
    with tempfile.TemporaryDirectory() as scratch:
        metrics = os.path.join(scratch, "m.jsonl")
        subprocess.run([WEFT, "train", CONFIG, "--set", f"train.steps={steps}", "--metrics", metrics], check=True,
                       capture_output=True, env=environment())
        lines = [json.loads(line) for line in open(metrics)]
    return lines[-1]["summary"]["tokens_per_s"], [line["loss"] for line in lines if "loss" in line]


def python_tokens_per_s(steps):
    """In a child process, as a user's script would run."""
    code = (
        "import json, statistics, time, weft\n"
        f"t = weft.Trainer({CONFIG!r}, {{'train.steps': {steps}}})\n"
        "walls, losses, extra = [], [], []\n"
        "for _ in range(t.planned_steps):\n"
        "    start = time.perf_counter(); m = t.step(); walls.append(time.perf_counter() - start)\n"
        "    losses.append(m['loss']); extra.append(walls[-1] - m['step_ms'] / 1000)\n"
        "tokens = 8 * 128\n"
        "print(json.dumps([tokens / statistics.median(walls), losses, statistics.median(extra),\n"
        "                  statistics.median(walls)]))\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=environment())
    return tuple(json.loads(out.stdout.splitlines()[-1]))


def train(rounds=4, steps=30):
    cli, python, overhead = [], [], []
    for _ in range(rounds):
        rate, cli_losses = cli_tokens_per_s(steps)
        cli.append(rate)
        rate, python_losses, extra, wall = python_tokens_per_s(steps)
        python.append(rate)
        overhead.append(extra / wall)
        assert python_losses == cli_losses, "the two sides trained different models"
    best_cli, best_python = max(cli), max(python)
    print(f"bench_3m, {steps} steps, 1 rank x 1 thread, {rounds} alternating runs each (best; all runs listed)")
    print(f"  weft train      {best_cli:9.0f} tok/s   {[round(r) for r in cli]}")
    print(f"  Trainer.train   {best_python:9.0f} tok/s   {[round(r) for r in python]}")
    print(f"  Python / CLI    {best_python / best_cli:9.3f}   (losses equal bit for bit)")
    # Load-independent: within each Python step, the wall time beyond the step_ms weft itself measured (the C call,
    # the metrics JSON, its parsing), as a share of the step.
    print(f"  API overhead    {100 * statistics.median(overhead):9.3f} % of a step (median per run: "
          f"{[round(100 * o, 3) for o in overhead]})")


def cli_collectives():
    out = subprocess.run([WEFT, "bench", "collectives", "-n", "2", "--min-bytes", str(SIZES[0]), "--max-bytes",
                          str(SIZES[-1]), "--mpirun-args", "--allow-run-as-root --oversubscribe"],
                         check=True, capture_output=True, text=True, env=environment()).stdout
    # Rows of the first table (weft's layer): "op size count type redop root time algbw busbw #wrong".
    layer = out.split("raw MPI")[0]
    rows = {}
    for line in layer.splitlines():
        fields = line.split()
        if len(fields) >= 10 and fields[0] in OPS and fields[1].isdigit():
            rows[(fields[0], int(fields[1]))] = float(fields[8])
    if not rows:
        raise SystemExit("could not read weft bench collectives' table:\n" + out)
    return rows


def python_collectives():
    out = subprocess.run(MPIRUN + ["-np", "2", sys.executable, __file__, "collectives-rank"], check=True,
                         capture_output=True, text=True, env=environment()).stdout
    return {(op, size): busbw for op, size, busbw in json.loads(out.splitlines()[-1])}


def collectives_rank(blocks=5, iters=20, warmup=5):
    """One rank: weft bench's method (the slowest rank's mean per iteration in its fastest of 5 blocks)."""
    import numpy as np
    import weft
    comm = weft.Communicator.world()
    n = comm.size
    rows = []
    for op in OPS:
        for size in SIZES:
            count = size // 4 // n * n
            data = np.ones(count, dtype=np.float32)
            chunk = np.ones(count // n, dtype=np.float32)
            run = {"all_reduce": lambda: comm.all_reduce(data),
                   "reduce_scatter": lambda: comm.reduce_scatter(data, chunk),
                   "all_gather": lambda: comm.all_gather(chunk, data),
                   "broadcast": lambda: comm.broadcast(data, 0)}[op]
            for _ in range(warmup):
                run()
            best = float("inf")
            for _ in range(blocks):
                comm.barrier()
                start = time.perf_counter()
                for _ in range(iters):
                    run()
                best = min(best, (time.perf_counter() - start) / iters)
            slowest = float(comm.all_reduce(np.array([best], dtype=np.float32), op="max")[0])
            factor = {"all_reduce": 2 * (n - 1) / n, "broadcast": 1.0}.get(op, (n - 1) / n)
            rows.append((op, count * 4, count * 4 / slowest / 1e9 * factor))
    if comm.rank == 0:
        print(json.dumps(rows))


def collectives(rounds=3):
    cli, python = [], []
    for _ in range(rounds):
        cli.append(cli_collectives())
        python.append(python_collectives())
    print(f"2 ranks on one host, fp32, busbw in GB/s, best of {rounds} alternating runs each")
    print(f"  {'op':15s} {'bytes':>9s} {'weft bench':>10s} {'Python':>8s} {'ratio':>6s}")
    for key in sorted(python[0], key=lambda k: (OPS.index(k[0]), k[1])):
        best_cli = max(run.get(key, 0.0) for run in cli)
        best_python = max(run[key] for run in python)
        print(f"  {key[0]:15s} {key[1]:9d} {best_cli:10.2f} {best_python:8.2f} {best_python / best_cli:6.3f}")


if __name__ == "__main__":
    {"train": train, "collectives": collectives, "collectives-rank": collectives_rank}[sys.argv[1]]()
