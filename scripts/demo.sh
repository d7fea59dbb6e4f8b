#!/usr/bin/env bash
# The main job on a fresh machine: set up, then check and price every example render script
# (nothing is spent: `plan` never submits). Extra arguments are ignored.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
for script in configs/*.yaml; do
  echo "== klingflow validate $script"
  klingflow validate "$script"
  echo "== klingflow plan $script"
  klingflow plan "$script"
  echo
done
