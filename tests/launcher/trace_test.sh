#!/usr/bin/env bash
# weft launch --trace: each rank writes FILE.rankN, Chrome's trace-event JSON, with one forward and one backward
# span per segment and micro-batch, one optimizer span per step, and its buckets' reductions on the comm lane.
# Usage: trace_test.sh WEFT SOURCE_DIR
set -euo pipefail
weft=$1 source_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# tiny.yaml on 2 ranks: 2 micro-batches of 4 per rank, 4 segments (embeddings, 2 blocks, head), small buckets.
OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-Haswell}" "$weft" launch -n 2 "$source_dir/configs/tiny.yaml" \
  --set train.steps=3 --set comm.bucket_mb=0.1 --trace "$work/t.json" >"$work/log" 2>&1 ||
  { cat "$work/log"; echo "FAIL: the traced run failed"; exit 1; }
python3 - "$work/t.json" <<'PY'
import collections, json, sys
steps, micro_batches, segments = 3, 2, 4
for rank in (0, 1):
    path = f"{sys.argv[1]}.rank{rank}"
    events = json.load(open(path))["traceEvents"]
    spans = [e for e in events if e.get("ph") == "X"]
    kinds = collections.Counter((e["cat"], e["name"].split(" ")[0]) for e in spans)
    expected = {("compute", "forward"): steps * micro_batches * segments,
                ("compute", "backward"): steps * micro_batches * segments,
                ("compute", "optimizer"): steps}
    for kind, count in expected.items():
        if kinds[kind] != count:
            sys.exit(f"FAIL: {path}: {count} {kind} spans expected, found {kinds[kind]}")
    if kinds[("comm", "reduce")] < steps:
        sys.exit(f"FAIL: {path}: no bucket reductions on the comm lane ({kinds})")
    bad = [e for e in spans if not (e["ts"] >= 0 and e["dur"] >= 0)]
    if bad:
        sys.exit(f"FAIL: {path}: spans with negative times: {bad[:3]}")
    print(f"ok: {path}: {len(spans)} spans, {dict(kinds)}")
PY
echo "PASS"
