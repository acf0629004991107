#!/usr/bin/env bash
# Build the SentiOps images (components, serving, drift) from the pinned lock, air-gapped:
# a wheelhouse made here by `pip wheel -c requirements.lock` is the build context's only
# package source. With Docker (users): `docker build`. Without a daemon (this project's CI):
# Debian's buildah (vfs storage, chroot isolation) on a Debian base made by mmdebstrap.
#
#   scripts/images/build.sh [components] [serving] [drift]      (default: every Dockerfile)
#
#   BUILDER        docker | buildah (default: docker if it answers, else buildah)
#   IMAGE_PREFIX   default dev.local/sentiops          IMAGE_TAG  default dev
#   BASE_IMAGE     FROM image (default: python:3.11-slim-bookworm with docker; with buildah a
#                  Debian bookworm + python3 made by mmdebstrap, cached in the tools dir)
#   SENTIOPS_TOOLS_DIR   cache for the base image tarball (default ~/.cache/sentiops-tools)
# An image whose inputs (Dockerfile, wheelhouse, sources) did not change is not rebuilt: its
# label sentiops.build-hash says what it was built from.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/../.."
REPO=$PWD
PY=${PYTHON:-$REPO/.venv/bin/python}
IMAGE_PREFIX=${IMAGE_PREFIX:-dev.local/sentiops}
IMAGE_TAG=${IMAGE_TAG:-dev}
TOOLS_DIR=${SENTIOPS_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sentiops-tools}
STORE=(--storage-driver vfs)
log() { printf '[images] %s\n' "$*" >&2; }

if [ -z "${BUILDER:-}" ]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then BUILDER=docker
  else BUILDER=buildah; fi
fi
images=("$@")
if [ ${#images[@]} -eq 0 ]; then
  for d in components serving drift; do [ -f "$d/Dockerfile" ] && images+=("$d"); done
fi

# ------------------------------------------------------------------ base image (buildah)
base_image() {
  if [ -n "${BASE_IMAGE:-}" ]; then echo "$BASE_IMAGE"; return; fi
  if [ "$BUILDER" = docker ]; then echo python:3.11-slim-bookworm; return; fi
  local name=localhost/sentiops-base:bookworm tar="$TOOLS_DIR/images/debian-python-bookworm.tar"
  if ! buildah "${STORE[@]}" inspect --type image "$name" >/dev/null 2>&1; then
    if [ ! -s "$tar" ]; then
      mkdir -p "$(dirname "$tar")"
      log "base image: mmdebstrap bookworm + python3 -> $tar"
      mmdebstrap --quiet --variant=minbase \
        --include=python3,python3-venv,ca-certificates bookworm "${tar%.tar}.partial.tar"
      mv "${tar%.tar}.partial.tar" "$tar"
    fi
    log "base image: import $tar as $name"
    podman "${STORE[@]}" import "$tar" "$name" >/dev/null
  fi
  echo "$name"
}

# ------------------------------------------------------------------ per image inputs
extra_of() {  # which extra of sentiops an image installs
  case "$1" in components) echo pipeline ;; serving) echo serve ;; drift) echo models ;; esac
}
wheelhouse() {  # build/images/<image>/wheels: every wheel the image installs, from the lock
  local image=$1 dir=build/images/$1/wheels extra
  extra=$(extra_of "$image")
  rm -rf "$dir" && mkdir -p "$dir"
  if [ -f "$image/requirements.txt" ]; then
    # its own pins (the drift sidecar: alibi-detect 0.11.4, pydantic<2, numpy<1.25) under the
    # lock minus what they pin (the constraints `make drift-install` writes), sentiops --no-deps
    local constraints=.venv-drift/constraints.txt
    [ -s "$constraints" ] || { log "$image: run \`make drift-install\` first ($constraints)"; exit 2; }
    log "$image: wheelhouse ($image/requirements.txt under $constraints)"
    "$PY" -m pip wheel --quiet --disable-pip-version-check -c "$constraints" -w "$dir" \
      -r "$image/requirements.txt" 2>&1 | grep -v "^WARNING: Location" || true
    "$PY" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$dir" . \
      2>&1 | grep -v "^WARNING: Location" || true
  else
    log "$image: wheelhouse (sentiops[$extra] from requirements.lock)"
    "$PY" -m pip wheel --quiet --disable-pip-version-check -c requirements.lock \
      -w "$dir" ".[$extra]" 2>&1 | grep -v "^WARNING: Location" || true
  fi
  if [ "$image" = components ]; then  # the built-in datasets, fetched once at build time here
    rm -rf build/images/components/home
    SENTIOPS_HOME=build/images/components/home "$REPO/.venv/bin/sentiops" data fetch >/dev/null
  fi
}
build_hash() {
  { cat "$1/Dockerfile"; ls build/images/"$1"/wheels | sort;
    git ls-files -s sentiops pyproject.toml "$1" 2>/dev/null; git diff HEAD -- sentiops "$1"; } \
    | sha256sum | cut -c1-16
}

build_buildah() {  # image tag hash: one buildah build, then the image it replaced removed
  local image=$1 tag=$2 hash=$3 old_id start
  old_id=$(buildah "${STORE[@]}" inspect --type image --format '{{.FromImageID}}' "$tag" 2>/dev/null || true)
  start=$(date +%s)
  buildah "${STORE[@]}" bud --quiet --isolation chroot --layers=false \
    --build-arg "BASE_IMAGE=$base" --label "sentiops.build-hash=$hash" \
    -f "$image/Dockerfile" -t "$tag" . >/dev/null
  log "$tag built in $(( $(date +%s) - start ))s"
  # the image it replaces would stay behind untagged (2 GB each with vfs): removed unless a
  # container still uses it
  [ -z "$old_id" ] || buildah "${STORE[@]}" rmi "$old_id" >/dev/null 2>&1 || true
}

base=$(base_image)
pids=()
for image in "${images[@]}"; do
  [ -f "$image/Dockerfile" ] || { log "no $image/Dockerfile"; exit 2; }
  tag="$IMAGE_PREFIX/$image:$IMAGE_TAG"
  wheelhouse "$image"
  hash=$(build_hash "$image")
  if [ "$BUILDER" = buildah ]; then
    have=$(buildah "${STORE[@]}" inspect --type image --format \
      '{{index .ImageAnnotations "sentiops.build-hash"}}{{index .Docker.Config.Labels "sentiops.build-hash"}}' \
      "$tag" 2>/dev/null || true)
    if [ "$have" = "$hash" ]; then log "$tag is up to date ($hash)"; continue; fi
    log "$tag: buildah bud (FROM $base), in the background"
    # builds overlap each other and the next wheelhouse (much of a vfs build is copying files)
    build_buildah "$image" "$tag" "$hash" &
    pids+=($!)
  else
    docker build --build-arg "BASE_IMAGE=$base" --label "sentiops.build-hash=$hash" \
      -f "$image/Dockerfile" -t "$tag" .
  fi
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
[ "$failed" = 0 ] || { log "a buildah build failed (see above)"; exit 1; }
