#!/usr/bin/env bash
# Re-creates the aarch64 (arm64, the phone ISA) environment of the runtime matrix:
#   - Debian's qemu-user-static (no binfmt registration needed),
#   - SYSROOT: the arm64 .debs of python3.11 and its dependencies, extracted with dpkg -x,
#   - SITE: the aarch64 wheels of ai-edge-litert and numpy, installed from x86 with pip.
# Then runs `$QEMU -L $SYSROOT $SYSROOT/usr/bin/python3.11` with PYTHONPATH=$SITE.
#
# Usage: bash benchmarks/runtimes/setup_aarch64.sh [CACHE_DIR]   (as root, Debian 12)
# Prints the command line to use (also written to CACHE_DIR/aarch64/python.sh).
# Nothing here is committed: everything lands in CACHE_DIR (default ~/.cache/keras_medyate_runtimes).
set -euo pipefail
CACHE="${1:-${RUNTIMES_CACHE:-$HOME/.cache/keras_medyate_runtimes}}"
LITERT_VERSION="${LITERT_AARCH64_VERSION:-1.4.0}"   # newest aarch64 Linux wheel for CPython 3.11
ROOT="$CACHE/aarch64"
SYSROOT="$ROOT/sysroot"
SITE="$ROOT/site-litert-$LITERT_VERSION"
mkdir -p "$ROOT/debs" "$SYSROOT"

if ! command -v qemu-aarch64-static >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static >/dev/null
fi

if [ ! -x "$SYSROOT/usr/bin/python3.11" ]; then
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
    apt-get update -qq
  fi
  cd "$ROOT/debs"
  # python3.11 and libstdc++ (the LiteRT extension is C++), with every dependency.
  pkgs=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
           --no-breaks --no-replaces --no-enhances --no-pre-depends \
           python3.11:arm64 libstdc++6:arm64 \
         | grep -E '^[a-z0-9]' | grep -v '^<' | sed 's/:arm64$//' | sort -u)
  for p in $pkgs; do
    case "$p" in perl*|libperl*|debconf*|dpkg|install-info|tzdata) continue;; esac
    # arm64 packages, or the architecture-independent ones (media-types, ...); skip virtual names
    apt-get download -qq "$p:arm64" >/dev/null 2>&1 || apt-get download -qq "$p" >/dev/null 2>&1 || true
  done
  ls "$ROOT"/debs/python3.11-minimal_*_arm64.deb >/dev/null   # the one that must be there
  for deb in "$ROOT"/debs/*.deb; do dpkg -x "$deb" "$SYSROOT"; done
fi

if [ ! -d "$SITE/ai_edge_litert" ]; then
  python3 -m pip install -q --target "$SITE" --platform manylinux_2_17_aarch64 \
    --only-binary=:all: --python-version 3.11 "ai-edge-litert==$LITERT_VERSION" "numpy<2.3"
fi

cat > "$ROOT/python.sh" <<EOS
#!/usr/bin/env bash
# arm64 CPython 3.11 under qemu-user with ai-edge-litert $LITERT_VERSION
PYTHONPATH="$SITE" PYTHONHOME="$SYSROOT/usr" exec qemu-aarch64-static -L "$SYSROOT" "$SYSROOT/usr/bin/python3.11" "\$@"
EOS
chmod +x "$ROOT/python.sh"
"$ROOT/python.sh" -c "import platform, ai_edge_litert, numpy; print(platform.machine(), numpy.__version__)"
echo "$ROOT/python.sh"
