#!/usr/bin/env bash
# Set up the project's environment (if needed) and run the main job on the embedded default.
#
#   bash scripts/main.sh                 # writes runs/main/
#   bash scripts/main.sh --help          # options of the main job
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
venv="${AMPLIFY_VENV:-$root/.venv}"
cd "$root"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$venv/bin/amplify-demo-tracks" "$@"
