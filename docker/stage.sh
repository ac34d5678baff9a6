#!/usr/bin/env bash
# Gathers, from a build, what weft's runtime image adds to debian:12:
#   STAGE/packages.txt  the Debian packages weft's shared libraries come from, and openmpi-bin (mpirun)
#   STAGE/lib/          the libraries no Debian package provides: CUDA's, copied from the toolkit the build linked
#   STAGE/weft/         /opt/weft: bin/weft, its SentencePiece plugin beside it, and the example configs
# The list is read off the binary (ldd, dpkg -S, and the cuBLAS it loads at run time), so the runtime image holds
# what weft loads and nothing else.
# Both Dockerfiles' build stages run it; so does the container test, on the host's own build.
# Usage: docker/stage.sh BUILD_DIR SOURCE_DIR STAGE_DIR
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: docker/stage.sh BUILD_DIR SOURCE_DIR STAGE_DIR" >&2; exit 2; }
build=$1 source_dir=$2 stage=$3
[ -x "$build/weft" ] || { echo "stage: $build/weft is missing; build weft first" >&2; exit 2; }

rm -rf "$stage"
mkdir -p "$stage/lib" "$stage/weft/bin"
cp "$build/weft" "$stage/weft/bin/weft"
# weft loads its SentencePiece plugin from beside itself (model/sentencepiece_plugin.h says why it is a plugin).
plugin="$build/libweft_sentencepiece.so"
[ -f "$plugin" ] || { echo "stage: $plugin is missing; build weft first" >&2; exit 2; }
cp "$plugin" "$stage/weft/bin/"
cp -r "$source_dir/configs" "$stage/weft/configs"

# The libraries weft loads, by soname and path; the GPU driver's belong to the machine the image runs on (its
# container runtime mounts them), and ldd's "not found" is an error.
# cuBLAS is not linked but loaded with the first CUDA device (runtime/cuda/cublas_library.h), so ldd of weft does not
# list it: the soname the binary names, from the folder its CUDA runtime comes from, joins the list with what it loads.
loaded_at_run_time() {
  local soname cudart
  soname=$(grep -ao 'libcublas\.so\.[0-9]*' "$build/weft" | head -n 1) || return 0
  cudart=$(ldd "$build/weft" | awk '$1 ~ /^libcudart\.so/ {print $3}')
  [ -n "$cudart" ] || { echo "stage: $build/weft names $soname but links no CUDA runtime" >&2; exit 1; }
  [ -e "$(dirname "$cudart")/$soname" ] || { echo "stage: no $soname beside $cudart" >&2; exit 1; }
  echo "$(dirname "$cudart")/$soname"
}
extra=$(loaded_at_run_time)
libraries=()
missing=()
while read -r name path; do
  case "$name" in libcuda.so* | libnvidia-*) continue ;; esac
  if [ "$path" = not ]; then missing+=("$name"); else libraries+=("$name $path"); fi
done < <(
  { ldd "$build/weft" "$plugin" $extra | awk '$2 == "=>" {print $1, $3}'
    for path in $extra; do echo "$(basename "$path") $path"; done; } | sort -u)
((${#missing[@]} == 0)) || { echo "stage: $build/weft needs ${missing[*]}, which ldd cannot find" >&2; exit 1; }

# Which package installed each file, asked of dpkg once. dpkg records some paths as they were before the /usr
# merge (/lib/x86_64-linux-gnu/libc.so.6) and some after, and ldd reports either, through links: ask for all.
variants() { local path; for path in "$1" "$(realpath "$1")"; do echo "$path" "${path#/usr}" "/usr$path"; done; }
mapfile -t queries < <(for library in "${libraries[@]}"; do variants "${library#* }" | tr ' ' '\n'; done)
declare -A owner
while read -r package file; do
  owner[$file]=${package%%:*}
done < <(dpkg -S "${queries[@]}" 2>/dev/null | sed -n 's/^\([^ ,]*\): \(.*\)$/\1 \2/p')

packages=(openmpi-bin) # `weft launch` runs mpirun; it is no library, so ldd cannot find it
for library in "${libraries[@]}"; do
  name=${library%% *} path=${library#* } package=""
  for variant in $(variants "$path"); do package=${package:-${owner[$variant]:-}}; done
  if [ -n "$package" ]; then
    packages+=("$package")
  else
    # Under its soname, the name the dynamic loader looks for; a hard link where it can be (cuBLAS is 600 MB).
    ln -f "$(realpath "$path")" "$stage/lib/$name" 2> /dev/null || cp -L "$path" "$stage/lib/$name"
  fi
done
printf '%s\n' "${packages[@]}" | sort -u > "$stage/packages.txt"
echo "stage: weft, $(wc -l < "$stage/packages.txt") Debian packages, $(find "$stage/lib" -type f | wc -l)" \
  "libraries from outside Debian ($(du -sh "$stage/lib" | cut -f1)) in $stage"
