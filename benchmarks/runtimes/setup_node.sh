#!/usr/bin/env bash
# Re-creates the LiteRT.js side of the runtime matrix: @litertjs/core (and playwright-core,
# which drives Debian's chromium) from npm, into CACHE_DIR/node/node_modules.
# Usage: bash benchmarks/runtimes/setup_node.sh [CACHE_DIR]   (needs node >= 18 and npm)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${1:-${RUNTIMES_CACHE:-$HOME/.cache/keras_medyate_runtimes}}"
mkdir -p "$CACHE/node"
cp "$HERE/package.json" "$CACHE/node/package.json"
cd "$CACHE/node"
npm install --no-audit --no-fund --loglevel=error
node -e "console.log('litertjs', require('./node_modules/@litertjs/core/package.json').version)"
