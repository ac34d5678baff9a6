"""PyTorch 2.15 for the comparison benchmarks: one thread per process on both sides, and the calling script
re-run under .venv's interpreter (bench/pytorch_venv.sh makes it on first use; Debian's PyTorch stays the tests')."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def use_pytorch_venv():
    """Call before importing torch: sets the thread environment, then re-executes the script in the venv once."""
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    os.environ.setdefault("OPENBLAS_CORETYPE", "Haswell")
    if os.environ.get("WEFT_BENCH_IN_VENV") == "1":
        return
    python = subprocess.run([os.path.join(ROOT, "bench", "pytorch_venv.sh")], check=True, capture_output=True,
                            text=True).stdout.strip()
    os.environ["WEFT_BENCH_IN_VENV"] = "1"
    os.execv(python, [python] + sys.argv)
