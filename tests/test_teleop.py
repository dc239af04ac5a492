"""Teleoperation: key -> target arithmetic, and the real teleop node driving the fake UR through the driver."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from amplify_ros.teleop_node import apply_key, limit_lead
from fake_ur_process import fake_stats, fake_ur_ports_lock, start_driver, start_fake_ur, stop_process
from ros_processes import ROOT, Probe, ros_env

pytest.importorskip("rclpy")
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402


def test_keys_move_the_target_in_the_base_frame():
    pose = np.array([0.1, -0.4, 0.3, 0.0, 3.0, 0.0])
    np.testing.assert_allclose(apply_key(pose, "w", 0.005, 0.05) - pose, [0.005, 0, 0, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(apply_key(pose, "d", 0.005, 0.05) - pose, [0, -0.005, 0, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(apply_key(pose, "r", 0.005, 0.05) - pose, [0, 0, 0.005, 0, 0, 0], atol=1e-12)
    turned = apply_key(pose, "u", 0.005, 0.05)
    np.testing.assert_allclose(turned[:3], pose[:3])
    delta = Rotation.from_rotvec(turned[3:]) * Rotation.from_rotvec(pose[3:]).inv()  # applied on the left: base frame
    np.testing.assert_allclose(delta.as_rotvec(), [0, 0, 0.05], atol=1e-9)
    assert np.array_equal(apply_key(pose, "x", 0.005, 0.05), pose)  # not a motion key
    np.testing.assert_allclose(limit_lead(np.array([1.0, 0, 0, 0, 0, 0]), np.zeros(6), 0.05)[:3], [0.05, 0, 0])


class RecorderStandIn:
    """Answers /recorder/* like the recorder would and remembers the calls."""

    def __init__(self, probe):
        self.calls = []
        node = probe.node
        node.create_service(Trigger, "/recorder/start", lambda req, res: self._answer("start", res))
        node.create_service(SetBool, "/recorder/stop", lambda req, res: self._answer(f"stop {req.data}", res))
        node.create_service(Trigger, "/recorder/discard", lambda req, res: self._answer("discard", res))

    def _answer(self, what, res):
        self.calls.append(what)
        res.success, res.message = True, what
        return res


def test_keys_drive_the_arm_through_the_driver_and_call_the_recorder(tmp_path):
    procs = {}
    with fake_ur_ports_lock():
        procs["fake"] = start_fake_ur()
        probe = Probe("teleop_probe")
        try:
            recorder = RecorderStandIn(probe)
            probe.record(String, "/ur5/status")
            procs["driver"] = start_driver(tmp_path)
            probe.wait_for(lambda: [s for _, _, s in probe.get("/ur5/status") if '"connected": true' in s.data], 20,
                           "the driver to connect")
            log = open(tmp_path / "teleop.log", "w")
            procs["teleop"] = subprocess.Popen([sys.executable, "-m", "amplify_ros.teleop_node"], stdin=subprocess.PIPE,
                                               stdout=log, stderr=subprocess.STDOUT, env=ros_env(), cwd=ROOT)
            probe.wait_for(lambda: "target starts at the measured pose" in (tmp_path / "teleop.log").read_text(), 20,
                           "the teleop node to take the measured pose")
            keys = procs["teleop"].stdin

            def press(text, interval=0.03):
                for ch in text:
                    keys.write(ch.encode())
                    keys.flush()
                    time.sleep(interval)

            start = np.array(fake_stats()["tcp_pose"])
            assert probe.call(SetBool, "/ur5/enable", SetBool.Request(data=True)).success
            press("d" * 8)  # -y, 8 steps of 5 mm
            time.sleep(1.0)
            moved = np.array(fake_stats()["tcp_pose"]) - start
            assert moved[1] == pytest.approx(-0.040, abs=0.004) and abs(moved[0]) < 0.002 and abs(moved[2]) < 0.002
            press(" ")  # close the gripper: the driver sets the tool output
            probe.wait_for(lambda: fake_stats()["digital_out"] & (1 << 16), 5, "the tool output 0 (gripper)", poll=0.1)
            press("123" + "0", interval=0.3)
            probe.wait_for(lambda: len(recorder.calls) == 4, 10, "the recorder calls")
            assert recorder.calls == ["start", "stop True", "stop False", "discard"]
            press("Q")
            assert procs["teleop"].wait(10) == 0  # quits cleanly
            held = np.array(fake_stats()["tcp_pose"])
            time.sleep(0.8)
            assert np.abs(np.array(fake_stats()["tcp_pose"]) - held).max() < 1e-4  # commands stopped: the arm stays
            probe.wait_for(lambda: [s for _, _, s in probe.get("/ur5/status") if "watchdog" in s.data], 5,
                           "the driver's watchdog stop")
        finally:
            probe.close()
            for name in ("teleop", "driver", "fake"):
                if name in procs:
                    stop_process(procs[name], sig=signal.SIGINT if name != "fake" else signal.SIGTERM)
            print((tmp_path / "teleop.log").read_text()[-3000:] if (tmp_path / "teleop.log").exists() else "")
