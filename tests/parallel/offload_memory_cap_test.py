#!/usr/bin/python3
"""ZeRO-Offload to disk trains under a memory cap that its optimizer state could never fit in.

A bf16 model of about 76M parameters (optimizer state: 12 B a parameter, about 870 MiB) trains 2 steps with
parallel.offload: disk inside a cgroup capped at 1/2.5 of that state (bench/offload_memory_cap.py's cgroup, same
model recipe, smaller). The same model without offload is killed under the cap, so the cap binds. This is what
broke silently when the CUDA-linked build loaded cuBLAS at start-up (about 210 MB resident before main): the margin
here is smaller than that.

Skipped (exit 77) when not root or without a memory cgroup to write.
Usage: offload_memory_cap_test.py WEFT SOURCE_DIR
"""
import argparse
import os
import subprocess
import sys
import tempfile

LAYERS, D_MODEL, RATIO = 24, 512, 2.5


def main():
    weft, source_dir = sys.argv[1], sys.argv[2]
    sys.path.insert(0, os.path.join(source_dir, "bench"))
    from offload_memory_cap import MemoryCap, train  # the bench's cgroup and run, at a smaller size

    if os.geteuid() != 0:
        print("skipped: making a memory cgroup needs root")
        return 77
    params = LAYERS * (12 * D_MODEL * D_MODEL + 13 * D_MODEL) + (256 + 64 + 2) * D_MODEL
    cap_bytes = int(12 * params / RATIO) // 2**20 * 2**20
    # A process must be able to join a new memory cgroup here (some containers let root make one but not enter it).
    try:
        probe = MemoryCap(cap_bytes)
    except (OSError, SystemExit) as error:
        print(f"skipped: cannot make a memory cgroup here ({error})")
        return 77
    try:
        joined = probe.run(["true"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    finally:
        probe.remove()
    if not joined:
        print("skipped: a process cannot join a new memory cgroup here")
        return 77

    run_args = argparse.Namespace(build=os.path.dirname(os.path.abspath(weft)), layers=LAYERS, d_model=D_MODEL)

    def capped(offload, work):
        cap = MemoryCap(cap_bytes)
        try:
            code, steps, _, stderr = train(run_args, offload, 2, cap, work)
            peak, kills = cap.peak(), cap.oom_kills()
        finally:
            cap.remove()
        print(f"{offload} under a {cap_bytes >> 20} MiB cap: exit {code}, {len(steps)} steps, "
              f"cgroup peak {peak >> 20} MiB, {kills} killed by the kernel")
        return code, steps, peak, kills, stderr

    failures = []
    with tempfile.TemporaryDirectory() as work:
        code, steps, peak, kills, stderr = capped("disk", work)
        if code != 0 or len(steps) != 2:
            failures.append(f"disk offload did not train 2 steps under the cap: {stderr[-2000:]}")
        else:
            state = 12 * steps[-1]["mem"]["params"] // 2  # the run's bf16 parameter bytes, as 12 B a parameter
            if state < 2.4 * cap_bytes:
                failures.append(f"the optimizer state ({state >> 20} MiB) is not 2.4x the cap: the test lost its point")
        if peak >= cap_bytes or kills:
            failures.append("disk offload reached the cap (the kernel then reclaims or kills)")
        code, steps, _, kills, _ = capped("none", work)
        if code == 0 or kills == 0:
            failures.append("without offload the model was not killed under the cap: the cap does not bind")
    for failure in failures:
        print("FAIL:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
