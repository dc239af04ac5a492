"""Test helpers around the fake UR controller: the shared client plus this run's ROS environment."""

from __future__ import annotations

import json
import subprocess
import sys

from amplify_ros.fake_ur.client import (answers, dashboard, fake_stats, ports_lock, start_fake_ur,  # noqa: F401
                                        stop_process, wait_for_free_ports)
from training.ros_processes import ROOT, ros_env

fake_ur_ports_lock = ports_lock  # the name the tests use


def start_driver(tmp_path, **overrides):
    params = tmp_path / "ur5_driver.yaml"
    text = (ROOT / "config" / "ur5_driver.yaml").read_text()
    for key, value in overrides.items():
        lines = [ln for ln in text.splitlines() if not ln.strip().startswith(f"{key}:")]
        text = "\n".join(lines) + f"\n    {key}: {json.dumps(value)}\n"
    params.write_text(text)
    log = open(tmp_path / "driver.log", "w")
    return subprocess.Popen([sys.executable, "-m", "amplify_ros.ur5_driver_node", "--ros-args", "--params-file",
                             str(params)], env=ros_env(), stdout=log, stderr=subprocess.STDOUT)
