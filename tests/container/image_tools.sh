# shellcheck shell=bash
# Podman for the container tests, sourced by container_test.sh. On a machine with no registry it keeps a private
# image store cached across runs, makes the base images the Dockerfiles name (debian:12 with debootstrap, a
# stand-in for NVIDIA's CUDA development image from this machine's toolkit), and runs an image through
# `podman run` or, where the runtime cannot start containers, through its mounted root file system.
# The caller defines log, fail and WORK (a temp dir it removes) and calls cleanup_images on exit.

CACHE=${WEFT_CONTAINER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft-container-test}
# Podman keeps run-time state (locks, mounts) apart from the store; it must not outlive a reboot, hence /run.
RUNROOT=/run/weft-container-test
[ -w /run ] || RUNROOT=${TMPDIR:-/tmp}/weft-container-test-run-$(id -u)
mkdir -p "$CACHE"
PODMAN=(podman --root "$CACHE/storage" --runroot "$RUNROOT") # for `timeout`, which cannot run shell functions
podman() { command "${PODMAN[@]}" "$@"; }
# No registry (--pull=never: the base images are local), and RUN steps in a chroot, which needs no OCI runtime.
# shellcheck disable=SC2034 # used by container_test.sh
BUILD_FLAGS=(--pull=never --network host --isolation=chroot)
DEBIAN_IMAGE=docker.io/library/debian:12
CONTAINERS=() # created by run_mounted, removed by cleanup_images

# lock_cache SECONDS: one test at a time uses the store (another worktree's test run may be using it).
lock_cache() {
  exec {CACHE_LOCK}>"$CACHE/lock"
  flock -w "$1" "$CACHE_LOCK" || fail "another container test held $CACHE/lock for $1 s"
}

cleanup_images() {
  local container
  for container in "${CONTAINERS[@]}"; do podman rm -f "$container" >/dev/null 2>&1; done
  # Images a newer build replaced (untagged, no children); the layers the next build reuses stay.
  podman image prune -f >/dev/null 2>&1
}

# ensure_debian_image: debian:12 as a registry would give it, made once with debootstrap (about 30 s) from the
# mirror apt uses here, with the same apt sources as the official image (bookworm, -updates, -security).
ensure_debian_image() {
  podman image exists "$DEBIAN_IMAGE" && return 0
  log "making $DEBIAN_IMAGE with debootstrap (once per machine)"
  local rootfs=$WORK/debian-rootfs sources mirror
  # shellcheck disable=SC2016 # apt's own $(FIELD) placeholders
  sources=$(apt-get indextargets --format 'deb $(REPO_URI) $(RELEASE) main' \
    'Component: main' 'Created-By: Packages' 'Origin: Debian' 2>/dev/null | sort -u)
  [ -n "$sources" ] || sources="deb http://deb.debian.org/debian/ bookworm main
deb http://deb.debian.org/debian/ bookworm-updates main
deb http://deb.debian.org/debian-security/ bookworm-security main"
  mirror=$(awk '$3 == "bookworm" {print $2; exit}' <<< "$sources")
  timeout 600 debootstrap --variant=minbase bookworm "$rootfs" "$mirror" > "$WORK/debootstrap.log" 2>&1 ||
    { tail -n 20 "$WORK/debootstrap.log"; fail "debootstrap from $mirror failed"; }
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
  echo "$sources" > "$rootfs/etc/apt/sources.list"
  tar -C "$rootfs" -c . | podman import --quiet --change 'CMD ["bash"]' - "$DEBIAN_IMAGE" > /dev/null ||
    fail "podman import of the debootstrapped root failed"
  rm -rf "$rootfs"
}

# ensure_cuda_image TAG VERSION: a stand-in for NVIDIA's CUDA development image, holding what Dockerfile.cuda reads
# from it where that image keeps it (the toolkit in /usr/local/cuda-VERSION; NCCL, a Debian package there, in
# /usr/lib/x86_64-linux-gnu and /usr/include), taken from this machine's toolkit: nvcc, the headers, the CUDA
# runtime, cuBLAS and NCCL. Nothing in it runs, so it needs no operating system of its own.
ensure_cuda_image() {
  local tag=$1 version=$2 toolkit=/usr/local/cuda
  podman image exists "$tag" && return 0
  log "making $tag from $toolkit (once per machine)"
  local root=$WORK/cuda-root
  local prefix=$root/usr/local/cuda-$version
  mkdir -p "$prefix/lib64" "$root/usr/lib/x86_64-linux-gnu" "$root/usr/include"
  # Hard links where the file system allows (cuBLAS alone is 600 MB): the tree is only read, by tar.
  link() { cp -al "$@" 2> /dev/null || cp -a "$@"; }
  link "$toolkit/bin" "$toolkit/nvvm" "$toolkit/include" "$prefix/"
  mv "$prefix"/include/nccl* "$root/usr/include/"
  link "$toolkit"/lib64/{libcudart,libcudadevrt,libculibos,libcublas}* "$prefix/lib64/"
  link "$toolkit"/lib64/libnccl* "$root/usr/lib/x86_64-linux-gnu/"
  tar -C "$root" -c . | podman import --quiet - "$tag" > /dev/null || fail "podman import of the CUDA toolkit failed"
  rm -rf "$root"
}

