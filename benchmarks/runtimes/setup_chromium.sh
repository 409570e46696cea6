#!/usr/bin/env bash
# Installs Debian's chromium (headless LiteRT.js runs: the runtime matrix and web/trainer's test).
# Usage: bash benchmarks/runtimes/setup_chromium.sh   (as root, Debian 12)
set -euo pipefail
if ! command -v chromium >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
chromium --version
