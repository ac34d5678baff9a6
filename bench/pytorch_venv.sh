#!/usr/bin/env bash
# Creates .venv with PyTorch 2.15 from PyPI (the baseline of the CPU benchmarks) unless it is already there,
# and prints its python. Debian's PyTorch 1.13 stays the one the tests use. WEFT_TORCH_VENV picks another folder.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${WEFT_TORCH_VENV:-.venv}
if ! "$VENV/bin/python" -c 'import sys, torch; sys.exit(not torch.__version__.startswith("2.15"))' 2>/dev/null; then
  echo "pytorch_venv: installing torch 2.15 and numpy from PyPI into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "torch==2.15.*" numpy >&2
fi
echo "$(pwd)/$VENV/bin/python"
