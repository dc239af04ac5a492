"""The fake UR controller against the REAL ur-rtde client (fake in a subprocess: ur-rtde holds the GIL while
it waits for data, so client and fake cannot share a process)."""

import socket
import struct
import time

import numpy as np
import pytest

from amplify_core.ur5 import default_kinematics
from fake_ur_process import dashboard, fake_stats, fake_ur_ports_lock, start_fake_ur, stop_process

rtde_receive = pytest.importorskip("rtde_receive")
rtde_control = pytest.importorskip("rtde_control")
rtde_io = pytest.importorskip("rtde_io")


@pytest.fixture
def fake_ur():
    with fake_ur_ports_lock():
        proc = start_fake_ur(["--q0", "0.3", "-1.2", "1.4", "-1.7", "-1.5", "0.4"])
        try:
            yield proc
        finally:
            stop_process(proc)


def test_fk_through_real_client_matches_urdf(fake_ur):
    r = rtde_receive.RTDEReceiveInterface("127.0.0.1")
    try:
        q = np.array(r.getActualQ())
        pose = np.array(r.getActualTCPPose())
        assert np.allclose(q, [0.3, -1.2, 1.4, -1.7, -1.5, 0.4])
        assert np.max(np.abs(pose - default_kinematics().fk_pose(q))) < 1e-6
        assert r.getRobotMode() == 7 and r.getSafetyMode() == 1
    finally:
        r.disconnect()


def test_servol_moves_and_servostop_stops(fake_ur):
    r = rtde_receive.RTDEReceiveInterface("127.0.0.1")
    c = rtde_control.RTDEControlInterface("127.0.0.1")
    io = rtde_io.RTDEIOInterface("127.0.0.1")
    try:
        assert c.isProgramRunning()
        start = np.array(r.getActualTCPPose())
        target = start + np.array([0.03, 0.0, -0.02, 0, 0, 0])
        for _ in range(125):  # 1 s of servoL at 125 Hz
            c.servoL(list(target), 0.0, 0.0, 0.008, 0.1, 300)
            time.sleep(0.008)
        reached = np.array(r.getActualTCPPose())
        assert np.linalg.norm(reached[:3] - target[:3]) < 2e-3
        assert c.servoStop(10.0)
        stats = fake_stats()
        assert stats["counts"]["servoL"] >= 100 and stats["counts"]["servoStop"] == 1
        assert io.setToolDigitalOut(0, True)
        time.sleep(0.05)
        assert fake_stats()["digital_out"] & (1 << 16)
        # a protective stop stops the script and is visible through RTDE
        assert dashboard("fake protective stop").startswith("Protective stop")
        time.sleep(0.1)
        assert r.getSafetyMode() == 3 and not c.isProgramRunning()
    finally:
        for client in (c, io, r):
            client.disconnect()


def _msg(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">H", 3 + len(payload)) + kind + payload


def test_unknown_output_name_is_not_found(fake_ur):
    with socket.create_connection(("127.0.0.1", 30004), timeout=2) as s:
        s.sendall(_msg(b"O", struct.pack(">d", 125.0) + b"actual_q,no_such_variable"))
        size, kind = struct.unpack(">HB", s.recv(3))
        body = s.recv(size - 3)
        assert kind == ord("O")
        assert body[0] == 0 and body[1:].decode() == "VECTOR6D,NOT_FOUND"
