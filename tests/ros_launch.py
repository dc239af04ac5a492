"""The real ROS 2 Jazzy launch frontend for the tests (training/ros_launch.py: colcon build, the install's
environment, ``ros2launch.api`` in its own process, SIGINT), plus what only tests need: skipping where the frontend
is not installed, and the graph's node names."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # training/ is importable when pytest runs from elsewhere
from training.ros_launch import colcon_build, installed_env, start_launch, stop_launch  # noqa: E402,F401

WHEELS = ROOT.parent / "shared" / "ros-launch" / "wheels"


def require_launch_frontend() -> None:
    """Skip (saying why) where the real launch frontend is not installed."""
    try:
        import launch_ros  # noqa: F401
        import ros2launch  # noqa: F401
    except ImportError as e:
        pytest.skip(f"the real ROS 2 launch frontend is not installed ({e}); scripts/setup_env.sh installs it from "
                    f"{WHEELS} when that folder exists")


def node_names(node) -> list[str]:
    """Fully qualified names of every node in the graph, repeats kept (``ros2 node list``)."""
    return sorted((ns.rstrip("/") + "/" + name) for name, ns in node.get_node_names_and_namespaces())
