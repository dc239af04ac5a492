"""The real ROS 2 Jazzy launch frontend for the tests, as on the robot: the package built by ``colcon build`` into an
``install/`` tree, ``AMENT_PREFIX_PATH`` from it, and ``ros2launch.api.launch_a_launch_file`` (what ``ros2 launch``
runs) in a process of its own, stopped with SIGINT as a person stops ``ros2 launch`` with Ctrl-C.

The launch packages have no PyPI wheels; ``scripts/setup_env.sh`` installs them from ``../shared/ros-launch/wheels``
when that folder exists. Without them the tests that need them skip and say why.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT.parent / "shared" / "ros-launch" / "wheels"

LAUNCHER = """
import sys
from ros2launch.api import launch_a_launch_file
sys.exit(launch_a_launch_file(launch_file_path=sys.argv[1], launch_file_arguments=sys.argv[2:], noninteractive=True))
"""


def require_launch_frontend() -> None:
    """Skip (saying why) where the real launch frontend is not installed."""
    try:
        import launch_ros  # noqa: F401
        import ros2launch  # noqa: F401
    except ImportError as e:
        pytest.skip(f"the real ROS 2 launch frontend is not installed ({e}); scripts/setup_env.sh installs it from "
                    f"{WHEELS} when that folder exists")


def colcon_build(workspace: Path) -> Path:
    """``colcon build`` of this package into ``workspace``; returns the package's install prefix."""
    colcon = Path(sys.executable).parent / "colcon"
    result = subprocess.run([str(colcon), "build", "--base-paths", str(ROOT), "--build-base", str(workspace / "build"),
                             "--install-base", str(workspace / "install"), "--event-handlers", "console_direct-"],
                            cwd=workspace, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = workspace / "install" / "amplify_ros"
    assert (prefix / "share" / "amplify_ros" / "package.xml").is_file()
    return prefix


def site_packages(prefix: Path) -> Path:
    return prefix / Path(sysconfig.get_path("purelib")).relative_to(sysconfig.get_path("data"))


def installed_env(prefix: Path, extra: dict | None = None) -> dict:
    """The environment of a sourced workspace: the installed package first on the Python path (never the source
    tree), ``AMENT_PREFIX_PATH`` from the install, and a ``PATH`` without this venv's ``bin/`` (console scripts
    live in ``lib/amplify_ros/`` of the install, as on the robot)."""
    from training.ros_processes import ros_env

    env = ros_env(extra)
    env["PYTHONPATH"] = str(site_packages(prefix))
    env["AMENT_PREFIX_PATH"] = os.pathsep.join([str(prefix), sys.prefix])
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin)
    env.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)  # the launch files set it
    return env


def start_launch(prefix: Path, launch_file: str, arguments: dict[str, str], log_path: Path,
                 cwd: Path | None = None) -> subprocess.Popen:
    """``ros2 launch amplify_ros <launch_file> k:=v ...`` from the install at ``prefix``; output in ``log_path``."""
    path = prefix / "share" / "amplify_ros" / "launch" / launch_file
    argv = [sys.executable, "-c", LAUNCHER, str(path), *(f"{k}:={v}" for k, v in arguments.items())]
    log = open(log_path, "w")
    return subprocess.Popen(argv, env=installed_env(prefix), stdout=log, stderr=subprocess.STDOUT,
                            cwd=cwd or log_path.parent, start_new_session=True)


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


def node_names(node) -> list[str]:
    """Fully qualified names of every node in the graph, repeats kept (``ros2 node list``)."""
    return sorted((ns.rstrip("/") + "/" + name) for name, ns in node.get_node_names_and_namespaces())
