"""Test helpers around the fake UR controller: the shared client plus this run's ROS environment."""

from __future__ import annotations

from amplify_ros.fake_ur.client import (answers, dashboard, fake_stats, ports_lock, start_fake_ur,  # noqa: F401
                                        stop_process, wait_for_free_ports)
from training.ros_processes import ros_env  # noqa: F401

fake_ur_ports_lock = ports_lock  # the name the tests use
