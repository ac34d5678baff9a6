#!/usr/bin/python3
"""Share of data-parallel all-reduce time hidden behind compute, from a `weft train --trace` file.

hidden = (time in "comm" spans that overlaps a "compute" span) / (time in "comm" spans); the "wait" lane is
what the step spent blocked on communication. The first step (warm-up) is skipped.
Usage: bench/overlap_from_trace.py TRACE.json [TRACE.json.rank1 ...]
"""
import json
import sys


def spans(events, lane):
    return [(e["ts"], e["ts"] + e["dur"]) for e in events if e.get("ph") == "X" and e.get("cat") == lane]


def overlap(a, b):
    return sum(max(0.0, min(a1, b1) - max(a0, b0)) for a0, a1 in a for b0, b1 in b)


def analyse(path):
    events = json.load(open(path))["traceEvents"]
    optimizer = sorted(e["ts"] for e in events if e.get("name") == "optimizer")
    start = optimizer[0] if optimizer else 0.0  # skip everything up to the end of step 1
    comm = [s for s in spans(events, "comm") if s[0] > start]
    compute = [s for s in spans(events, "compute") if s[0] > start]
    wait = [s for s in spans(events, "wait") if s[0] > start]
    total = sum(b - a for a, b in comm)
    hidden = overlap(comm, compute)
    waited = sum(b - a for a, b in wait)
    return total, hidden, waited, len(comm)


def main(paths):
    for path in paths:
        total, hidden, waited, count = analyse(path)
        share = hidden / total if total else 0.0
        print(f"{path}: {count} bucket all-reduces, {total / 1e3:.1f} ms of communication, "
              f"{100 * share:.0f}% hidden behind compute, {waited / 1e3:.1f} ms spent waiting")


if __name__ == "__main__":
    main(sys.argv[1:])
