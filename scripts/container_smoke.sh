#!/usr/bin/env bash
# Container smoke test: build the image, train a tiny run in it, serve that run from it and
# check /predict. It works without an image registry: the base image is Debian bookworm
# (python3 3.11) made with debootstrap from this host's apt mirror and reused while its
# recipe is unchanged, and pip in the build uses this host's pip settings and wheel folders.
#
#   sudo scripts/container_smoke.sh          # after `make install`; CI runs it after the tests
#
# It skips (exit 0, with the reason) without root, podman or debootstrap, and fails (exit 1)
# when they are there and the image does not build, train, start, pass its health check or
# answer /predict correctly. Knobs (environment): SMOKE_IMAGE (default
# localhost/imdb-sentiment:smoke), SMOKE_TORCH_SPEC (default: this .venv's CPU torch, pinned
# with its +cpu local version so pip can never pick the multi-GB CUDA wheel), DEBIAN_MIRROR
# (default: this host's apt mirror), SMOKE_KEEP_IMAGE=0 to remove the app image afterwards.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

IMAGE=${SMOKE_IMAGE:-localhost/imdb-sentiment:smoke}
BASE_REPO=localhost/imdb-sentiment-base
SUITE=bookworm
VARIANT=minbase
# python3-venv carries ensurepip; ca-certificates as in the official python image.
INCLUDE=python3,python3-venv,ca-certificates
PY=.venv/bin/python
# The server must answer /ready within this many seconds of starting.
READY_TIMEOUT=${SMOKE_READY_TIMEOUT:-120}

log() { echo "container-smoke: $*"; }
# Without systemd, podman complains on every start and stop of a container with a health check
# that it cannot set up a timer for it; the check itself is run by hand.
quiet_timer() { grep -v 'unable to get systemd connection' >&2 || true; }
skip() { log "SKIP: $*"; exit 0; }
fail() { log "FAIL: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root (rootful podman and debootstrap)"
command -v podman >/dev/null || skip "podman is not installed (apt-get install podman runc)"
command -v debootstrap >/dev/null || skip "debootstrap is not installed (apt-get install debootstrap)"
[ -x "${PY}" ] || skip "no ${PY}: run \`make install\` first"
podman info >/dev/null 2>&1 || fail "podman is installed but does not work: $(podman info 2>&1 | tail -1)"

# runc, not crun: crun cannot set up cgroups on some hosts (cgroup v1 without systemd).
RUNTIME=()
command -v runc >/dev/null && RUNTIME=(--runtime runc)
# The runtime's default open-files limit can exceed this host's hard limit, and then no
# container starts; nproc stays within what every runtime accepts.
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu)
if [ "${nproc}" = unlimited ] || [ "${nproc}" -gt 32768 ]; then nproc=32768; fi
LIMITS=(--ulimit "nofile=${nofile}:${nofile}" --ulimit "nproc=${nproc}:${nproc}")

work=$(mktemp -d "${TMPDIR:-/tmp}/imdb-container-smoke.XXXXXX")
chmod 755 "${work}"
container=""
rootfs=""
phases=()
phase_name=""
started=$(date +%s%N)
phase_start=${started}

begin() {  # begin NAME: close the running phase (if any) and time the next one as NAME
  local now
  now=$(date +%s%N)
  if [ -n "${phase_name}" ]; then
    phases+=("$(printf '%-36s %6.1f s' "${phase_name}" "$(( (now - phase_start) / 1000000 ))e-3")")
  fi
  phase_name=$1
  phase_start=${now}
}

unmount_under() {  # debootstrap mounts proc/sys in the target; never delete through a mount
  local target
  { findmnt -rn -o TARGET | grep -F "$1/" || true; } | sort -r | while read -r target; do
    umount -l "${target}" || true
  done
}

cleanup() {
  local status=$?
  [ -n "${container}" ] && podman rm -f "${container}" >/dev/null 2>&1
  if [ -n "${rootfs}" ] && [ -d "${rootfs}" ]; then
    unmount_under "${rootfs}"
    rm -rf --one-file-system "${rootfs}"
  fi
  rm -rf --one-file-system "${work}"
  if [ "${SMOKE_KEEP_IMAGE:-1}" = 0 ]; then podman rmi -f "${IMAGE}" >/dev/null 2>&1 || true; fi
  if [ -n "${phase_name}" ]; then phase_name="${phase_name} (stopped here)"; begin ""; fi
  if [ "${#phases[@]}" -gt 0 ]; then
    log "timings:"
    printf '  %s\n' "${phases[@]}"
    printf '  %-36s %6.1f s\n' total "$(( ($(date +%s%N) - started) / 1000000 ))e-3"
  fi
  exit "${status}"
}
trap cleanup EXIT

