#!/usr/bin/env bash
# The Debian packages klingflow needs, each installed with apt-get only when missing (as root, or
# through sudo): ffmpeg (ffmpeg and ffprobe) and fonts-dejavu-core (the sandbox's captions), which
# is what the Docker image holds; with --dev also postgresql (the server that the scale-out
# integration test starts with initdb) and chromium (the review page's browser test).
#
#   scripts/install-system.sh [--dev] [--clean] [--check]
#
#   --dev     also the development packages (postgresql, chromium)
#   --clean   after installing, empty apt's package lists and cache (the Dockerfile uses it;
#             KLINGFLOW_APT_CLEAN=1 does the same)
#   --check   print what is present and what would be installed, install nothing, exit 0
#
# Run by the Dockerfile and by scripts/setup.sh (with --dev), so CI runs the image's steps.
set -euo pipefail

dev=0 check=0 clean="${KLINGFLOW_APT_CLEAN:-0}"
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    --clean) clean=1 ;;
    --check) check=1 ;;
    -h | --help)
      sed -n '2,14p' "$0" | cut -c3-
      exit 0
      ;;
    *)
      echo "install-system: unknown option '$arg' (usage: install-system.sh [--dev] [--clean] [--check])" >&2
      exit 64
      ;;
  esac
done

# Each probe succeeds when its package is already there.
has_ffmpeg() { command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1; }
has_fonts() { [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; }
has_postgresql() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }
has_chromium() { command -v chromium >/dev/null 2>&1; }

packages=(ffmpeg fonts-dejavu-core)
probes=(has_ffmpeg has_fonts)
if [ "$dev" -eq 1 ]; then
  packages+=(postgresql chromium)
  probes+=(has_postgresql has_chromium)
fi

missing() {
  local i
  for i in "${!packages[@]}"; do
    "${probes[$i]}" || echo "${packages[$i]}"
  done
}
mapfile -t need < <(missing)

if [ "$check" -eq 1 ]; then
  for pkg in "${packages[@]}"; do
    if [[ " ${need[*]} " == *" $pkg "* ]]; then
      echo "install-system: $pkg: missing"
    else
      echo "install-system: $pkg: present"
    fi
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "install-system: would run: apt-get update; apt-get install -y --no-install-recommends ${need[*]}"
  else
    echo "install-system: nothing to install"
  fi
  exit 0
fi

[ ${#need[@]} -gt 0 ] || exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "setup: ${need[*]} missing; run as root or install sudo" >&2
    exit 1
  fi
  sudo="sudo"
fi
echo "setup: installing ${need[*]} with apt-get" >&2
$sudo apt-get update -qq
# env, so that DEBIAN_FRONTEND also reaches apt-get through sudo (which resets the environment).
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
if [ "$clean" = 1 ]; then
  $sudo apt-get clean
  $sudo rm -rf /var/lib/apt/lists/*
fi

mapfile -t still < <(missing)
if [ ${#still[@]} -gt 0 ]; then
  echo "setup: apt-get installed ${need[*]}, yet ${still[*]} still missing" >&2
  exit 1
fi
