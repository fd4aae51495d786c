#!/usr/bin/env bash
# Installs the web renderer of `gstrim view`, the PlayCanvas engine (npm playcanvas, MIT), into .tools/viewer;
# gstrim serves it to the page from there, so the page works offline (docs/viewer.md says why this one).
# Needs Node >= 18 and npm; never run from inside a test.
set -euo pipefail
VERSION="${PLAYCANVAS_VERSION:-2.23.3}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)/.tools/viewer"
mkdir -p "$ROOT"
cd "$ROOT"
[ -f package.json ] || echo '{"private": true}' > package.json
npm install --no-audit --no-fund --silent "playcanvas@${VERSION}"
echo "$ROOT/node_modules/playcanvas/build/playcanvas.min.mjs"
