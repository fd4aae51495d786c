#!/usr/bin/env bash
# Installs the web renderer of `gstrim view`, the PlayCanvas engine (npm playcanvas, MIT), into .tools/viewer;
# gstrim serves it to the page from there, so the page works offline (docs/viewer.md says why this one).
# Needs Node >= 18 and npm; never run from inside a test.
set -euo pipefail
source "$(dirname "$0")/npm_tool.sh"
npm_tool viewer "playcanvas@${PLAYCANVAS_VERSION:-2.23.3}"
echo "$TOOL_ROOT/node_modules/playcanvas/build/playcanvas.min.mjs"
