#!/usr/bin/env bash
# Create .venv with napari-clearnet and, by default, what its tests need; safe to run again.
#   bash scripts/setup_env.sh            # core + tests (napari, pytest, ...), as scripts/test.sh does
#   bash scripts/setup_env.sh napari     # core + napari with PyQt6: then `.venv/bin/napari`
#   bash scripts/setup_env.sh ""         # the core only (Python API and the clearnet command)
# PyTorch comes first, built for this machine: the CPU build (from PyTorch's CPU wheel index) when
# there is no NVIDIA GPU, since a plain 'torch' from PyPI on Linux is the CUDA build (several GB).
# TORCH_BUILD=cpu|cuda overrides the detection; TORCH_VERSION picks the version (default 2.13.0).
# Installs Debian's X server packages when run as root (napari needs an X server for tests).
# Disk: about 1 GB for the core with CPU PyTorch, 2.1 GB with napari and the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1-testing}"  # "" installs the core only
say() { echo "setup: $*" >&2; }
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null && ! command -v Xvfb >/dev/null; then
  say "installing the X server packages napari's tests need (apt-get: xvfb, libxcb, libgl)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 \
    libxcb-xinerama0 libxcb-randr0 libxcb-cursor0 libxkbcommon-x11-0 libgl1 libegl1 \
    libfontconfig1 libdbus-1-3 >/dev/null
fi
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $("$PY" --version 2>&1)"
  "$PY" -m venv .venv
fi
. .venv/bin/activate
# pip's own progress bars on a terminal; in logs (CI, a pipe) one line per download and the summary
pip_install() {
  if [ -t 1 ]; then
    python -m pip install "$@"
  else
    python -m pip install --progress-bar off "$@" \
      | awk '/^ *(Downloading|Installing collected|Successfully installed)/ { sub(/^ +/, ""); print "  " $0; fflush() }'
  fi
}
python -m pip install -q --upgrade pip
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
if python -c "import torch" 2>/dev/null; then
  say "PyTorch $(python -c 'import torch; print(torch.__version__)') is already installed"
else
  BUILD="${TORCH_BUILD:-}"
  if [ -z "$BUILD" ]; then
    if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then BUILD=cuda; else BUILD=cpu; fi
  fi
  if [ "$BUILD" = cuda ]; then
    say "installing PyTorch $TORCH_VERSION with CUDA (an NVIDIA GPU is here): about 3 GB to download, 5 GB on disk"
    pip_install "torch==$TORCH_VERSION"
  elif python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10)" \
      "$CPU_INDEX/torch/" 2>/dev/null; then
    say "installing PyTorch $TORCH_VERSION, CPU build (no NVIDIA GPU found), from $CPU_INDEX: about 200 MB to download"
    pip_install "torch==$TORCH_VERSION" --index-url "$CPU_INDEX" \
      || { say "the CPU index failed; trying pip's default index"; pip_install "torch==$TORCH_VERSION"; }
  else
    say "no NVIDIA GPU found, but $CPU_INDEX cannot be reached: installing PyTorch $TORCH_VERSION from pip's"
    say "configured index (on Linux, PyPI's torch is the CUDA build: several GB; a local mirror may have the CPU build)"
    pip_install "torch==$TORCH_VERSION"
  fi
fi
if [ -n "$EXTRAS" ]; then
  say "installing napari-clearnet (editable) with [$EXTRAS]"
  pip_install -e ".[${EXTRAS}]"
else
  say "installing napari-clearnet (editable), the core only"
  pip_install -e .
fi
say "done: .venv ($(du -sh .venv 2>/dev/null | cut -f1) on disk); activate it with '. .venv/bin/activate'"
