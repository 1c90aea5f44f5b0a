#!/usr/bin/env bash
# Install Debian's Chromium, the headless browser of the `zoo view` test, if it is missing.
# Installing needs root: without it, say in one line what to install and go on; only the
# test that needs a browser then fails, with the same line.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
    exit 0
fi
echo "install_chromium.sh: Chromium is missing; install Debian's chromium package as root (apt-get install chromium): only the zoo view test needs it" >&2