# image_config IMAGE FIELD: a field of the image's config (User, WorkingDir); image_list IMAGE FIELD: a list field
# (Env, Entrypoint, Cmd), one item a line.
image_config() { podman image inspect --format "{{.Config.$2}}" "$1"; }
image_list() { podman image inspect --format "{{range .Config.$2}}{{println .}}{{end}}" "$1" | sed "/^$/d"; }

# can_podman_run: whether this runtime starts containers at all (crun cannot set rlimits in some sandboxes).
can_podman_run() {
  if [ -z "${PODMAN_RUN_WORKS:-}" ]; then
    PODMAN_RUN_WORKS=0
    if timeout 60 "${PODMAN[@]}" run --rm --entrypoint true "$DEBIAN_IMAGE" > "$WORK/podman-run-probe.log" 2>&1; then
      PODMAN_RUN_WORKS=1
    else
      log "podman run cannot start containers here ($(tail -n 1 "$WORK/podman-run-probe.log")); images run" \
        "from their mounted root file system instead"
    fi
  fi
  ((PODMAN_RUN_WORKS))
}

# run_in_image [-v HOST:PATH[:ro]]... [-w DIR] [--entrypoint PROGRAM] IMAGE [ARG...]: `podman run --rm`, or the
# same through run_mounted where podman cannot run containers.
run_in_image() {
  if can_podman_run; then podman run --rm "$@"; else run_mounted "$@"; fi
}

# run_mounted, same arguments: the container's root file system mounted by podman and entered with chroot in new
# mount and PID namespaces, with what podman would give it: its own /proc, a minimal /dev with a private /dev/shm,
# /sys read-only, the host's /etc/hosts and /etc/resolv.conf, the volumes, and the image's user, environment,
# working directory and entrypoint. Everything mounted vanishes with the namespace.
run_mounted() {
  local volumes=() workdir="" entrypoint=() command=()
  while (($#)); do
    case $1 in
      -v) volumes+=("$2"); shift 2 ;;
      -w) workdir=$2; shift 2 ;;
      --entrypoint) entrypoint=("$2"); shift 2 ;;
      *) break ;;
    esac
  done
  local image=$1
  shift
  command=("$@")
  if ((${#entrypoint[@]} == 0)); then
    mapfile -t entrypoint < <(image_list "$image" Entrypoint)
    ((${#command[@]})) || mapfile -t command < <(image_list "$image" Cmd)
  fi
  [ -n "$workdir" ] || workdir=$(image_config "$image" WorkingDir)
  local user environment=()
  user=$(image_config "$image" User)
  mapfile -t environment < <(image_list "$image" Env)
  local container root
  container=$(podman create "$image") || fail "podman create $image failed"
  CONTAINERS+=("$container")
  root=$(podman mount "$container") || fail "podman mount failed"
  # The user as the image's own /etc/passwd has it (name or number; root when unset).
  local ids home
  ids=$(awk -F: -v u="${user:-root}" '$1 == u || $3 == u {print $3 ":" $4; exit}' "$root/etc/passwd")
  home=$(awk -F: -v u="${user:-root}" '$1 == u || $3 == u {print $6; exit}' "$root/etc/passwd")
  [ -n "$ids" ] || fail "user '$user' of $image is not in its /etc/passwd"

  # shellcheck disable=SC2016 # expanded by the inner shell
  local inside='
    set -e
    root=$1 ids=$2 workdir=$3 volume_count=$4
    shift 4
    mount -t tmpfs -o nosuid,mode=755 tmpfs "$root/dev"
    for node in null zero full random urandom tty; do
      touch "$root/dev/$node"
      mount --bind "/dev/$node" "$root/dev/$node"
    done
    mkdir "$root/dev/shm" "$root/dev/pts"
    mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs "$root/dev/shm"
    ln -s /proc/self/fd "$root/dev/fd"
    mount --rbind /sys "$root/sys"
    mount -o remount,bind,ro "$root/sys"
    for file in /etc/hosts /etc/resolv.conf; do
      [ -e "$file" ] || continue
      touch "$root$file"
      mount --bind "$file" "$root$file"
    done
    for ((i = 0; i < volume_count; i++)); do
      IFS=: read -r host path mode <<< "$1"
      shift
      mkdir -p "$root$path"
      mount --bind "$host" "$root$path"
      [ "$mode" != ro ] || mount -o remount,bind,ro "$root$path"
    done
    exec chroot --userspec="$ids" "$root" "$@"'
  local rc=0
  # shellcheck disable=SC2016 # expanded inside the image
  unshare --mount --pid --fork --kill-child --mount-proc="$root/proc" \
    bash -c "$inside" run_mounted "$root" "$ids" "$workdir" "${#volumes[@]}" "${volumes[@]}" \
    /usr/bin/env -i "HOME=$home" "HOSTNAME=$(hostname)" "${environment[@]}" \
    /bin/sh -c 'cd "$0" && exec "$@"' "$workdir" "${entrypoint[@]}" "${command[@]}" || rc=$?
  podman rm -f "$container" > /dev/null 2>&1
  return "$rc"
}
