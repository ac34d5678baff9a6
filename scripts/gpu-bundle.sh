#!/usr/bin/env bash
# Packs what scripts/gpu-check.sh needs on a bare GPU machine that has the CUDA driver, cuBLAS, NCCL and PyTorch
# but none of weft's Debian libraries and no network: the binaries, the configs, the check and bench scripts,
# and every file of the Debian packages the binaries (and Open MPI's plugins) load, as one archive to unpack
# over / without replacing anything there.
# Here:    scripts/gpu-bundle.sh BUILD_DIR BUNDLE_DIR
# There:   BUNDLE_DIR/scripts/gpu-bundle.sh --unpack BUNDLE_DIR, then
#          LD_LIBRARY_PATH=$(cat BUNDLE_DIR/ld_library_path) BUILD=BUNDLE_DIR/build BUNDLE_DIR/scripts/gpu-check.sh
set -euo pipefail

if [ "${1:-}" = "--unpack" ]; then
  bundle=$2
  tar -xJf "$bundle/sysroot.tar.xz" -C / --skip-old-files
  ldconfig
  # cuBLAS and NCCL come from the machine itself (hundreds of MB): wherever its toolkit or wheels put them.
  for lib in libcublas.so.13 libnccl.so.2; do
    found=$(find /usr /opt -name "$lib" 2>/dev/null | head -n 1)
    [ -n "$found" ] && dirname "$found"
  done | sort -u | paste -sd: > "$bundle/ld_library_path"
  echo "gpu-bundle: unpacked; library folders for cuBLAS and NCCL: $(cat "$bundle/ld_library_path")"
  exit 0
fi

[ $# -eq 2 ] || { echo "usage: scripts/gpu-bundle.sh BUILD_DIR BUNDLE_DIR | --unpack BUNDLE_DIR" >&2; exit 2; }
build=$1 bundle=$2
root=$(cd "$(dirname "$0")/.." && pwd)
for binary in weft libweft.so tests/gpu/test_gpu; do
  [ -e "$build/$binary" ] || { echo "gpu-bundle: $build/$binary is missing; build with CUDA first" >&2; exit 2; }
done
rm -rf "$bundle"
mkdir -p "$bundle/build/tests/gpu" "$bundle/scripts" "$bundle/bench" "$bundle/tests/python"
cp "$build/weft" "$build/libweft.so" "$build/libweft_sentencepiece.so" "$bundle/build/"
cp "$build/tests/gpu/test_gpu" "$bundle/build/tests/gpu/test_gpu"
cp -r "$root/configs" "$bundle/"
cp "$root/scripts/gpu-check.sh" "$root/scripts/gpu-bundle.sh" "$bundle/scripts/"
cp "$root/bench/gpu_step_vs_pytorch.py" "$root/bench/torch_gpt.py" "$bundle/bench/"
# The torch backend's check on CUDA tensors: the Python package, the C API's header and the ranks' script.
cp -r "$root/python" "$root/include" "$bundle/"
cp "$root/tests/python/torch_rank_main.py" "$bundle/tests/python/"

# The packages that hold the binaries' libraries, plus Open MPI's launcher-side pieces (a singleton MPI_Init
# starts orted) and every library the MPI plugins load.
runtime_packages="libopenmpi3 openmpi-bin openmpi-common libpmix2"
elf_files=("$bundle/build/weft" "$bundle/build/libweft.so" "$bundle/build/libweft_sentencepiece.so" "$bundle/build/tests/gpu/test_gpu")
for package in $runtime_packages; do
  while read -r file; do
    [ -f "$file" ] && file "$file" | grep -q ELF && elf_files+=("$file")
  done < <(dpkg -L "$package")
done
libraries=$(for elf in "${elf_files[@]}"; do ldd "$elf" 2>/dev/null | awk '/=> \//{print $3}'; done | sort -u)
# CUDA's own libraries belong to no Debian package: dpkg -S finds nothing for them, which is what we want.
packages=$(for lib in $libraries; do dpkg -S "$(realpath "$lib")" 2>/dev/null | cut -d: -f1 || true; done | sort -u)
# glibc and the compiler runtime are newer on the GPU machine than here.
packages=$(printf '%s\n' $packages $runtime_packages | sort -u | grep -v -E '^(libc6|libgcc-s1|libstdc\+\+6)$')
# Each library by the path ldd found it at, with every link on the way to its file: some (OpenBLAS) are reached
# through /etc/alternatives links that belong to no package's file list.
link_chains() {
  for lib in $libraries; do
    case "$lib" in /usr/local/cuda*) continue ;; esac
    local path=$lib
    while [ -L "$path" ]; do
      echo "$path"
      local target
      target=$(readlink "$path")
      case "$target" in /*) path=$target ;; *) path=$(dirname "$path")/$target ;; esac
    done
    echo "$path"
  done
}
{ dpkg -L $packages; link_chains; } | sort -u | while read -r path; do
  [ -f "$path" ] || [ -L "$path" ] || continue
  case "$path" in /usr/share/doc/*|/usr/share/man/*|/usr/share/lintian/*) continue ;; esac
  case "$path" in /lib/x86_64-linux-gnu/libc.so*|/lib/x86_64-linux-gnu/libm.so*|/lib/x86_64-linux-gnu/libstdc++*) continue ;; esac
  echo "${path#/}"
done | sort -u > "$bundle/files.txt"
XZ_OPT=-T0 tar -cJf "$bundle/sysroot.tar.xz" -C / -T "$bundle/files.txt"
echo "$packages" > "$bundle/packages.txt"
echo "gpu-bundle: $(wc -l < "$bundle/files.txt") files from $(wc -l < "$bundle/packages.txt") packages;" \
  "$(du -sh "$bundle" | cut -f1) in all"
