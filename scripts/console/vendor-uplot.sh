#!/usr/bin/env bash
# Re-vendor uPlot (MIT, https://github.com/leeoniya/uPlot) into sentiops/console/static from
# the npm registry: `npm pack` checks the tarball against the registry's integrity hash, and
# the files are then checked against the sha256 sums below (update them with the version).
#   scripts/console/vendor-uplot.sh            verify the vendored copy (offline)
#   scripts/console/vendor-uplot.sh --fetch    fetch uplot@$UPLOT_VERSION and vendor it
set -euo pipefail
UPLOT_VERSION=1.6.32
cd "$(dirname "$0")/../.."
DEST=sentiops/console/static
SUMS="19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f  $DEST/uPlot.iife.min.js
df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04  $DEST/uPlot.min.css
8f989229699b4fe2f1a0432d0e9edc338a8a911e250e2d1b01ecd770a5f5b1bd  $DEST/uPlot.LICENSE"

if [[ "${1:-}" == "--fetch" ]]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "uplot@$UPLOT_VERSION" >/dev/null && tar xzf "uplot-$UPLOT_VERSION.tgz")
  cp "$tmp/package/dist/uPlot.iife.min.js" "$tmp/package/dist/uPlot.min.css" "$DEST/"
  cp "$tmp/package/LICENSE" "$DEST/uPlot.LICENSE"
fi
echo "$SUMS" | sha256sum --check --quiet
echo "uPlot $UPLOT_VERSION in $DEST verified"
