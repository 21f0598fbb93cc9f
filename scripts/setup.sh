#!/usr/bin/env bash
# Set up LNF Studio on a Debian/Ubuntu machine: system libraries, a virtual environment in .venv, the package.
#
#   bash scripts/setup.sh          # runtime: the app, training, generation
#   bash scripts/setup.sh --dev    # plus what the tests need (pytest, pytest-qt, hypothesis, ruff, music21, xvfb)
#
# PyTorch: CPU machines get torch==2.13.0 (an open "torch" requirement can pull a multi-GB CUDA build).
# For a GPU, set LNF_TORCH_SPEC, e.g.  LNF_TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1

# 1. System libraries: FluidSynth (brings a General MIDI SoundFont), PortAudio, two xcb libraries for real windows.
pkgs="libfluidsynth3 libportaudio2 libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0"
[ $dev = 1 ] && pkgs="$pkgs xvfb"
if command -v apt-get >/dev/null 2>&1; then
    missing=""
    for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
    if [ -n "$missing" ]; then
        sudo_cmd=""
        [ "$(id -u)" != 0 ] && sudo_cmd="sudo"
        echo "Installing system packages:$missing"
        $sudo_cmd apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
else
    echo "Not a Debian/Ubuntu machine: install FluidSynth and PortAudio with your package manager." >&2
fi

# 2. Python environment.
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=".venv/bin/python -m pip"
$pip install -q --upgrade pip >/dev/null 2>&1 || true
# shellcheck disable=SC2086
$pip install -q ${LNF_TORCH_SPEC:-torch==2.13.0}
extras=""
[ $dev = 1 ] && extras="[test,plots]"
$pip install -q -c scripts/constraints.txt -e ".$extras"
echo "LNF Studio is set up in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))."
