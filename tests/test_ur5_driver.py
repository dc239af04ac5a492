"""UR5 driver node end to end: the driver as a subprocess (--ros-args --params-file), the REAL ur-rtde client
inside it, the fake UR controller as another subprocess, and this test as a third rclpy node.
All tests share the fake controller's fixed ports, so they take a file lock (see fake_ur_process)."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fake_ur_process import (fake_stats, dashboard, fake_ur_ports_lock, ros_env, start_driver, start_fake_ur,
                             stop_process)

ROOT = Path(__file__).resolve().parents[1]
os.environ.update({k: v for k, v in ros_env().items() if k.startswith("ROS_")})  # this process too

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402
from amplify_ros.waiting import call_service  # noqa: E402

AXES = ["x", "y", "z", "rx", "ry", "rz", "gripper"]


class Probe:
    """The test's own rclpy node: publishes commands, calls services, keeps the latest status."""

    def __init__(self):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("ur5_driver_test_probe", context=self.context)
        self.pub = self.node.create_publisher(JointTrajectory, "/ur5/command", 10)
        self.status = None
        self.status_count = 0
        self.node.create_subscription(String, "/ur5/status", self._on_status, 10)
        self.enable_cli = self.node.create_client(SetBool, "/ur5/enable")
        self.reconnect_cli = self.node.create_client(Trigger, "/ur5/reconnect")
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_status(self, msg):
        self.status = json.loads(msg.data)
        self.status_count += 1

    def wait_status(self, predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.status is not None and predicate(self.status):
                return self.status
            time.sleep(0.05)
        raise AssertionError(f"status condition not met in {timeout} s; last status {self.status}")

    def call(self, client, request, timeout=15.0):
        return call_service(client, request, timeout)

    def enable(self, on=True):
        return self.call(self.enable_cli, SetBool.Request(data=on))

    def send(self, pose, gripper=0.0):
        msg = JointTrajectory()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.joint_names = AXES
        msg.points = [JointTrajectoryPoint(positions=[float(v) for v in pose] + [float(gripper)])]
        self.pub.publish(msg)

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture
def rig(tmp_path):
    """fake controller + driver factory + probe node; everything is stopped whatever happens."""
    procs = {}
    with fake_ur_ports_lock():
        procs["fake"] = start_fake_ur()
        probe = Probe()

        def driver(**overrides):
            procs["driver"] = start_driver(tmp_path, **overrides)
            probe.wait_status(lambda s: s["connected"], timeout=20)
            return procs["driver"]

        try:
            yield probe, driver, procs
        finally:
            probe.close()
            for name in ("driver", "fake"):
                if name in procs:
                    stop_process(procs[name], sig=signal.SIGINT if name == "driver" else signal.SIGTERM)
            print((tmp_path / "driver.log").read_text()[-3000:] if (tmp_path / "driver.log").exists() else "")


def current_pose():
    return np.array(fake_stats()["tcp_pose"])


def stream(probe, poses, rate=20.0):
    for pose in poses:
        probe.send(pose)
        time.sleep(1.0 / rate)


def test_nothing_moves_before_enable_then_circle_is_tracked(rig):
    probe, driver, _ = rig
    driver()
    start = current_pose()
    hold = [start + np.array([0.03, 0, 0, 0, 0, 0])] * 10
    stream(probe, hold)  # not enabled yet: must not move
    assert np.allclose(current_pose(), start, atol=1e-9)
    assert fake_stats()["counts"]["servoL"] == 0
    assert probe.enable().success
    # circle of radius 4 cm in the x-y plane, 6 s period, commanded at 20 Hz
    radius, period, rate = 0.04, 6.0, 20.0
    center = start - np.array([radius, 0, 0, 0, 0, 0])
    errors = []
    t0 = time.monotonic()
    for k in range(int(period * rate)):
        phase = 2 * np.pi * k / (period * rate)
        target = center + radius * np.array([np.cos(phase), np.sin(phase), 0, 0, 0, 0])
        probe.send(target)
        time.sleep(max(0.0, t0 + (k + 1) / rate - time.monotonic()))
        if k > 10:
            actual = current_pose()
            errors.append(np.linalg.norm(actual[:3] - target[:3]))
    mean_err, max_err = float(np.mean(errors)), float(np.max(errors))
    print(f"circle tracking error: mean {mean_err * 1000:.1f} mm, max {max_err * 1000:.1f} mm "
          f"(commanded-vs-actual, radius {radius * 100:.0f} cm, period {period} s)")
    assert mean_err < 0.01 and max_err < 0.02
    status = probe.wait_status(lambda s: s["streaming"])
    assert status["achieved_rate_hz"] >= 110
    assert fake_stats()["counts"]["servoL"] > 500


def test_dry_run_never_moves(rig):
    probe, driver, _ = rig
    driver(dry_run=True)
    start = current_pose()
    assert probe.enable().success
    stream(probe, [start + np.array([0.02, 0, 0, 0, 0, 0])] * 30)
    status = probe.wait_status(lambda s: s["streaming"] and s["dry_run"])
    assert status["enabled"]
    assert fake_stats()["counts"]["servoL"] == 0
    assert np.allclose(current_pose(), start, atol=1e-9)


def test_out_of_workspace_and_too_fast_are_clamped_or_rejected_and_counted(rig):
    probe, driver, _ = rig
    driver(violation_action="reject")
    start = current_pose()
    assert probe.enable().success
    far = start + np.array([0.3, 0, 0, 0, 0, 0])  # 30 cm step: beyond max_step_linear
    below = start.copy()
    below[2] = -0.2  # below the workspace floor
    nan = start.copy()
    nan[0] = np.nan
    for pose in (far, below, nan):
        probe.send(pose)
        time.sleep(0.05)
    status = probe.wait_status(lambda s: s["counts"]["rejected"] >= 3)
    assert status["counts"]["accepted"] == 0
    assert np.allclose(current_pose(), start, atol=1e-9)


def test_clamped_command_moves_only_to_the_limit(rig):
    probe, driver, _ = rig
    driver(violation_action="clamp", max_step_linear=0.02)
    start = current_pose()
    assert probe.enable().success
    stream(probe, [start + np.array([0.2, 0, 0, 0, 0, 0])] * 10)
    status = probe.wait_status(lambda s: s["counts"]["clamped"] >= 10)
    assert "clamped" in status["last_violation"]
    moved = np.linalg.norm(current_pose()[:3] - start[:3])
    assert 0.005 < moved < 0.2  # moved, but only by clamped steps, never to the 20 cm target


def test_watchdog_stops_arm_when_commands_stop(rig):
    probe, driver, _ = rig
    driver(watchdog_timeout_ms=150)
    start = current_pose()
    assert probe.enable().success
    poses = [start + np.array([0.001 * k, 0, 0, 0, 0, 0]) for k in range(20)]
    stream(probe, poses)
    t_last = time.monotonic()
    status = probe.wait_status(lambda s: s["stop_reason"].startswith("watchdog"), timeout=3)
    stopped_after = time.monotonic() - t_last
    assert fake_stats()["counts"]["servoStop"] >= 1
    assert stopped_after < 0.15 + 0.4  # watchdog + status period + transport
    time.sleep(0.3)
    assert np.max(np.abs(fake_stats()["qd"])) < 1e-6
    assert not status["streaming"]


def test_protective_stop_stops_streaming_and_is_reported(rig):
    probe, driver, _ = rig
    driver()
    start = current_pose()
    assert probe.enable().success
    stream(probe, [start + np.array([0.001 * k, 0, 0, 0, 0, 0]) for k in range(10)])
    dashboard("fake protective stop")
    status = probe.wait_status(lambda s: s["safety_mode"] == 3 and not s["enabled"])
    assert "safety stop" in status["stop_reason"]
    sent = fake_stats()["counts"]["servoL"]
    stream(probe, [start] * 10)
    assert fake_stats()["counts"]["servoL"] == sent  # nothing streamed after the stop
    assert not probe.enable().success  # cannot re-enable during a protective stop



def test_emergency_stop_stops_streaming_and_is_reported(rig):
    probe, driver, _ = rig
    driver()
    start = current_pose()
    assert probe.enable().success
    stream(probe, [start + np.array([0.001 * k, 0, 0, 0, 0, 0]) for k in range(10)])
    dashboard("fake emergency stop")
    status = probe.wait_status(lambda s: s["safety_mode"] not in (1, 2) and not s["enabled"])
    assert "safety stop" in status["stop_reason"]
    sent = fake_stats()["counts"]["servoL"]
    stream(probe, [start] * 10)
    assert fake_stats()["counts"]["servoL"] == sent
    assert not probe.enable().success


def test_action_chunks_are_ensembled_and_followed(rig):
    probe, driver, _ = rig
    driver(input_mode="action_chunk", chunk_size=4)
    chunk_pub = probe.node.create_publisher(JointTrajectory, "/policy/action_chunk", 10)
    start = current_pose()
    assert probe.enable().success
    for k in range(30):  # 1.5 s of chunks at 20 Hz, each 4 waypoints moving +x at 2 cm/s
        msg = JointTrajectory()
        msg.joint_names = AXES
        for j in range(4):
            pose = start + np.array([0.001 * (k + j), 0, 0, 0, 0, 0])
            msg.points.append(JointTrajectoryPoint(positions=[float(v) for v in pose] + [0.0]))
        chunk_pub.publish(msg)
        time.sleep(0.05)
    moved = current_pose()[0] - start[0]
    assert 0.01 < moved < 0.04  # followed the ensembled +x motion (about 3 cm in 1.5 s)
    status = probe.wait_status(lambda s: s["counts"]["accepted"] > 10)
    assert status["counts"]["rejected"] == 0
    bad = JointTrajectory(joint_names=AXES, points=[JointTrajectoryPoint(positions=[0.0] * 7)])  # 1 point, not 4
    chunk_pub.publish(bad)
    probe.wait_status(lambda s: s["counts"]["rejected"] == 1)


def child_pids(pid: int) -> set:
    """Live child processes of ``pid`` (the driver's robot process), from /proc."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(c) for c in (task / "children").read_text().split())
    return found


def test_controller_loss_is_reported_and_reconnect_works(rig):
    probe, driver, procs = rig
    driver_proc = driver(heartbeat_timeout_ms=300)
    start = current_pose()
    assert probe.enable().success
    stream(probe, [start + np.array([0.001 * k, 0, 0, 0, 0, 0]) for k in range(10)])
    old_workers = child_pids(driver_proc.pid)
    assert len(old_workers) == 1
    stop_process(procs["fake"], sig=signal.SIGKILL)  # the controller dies while the arm streams
    status = probe.wait_status(lambda s: not s["connected"] and s["stop_reason"].startswith("disconnected"),
                               timeout=10)
    assert not status["enabled"] and not status["streaming"]
    # the node is not frozen: status keeps coming at status_rate (10 Hz) while the robot is gone
    seen = probe.status_count
    time.sleep(1.0)
    assert probe.status_count - seen >= 5
    assert not (old_workers & child_pids(driver_proc.pid))  # the hung robot process was ended
    reply = probe.call(probe.reconnect_cli, Trigger.Request())
    assert not reply.success and "not reachable" in reply.message  # controller still gone
    time.sleep(1.0)
    assert driver_proc.poll() is None  # still alive
    assert not child_pids(driver_proc.pid)  # and no robot process restarting by itself (no crash loop)
    procs["fake"] = start_fake_ur()
    assert probe.call(probe.reconnect_cli, Trigger.Request()).success
    probe.wait_status(lambda s: s["connected"] and s["program_running"], timeout=10)
    start = current_pose()
    stream(probe, [start + np.array([0.002 * k, 0, 0, 0, 0, 0]) for k in range(5)])
    assert fake_stats()["counts"]["servoL"] == 0  # reconnecting does not enable motion
    assert probe.enable().success
    stream(probe, [start + np.array([0.002 * k, 0, 0, 0, 0, 0]) for k in range(20)])
    assert fake_stats()["counts"]["servoL"] > 50
    assert current_pose()[0] - start[0] > 0.01  # motion resumed


def test_hung_robot_process_is_killed_by_heartbeat_and_reconnect_works(rig):
    """A robot process frozen inside ur-rtde (simulated with SIGSTOP) must not freeze the node."""
    probe, driver, _ = rig
    driver_proc = driver(heartbeat_timeout_ms=300)
    (worker,) = child_pids(driver_proc.pid)
    os.kill(worker, signal.SIGSTOP)
    status = probe.wait_status(lambda s: not s["connected"] and "heartbeat_timeout" in s["stop_reason"], timeout=5)
    assert status["stop_reason"].startswith("disconnected")
    assert worker not in child_pids(driver_proc.pid)  # killed, not left stopped
    assert probe.call(probe.reconnect_cli, Trigger.Request()).success
    probe.wait_status(lambda s: s["connected"] and s["program_running"], timeout=10)
    assert driver_proc.poll() is None


def test_sigint_stops_arm_and_exits_cleanly(rig):
    probe, driver, procs = rig
    driver_proc = driver()
    start = current_pose()
    assert probe.enable().success
    stream(probe, [start + np.array([0.001 * k, 0, 0, 0, 0, 0]) for k in range(10)])
    before = fake_stats()["counts"]["servoStop"]
    driver_proc.send_signal(signal.SIGINT)
    assert driver_proc.wait(10) == 0
    counts = fake_stats()["counts"]
    assert counts["servoStop"] > before and counts["stopScript"] >= 1
