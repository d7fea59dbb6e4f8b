#!/usr/bin/env bash
# Installs what klingflow needs on a fresh Debian machine, idempotently:
#   - ffmpeg/ffprobe, the DejaVu fonts and the PostgreSQL server (apt-get, as root or through
#     sudo) when missing: scripts/install-system.sh --dev,
#   - a virtual environment in .venv with klingflow and its pinned dependencies:
#     scripts/install-python.sh, skipped while pyproject.toml and constraints.txt are unchanged.
# The Dockerfile runs the same two scripts, so every CI run exercises the image's install steps.
# Called by scripts/demo.sh and scripts/test.sh; safe to run again (it skips what is done).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-system.sh --dev

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.klingflow-installed
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python dependencies into .venv (pinned by constraints.txt)" >&2
  scripts/install-python.sh .venv/bin/python --editable dev
  echo "$want" >"$stamp"
fi
