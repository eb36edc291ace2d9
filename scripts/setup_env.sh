#!/usr/bin/env bash
# Make .venv with everything the package, its jobs and its tests need, on a fresh CPU machine.
# torch==2.13.0 (a CPU wheel) goes in first, so that nothing later can pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"

# System packages: FFmpeg's libraries for torchcodec (datasets' Audio columns).
if ! command -v ffmpeg >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
  else
    echo "warning: ffmpeg is missing (sudo apt-get install ffmpeg); datasets' Audio columns will not decode" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" torch==2.13.0
"${PIP[@]}" -r requirements-cpu-test.txt
"${PIP[@]}" --no-deps --no-build-isolation -e .
# torchaudio (if anything pulled it in) breaks `import transformers` beside CPU torch 2.13.
"$VENV/bin/python" -m pip uninstall --quiet -y torchaudio >/dev/null 2>&1 || true
"$VENV/bin/python" -c "import torch, transformers, modeling_mtqnet; print('environment ready: torch', torch.__version__, 'transformers', transformers.__version__)"
