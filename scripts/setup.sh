#!/usr/bin/env bash
# Installs what klingflow needs on a fresh Debian machine, idempotently:
#   - ffmpeg/ffprobe, the DejaVu fonts and the PostgreSQL server (apt-get, as root or through
#     sudo) when missing: scripts/install-system.sh --dev,
#   - a virtual environment in .venv with klingflow and its pinned dependencies:
#     scripts/install-python.sh, skipped while pyproject.toml and constraints.txt are unchanged,
#   - the Prefect home ($PREFECT_HOME, default ~/.prefect) prepared for `klingflow run`: its
#     database created and migrated and the Prefect block types registered, by starting the Prefect
#     temporary server once. Otherwise the first run after set-up pays for it (~10 s more than
#     later runs). Skipped while the home is prepared for these dependencies.
# The Dockerfile runs the same two install scripts, so every CI run exercises the image's install steps.
# Called by scripts/demo.sh and scripts/test.sh; safe to run again (it skips what is done).
# `scripts/setup.sh --prefect-home` prepares only the Prefect home (the .venv must exist).
set -euo pipefail
cd "$(dirname "$0")/.."

want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"

prepare_prefect_home() {
  local home="${PREFECT_HOME:-$HOME/.prefect}"
  local done="$home/.klingflow-prepared"
  if [ "$(cat "$done" 2>/dev/null)" = "$want" ] && [ -f "$home/prefect.db" ]; then
    return
  fi
  echo "setup: preparing the Prefect home in $home (database and block types)" >&2
  mkdir -p "$home"
  # The same server `klingflow run` starts (the Prefect ephemeral one), started once and stopped.
  PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_LOGGING_LEVEL=WARNING \
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=300 .venv/bin/python -c \
    "from prefect.server.api.server import SubprocessASGIServer as S; s = S(); s.start(); s.stop()"
  echo "$want" >"$done"
}

if [ "${1:-}" = "--prefect-home" ]; then
  prepare_prefect_home
  exit 0
fi

scripts/install-system.sh --dev

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.klingflow-installed
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python dependencies into .venv (pinned by constraints.txt)" >&2
  scripts/install-python.sh .venv/bin/python --editable dev
  echo "$want" >"$stamp"
fi
prepare_prefect_home
