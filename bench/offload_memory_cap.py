#!/usr/bin/python3
"""ZeRO-Offload to disk under a memory cap: a bf16 model whose optimizer state (fp32 master weights, Adam's m and v:
12 bytes per parameter) is RATIO times a memory limit set for the run trains under that limit, and tokens/s
against parallel.offload host and none on the same model (those without the cap: they cannot run under it).

The cap is a cgroup memory limit (cgroup v2 memory.max, or v1 memory.limit_in_bytes) on a child of this process's
own cgroup, created for the run and removed after; the figures are the cgroup's peak (v2 memory.peak, v1
memory.max_usage_in_bytes: anonymous memory plus page cache charged to it) and the process's peak resident set
(VmHWM, as GNU time's %M reports it). offload: none is also started under the cap, to show that it cannot train
there. Needs root (to make the cgroup).

Usage: bench/offload_memory_cap.py [--build build] [--layers 64] [--d-model 512] [--steps 4] [--ratio 4]
                                    [--dir /tmp/weft-offload] [--json OUT]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile

from weft_runs import ROOT, mib


def own_cgroup():
    """(version, directory) of the memory cgroup this process is in."""
    for line in open("/proc/self/cgroup"):
        ident, controllers, path = line.rstrip("\n").split(":", 2)
        if ident == "0" and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            return 2, "/sys/fs/cgroup" + path
        if "memory" in controllers.split(","):
            return 1, "/sys/fs/cgroup/memory" + path
    raise SystemExit("no memory cgroup found for this process")


class MemoryCap:
    """A child cgroup with a memory limit; run() starts a command inside it."""

    def __init__(self, limit_bytes):
        self.version, parent = own_cgroup()
        self.path = os.path.join(parent, f"weft-offload-cap-{os.getpid()}")
        os.mkdir(self.path)
        try:
            if self.version == 2:
                self._write("memory.max", limit_bytes)
                self._write("memory.swap.max", 0) if os.path.exists(self._file("memory.swap.max")) else None
            else:
                self._write("memory.limit_in_bytes", limit_bytes)
                if os.path.exists(self._file("memory.memsw.limit_in_bytes")):
                    self._write("memory.memsw.limit_in_bytes", limit_bytes)  # no swapping out of the cap either
        except OSError:
            os.rmdir(self.path)  # a cgroup without the memory controller's files: leave nothing behind
            raise

    def _file(self, name):
        return os.path.join(self.path, name)

    def _write(self, name, value):
        with open(self._file(name), "w") as f:
            f.write(str(value))

    def _read(self, name):
        return int(open(self._file(name)).read())

    def run(self, args, **kwargs):
        # The shell joins the cgroup, then becomes the command: everything it starts is inside.
        script = f'echo $$ > {self._file("cgroup.procs")} && exec "$@"'
        return subprocess.run(["sh", "-c", script, "sh", *args], **kwargs)

    def peak(self):
        return self._read("memory.peak" if self.version == 2 else "memory.max_usage_in_bytes")

    def limit(self):
        return self._read("memory.max" if self.version == 2 else "memory.limit_in_bytes")

    def oom_kills(self):
        """Processes the kernel killed for reaching the cap (v2 memory.events, v1 memory.oom_control)."""
        for line in open(self._file("memory.events" if self.version == 2 else "memory.oom_control")):
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def remove(self):
        os.rmdir(self.path)


def train(args, offload, steps, cap=None, dir_=None):
    """Runs weft train; returns (exit code, step metrics, peak RSS bytes)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        metrics, rss = os.path.join(tmp, "metrics.jsonl"), os.path.join(tmp, "rss")
        sets = [f"model.layers={args.layers}", f"model.d_model={args.d_model}", f"model.heads={args.d_model // 64}",
                "model.seq_len=64", "model.vocab_size=256", "train.global_batch=1", "train.micro_batch=1",
                f"train.steps={steps}", "train.log_every=1", "train.recompute=block", "precision.compute=bf16",
                "comm.bucket_mb=4", f"parallel.offload={offload}"]
        if dir_:
            sets.append(f"parallel.offload_dir={dir_}")
        command = ["/usr/bin/time", "-f", "%M", "-o", rss, os.path.join(args.build, "weft"), "train",
                   os.path.join(ROOT, "configs/tiny.yaml"), "--metrics", metrics]
        for s in sets:
            command += ["--set", s]
        runner = cap.run if cap else subprocess.run
        done = runner(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        lines = [json.loads(line) for line in open(metrics)] if os.path.exists(metrics) else []
        steps_seen = [line for line in lines if "step" in line]
        peak_kib = None
        if os.path.exists(rss):
            words = open(rss).read().split()
            peak_kib = int(words[-1]) if words and words[-1].isdigit() else None
        return done.returncode, steps_seen, (peak_kib or 0) * 1024, done.stderr


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--layers", type=int, default=64)
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--ratio", type=float, default=4.0, help="optimizer state / memory cap")
    parser.add_argument("--dir", default="/tmp/weft-offload", help="parallel.offload_dir (a local disk)")
    parser.add_argument("--json")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    result = {"layers": args.layers, "d_model": args.d_model}

    # The parameter count from a one-step run without a cap (its metrics give the bf16 parameters' bytes).
    code, lines, _, err = train(args, "host", 1)
    if code != 0:
        raise SystemExit(f"the sizing run failed: {err}")
    params = lines[-1]["mem"]["params"] // 2
    state = 12 * params  # fp32 master weights + m + v
    cap_bytes = int(state / args.ratio) // 2**20 * 2**20
    result.update(parameters=params, optimizer_state_bytes=state, cap_bytes=cap_bytes, ratio=state / cap_bytes)
    print(f"model: {args.layers} layers, d_model {args.d_model}, bf16: {params / 1e6:.1f}M parameters, "
          f"bf16 parameters {mib(2 * params):.0f} MiB, optimizer state {mib(state):.0f} MiB (12 B/parameter)")
    print(f"cap: {mib(cap_bytes):.0f} MiB, optimizer state / cap = {state / cap_bytes:.2f}")

    runs = {}
    for offload, capped in (("disk", True), ("none", True), ("disk", False), ("host", False), ("none", False)):
        cap = MemoryCap(cap_bytes) if capped else None
        try:
            code, lines, rss, err = train(args, offload, args.steps, cap, args.dir if offload == "disk" else None)
            cgroup_peak = cap.peak() if cap else None
            ooms = cap.oom_kills() if cap else None
        finally:
            if cap:
                cap.remove()
        timed = [line["step_ms"] for line in lines[1:]] or [line["step_ms"] for line in lines]
        ms = statistics.median(timed) if timed else None
        name = f"{offload}{' under the cap' if capped else ''}"
        run = {"exit_code": code, "steps": len(lines), "median_step_ms": ms,
               "tokens_per_s": 64 * 1000.0 / ms if ms else None, "peak_rss_bytes": rss,
               "cgroup_peak_bytes": cgroup_peak, "oom_kills": ooms,
               "device_peak_bytes": lines[-1]["mem"]["peak"] if lines else None,
               "host_peak_bytes": lines[-1].get("host_mem", {}).get("peak") if lines else None,
               "file_bytes": lines[-1].get("host_mem", {}).get("disk") if lines else None}
        runs[name] = run
        line = f"{name:>20}: exit {code}, {len(lines)} steps"
        if ms:
            line += f", median step {ms / 1000:.2f} s, {run['tokens_per_s']:.1f} tokens/s"
        line += f", peak RSS {mib(rss):.0f} MiB"
        if cgroup_peak is not None:
            line += f", cgroup peak {mib(cgroup_peak):.0f} MiB, {ooms} killed by the kernel"
        print(line)
        if capped and offload == "disk" and code != 0:
            print(err)
    result["runs"] = runs
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
