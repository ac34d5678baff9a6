"""Shared by the Python tests: where the weft binary and configs are, and runs of `weft` and of mpirun."""
import json
import os
import subprocess
import sys

import pytest

pytest.register_assert_rewrite("torchrun_checks")  # its asserts say what was found, as a test's own do

SOURCE = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TINY = os.path.join(SOURCE, "configs", "tiny.yaml")
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-x", "PYTHONPATH", "-x", "WEFT_LIBRARY"]


def weft_binary():
    binary = os.environ.get("WEFT_BINARY", os.path.join(SOURCE, "build", "weft"))
    if not os.path.exists(binary):
        pytest.skip(f"no weft binary at {binary} (set WEFT_BINARY)")
    return binary


def cli_losses(tmp_path, ranks, overrides):
    """Per-step losses of `weft train` (under mpirun for several ranks) on tiny.yaml."""
    metrics = tmp_path / f"cli_{ranks}.jsonl"
    sets = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
    command = [weft_binary(), "train", TINY, *sets, "--metrics", str(metrics)]
    if ranks > 1:
        command = MPIRUN + ["-np", str(ranks)] + command
    subprocess.run(command, check=True, capture_output=True, timeout=240)
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    return [line["loss"] for line in lines if "loss" in line]


def run_ranks(tmp_path, ranks, *args, mpirun_args=(), timeout=240, script="rank_main.py"):
    """`script` (rank_main.py) under mpirun; returns (completed process, {rank: result})."""
    out = tmp_path / "result"
    command = MPIRUN + list(mpirun_args) + ["-np", str(ranks), sys.executable,
                                            os.path.join(os.path.dirname(__file__), script), args[0],
                                            str(out), *args[1:]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    return done, rank_results(tmp_path, ranks)


def rank_results(tmp_path, ranks):
    """What each rank that finished wrote to result.rank<R> (a rank_main or torch_rank_main run), by rank."""
    results = {}
    for rank in range(ranks):
        path = tmp_path / f"result.rank{rank}"
        if path.exists():
            results[rank] = json.loads(path.read_text())
    return results
