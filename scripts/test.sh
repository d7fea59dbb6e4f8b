#!/usr/bin/env bash
# The whole check, as CI runs it: set-up, lint, format, types, declared imports, then the test suite.
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
# The tests and benchmarks too (strict); scripts/ on the path for the benchmarks' own helpers.
MYPYPATH=scripts mypy --explicit-package-bases tests scripts
echo "== deptry (every third-party import is a declared dependency)"
deptry .
echo "== duplicate code (pylint: six or more similar lines in two places)"
pylint --disable=all --enable=duplicate-code --min-similarity-lines=6 --score=n pipeline flows scripts tests
echo "== pytest"
# Two test processes (pytest-xdist): the suite waits on servers, schedules and leases as much as
# it computes. Tests sharing a module-wide stack are grouped (xdist_group) into one process.
# KLINGFLOW_TEST_PROCESSES=0 runs everything in this one.
pytest -n "${KLINGFLOW_TEST_PROCESSES:-2}" --dist loadgroup --durations=25 "$@"
