"""Start the project's rclpy nodes as separate processes, for the benchmarks and the tests.

Single nodes, each in its own process, where a test or benchmark needs its own parameters per node (the launch files
themselves run through the real ROS 2 launch frontend: training/ros_launch.py; ``launch_testing`` is not
installable here): every process gets this run's ROS_DOMAIN_ID, localhost-only discovery and one math thread, so two
runs on one machine never see each other's topics.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from amplify_ros.fake_ur.client import stop_process  # noqa: F401  (re-exported: one way to stop a process)

ROOT = Path(__file__).resolve().parents[1]


def ros_env(extra: dict | None = None) -> dict:
    """This run's environment: its own ROS domain (kept when set), localhost discovery, unbuffered logs, the
    package's Fast DDS profile (config/fastdds.xml) unless one is set."""
    env = dict(os.environ)
    env.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(ROOT / "config" / "fastdds.xml"))  # what the launch files set
    env.update(extra or {})
    return env


def use_ros_env_here() -> None:
    """Put this process (e.g. its probe node) in the same ROS domain as the processes it starts."""
    os.environ.update({k: v for k, v in ros_env().items() if k.startswith("ROS_")})


def node_argv(module: str, params_file: Path | None = None, **params) -> list[str]:
    """Command line of ``python -m <module> --ros-args [--params-file F] -p k:=v ...``."""
    argv = [sys.executable, "-m", module, "--ros-args"]
    if params_file:
        argv += ["--params-file", str(params_file)]
    for key, value in params.items():
        argv += ["-p", f"{key}:={value if isinstance(value, str) else json.dumps(value)}"]
    return argv


def start_process(argv: list[str], log_path: Path, env: dict | None = None) -> subprocess.Popen:
    """Start a process with stdout and stderr in ``log_path``."""
    log = open(log_path, "w")
    return subprocess.Popen(argv, env=env or ros_env(), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
