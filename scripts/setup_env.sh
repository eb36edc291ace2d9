#!/usr/bin/env bash
# Make .venv with everything the package, its jobs and its tests need, on a fresh CPU machine.
# torch==2.13.0 (a CPU wheel) goes in first, so that nothing later can pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"

# System packages: FFmpeg's libraries for torchcodec (datasets' Audio columns); SoX, opus-tools, lame and espeak-ng
# for the corpus builder's enhancement systems, codecs and test speech; Debian's Chromium and its driver for the web
# app's browser test (Selenium drives that executable; nothing downloads a browser of its own).
APT_PACKAGES=(ffmpeg sox libsox-fmt-all opus-tools lame espeak-ng chromium chromium-driver)
missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "warning: missing system packages (sudo apt-get install ${missing[*]}): some features will be skipped" >&2
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

# Synthetic clean speech for `mtqnet tts` (a corpus where no recordings are at hand; the demo uses the real-speech
# pool of `mtqnet speech-pool`): piper-tts with the CC0 joe voice, in an environment of its own. piper is GPL-3,
# so the package never imports it: modeling_mtqnet/corpus/tts.py runs .venv-tts/bin/piper as a separate program.
# Optional: without it, `mtqnet tts` falls back to espeak-ng. SKIP_TTS=1 skips it. tts.py looks for .venv-tts/bin/piper
# (or piper on PATH, or $MTQNET_PIPER).
TTS_VENV=.venv-tts
if [ "${SKIP_TTS:-0}" != 1 ]; then
  if [ ! -x "$TTS_VENV/bin/python" ]; then
    "$PYTHON" -m venv "$TTS_VENV"
  fi
  if ! "$TTS_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-tts.txt; then
    echo "warning: piper could not be installed into $TTS_VENV; mtqnet tts will use espeak-ng" >&2
  fi
fi
