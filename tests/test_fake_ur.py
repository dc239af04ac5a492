"""The fake UR controller against the REAL ur-rtde client (fake in a subprocess: ur-rtde holds the GIL while
it waits for data, so client and fake cannot share a process)."""

import socket
import struct
import time

import numpy as np
import pytest

from amplify_core.ur5 import default_kinematics, pose_to_matrix
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


# ---- URScript semantics through the real ur-rtde client ------------------------------------------------------

Q0 = [0.3, -1.2, 1.4, -1.7, -1.5, 0.4]


@pytest.fixture
def clients(fake_ur):
    r = rtde_receive.RTDEReceiveInterface("127.0.0.1")
    c = rtde_control.RTDEControlInterface("127.0.0.1")
    try:
        yield r, c
    finally:
        for client in (c, r):
            client.disconnect()


def _settled_pose(r, timeout=2.0):
    """The TCP pose once the fake reports the arm at rest (joint speeds exactly zero)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = fake_stats()
        if max(abs(v) for v in stats["qd"]) == 0.0:
            return np.array(stats["tcp_pose"])
        time.sleep(0.02)
    raise AssertionError(f"the arm did not come to rest within {timeout} s: qd {stats['qd']}")


def test_forward_and_inverse_kinematics_are_the_projects_ur5(clients):
    r, c = clients
    kin = default_kinematics()
    q = np.array(r.getActualQ())
    assert np.max(np.abs(np.array(c.getForwardKinematics()) - kin.fk_pose(q))) < 1e-6
    q2 = q + np.array([0.2, -0.1, 0.15, 0.1, -0.2, 0.3])
    assert np.max(np.abs(np.array(c.getForwardKinematics(list(q2))) - kin.fk_pose(q2))) < 1e-6
    tcp = [0.0, 0.0, 0.1, 0.0, 0.0, 0.5]  # 10 cm along tool z, turned about it
    expected = kin.fk(q2) @ pose_to_matrix(tcp)
    got = pose_to_matrix(c.getForwardKinematics(list(q2), tcp))
    assert np.max(np.abs(got - expected)) < 1e-6
    # IK near a seed: the project's solution, and its FK is the asked pose
    pose = kin.fk_pose(q2)
    q_ik = np.array(c.getInverseKinematics(list(pose), list(q)))
    assert np.max(np.abs(q_ik - kin.ik(pose, q))) < 1e-6
    assert np.max(np.abs(kin.fk_pose(q_ik) - pose)) < 1e-6
    q_default = np.array(c.getInverseKinematics(list(pose)))  # seeded at the current joints
    assert np.max(np.abs(kin.fk_pose(q_default) - pose)) < 1e-6
    assert c.isProgramRunning()
    # no solution: a script error on a real controller -> the call fails and the program stops
    assert c.getInverseKinematics([3.0, 0.0, 0.5, 0.0, 3.14, 0.0], list(q)) == []
    assert not c.isProgramRunning()
    assert "get_inverse_kin" in fake_stats()["last_error"]


def test_async_movel_goes_straight_at_the_asked_speed_and_stopl_stops_it_part_way(clients):
    r, c = clients
    p0 = np.array(r.getActualTCPPose())
    direction = np.array([0.6, -0.48, 0.64])  # unit vector, all three axes move
    target = p0 + np.concatenate([0.2 * direction, [0.0, 0.0, 0.0]])
    speed, accel = 0.1, 0.5  # ramp 0.2 s / 1 cm; cruise would take 1.8 s
    t0 = time.monotonic()
    assert c.moveL(list(target), speed, accel, True)
    returned_after = time.monotonic() - t0
    assert returned_after < 0.5, f"asynchronous moveL blocked for {returned_after:.2f} s"
    assert c.getAsyncOperationProgress() >= 0  # running
    samples = []
    while time.monotonic() - t0 < 1.2:
        samples.append((time.monotonic() - t0, r.getTimestamp(), np.array(r.getActualTCPPose()),
                        np.array(r.getActualTCPSpeed())))
        time.sleep(0.01)
    stop_pose = np.array(r.getActualTCPPose())
    c.stopL(accel)  # decelerate at 0.5 m/s^2: 1 cm more
    rest = _settled_pose(r)
    assert c.getAsyncOperationProgress() < 0  # no longer running
    # on the line, part-way, about v^2/2a beyond where the stop was asked
    offsets = [s[2][:3] - p0[:3] for s in samples] + [rest[:3] - p0[:3]]
    deviation = max(np.linalg.norm(o - np.dot(o, direction) * direction) for o in offsets)
    assert deviation < 0.5e-3, f"off the straight line by {deviation * 1000:.3f} mm"
    travelled, stop_at = np.dot(rest[:3] - p0[:3], direction), np.dot(stop_pose[:3] - p0[:3], direction)
    assert 0.05 < travelled < 0.19, f"stopped at {travelled:.3f} m of 0.2 m"
    assert 0.005 < travelled - stop_at < 0.02, f"braking distance {travelled - stop_at:.4f} m (v^2/2a = 0.01)"
    assert np.max(np.abs(rest[3:] - p0[3:])) < 1e-6  # orientation kept
    # cruise speed (after the 0.2 s ramp), from the TCP speed and from positions over controller time
    cruise = [s for s in samples if 0.35 < s[0] < 1.15]
    tcp_speeds = np.array([np.linalg.norm(s[3][:3]) for s in cruise])
    assert np.all(np.abs(tcp_speeds - speed) < 0.05 * speed), tcp_speeds
    (_, ts_a, pa, _), (_, ts_b, pb, _) = cruise[0], cruise[-1]
    measured = np.dot(pb[:3] - pa[:3], direction) / (ts_b - ts_a)
    assert abs(measured - speed) < 0.05 * speed, f"{measured:.4f} m/s for {speed}"


def test_sync_moves_reach_their_targets_in_the_trapezoid_time(clients):
    r, c = clients
    kin = default_kinematics()
    q0 = np.array(r.getActualQ())
    q1 = q0 + np.array([0.4, -0.2, 0.1, 0.0, 0.3, -0.5])  # leading joint 6: 0.5 rad
    t0 = time.monotonic()
    assert c.moveJ(list(q1), 1.0, 2.0)  # ramp 0.5 s / 0.25 rad each way: 1.0 s, no cruise
    took = time.monotonic() - t0
    assert np.max(np.abs(np.array(fake_stats()["q"]) - q1)) < 1e-9
    assert 0.9 < took < 1.6, f"moveJ of 0.5 rad at 1 rad/s, 2 rad/s^2 took {took:.2f} s (1.0 s)"
    target = kin.fk_pose(q1) + np.array([0.0, 0.0, -0.05, 0.0, 0.0, 0.0])
    t0 = time.monotonic()
    assert c.moveL(list(target), 0.25, 1.0)  # 5 cm: ramp limited, 2 * sqrt(0.05 / 1.0) = 0.45 s
    took = time.monotonic() - t0
    assert np.max(np.abs(np.array(fake_stats()["tcp_pose"]) - target)) < 1e-6
    assert 0.4 < took < 1.0, f"moveL of 5 cm took {took:.2f} s (0.45 s)"


def test_speed_and_servo_commands_and_their_stops(clients):
    r, c = clients
    kin = default_kinematics()
    # speedL holds a tool velocity (ramped at a), speedStop brings it to rest
    assert c.speedL([0.0, 0.05, 0.0, 0.0, 0.0, 0.0], 0.5, 0.008)
    time.sleep(0.5)
    v = np.array(r.getActualTCPSpeed())
    assert abs(v[1] - 0.05) < 0.0025 and np.max(np.abs(np.delete(v, 1))) < 2.5e-4, v  # 0.5 % (Euler steps)
    assert c.speedStop(0.5)
    assert max(abs(x) for x in fake_stats()["qd"]) == 0.0  # a synchronous stop returns at rest
    # speedJ ramps the joint velocity at a
    assert c.speedJ([0.0, 0.0, 0.0, 0.0, 0.0, 0.3], 1.0, 0.008)
    time.sleep(0.1)
    early = fake_stats()["qd"][5]
    time.sleep(0.4)
    assert 0.0 < early < 0.25 and abs(fake_stats()["qd"][5] - 0.3) < 1e-9
    assert c.speedStop(1.0)
    # servoJ follows a joint target; stopJ stops it
    q = np.array(fake_stats()["q"]) + np.array([0.05, 0.0, 0.0, 0.0, 0.0, 0.0])
    for _ in range(60):
        c.servoJ(list(q), 0.0, 0.0, 0.008, 0.1, 300)
        time.sleep(0.008)
    assert np.max(np.abs(np.array(fake_stats()["q"]) - q)) < 2e-3
    c.stopJ(2.0)
    assert max(abs(x) for x in fake_stats()["qd"]) == 0.0
    assert np.max(np.abs(np.array(r.getActualTCPPose()) - kin.fk_pose(r.getActualQ()))) < 1e-6


def test_an_unimplemented_command_is_refused_not_faked(clients, capfd):
    r, c = clients
    assert c.isProgramRunning()
    assert c.teachMode() is False  # the fake has no teach mode: the client sees the failure
    stats = fake_stats()
    assert stats["counts"]["refused"] == 1 and "18 (TEACH_MODE) is not implemented" in stats["last_error"]
    assert not c.isProgramRunning()
    assert c.reuploadScript() and _wait(c.isProgramRunning)
    assert len(c.getForwardKinematics()) == 6  # and the next command works again


def _wait(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_watchdog_stops_the_program_when_the_client_goes_quiet(clients):
    r, c = clients
    assert c.setWatchdog(20.0)  # 50 ms
    for _ in range(30):  # 0.3 s of kicks at 100 Hz: still running
        c.kickWatchdog()
        time.sleep(0.01)
    assert c.isProgramRunning() and fake_stats()["counts"]["watchdog_stops"] == 0
    assert _wait(lambda: not c.isProgramRunning(), timeout=1.0)
    stats = fake_stats()
    assert stats["counts"]["watchdog_stops"] == 1 and "RTDE watchdog" in stats["last_error"]


def test_a_joint_commanded_beyond_its_limit_raises_a_protective_stop(clients):
    r, c = clients
    q = np.array(r.getActualQ())
    beyond = q.copy()
    beyond[2] = 3.3  # the elbow's limit is pi
    assert c.moveJ(list(beyond), 1.0, 1.0) is False
    assert _wait(lambda: r.getSafetyMode() == 3)
    assert np.max(np.abs(np.array(r.getActualQ()) - q)) < 1e-9  # never moved
    assert "beyond the joint limits" in fake_stats()["last_error"]


def test_malformed_rtde_input_is_logged_and_the_session_lives_on(clients):
    r, c = clients
    with socket.create_connection(("127.0.0.1", 30004), timeout=2) as s:
        s.sendall(_msg(b"I", b"input_int_register_40,input_double_register_40"))
        size, kind = struct.unpack(">HB", s.recv(3))
        body = s.recv(size - 3)
        assert kind == ord("I") and body[0] >= 1
        recipe = body[0]
        s.sendall(_msg(b"U", struct.pack(">Bi", recipe, 7)))  # 4 bytes short of the recipe's int + double
        s.sendall(_msg(b"O", b"\x00\x01"))  # an output setup without its 8-byte frequency
        size, kind = struct.unpack(">HB", s.recv(3))
        assert kind == ord("O") and s.recv(size - 3)[:1] == b"\x00"  # answered: failed
        s.sendall(_msg(b"V", struct.pack(">H", 2)))  # the same session still answers
        size, kind = struct.unpack(">HB", s.recv(3))
        assert kind == ord("V") and s.recv(size - 3) == b"\x01"
        s.sendall(_msg(b"U", struct.pack(">Bid", recipe, 7, 0.5)))  # a well-formed package is applied
        time.sleep(0.1)
    assert fake_stats()["malformed_messages"] == 2
    # the real client beside it never noticed
    assert c.isProgramRunning() and len(c.getForwardKinematics()) == 6
    stamp = r.getTimestamp()
    time.sleep(0.1)
    assert r.getTimestamp() > stamp
