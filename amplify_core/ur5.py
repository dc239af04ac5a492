"""UR5 kinematics read from the project's arm description (``urdf/ur5.urdf``, the single source).

Forward kinematics multiplies the URDF joint origins and joint rotations; inverse kinematics is a damped
least-squares solver seeded from the current joint state (what a servo loop needs: the nearest solution,
not all eight analytic branches). Poses follow the UR controller's convention: (x, y, z, rx, ry, rz) in
metres and a rotation vector (axis * angle) in the robot base frame, as ur-rtde reports and accepts them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

# The official ROS 2 driver's joint names, in chain order.
JOINT_NAMES = (
    "shoulder_pan_joint",
    "shoulder_lift_joint",
    "elbow_joint",
    "wrist_1_joint",
    "wrist_2_joint",
    "wrist_3_joint",
)


def description_dir() -> Path:
    """Folder holding the URDF files: the source tree's ``urdf/``, or ``share/amplify_ros/urdf`` when
    installed by colcon (found through ament_index when available)."""
    here = Path(__file__).resolve().parents[1] / "urdf"
    if here.is_dir():
        return here
    try:  # installed with colcon: data files live in the package's share directory
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("amplify_ros")) / "urdf"
    except Exception as exc:  # pragma: no cover - depends on the installation
        raise FileNotFoundError("cannot find the urdf/ folder of amplify_ros") from exc


def origin_matrix(xyz, rpy) -> np.ndarray:
    """4x4 transform of a URDF <origin>: translate by xyz, then rotate by fixed-axis roll-pitch-yaw."""
    t = np.eye(4)
    t[:3, :3] = Rotation.from_euler("xyz", rpy).as_matrix()
    t[:3, 3] = xyz
    return t


@dataclass(frozen=True)
class Joint:
    name: str
    kind: str  # 'revolute' or 'fixed'
    parent: str
    child: str
    origin: np.ndarray  # 4x4
    axis: np.ndarray  # (3,)
    lower: float = -np.inf
    upper: float = np.inf


def parse_urdf(path: str | Path) -> list[Joint]:
    """The joints of a URDF file in file order (a serial chain is expected)."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise ValueError(f"{path}: cannot read URDF ({exc})") from exc
    joints = []
    for j in root.findall("joint"):
        o = j.find("origin")
        xyz = [float(v) for v in (o.get("xyz", "0 0 0") if o is not None else "0 0 0").split()]
        rpy = [float(v) for v in (o.get("rpy", "0 0 0") if o is not None else "0 0 0").split()]
        a = j.find("axis")
        axis = np.array([float(v) for v in (a.get("xyz") if a is not None else "1 0 0").split()])
        lim = j.find("limit")
        joints.append(Joint(
            name=j.get("name"), kind=j.get("type"), parent=j.find("parent").get("link"),
            child=j.find("child").get("link"), origin=origin_matrix(xyz, rpy), axis=axis,
            lower=float(lim.get("lower", -np.inf)) if lim is not None else -np.inf,
            upper=float(lim.get("upper", np.inf)) if lim is not None else np.inf,
        ))
    return joints


def _axis_rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3] = Rotation.from_rotvec(axis * angle).as_matrix()
    return t


class UR5Kinematics:
    """FK / IK of the chain base -> tool0 described by ``urdf/ur5.urdf``."""

    def __init__(self, urdf_path: str | Path | None = None):
        self.urdf_path = Path(urdf_path) if urdf_path else description_dir() / "ur5.urdf"
        self.joints = parse_urdf(self.urdf_path)
        movable = [j for j in self.joints if j.kind != "fixed"]
        names = tuple(j.name for j in movable)
        if names != JOINT_NAMES:
            raise ValueError(f"{self.urdf_path}: expected joints {JOINT_NAMES}, found {names}")
        self.lower = np.array([j.lower for j in movable])
        self.upper = np.array([j.upper for j in movable])

    def fk(self, q) -> np.ndarray:
        """4x4 pose of tool0 in the base frame for joint angles q (6,)."""
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (6,) or not np.all(np.isfinite(q)):
            raise ValueError(f"joint angles must be 6 finite numbers, got {q!r}")
        t = np.eye(4)
        i = 0
        for j in self.joints:
            t = t @ j.origin
            if j.kind != "fixed":
                t = t @ _axis_rotation(j.axis, q[i])
                i += 1
        return t

    def fk_pose(self, q) -> np.ndarray:
        """tool0 pose (x, y, z, rx, ry, rz) with a rotation vector, as ur-rtde's getActualTCPPose."""
        return matrix_to_pose(self.fk(q))

    def jacobian(self, q, eps: float = 1e-6) -> np.ndarray:
        """6x6 geometric Jacobian (linear; angular) by finite differences of the pose."""
        base = self.fk(q)
        jac = np.zeros((6, 6))
        for i in range(6):
            dq = np.array(q, dtype=np.float64)
            dq[i] += eps
            t = self.fk(dq)
            jac[:3, i] = (t[:3, 3] - base[:3, 3]) / eps
            jac[3:, i] = Rotation.from_matrix(t[:3, :3] @ base[:3, :3].T).as_rotvec() / eps
        return jac

    def ik(self, pose, q_seed, tol: float = 1e-9, max_iter: int = 100, damping: float = 1e-3) -> np.ndarray:
        """Joint angles reaching ``pose`` (x, y, z, rx, ry, rz) nearest to ``q_seed``.

        Raises ValueError if the pose is not reached (unreachable, or too far from the seed).
        """
        target = pose_to_matrix(pose)
        q = np.array(q_seed, dtype=np.float64)
        for _ in range(max_iter):
            t = self.fk(q)
            err = np.concatenate([target[:3, 3] - t[:3, 3],
                                  Rotation.from_matrix(target[:3, :3] @ t[:3, :3].T).as_rotvec()])
            if np.dot(err, err) < tol**2:
                return q
            jac = self.jacobian(q)
            q = q + jac.T @ np.linalg.solve(jac @ jac.T + damping**2 * np.eye(6), err)
        raise ValueError(f"IK did not converge to pose {np.round(pose, 4).tolist()} from seed "
                         f"{np.round(q_seed, 3).tolist()} (residual {np.linalg.norm(err):.2e})")


def pose_to_matrix(pose) -> np.ndarray:
    pose = np.asarray(pose, dtype=np.float64)
    t = np.eye(4)
    t[:3, :3] = Rotation.from_rotvec(pose[3:6]).as_matrix()
    t[:3, 3] = pose[:3]
    return t


def matrix_to_pose(t: np.ndarray) -> np.ndarray:
    return np.concatenate([t[:3, 3], Rotation.from_matrix(t[:3, :3]).as_rotvec()])


@lru_cache(maxsize=None)
def default_kinematics() -> UR5Kinematics:
    """The UR5 of ``urdf/ur5.urdf`` (parsed once)."""
    return UR5Kinematics()
