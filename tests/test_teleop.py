"""Teleoperation: key / twist -> target arithmetic, and the real teleop node driving the fake UR through the driver,
from keys on its stdin and from a fake SpaceMouse (a FIFO delivering HID reports the way /dev/hidrawN does)."""

import contextlib
import fcntl
import os
import signal
import struct
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from scipy.spatial.transform import Rotation

from amplify_ros.spacemouse import find_spacemice
from amplify_ros.teleop_node import PARAMETERS, apply_key, apply_twist, limit_lead
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


def test_twist_moves_the_target_in_the_base_frame():
    pose = np.array([0.1, -0.4, 0.3, 0.0, 3.0, 0.0])
    moved = apply_twist(pose, np.array([0.1, -0.2, 0.05, 0, 0, 0]), 0.05)
    np.testing.assert_allclose(moved, pose + [0.005, -0.01, 0.0025, 0, 0, 0], atol=1e-12)
    turned = apply_twist(pose, np.array([0, 0, 0, 0.3, 0.0, -0.4]), 0.1)  # 0.05 rad about (0.6, 0, -0.8)
    np.testing.assert_allclose(turned[:3], pose[:3])
    delta = Rotation.from_rotvec(turned[3:]) * Rotation.from_rotvec(pose[3:]).inv()  # on the left: base frame
    np.testing.assert_allclose(delta.as_rotvec(), [0.03, 0, -0.04], atol=1e-9)
    np.testing.assert_array_equal(apply_twist(pose, np.zeros(6), 0.05), pose)


def test_shipped_config_lists_every_parameter_with_its_default():
    values = yaml.safe_load((ROOT / "config" / "teleop.yaml").read_text())["/**/teleop"]["ros__parameters"]
    assert values == {name: default for name, (default, _) in PARAMETERS.items()}


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


@contextlib.contextmanager
def teleop_session(tmp_path, *teleop_args):
    """Fake UR, a connected driver, a recorder stand-in, and the teleop node in its own process (stdin a pipe),
    yielded once the node has taken the measured pose. Everything is stopped afterwards."""
    procs = {}
    log_path = tmp_path / "teleop.log"
    with fake_ur_ports_lock():
        procs["fake"] = start_fake_ur()
        probe = Probe("teleop_probe")
        try:
            recorder = RecorderStandIn(probe)
            probe.record(String, "/ur5/status")
            procs["driver"] = start_driver(tmp_path)
            probe.wait_for(lambda: [s for _, _, s in probe.get("/ur5/status") if '"connected": true' in s.data], 20,
                           "the driver to connect")
            with open(log_path, "w") as log:
                procs["teleop"] = subprocess.Popen([sys.executable, "-m", "amplify_ros.teleop_node", *teleop_args],
                                                   stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                                   env=ros_env(), cwd=ROOT)
            probe.wait_for(lambda: "target starts at the measured pose" in log_path.read_text(), 20,
                           "the teleop node to take the measured pose")
            yield SimpleNamespace(teleop=procs["teleop"], probe=probe, recorder=recorder, log=log_path)
        finally:
            probe.close()
            for name in ("teleop", "driver", "fake"):
                if name in procs:
                    stop_process(procs[name], sig=signal.SIGINT if name != "fake" else signal.SIGTERM)
            print(log_path.read_text()[-3000:] if log_path.exists() else "")


def tcp() -> np.ndarray:
    return np.array(fake_stats()["tcp_pose"])


def watchdog_stops(probe, since: float) -> list:
    return [s for t, _, s in probe.get("/ur5/status") if t > since and "watchdog" in s.data]


def test_keys_drive_the_arm_through_the_driver_and_call_the_recorder(tmp_path):
    with teleop_session(tmp_path) as session:
        probe, keys = session.probe, session.teleop.stdin

        def press(text, interval=0.03):
            for ch in text:
                keys.write(ch.encode())
                keys.flush()
                time.sleep(interval)

        start = tcp()
        assert probe.call(SetBool, "/ur5/enable", SetBool.Request(data=True)).success
        press("d" * 8)  # -y, 8 steps of 5 mm
        time.sleep(1.0)
        moved = tcp() - start
        assert moved[1] == pytest.approx(-0.040, abs=0.004) and abs(moved[0]) < 0.002 and abs(moved[2]) < 0.002
        press(" ")  # close the gripper: the driver sets the tool output
        probe.wait_for(lambda: fake_stats()["digital_out"] & (1 << 16), 5, "the tool output 0 (gripper)", poll=0.1)
        press("123" + "0", interval=0.3)
        probe.wait_for(lambda: len(session.recorder.calls) == 4, 10, "the recorder calls")
        assert session.recorder.calls == ["start", "stop True", "stop False", "discard"]
        press("Q")
        assert session.teleop.wait(10) == 0  # quits cleanly
        held = tcp()
        time.sleep(0.8)
        assert np.abs(tcp() - held).max() < 1e-4  # commands stopped: the arm stays
        probe.wait_for(lambda: watchdog_stops(probe, 0.0), 5, "the driver's watchdog stop")


