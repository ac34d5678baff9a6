#!/usr/bin/env bash
# `pip install .` end to end: pip builds libweft with this repository's CMake project (scikit-build-core, the .venv's,
# without build isolation, so no index is needed) and installs the package into a folder of its own; a Python run
# from outside the source tree, with neither WEFT_LIBRARY nor the sources on its path, imports that copy and trains a
# 1-rank Trainer for a few steps with the loss curve of `weft train` (to fp32 rounding: the builds' flags differ).
# It builds with the test's own build tree's flags (its compilers, WEFT_NATIVE and the CUDA engine), so
# that through ccache (CMakeLists.txt) nearly every object is one the main build compiled already; the build folder
# is kept between runs (WORK/build).
# Usage: pip_install_test.sh SOURCE_DIR PYTHON WORK WEFT_BINARY WEFT_NATIVE WEFT_CUDA C_COMPILER CXX_COMPILER
set -euo pipefail
source_dir=$1 python=$2 work=$3 weft=$4 native=$5 cuda=$6 cc=$7 cxx=$8
[ -x /usr/local/cuda/bin/nvcc ] && export PATH="/usr/local/cuda/bin:$PATH"
mkdir -p "$work"
site="$work/site"
rm -rf "$site" "$work/run"
"$python" -m pip install --quiet --no-build-isolation --no-deps --target "$site" \
  --config-settings=build-dir="$work/build" --config-settings=cmake.define.WEFT_NATIVE="$native" \
  --config-settings=cmake.define.WEFT_CUDA="$cuda" --config-settings=cmake.define.CMAKE_C_COMPILER="$cc" \
  --config-settings=cmake.define.CMAKE_CXX_COMPILER="$cxx" "$source_dir"
test -f "$site/weft/libweft.so" || { echo "pip_install_test: the wheel carries no weft/libweft.so" >&2; exit 1; }

mkdir "$work/run"
cd "$work/run"
"$weft" train "$source_dir/configs/tiny.yaml" --set train.steps=4 --metrics cli.jsonl >/dev/null 2>&1
env -u WEFT_LIBRARY -u WEFT_BINARY PYTHONPATH="$site" "$python" - "$site" "$source_dir/configs/tiny.yaml" <<'PY'
import json, os, sys
site, config = sys.argv[1], sys.argv[2]
import weft
assert os.path.realpath(weft.__file__).startswith(os.path.realpath(site)), weft.__file__
trainer = weft.Trainer(config, {"train.steps": 4})
losses = [metrics["loss"] for metrics in trainer.train()]
cli = [line["loss"] for line in map(json.loads, open("cli.jsonl")) if "loss" in line]
# contract.md's fp32 bound for 5 steps is 1e-5 relative (a wheel built with other flags than the CLI rounds
# differently).
assert len(losses) == len(cli) == 4 and all(abs(a - b) <= 1e-5 * abs(b) for a, b in zip(losses, cli)), (losses, cli)
trainer.close()
print(f"pip_install_test: weft {weft.__version__} from {os.path.dirname(weft.__file__)} trained 4 steps: {losses}")
PY
