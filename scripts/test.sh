#!/usr/bin/env bash
# The whole check, as CI runs it: set-up, lint, format, types, then the test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k segments -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy"
mypy
echo "== pytest"
pytest "$@"
