#!/usr/bin/env bash
# What the embedded default's local stack and the tests need beyond .venv, from Debian:
#   prometheus   the loop, `make up` and the local rollout start their own on loopback
#   postgresql   the server binaries (initdb, postgres under /usr/lib/postgresql/<major>/bin):
#                the tests start a throw-away cluster on loopback for MLflow's metadata
#                (tests/servers.py postgres_server); the package's own cluster is not used
# Idempotent (a no-op when both are there), non-interactive; root or sudo on Debian bookworm.
# (`make cluster-tools` installs prometheus too, with much more.)
set -euo pipefail
have_postgres() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }
missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
have_postgres || missing+=(postgresql)
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "[stack-tools] need root or sudo for apt-get" >&2; exit 1; }
  SUDO="sudo -n"
fi
export DEBIAN_FRONTEND=noninteractive
phase() { bash "$(dirname "$0")/phase.sh" "$@"; }
phase "stack-tools 1/2" "apt-get update" -- $SUDO apt-get update -qq
phase "stack-tools 2/2" "apt-get install ${missing[*]}" -- \
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
command -v prometheus >/dev/null && have_postgres \
  || { echo "[stack-tools] prometheus or postgresql still missing after apt-get" >&2; exit 1; }
