#!/usr/bin/env bash
# One phase of a set-up target, said out loud: a line when it starts, a line every
# PHASE_TICK seconds (10) with the time so far and the command's latest step (pip's
# "Collecting ...", "installing 187 packages", ...), and a line with the time it took.
# The command's own output goes to a log file: on success only its warnings are shown, on
# failure its last 40 lines and the log's path. The exit status is the command's.
# Works the same with and without a terminal (CI=true, no tty).
#
#   scripts/phase.sh "install 2/4" "torch 2.13.0 (CPU)" -- pip install ... torch
#
#   PHASE_TICK     seconds between progress lines (default 10)
#   PHASE_T0       a start time (seconds since the epoch): the end line also gives the time
#                  since then (the Makefile sets it when make starts)
set -uo pipefail

if [ "$#" -lt 4 ] || [ "$3" != "--" ]; then
  echo "usage: $0 TAG LABEL -- COMMAND [ARG...]" >&2
  exit 2
fi
tag=$1
label=$2
shift 3
tick=${PHASE_TICK:-10}

clock() { printf '%d:%02d' $(($1 / 60)) $(($1 % 60)); }

# the command's latest step, one short line
latest() {
  local line
  line=$(tail -c 4096 "$log" 2>/dev/null | tr '\r' '\n' | grep -v '^[[:space:]]*$' \
    | grep -v '^WARNING: Location' | tail -n 1)
  case "$line" in
    "Installing collected packages:"*)
      local n
      n=$(printf '%s' "${line#*:}" | tr ',' '\n' | grep -c .)
      line="installing $n packages"
      ;;
  esac
  line="${line#"${line%%[![:space:]]*}"}"
  printf '%s' "${line:0:100}"
}

log=$(mktemp "${TMPDIR:-/tmp}/sentiops-phase.XXXXXX")
start=$SECONDS
printf '[%s] %s ...\n' "$tag" "$label"
"$@" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; exit 130' INT TERM
next=$tick
while kill -0 "$pid" 2>/dev/null; do
  sleep 1
  elapsed=$((SECONDS - start))
  if [ "$elapsed" -ge "$next" ] && kill -0 "$pid" 2>/dev/null; then
    printf '[%s] %s  %s\n' "$tag" "$(clock "$elapsed")" "$(latest)"
    next=$((elapsed + tick))
  fi
done
wait "$pid"
rc=$?
trap - INT TERM
took=$(clock $((SECONDS - start)))
total=""
if [ -n "${PHASE_T0:-}" ]; then
  total=" ($(clock $(($(date +%s) - PHASE_T0))) since make started)"
fi
if [ "$rc" -ne 0 ]; then
  tail -n 40 "$log" >&2
  echo >&2
  printf '[%s] %s FAILED after %s (exit %d); the whole output: %s\n' \
    "$tag" "$label" "$took" "$rc" "$log" >&2
  exit "$rc"
fi
# pip's warnings (not the "Location" noise of editable installs) are worth seeing
grep -E '^(WARNING|ERROR|DEPRECATION)' "$log" | grep -v '^WARNING: Location' || true
rm -f "$log"
printf '[%s] %s done %s%s\n' "$tag" "$label" "$took" "$total"
