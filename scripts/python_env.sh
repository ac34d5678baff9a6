#!/usr/bin/env bash
# Creates or updates the project's Python environment, .venv, from PyPI (python/requirements.txt): PyTorch 2.15 and
# transformers for the parity tests and benchmarks. Re-running installs only what is missing. Prints its python.
# WEFT_VENV picks another folder.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${WEFT_VENV:-.venv}
REQUIREMENTS=python/requirements.txt
STAMP="$VENV/.requirements"
if ! cmp -s "$REQUIREMENTS" "$STAMP" 2>/dev/null || ! "$VENV/bin/python" -c 'import torch, transformers' 2>/dev/null; then
  echo "python_env: installing python/requirements.txt from PyPI into $VENV" >&2
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS" >&2
  cp "$REQUIREMENTS" "$STAMP"
fi
echo "$(pwd)/$VENV/bin/python"