debian_mirror() {  # the first non-security bookworm mirror apt is configured with
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "${DEBIAN_MIRROR}"; return; fi
  local found
  found=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v suite="${SUITE}" -v RS= '
    {
      uri = ""; ours = 0
      n = split($0, lines, "\n")
      for (i = 1; i <= n; i++) {
        m = split(lines[i], f, /[ \t]+/)
        if (f[1] == "URIs:") uri = f[2]
        if (f[1] == "Suites:") for (j = 2; j <= m; j++) if (f[j] == suite) ours = 1
      }
      if (ours && uri != "" && uri !~ /security/) { print uri; exit }
    }')
  if [ -z "${found}" ]; then
    found=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk -v suite="${SUITE}" '
      $1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite && $i !~ /security/) { print $i; exit }
      }')
  fi
  echo "${found:-http://deb.debian.org/debian}"
}

build_base() {  # build_base TAG: debootstrap a minimal bookworm and import it as TAG
  rootfs=$(mktemp -d "${TMPDIR:-/tmp}/imdb-base-rootfs.XXXXXX")
  log "building base image ${1} from ${MIRROR} (debootstrap --variant=${VARIANT})"
  if ! debootstrap --variant="${VARIANT}" --include="${INCLUDE}" "${SUITE}" "${rootfs}" \
      "${MIRROR}" >"${work}/debootstrap.log" 2>&1; then
    tail -n 20 "${work}/debootstrap.log" >&2
    fail "debootstrap of ${SUITE} from ${MIRROR} failed"
  fi
  unmount_under "${rootfs}"
  # The package cache and lists are only needed to install, not to run.
  rm -rf "${rootfs}"/var/cache/apt/archives/*.deb "${rootfs}"/var/lib/apt/lists/* \
    "${rootfs}"/usr/share/man/*
  tar --numeric-owner -C "${rootfs}" -c . | podman import --quiet \
    --change "ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV=LANG=C.UTF-8" --change 'CMD=["python3"]' - "$1" >/dev/null
  rm -rf --one-file-system "${rootfs}"
  rootfs=""
}

begin "base image"
# --- base image: reused while suite, mirror, variant, packages and architecture are the same
MIRROR=$(debian_mirror)
key=$(printf '%s\n' base-v1 "${SUITE}" "${MIRROR}" "${VARIANT}" "${INCLUDE}" \
  "$(dpkg --print-architecture 2>/dev/null || uname -m)" | sha256sum | cut -c1-12)
BASE="${BASE_REPO}:${key}"
if podman image exists "${BASE}"; then
  log "reusing base image ${BASE}"
else
  # An unreachable mirror says nothing about the image: skip, as without debootstrap.
  "${PY}" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=30)' \
    "${MIRROR%/}/dists/${SUITE}/Release" 2>/dev/null \
    || skip "the apt mirror ${MIRROR} cannot be reached to build the base image"
  build_base "${BASE}"
  # Older bases (another recipe) are dropped, unless an image still builds on them.
  podman images --format '{{.Repository}}:{{.Tag}}' "${BASE_REPO}" | { grep -vxF "${BASE}" || true; } \
    | while read -r old; do podman rmi "${old}" >/dev/null 2>&1 || true; done
fi
podman run --rm "${RUNTIME[@]}" "${LIMITS[@]}" --network none --no-healthcheck "${BASE}" python3 -c \
  'import sys, venv; assert sys.version_info[:2] == (3, 11), sys.version' \
  || fail "base image ${BASE} has no Python 3.11 with venv"

begin "app image build"
# --- app image: pip sees this host's settings and local wheel folders at the same paths
"${PY}" scripts/container_smoke.py pipconf "${work}/pip.conf" >"${work}/mounts"
VOLUMES=(-v "${work}/pip.conf:/etc/pip.conf:ro")
while read -r path; do VOLUMES+=(-v "${path}:${path}:ro"); done <"${work}/mounts"
torch_spec=${SMOKE_TORCH_SPEC:-}
if [ -z "${torch_spec}" ]; then
  version=$("${PY}" -c 'import torch; print(torch.__version__)' 2>/dev/null || true)
  case "${version}" in
    *+cpu) torch_spec="torch==${version}" ;;
    *) torch_spec="torch==$(sed -n 's/^TORCH_SPEC ?= torch==//p' Makefile)+cpu" ;;
  esac
fi
log "building ${IMAGE} on ${BASE} with ${torch_spec}"
if ! podman build --pull=never --format docker "${RUNTIME[@]}" "${LIMITS[@]}" --network host \
    "${VOLUMES[@]}" --build-arg "BASE_IMAGE=${BASE}" --build-arg "TORCH_SPEC=${torch_spec}" \
    -t "${IMAGE}" . >"${work}/build.log" 2>&1; then
  tail -n 30 "${work}/build.log" >&2
  fail "podman build failed"
fi

begin "tiny model + data"
# --- a tiny run, trained inside the image with no network
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
  "${PY}" scripts/container_smoke.py fixture "${work}/in" >"${work}/fixture.log" 2>&1 \
  || { tail -n 20 "${work}/fixture.log" >&2; fail "could not write the tiny model and data"; }
# The image runs as uid 1000: the inputs must be readable by it (transformers writes the
# weights 0600) and the runs folder writable.
chmod -R a+rX "${work}/in"
mkdir -p "${work}/runs"
chown 1000:1000 "${work}/runs"
begin "train (container)"
OFFLINE=(-e HF_HUB_OFFLINE=1 -e HF_DATASETS_OFFLINE=1 -e TRANSFORMERS_OFFLINE=1
  -e WANDB_MODE=offline -e TOKENIZERS_PARALLELISM=false)
# One OpenMP thread: on a busy machine two spinning threads make this tiny run 20x slower.
if ! podman run --rm "${RUNTIME[@]}" "${LIMITS[@]}" --network none --no-healthcheck \
    -e OMP_NUM_THREADS=1 "${OFFLINE[@]}" \
    -v "${work}/in:/smoke:ro" -v "${work}/runs:/work/runs" "${IMAGE}" \
    train --model /smoke/model --data /smoke/data --output-dir /work/runs --run-name smoke \
    --report-to none --precision fp32 --lr 5e-3 --epochs 2 --batch-size 8 --max-length 64 \
    --set training.warmup_ratio=0.0 >"${work}/train.log" 2>&1; then
  tail -n 20 "${work}/train.log" >&2
  fail "training in the container failed"
fi
[ -f "${work}/runs/smoke/status.json" ] || fail "training wrote no runs/smoke/status.json"

begin "serve: ready + predict"
# --- serve the run, mounted read-only, with the image's default command
port=$("${PY}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
container="imdb-sentiment-smoke-$$"
# The image's HEALTHCHECK is run once by hand below: podman's periodic timer needs systemd.
podman run -d --name "${container}" "${RUNTIME[@]}" "${LIMITS[@]}" "${OFFLINE[@]}" \
  --health-interval disable \
  -p "127.0.0.1:${port}:8000" -v "${work}/runs/smoke:/runs/latest:ro" "${IMAGE}" \
  >/dev/null 2> >(quiet_timer) \
  || fail "the serve container did not start"
if ! "${PY}" scripts/container_smoke.py probe "http://127.0.0.1:${port}" \
    --timeout "${READY_TIMEOUT}"; then
  podman logs --tail 30 "${container}" >&2 || true
  fail "the served run did not answer correctly"
fi
begin "healthcheck + stop"
podman healthcheck run "${container}" >/dev/null \
  || fail "the image's HEALTHCHECK reports the running server unhealthy"
uid=$(podman exec "${container}" id -u)
[ "${uid}" != 0 ] || fail "the server runs as root"
podman stop -t 10 "${container}" >/dev/null 2> >(quiet_timer)
podman rm "${container}" >/dev/null 2> >(quiet_timer)
container=""
begin ""
log "OK: ${IMAGE} builds, trains, serves and answers /predict (base ${BASE})"
