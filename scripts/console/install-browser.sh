#!/usr/bin/env bash
# Headless Chromium + chromedriver from Debian for the console's browser test
# (tests/console). Idempotent: does nothing when both are installed. Needs root or sudo.
#   scripts/console/install-browser.sh        (what `make browser-tools` runs)
set -euo pipefail

CHROMIUM=${SENTIOPS_CHROMIUM:-/usr/bin/chromium}
DRIVER=${SENTIOPS_CHROMEDRIVER:-/usr/bin/chromedriver}

if [[ -x "$CHROMIUM" && -x "$DRIVER" ]]; then
  echo "browser-tools: $("$CHROMIUM" --version 2>/dev/null || echo chromium) and" \
       "$("$DRIVER" --version 2>/dev/null | cut -d' ' -f1-2) already installed"
  exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  echo "browser-tools: need root or sudo to apt-get install chromium chromium-driver" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "browser-tools: no apt-get here; install Chromium and chromedriver and set" \
       "SENTIOPS_CHROMIUM / SENTIOPS_CHROMEDRIVER to their paths" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Each step said out loud (scripts/phase.sh: a line when it starts, one every 10 s, its time).
phase() { bash "$(dirname "$0")/../phase.sh" "$@"; }
# An update only when the package lists do not know chromium yet (cheap on a warm machine).
if ! apt-cache show chromium >/dev/null 2>&1 || ! apt-cache show chromium-driver >/dev/null 2>&1; then
  phase "browser-tools 1/2" "apt-get update" -- "${SUDO[@]}" apt-get update -qq
fi
phase "browser-tools 2/2" "apt-get install chromium chromium-driver (~100 MB)" -- \
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core
[[ -x "$CHROMIUM" && -x "$DRIVER" ]] \
  || { echo "browser-tools: $CHROMIUM or $DRIVER still missing after apt-get" >&2; exit 1; }
echo "browser-tools: $("$CHROMIUM" --version) and $("$DRIVER" --version | cut -d' ' -f1-2)"
