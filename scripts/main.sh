#!/usr/bin/env bash
# Set up the project's environment (if needed) and run the main job on the embedded default.
#
#   bash scripts/main.sh                 # AMPLIFY vs BC on the workcell, writes runs/main_job/report.md
#   bash scripts/main.sh --quick         # every stage with tiny numbers, about a minute
#   bash scripts/main.sh --help          # options of the main job (amplify-main)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
venv="${AMPLIFY_VENV:-$root/.venv}"
cd "$root"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$venv/bin/amplify-main" "$@"
