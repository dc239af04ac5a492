import numpy as np
import pytest

from scipy.spatial.transform import Rotation

from amplify_core.ur5 import JOINT_NAMES, UR5Kinematics, default_kinematics, pose_to_matrix, rotvec_from_matrix

# The UR5 DH table (standard convention): d, a, alpha per row
DH = [(0.089159, 0.0, np.pi / 2), (0.0, -0.425, 0.0), (0.0, -0.39225, 0.0),
      (0.10915, 0.0, np.pi / 2), (0.09465, 0.0, -np.pi / 2), (0.0823, 0.0, 0.0)]


def dh_fk(q):
    t = np.eye(4)
    for (d, a, alpha), theta in zip(DH, q):
        ct, st, ca, sa = np.cos(theta), np.sin(theta), np.cos(alpha), np.sin(alpha)
        t = t @ np.array([[ct, -st * ca, st * sa, a * ct], [st, ct * ca, -ct * sa, a * st],
                          [0, sa, ca, d], [0, 0, 0, 1]])
    return t


def test_urdf_fk_equals_the_ur5_dh_table():
    kin = default_kinematics()
    rng = np.random.default_rng(0)
    for q in [np.zeros(6), *rng.uniform(-np.pi, np.pi, (50, 6))]:
        np.testing.assert_allclose(kin.fk(q), dh_fk(q), atol=1e-9)
    # the well-known zero pose of a UR5: arm stretched along -x
    np.testing.assert_allclose(kin.fk(np.zeros(6))[:3, 3], [-0.81725, -0.19145, -0.005491], atol=1e-6)


def test_ik_returns_to_the_pose_from_a_nearby_seed():
    kin = default_kinematics()
    q = np.array([0.1, -1.4, 1.6, -1.8, -1.57, 0.3])
    pose = kin.fk_pose(q)
    sol = kin.ik(pose, q + 0.05)
    np.testing.assert_allclose(kin.fk(sol), pose_to_matrix(pose), atol=1e-8)


def test_unreachable_pose_and_bad_input_raise():
    kin = default_kinematics()
    with pytest.raises(ValueError, match="IK did not converge"):
        kin.ik([2.0, 0, 0.3, 0, np.pi, 0], np.zeros(6), max_iter=30)
    with pytest.raises(ValueError, match="6 finite"):
        kin.fk([0, 0, np.nan, 0, 0, 0])


def test_joint_names_are_the_official_drivers(tmp_path):
    assert default_kinematics().lower.shape == (6,)
    assert JOINT_NAMES[0] == "shoulder_pan_joint" and JOINT_NAMES[-1] == "wrist_3_joint"
    bad = tmp_path / "bad.urdf"
    bad.write_text("<robot name='x'><link name='a'/></robot>")
    with pytest.raises(ValueError, match="expected joints"):
        UR5Kinematics(bad)


def test_analytic_jacobian_equals_finite_differences():
    kin = default_kinematics()
    rng = np.random.default_rng(1)
    eps = 1e-6
    for q in rng.uniform(-3, 3, size=(10, 6)):
        base = kin.fk(q)
        numeric = np.zeros((6, 6))
        for i in range(6):
            t = kin.fk(q + eps * np.eye(6)[i])
            numeric[:3, i] = (t[:3, 3] - base[:3, 3]) / eps
            numeric[3:, i] = Rotation.from_matrix(t[:3, :3] @ base[:3, :3].T).as_rotvec() / eps
        np.testing.assert_allclose(kin.jacobian(q), numeric, atol=1e-5)


def test_rotvec_from_matrix_matches_scipy_including_small_and_half_turn_angles():
    rng = np.random.default_rng(2)
    axes = rng.normal(size=(30, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    for axis, angle in zip(axes, [*rng.uniform(0, np.pi, 24), 0.0, 1e-9, 1e-5, np.pi - 1e-6, np.pi - 1e-3, 3.0]):
        expected = Rotation.from_rotvec(axis * angle)
        got = Rotation.from_rotvec(rotvec_from_matrix(expected.as_matrix()))
        assert (got.inv() * expected).magnitude() < 1e-7, (axis, angle)


def test_solve_caps_each_step_and_respects_joint_limits():
    kin = default_kinematics()
    q0 = np.array([0.0, -1.5708, 1.5708, -1.5708, -1.5708, 0.0])
    far = kin.fk(q0 + np.array([1.0, 0.3, -0.4, 0.2, 0.5, 1.0]))
    q1, residual = kin.solve(far, q0, iterations=1, max_step=0.1, clip=True)
    assert np.max(np.abs(q1 - q0)) <= 0.1 + 1e-12 and residual > 0.1
    q, residual = kin.solve(far, q0, iterations=200, tol=1e-10, max_step=0.1, clip=True)
    assert residual < 1e-9 and np.all(q >= kin.lower) and np.all(q <= kin.upper)
