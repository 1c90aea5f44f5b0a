#!/usr/bin/env bash
# Run the whole test suite (installing first, so it works from a fresh clone).
# Extra arguments go to pytest. "No tests collected" (pytest exit 5) is a failure.
# The import tiers (.importlinter) are checked first: a broken contract fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
.venv/bin/lint-imports --no-cache --no-logo
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "test.sh: pytest collected no tests" >&2
    exit 1
fi
exit "$status"
