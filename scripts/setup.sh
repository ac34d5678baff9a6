#!/usr/bin/env bash
# Installs what weft builds and tests with (Debian 12 packages), then configures and builds build/ in Release.
# Safe to re-run: packages already present are skipped. Set WEFT_SKIP_BUILD=1 to install only, WEFT_PACKAGES=build
# to install only what compiling needs.
set -euo pipefail
cd "$(dirname "$0")/.."

# What compiling weft needs; the Dockerfiles' build stages install only these (WEFT_PACKAGES=build) and compile
# through ccache.
BUILD_PACKAGES=(
  build-essential cmake ninja-build pkg-config ccache
  libopenmpi-dev openmpi-bin
  libprotobuf-dev protobuf-compiler
  libspdlog-dev libfmt-dev catch2 libyaml-cpp-dev libcli11-dev
  libopenblas-dev libdnnl-dev libsentencepiece-dev
)
# What development and the rest of the test suite use: SLURM, Python (PyTorch comes from PyPI into .venv, below),
# clang's libFuzzer for the fuzz targets' short runs, podman and debootstrap for the container tests, iproute2 (ip, tc) for the
# multihost tests' network namespaces, GNU time for the benchmarks' peak resident memory.
TEST_PACKAGES=(
  git procps iproute2 time
  slurm-wlm munge
  clang libclang-rt-dev
  python3 python3-numpy python3-venv
  podman debootstrap
)
case "${WEFT_PACKAGES:-all}" in
  build) PACKAGES=("${BUILD_PACKAGES[@]}") ;;
  all) PACKAGES=("${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}") ;;
  *) echo "setup: WEFT_PACKAGES must be build or all, not '$WEFT_PACKAGES'" >&2; exit 2 ;;
esac

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The Python environment (.venv from PyPI: torch, transformers) that the reference, Python and parity tests and the
# benchmarks run in.
[ "${WEFT_PACKAGES:-all}" = all ] && scripts/python_env.sh >/dev/null
[ "${WEFT_SKIP_BUILD:-0}" = 1 ] && exit 0
# nvcc lives outside PATH in a default CUDA install; the CUDA engine is built whenever it is found.
[ -x /usr/local/cuda/bin/nvcc ] && export PATH="/usr/local/cuda/bin:$PATH"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release ${WEFT_CMAKE_ARGS:-}
cmake --build build --parallel "$(nproc)"
