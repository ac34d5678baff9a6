#!/usr/bin/env bash
# Builds a weft image with podman and checks it from the inside.
#
#   container_test.sh prebuilt cpu|cuda BUILD_DIR SOURCE_DIR
#       The Dockerfile's runtime stage over this build's own binary (staged by docker/stage.sh): a minute, not a
#       compile. Runs the 2-rank demo and this build's unit tests inside it.
#   container_test.sh source cpu|cuda BUILD_DIR SOURCE_DIR
#       The whole multi-stage build from the source tree, as a user with a registry runs it (the CUDA toolkit from a
#       stand-in for NVIDIA's development image, made from this machine's toolkit). Runs the demo inside it.
# Both check the image's user (not root), entrypoint (weft), version label (what `weft --version` says, which
# names the CUDA build in the CUDA image) and that it carries no compiler.
#
# Base images and layers are cached in $WEFT_CONTAINER_CACHE (default ~/.cache/weft-container-test); ccache's
# cache for the source builds lives in podman's cache mounts (/var/tmp/buildah-cache*). Exit 0 pass, 1 fail,
# 77 skipped (podman or debootstrap missing: scripts/setup.sh installs them; or not root).
set -euo pipefail

SKIP=77
log() { echo "[container-test $(date +%T)] $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*"; exit "$SKIP"; }

(($# == 4)) || { echo "usage: $0 prebuilt|source cpu|cuda BUILD_DIR SOURCE_DIR" >&2; exit 2; }
MODE=$1 FLAVOUR=$2
BUILD=$(realpath "$3") SOURCE=$(realpath "$4")
case "$MODE/$FLAVOUR" in prebuilt/cpu | prebuilt/cuda | source/cpu | source/cuda) ;; *) fail "unknown $MODE $FLAVOUR" ;; esac

export PATH="$PATH:/usr/sbin:/sbin" # debootstrap, for users whose PATH lacks them
for tool in podman debootstrap; do
  command -v "$tool" > /dev/null || skip "$tool is not installed (scripts/setup.sh installs it)"
done
# Rootless podman needs subordinate id ranges, and entering a mounted image needs mount rights: root only.
[ "$(id -u)" -eq 0 ] || skip "the container tests run as root (rootless podman cannot mount images here)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/weft-container-test.XXXXXX")
# shellcheck source=tests/container/image_tools.sh
source "$(dirname "$0")/image_tools.sh"
trap 'cleanup_images; rm -rf "$WORK"' EXIT
lock_cache 1200
started=$SECONDS
phase() { log "$1 ($((SECONDS - started)) s so far)"; }

ensure_debian_image
can_podman_run || true # probed once here: what $(run_in_image ...) learns in its subshell would be lost
IMAGE=localhost/weft-test/$FLAVOUR:$MODE
build_args=(--build-arg "WEFT_REVISION=$(git -C "$SOURCE" rev-parse HEAD 2> /dev/null || echo unknown)")
if [ "$MODE" = prebuilt ]; then
  # The Dockerfile's runtime stage, word for word, over a build stage that holds this build's staged files (CUDA's
  # libraries in a layer of their own, which stays cached while only weft changes).
  context=$WORK/context dockerfile=$WORK/context/Dockerfile
  "$SOURCE/docker/stage.sh" "$BUILD" "$SOURCE" "$context/stage"
  {
    printf 'FROM scratch AS build\nCOPY stage/lib/ /stage/lib/\nCOPY stage/packages.txt /stage/\nCOPY stage/weft/ /stage/weft/\n'
    sed -n '/^FROM .* AS runtime$/,$p' "$SOURCE/docker/Dockerfile.$FLAVOUR"
  } > "$dockerfile"
  grep -q ' AS runtime$' "$dockerfile" || fail "docker/Dockerfile.$FLAVOUR has no 'FROM ... AS runtime' line"
else
  context=$SOURCE dockerfile=$SOURCE/docker/Dockerfile.$FLAVOUR
  if [ "$FLAVOUR" = cuda ]; then
    cuda_version=$(/usr/local/cuda/bin/nvcc --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')
    [ -n "$cuda_version" ] || fail "cannot read the CUDA version from /usr/local/cuda/bin/nvcc --version"
    ensure_cuda_image "localhost/weft-test/cuda-devel:$cuda_version" "$cuda_version"
    build_args+=(--build-arg "CUDA_IMAGE=localhost/weft-test/cuda-devel:$cuda_version"
      --build-arg "CUDA_VERSION=$cuda_version")
  fi
fi
phase "podman build -f docker/Dockerfile.$FLAVOUR ($MODE) -t $IMAGE"
timeout 1500 "${PODMAN[@]}" build "${BUILD_FLAGS[@]}" "${build_args[@]}" -f "$dockerfile" \
  -t "$IMAGE" "$context" > "$WORK/build.log" 2>&1 || { tail -n 40 "$WORK/build.log"; fail "podman build failed"; }
# The build stage under a tag of its own, so that pruning leaves its layers (packages, compiled objects, CUDA's
# libraries) for the next run; every step of it is cached by now.
timeout 300 "${PODMAN[@]}" build "${BUILD_FLAGS[@]}" "${build_args[@]}" -f "$dockerfile" \
  --target build -t "$IMAGE-build" "$context" > "$WORK/build-stage.log" 2>&1 ||
  { tail -n 20 "$WORK/build-stage.log"; fail "tagging the build stage failed"; }
size_mb=$(($(podman image inspect --format '{{.Size}}' "$IMAGE") / 1000000))
phase "built $IMAGE: $size_mb MB"

# --- the image's make-up ----------------------------------------------------------------------------------------
user=$(image_config "$IMAGE" User)
case "$user" in "" | root | 0 | 0:*) fail "the image runs as '${user:-root}', not a user of its own" ;; esac
[ "$(image_list "$IMAGE" Entrypoint)" = weft ] || fail "the entrypoint is '$(image_list "$IMAGE" Entrypoint)', not weft"
version_line=$(run_in_image "$IMAGE" --version) || fail "weft --version failed in the image"
log "weft --version: $version_line"
label=$(podman image inspect --format '{{index .Config.Labels "org.opencontainers.image.version"}}' "$IMAGE")
[[ "$version_line" == "weft $label "* ]] || fail "the version label '$label' is not the binary's: $version_line"
if [ "$FLAVOUR" = cuda ]; then
  [[ "$version_line" == *"CUDA "[0-9]*NCCL* ]] || fail "the CUDA image's weft does not report a CUDA build"
