#!/usr/bin/env bash
# Create .venv with napari-clearnet and what its tests need; safe to run again.
# Installs Debian's X server packages when run as root (napari needs an X server for tests).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1-testing}"  # "" installs the core only
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null && ! command -v Xvfb >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 \
    libxcb-xinerama0 libxcb-randr0 libxcb-cursor0 libxkbcommon-x11-0 libgl1 libegl1 \
    libfontconfig1 libdbus-1-3 >/dev/null
fi
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first: a CPU build if none is installed (a plain 'torch' requirement pulls CUDA, several GB)
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0" \
  || python -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
if [ -n "$EXTRAS" ]; then python -m pip install -q -e ".[${EXTRAS}]"; else python -m pip install -q -e .; fi
