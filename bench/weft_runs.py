"""Running weft from the bench scripts: one place that launches a job and reads its metrics file."""
import json
import os
import statistics
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mib(b):
    return b / 2**20


def run_weft(build, ranks, config, sets, warmup=2, launcher=None):
    """Runs `weft launch -n RANKS CONFIG --set ...` with one BLAS thread per rank (or, with `launcher`, a command
    prefix such as ["mpirun", "--hostfile", F, "-np"], `LAUNCHER RANKS weft train CONFIG ...`); returns the median
    step_ms after `warmup` steps and the last step's metrics line."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        metrics = os.path.join(tmp, "metrics.jsonl")
        weft = os.path.join(build, "weft")
        args = [weft, "launch", "-n", str(ranks)] if launcher is None else [*launcher, str(ranks), weft, "train"]
        args += [os.path.join(ROOT, config), "--metrics", metrics]
        for s in sets:
            args += ["--set", s]
        subprocess.run(args, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lines = [json.loads(line) for line in open(metrics) if '"step"' in line]
    return statistics.median(line["step_ms"] for line in lines[warmup:]), lines[-1]
