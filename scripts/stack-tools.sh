#!/usr/bin/env bash
# What the embedded default's local stack needs beyond .venv: Debian's Prometheus (the loop,
# `make up` and the local rollout start their own on loopback). Idempotent, non-interactive;
# root or sudo on Debian bookworm. (`make cluster-tools` installs it too, with much more.)
set -euo pipefail
if command -v prometheus >/dev/null; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "[stack-tools] need root or sudo for apt-get" >&2; exit 1; }
  SUDO="sudo -n"
fi
echo "[stack-tools] apt-get install prometheus" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
