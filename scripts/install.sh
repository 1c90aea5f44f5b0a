#!/usr/bin/env bash
# Create .venv (if needed) and install zoo, the bundled plugins and everything the
# zoo works with, pinned by constraints.txt. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's Chromium: the headless browser the `zoo view` (netron) test renders in.
scripts/install_chromium.sh

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# onnxruntime-gpu only: the CPU package `onnxruntime` would overwrite the same files.
.venv/bin/python -m pip install --quiet -c constraints.txt \
    -e ".[runtime,torch,export,postgres,serve,s3,docs,test]" \
    -e plugins/zoo-torchvision \
    -e "plugins/zoo-digits[train]" \
    -e plugins/zoo-timm \
    netron
if .venv/bin/python -m pip show --quiet onnxruntime >/dev/null 2>&1; then
    echo "install.sh: the CPU package onnxruntime is installed beside onnxruntime-gpu; remove it" >&2
    exit 1
fi