class FakeSpaceMouse:
    """A FIFO standing in for /dev/hidrawN. Its writer is in packet mode (O_DIRECT on a pipe), so every write is
    read back as one report, exactly as hidraw delivers them, however late the reader comes."""

    def __init__(self, path):
        self.path = path
        os.mkfifo(path)
        reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens for writing only once it has a reader
        self.fd = os.open(path, os.O_WRONLY)
        os.close(reader)  # the teleop node will be the reader
        fcntl.fcntl(self.fd, fcntl.F_SETFL, fcntl.fcntl(self.fd, fcntl.F_GETFL) | os.O_DIRECT)

    def send(self, report_id: int, *values: int) -> None:
        os.write(self.fd, bytes([report_id]) + struct.pack(f"<{len(values)}h", *values))

    def buttons(self, mask: int) -> None:
        os.write(self.fd, bytes([3, mask, 0]))

    def hold(self, seconds: float, *translation: int) -> float:
        """Keep the cap deflected: a report every 10 ms as a real device streams them; returns the time held."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            self.send(1, *translation)
            time.sleep(0.01)
        self.send(1, 0, 0, 0)  # released: the device reports the cap back at rest
        return time.monotonic() - t0

    def unplug(self) -> None:
        os.close(self.fd)


SPEED = 0.05  # m/s at full deflection (the node's default)


def assert_still(what: str) -> np.ndarray:
    """The arm is at rest: it does not move over 0.6 s (after settling on the target for 0.6 s)."""
    time.sleep(0.6)
    held = tcp()
    time.sleep(0.6)
    assert np.abs(tcp() - held).max() < 1e-4, what
    return held


def test_spacemouse_drives_the_arm_stops_at_rest_when_reports_stop_and_when_unplugged(tmp_path):
    device = FakeSpaceMouse(tmp_path / "hidraw_fake")
    args = ["--ros-args", "--params-file", str(ROOT / "config" / "teleop.yaml"), "-p", "input:=spacemouse",
            "-p", f"spacemouse_device:={device.path}",
            "-p", f"spacemouse_linear_speed:={SPEED}", "-p", "spacemouse_timeout:=0.3"]
    with teleop_session(tmp_path, *args) as session:
        probe = session.probe
        assert f"SpaceMouse {device.path}" in session.log.read_text()
        enabled_at = time.monotonic()
        assert probe.call(SetBool, "/ur5/enable", SetBool.Request(data=True)).success
        start = tcp()

        # cap pulled towards the operator past full scale for ~1 s: base -y at SPEED (default signs)
        held_for = device.hold(1.0, 0, 400, 0)
        at_rest = assert_still("the cap at rest stops the arm")
        moved = at_rest - start
        # +-8 mm: the node integrates whole 50 ms command ticks, and the first/last report fall between two
        assert moved[1] == pytest.approx(-SPEED * held_for, abs=0.008), (moved, held_for)
        assert abs(moved[0]) < 0.002 and abs(moved[2]) < 0.002 and np.abs(moved[3:]).max() < 1e-3

        # deflected, then the reports stop (a stalled device): the target moves for spacemouse_timeout only
        device.send(1, 400, 0, 0)  # +x
        stalled = assert_still("reports that stop coming stop the arm") - at_rest
        assert stalled[0] == pytest.approx(SPEED * 0.3, abs=0.006) and abs(stalled[1]) < 0.002, stalled
        assert not watchdog_stops(probe, enabled_at)  # so far the node kept commanding: rests, not watchdog stops

        # buttons press their keys (defaults: button 0 = space = gripper, button 1 = "1" = start episode)
        device.buttons(0b01)
        probe.wait_for(lambda: fake_stats()["digital_out"] & (1 << 16), 5, "the tool output 0 (gripper)", poll=0.1)
        device.buttons(0b00)
        device.buttons(0b10)
        device.buttons(0b10)  # still held: not a second press
        probe.wait_for(lambda: session.recorder.calls, 10, "the recorder call")
        time.sleep(0.5)
        assert session.recorder.calls == ["start"]

        # unplugged: the node stops commanding and exits with an error; the driver's watchdog stops the arm
        device.send(1, 0, -400, 0)  # moving when it goes away
        time.sleep(0.2)
        device.unplug()
        assert session.teleop.wait(10) == 1
        assert "closed (unplugged?): no more commands" in session.log.read_text()
        probe.wait_for(lambda: watchdog_stops(probe, enabled_at), 5, "the driver's watchdog stop")
        assert_still("an unplugged SpaceMouse leaves the arm still")


def test_spacemouse_missing_device_is_a_clear_error(tmp_path):
    missing = tmp_path / "hidraw7"
    run = subprocess.run([sys.executable, "-m", "amplify_ros.teleop_node", "--ros-args", "-p", "input:=spacemouse",
                          "-p", f"spacemouse_device:={missing}"], stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, env=ros_env(), cwd=ROOT, timeout=60)
    assert run.returncode == 1 and f"SpaceMouse device {missing} does not exist" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    if not find_spacemice():  # this machine has none, so auto-detection must say so
        run = subprocess.run([sys.executable, "-m", "amplify_ros.teleop_node", "--ros-args", "-p", "input:=spacemouse"],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, env=ros_env(), cwd=ROOT,
                             timeout=60)
        assert run.returncode == 1 and "no 3Dconnexion device" in run.stderr and "spacemouse_device" in run.stderr
    run = subprocess.run([sys.executable, "-m", "amplify_ros.teleop_node", "--ros-args", "-p", "input:=joystick"],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, env=ros_env(), cwd=ROOT, timeout=60)
    assert run.returncode == 1 and "input must be keyboard or spacemouse, not 'joystick'" in run.stderr
