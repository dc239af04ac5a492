#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install everything the project needs.
#
#   bash scripts/setup_env.sh            # base stack + dev tools
#   AMPLIFY_VENV=/path/to/venv bash scripts/setup_env.sh
#
# Idempotent: a stamp holding the hash of the requirement files makes a re-run a no-op (~0.1 s)
# until one of them changes. torch is installed first and pinned (torch==2.13.0): on these CPU
# machines that is a local CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${AMPLIFY_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
req="$root/requirements"

if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating virtual environment $venv"
  "$python" -m venv "$venv"
fi

stamp="$venv/.amplify_setup_stamp"
# the real ROS 2 launch frontend as wheels, where ../shared/ros-launch is beside the checkout (tests/ros_launch.py)
launch_wheels="$root/../shared/ros-launch/wheels"
want="$( (cat "$req"/base.txt "$req"/dev.txt "$req"/launch.txt "$req"/constraints.txt "$root/setup.py" "$root/setup.cfg"; \
          ls "$launch_wheels" 2>/dev/null) | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
echo "[setup] installing torch (pinned, CPU build on machines without CUDA)"
"${pip[@]}" install -c "$req/constraints.txt" "torch==2.13.0"
echo "[setup] installing the stack (requirements/base.txt + dev.txt, constrained by constraints.txt)"
"${pip[@]}" install -c "$req/constraints.txt" -r "$req/base.txt" -r "$req/dev.txt"
if [ -d "$launch_wheels" ]; then
  echo "[setup] installing the ROS 2 Jazzy launch frontend from $launch_wheels"
  "${pip[@]}" install -r "$req/launch.txt"
  "${pip[@]}" install --no-deps --no-index --find-links "$launch_wheels" \
    launch launch-xml launch-yaml launch-ros ros2launch composition-interfaces-standin
else
  echo "[setup] $launch_wheels not found: the launch-file tests will skip"
fi
echo "[setup] installing amplify_ros in editable mode"
"${pip[@]}" install --no-deps --no-build-isolation -e "$root"
"$venv/bin/python" -c "import torch, rclpy, cv2, h5py; assert torch.__version__.startswith('2.13.0'), torch.__version__"
echo "$want" > "$stamp"
echo "[setup] done: $venv"
