"""Pure-Python driver pieces: command checks and speed-capped interpolation (no robot, no ROS)."""

import numpy as np
import pytest

from amplify_core.ur5 import default_kinematics
from amplify_ros.robot.interpolation import PoseInterpolator, pose_distance
from amplify_ros.robot.safety import CommandChecker, SafetyLimits

HOME = np.array([-0.487, -0.109, 0.432, -2.2214, -2.2214, 0.0])


def test_non_finite_is_rejected_even_in_clamp_mode():
    checker = CommandChecker(SafetyLimits(violation_action="clamp"))
    bad = HOME.copy()
    bad[1] = np.nan
    assert checker.check(bad, 0.0, HOME, 0.0).status == "rejected"
    assert checker.check(HOME, np.inf, HOME, 0.0).status == "rejected"
    assert checker.counts["rejected"] == 2


def test_workspace_and_step_are_clamped_or_rejected():
    clamp = CommandChecker(SafetyLimits(max_step_linear=0.05))
    far = HOME + np.array([0.2, 0, 0, 0, 0, 0])
    result = clamp.check(far, 0.5, HOME, 0.0)
    assert result.status == "clamped"
    assert pose_distance(HOME, result.pose)[0] == pytest.approx(0.05)
    below = HOME.copy()
    below[2] = -0.1
    result = CommandChecker(SafetyLimits(max_step_linear=0.5)).check(below, 0.0, HOME, 0.0)
    assert result.status == "clamped" and result.pose[2] == 0.0
    reject = CommandChecker(SafetyLimits(violation_action="reject"))
    assert reject.check(far, 0.0, HOME, 0.0).pose is None and reject.counts["rejected"] == 1


def test_speed_implied_by_previous_command_is_limited():
    checker = CommandChecker(SafetyLimits(max_linear_speed=0.1, max_step_linear=0.5))
    assert checker.check(HOME, 0.0, HOME, 0.0).status == "ok"
    jump = HOME + np.array([0.02, 0, 0, 0, 0, 0])  # 2 cm in 50 ms = 0.4 m/s
    result = checker.check(jump, 0.0, HOME, 0.05)
    assert result.status == "clamped"
    assert pose_distance(HOME, result.pose)[0] == pytest.approx(0.1 * 0.05)


def test_invalid_limits_raise_with_parameter_name():
    with pytest.raises(ValueError, match="max_linear_speed"):
        SafetyLimits(max_linear_speed=0.0)
    with pytest.raises(ValueError, match="violation_action"):
        SafetyLimits(violation_action="ignore")


def test_interpolator_respects_speed_caps_and_arrives():
    interp = PoseInterpolator(max_linear_speed=0.1, max_angular_speed=0.5)
    interp.reset(HOME)
    target = HOME + np.array([0.05, 0, 0, 0, 0, 0.3])
    interp.set_target(target, expected_period=0.01)  # wants 5 m/s: must be capped
    previous = HOME
    for _ in range(200):
        sp = interp.step(0.008)
        dist, angle = pose_distance(previous, sp)
        assert dist <= 0.1 * 0.008 + 1e-12 and angle <= 0.5 * 0.008 + 1e-9
        previous = sp
    assert np.allclose(interp.setpoint, target, atol=1e-9)


def test_disable_nagle_sets_nodelay_only_on_sockets_to_that_peer():
    import socket

    from amplify_ros.robot.rtde_connection import disable_nagle

    servers = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    clients = [socket.create_connection(s.getsockname()) for s in servers]
    try:
        port = servers[0].getsockname()[1]
        assert all(c.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0 for c in clients)
        assert disable_nagle("127.0.0.1", port) == 1
        assert clients[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert clients[1].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0  # another peer: untouched
        clients[0].sendall(b"still open")  # only the duplicate descriptor was closed
    finally:
        for s in clients + servers:
            s.close()
