#!/usr/bin/env bash
# Installs klingflow from this checkout with its dependencies pinned by constraints.txt, into
# the given Python interpreter (a virtual environment's, or the system's), then checks that the
# installed command-line starts.
#
#   scripts/install-python.sh PYTHON [--editable] [--no-cache] [--check] [EXTRA...]
#
#   --editable   an editable install (pip install -e), for development
#   --no-cache   no pip cache (keeps the Docker image small)
#   --check      print the commands it would run, install nothing, exit 0
#   EXTRA        optional dependency groups of pyproject.toml, e.g. dev
#
# The Dockerfile runs `install-python.sh python3 --no-cache` (the image's Python, non-editable);
# scripts/setup.sh runs `install-python.sh .venv/bin/python --editable dev`.
set -euo pipefail
cd "$(dirname "$0")/.."

usage="usage: install-python.sh PYTHON [--editable] [--no-cache] [--check] [EXTRA...]"
[ $# -ge 1 ] || {
  echo "install-python: $usage" >&2
  exit 64
}
python="$1"
shift
editable=0 check=0 extras=() pip_opts=(-q --disable-pip-version-check)
for arg in "$@"; do
  case "$arg" in
    --editable) editable=1 ;;
    --no-cache) pip_opts+=(--no-cache-dir) ;;
    --check) check=1 ;;
    -*)
      echo "install-python: unknown option '$arg' ($usage)" >&2
      exit 64
      ;;
    *) extras+=("$arg") ;;
  esac
done

target="."
if [ ${#extras[@]} -gt 0 ]; then
  target=".[$(
    IFS=,
    echo "${extras[*]}"
  )]"
fi
install=("$python" -m pip install "${pip_opts[@]}" -c constraints.txt)
if [ "$editable" -eq 1 ]; then
  install+=(-e "$target")
else
  install+=("$target")
fi
upgrade_pip=("$python" -m pip install "${pip_opts[@]}" --upgrade pip)

if [ "$check" -eq 1 ]; then
  echo "install-python: would run: ${upgrade_pip[*]}"
  echo "install-python: would run: ${install[*]}"
  echo "install-python: would run: klingflow --help (from /, the installed console script)"
  exit 0
fi

"${upgrade_pip[@]}" >/dev/null
"${install[@]}"

# The installed console script (pip puts it in the interpreter's scripts directory), run from /
# so that nothing of the checkout is imported instead of what was installed.
bindir="$("$python" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
if ! (cd / && "$bindir/klingflow" --help >/dev/null); then
  echo "install-python: klingflow was installed with $python, but '$bindir/klingflow --help' fails" >&2
  exit 1
fi
