"""Running weft from the bench scripts: one place that launches a job and reads its metrics file."""
import json
import os
import statistics
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mib(b):
    return b / 2**20


def run_weft(build, ranks, config, sets, warmup=2, mpirun_args=""):
    """Runs `weft launch -n RANKS CONFIG --set ...` with one BLAS thread per rank (and `mpirun_args`, e.g. a
    hostfile); returns the median step_ms after `warmup` steps and the last step's metrics line."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        metrics = os.path.join(tmp, "metrics.jsonl")
        args = [os.path.join(build, "weft"), "launch", "-n", str(ranks), os.path.join(ROOT, config),
                "--metrics", metrics]
        if mpirun_args:
            args += ["--mpirun-args", mpirun_args]
        for s in sets:
            args += ["--set", s]
        subprocess.run(args, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lines = [json.loads(line) for line in open(metrics) if '"step"' in line]
    return statistics.median(line["step_ms"] for line in lines[warmup:]), lines[-1]
