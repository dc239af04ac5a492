"""The real ROS 2 Jazzy launch frontend driven as on the robot: the package built by ``colcon build`` into an
``install/`` tree, ``AMENT_PREFIX_PATH`` from it, and ``ros2launch.api.launch_a_launch_file`` (what ``ros2 launch``
runs) in a process of its own, stopped with SIGINT as a person stops ``ros2 launch`` with Ctrl-C. Used by the
launch tests (tests/ros_launch.py) and ``amplify-fake-bringup`` (training/fake_bringup.py).

The launch packages have no PyPI wheels; ``scripts/setup_env.sh`` installs them from ``../shared/ros-launch/wheels``
when that folder exists.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

from training.ros_processes import ros_env

ROOT = Path(__file__).resolve().parents[1]

LAUNCHER = """
import sys
from ros2launch.api import launch_a_launch_file
sys.exit(launch_a_launch_file(launch_file_path=sys.argv[1], launch_file_arguments=sys.argv[2:], noninteractive=True))
"""


def colcon_build(workspace: Path) -> Path:
    """``colcon build`` of this package into ``workspace``; returns the package's install prefix."""
    colcon = Path(sys.executable).parent / "colcon"
    workspace.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([str(colcon), "build", "--base-paths", str(ROOT), "--build-base", str(workspace / "build"),
                             "--install-base", str(workspace / "install"), "--event-handlers", "console_direct-"],
                            cwd=workspace, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"colcon build in {workspace} failed:\n{result.stdout}{result.stderr}")
    prefix = workspace / "install" / "amplify_ros"
    if not (prefix / "share" / "amplify_ros" / "package.xml").is_file():
        raise RuntimeError(f"colcon build in {workspace}: no {prefix}/share/amplify_ros/package.xml")
    return prefix


def site_packages(prefix: Path) -> Path:
    return prefix / Path(sysconfig.get_path("purelib")).relative_to(sysconfig.get_path("data"))


def installed_env(prefix: Path) -> dict:
    """The environment of a sourced workspace: the installed package first on the Python path (never the source
    tree), ``AMENT_PREFIX_PATH`` from the install, and a ``PATH`` without this venv's ``bin/`` (console scripts
    live in ``lib/amplify_ros/`` of the install, as on the robot)."""
    env = ros_env()
    env["PYTHONPATH"] = str(site_packages(prefix))
    env["AMENT_PREFIX_PATH"] = os.pathsep.join([str(prefix), sys.prefix])
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin)
    env.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)  # the launch files set it
    return env


def start_launch(prefix: Path, launch_file: str, arguments: dict[str, str], log_path: Path) -> subprocess.Popen:
    """``ros2 launch amplify_ros <launch_file> k:=v ...`` from the install at ``prefix``; output in ``log_path``."""
    path = prefix / "share" / "amplify_ros" / "launch" / launch_file
    argv = [sys.executable, "-c", LAUNCHER, str(path), *(f"{k}:={v}" for k, v in arguments.items())]
    log = open(log_path, "w")
    return subprocess.Popen(argv, env=installed_env(prefix), stdout=log, stderr=subprocess.STDOUT,
                            cwd=log_path.parent, start_new_session=True)


def stop_launch(proc: subprocess.Popen, timeout: float = 30.0) -> int:
    """Ctrl-C: SIGINT to the launcher, which stops its processes; killed (with its group) if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return proc.returncode