else
  [[ "$version_line" == *"without CUDA"* ]] || fail "the CPU image's weft does not report a CPU-only build"
fi
# shellcheck disable=SC2016 # expanded inside the image
run_in_image --entrypoint /bin/sh "$IMAGE" -c '[ "$(id -u)" != 0 ]' || fail "the image's processes run as root"
run_in_image --entrypoint /bin/sh "$IMAGE" -c '! command -v c++ && ! command -v cmake' > /dev/null ||
  fail "the runtime image carries a compiler or cmake"

# --- the demo: 2 data-parallel ranks through weft launch, as the image's user ---------------------------------
mkdir -m 1777 "$WORK/out"
phase "weft launch -n 2 configs/tiny.yaml inside the image"
run_in_image -v "$WORK/out:/out" "$IMAGE" launch -n 2 configs/tiny.yaml --metrics /out/demo.jsonl \
  > "$WORK/demo.log" 2>&1 || { tail -n 30 "$WORK/demo.log"; fail "the 2-rank demo failed inside the image"; }
tail -n 2 "$WORK/demo.log"
python3 - "$WORK/out/demo.jsonl" << 'EOF' || fail "the demo's loss did not fall inside the image"
import json, sys
losses = [r["loss"] for r in map(json.loads, open(sys.argv[1])) if "step" in r and "loss" in r]
print(f"demo: {len(losses)} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}")
# The README's promise: from about 5.5 to under 2 in 100 steps.
sys.exit(0 if len(losses) == 100 and losses[-1] < 2.0 < losses[0] else 1)
EOF

# --- this build's unit tests, against the image's libraries ---------------------------------------------------
if [ "$MODE" = prebuilt ]; then
  # The test programs and what they read (configs, weft) at the paths they were compiled with, copied to a tree
  # the image's user can read whatever the permissions above the checkout.
  tree=$WORK/tree
  mapfile -t programs < <(ctest --test-dir "$BUILD" -L unit --show-only=json-v1 | python3 -c '
import json, sys
for program in sorted({t["command"][0] for t in json.load(sys.stdin)["tests"]}):
    # (the fuzz targets replay corpora named on their command line, which the image does not hold)
    if (program.startswith(sys.argv[1] + "/") and "/fuzz/" not in program
            and open(program, "rb").read(4) == b"\x7fELF"):
        print(program)' "$BUILD")
  ((${#programs[@]})) || fail "ctest lists no unit test programs in $BUILD"
  # weft's own shared objects too: the SentencePiece plugin the tests load, and libweft for the C API's test.
  for program in "${programs[@]}" "$BUILD/weft" "$BUILD"/libweft*.so; do install -D "$program" "$tree$program"; done
  mkdir -p "$tree$SOURCE"
  cp -r "$SOURCE/configs" "$tree$SOURCE/"
  volumes=(-v "$tree$SOURCE:$SOURCE:ro")
  [[ "$BUILD/" == "$SOURCE/"* ]] || volumes+=(-v "$tree$BUILD:$BUILD:ro")
  phase "${#programs[@]} unit test programs inside the image"
  # shellcheck disable=SC2016 # expanded inside the image
  runner='log=/tmp/$(basename "$0").log
    if "$0" > "$log" 2>&1; then echo "$(basename "$0"): $(grep "^All tests passed" "$log")"
    else tail -n 40 "$log"; echo "FAILED: $0"; exit 255; fi'
  # shellcheck disable=SC2016
  run_in_image "${volumes[@]}" -w /tmp --entrypoint /bin/sh "$IMAGE" \
    -c 'runner=$1; shift; printf "%s\n" "$@" | xargs -P 2 -n 1 sh -c "$runner"' sh "$runner" "${programs[@]}" ||
    fail "unit tests failed inside the image"
fi
phase "PASS: $IMAGE ($size_mb MB) runs the demo$([ "$MODE" = prebuilt ] && echo " and the unit tests")"
