#!/usr/bin/env bash
# Set up the project's environment (if needed) and run the whole test suite.
#
#   bash scripts/test.sh                 # the suite CI runs (slow tests excluded)
#   bash scripts/test.sh -m slow         # only the slow tests
#   bash scripts/test.sh -m ''           # everything
#   bash scripts/test.sh tests/test_tracking.py -k naive    # any pytest arguments
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
# the LIBERO extra too, so its smoke tests run (~1.5 min once; AMPLIFY_SKIP_LIBERO=1 skips them instead)
if [ "${AMPLIFY_SKIP_LIBERO:-0}" != "1" ]; then
  bash "$root/scripts/setup_libero.sh"
fi
venv="${AMPLIFY_VENV:-$root/.venv}"
cd "$root"
# a fresh ROS domain per run keeps parallel runs and other machines' nodes out of the tests
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 100 ))}"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export MUJOCO_GL="${MUJOCO_GL:-egl}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if [ "$#" -eq 0 ]; then
  set -- -m "not slow"
fi
exec "$venv/bin/python" -m pytest "$@"
