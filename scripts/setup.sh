#!/usr/bin/env bash
# The main job: install everything into .venv, then run the end-to-end demonstration.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
.venv/bin/python scripts/demo.py
