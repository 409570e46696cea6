#!/usr/bin/env bash
# Re-creates the throwaway venvs of older LiteRT Python runtimes used by the runtime matrix.
#
# Usage: bash benchmarks/runtimes/setup_venvs.sh [CACHE_DIR] [SPEC ...]
#   SPEC = PYTHON:REQUIREMENT, e.g. 3.11:tflite-runtime==2.14.0 (PYTHON picks `pythonX.Y`,
#   found on PATH or in pyenv). Default specs: the releases the committed matrix tried.
# Each venv goes to CACHE_DIR/venvs/<requirement>-py<X.Y>/ (default CACHE_DIR:
# ~/.cache/keras_medyate_runtimes); nothing here is committed. A release that does not
# install (no wheel for that Python) is reported and skipped.
set -uo pipefail
CACHE="${1:-${RUNTIMES_CACHE:-$HOME/.cache/keras_medyate_runtimes}}"
shift || true
SPECS=("$@")
if [ ${#SPECS[@]} -eq 0 ]; then
  SPECS=(
    3.11:tflite-runtime==2.14.0          # the only tflite-runtime wheel for CPython 3.11
    3.10:tflite-runtime==2.13.0          # (the index has only 2.13/2.14 for CPython 3.10)
    3.9:tflite-runtime==2.12.0           # older releases have no CPython 3.10/3.11 wheel
    3.9:tflite-runtime==2.11.0
    3.9:tflite-runtime==2.10.0
    3.9:tflite-runtime==2.8.0
    3.9:tflite-runtime==2.6.0
    3.11:ai-edge-litert==1.0.0           # the first ai-edge-litert releases
    3.11:ai-edge-litert==1.0.1
    3.11:ai-edge-litert==1.2.0
    3.11:ai-edge-litert==1.4.0
    3.11:ai-edge-litert==2.0.2
    3.11:ai-edge-litert==2.1.0
    3.11:ai-edge-litert==2.2.0
  )
fi
find_python() {
  local v="$1" p
  for p in "$(command -v "python$v" 2>/dev/null)" "$HOME"/.pyenv/versions/"$v".*/bin/python"$v"; do
    # (a pyenv shim for an inactive version exists but fails: run it to check)
    [ -n "$p" ] && [ -x "$p" ] && "$p" -c "import venv" 2>/dev/null && echo "$p" && return
  done
  return 1
}
mkdir -p "$CACHE/venvs"
for spec in "${SPECS[@]}"; do
  py="${spec%%:*}"; req="${spec#*:}"
  dir="$CACHE/venvs/${req//==/-}-py$py"
  if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "import sys" 2>/dev/null && [ -f "$dir/.ok" ]; then
    echo "ok   $spec ($dir)"; continue
  fi
  python=$(find_python "$py") || { echo "skip $spec: no python$py"; continue; }
  rm -rf "$dir"
  "$python" -m venv "$dir" >/dev/null
  # numpy<2: the tflite-runtime and ai-edge-litert 1.x extensions are built against numpy 1.x
  numpy="numpy<2"
  case "$req" in ai-edge-litert==2.*) numpy="numpy";; esac
  if "$dir/bin/pip" install -q --only-binary=:all: "$req" "$numpy" >"$dir.log" 2>&1; then
    touch "$dir/.ok"; echo "ok   $spec ($dir)"
  else
    echo "fail $spec: $(grep -E 'ERROR' "$dir.log" | head -2 | tr '\n' ' ')"
  fi
done
