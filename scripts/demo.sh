#!/usr/bin/env bash
# The main job on a fresh machine: set up, then render configs/weekly-campaign.yaml end to end on
# the built-in sandbox provider (free, offline): drafts of three variants, two finals chosen by
# quality checks, stitched masters with subtitles, contact sheets, manifests, an HTML report, all
# archived under ./renders. Running it again resumes the same run (nothing is bought twice).
# Another script: scripts/demo.sh configs/long-form-story.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
script="${1:-configs/weekly-campaign.yaml}"
klingflow validate "$script"
klingflow plan "$script"
klingflow run "$script" --provider sandbox
