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

from .package_files import package_folder

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
    """Folder holding the URDF files: the source tree's ``urdf/``, or ``share/amplify_ros/urdf`` when installed."""
    return package_folder("urdf")


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


def axis_rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """3x3 rotation about a unit axis (Rodrigues): a few numpy ops, ~20x cheaper than a scipy Rotation."""
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def rotvec_from_matrix(rot: np.ndarray) -> np.ndarray:
    """Rotation vector (axis * angle) of a 3x3 rotation matrix; closed form, scipy only near 180 degrees."""
    cos = np.clip((np.trace(rot) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    skew = np.array([rot[2, 1] - rot[1, 2], rot[0, 2] - rot[2, 0], rot[1, 0] - rot[0, 1]])
    if angle < 1e-6:
        return 0.5 * skew  # first order: sin(angle) ~ angle
    if np.pi - angle < 1e-4:  # the skew part vanishes; let scipy pick the axis robustly
        return Rotation.from_matrix(rot).as_rotvec()
    return skew * (angle / (2.0 * np.sin(angle)))


class UR5Kinematics:
    """FK / IK of the chain base -> tool0 described by ``urdf/ur5.urdf``.

    One pass along the chain gives the tool pose and every joint's axis and origin, hence the geometric
    Jacobian analytically (column i = [z_i x (p - o_i); z_i]); a damped least-squares solve then costs well
    under a millisecond, fast enough for the 500 Hz servo loop and the 20 Hz simulator alike.
    """

    def __init__(self, urdf_path: str | Path | None = None):
        self.urdf_path = Path(urdf_path) if urdf_path else description_dir() / "ur5.urdf"
        self.joints = parse_urdf(self.urdf_path)
        movable = [j for j in self.joints if j.kind != "fixed"]
        names = tuple(j.name for j in movable)
        if names != JOINT_NAMES:
            raise ValueError(f"{self.urdf_path}: expected joints {JOINT_NAMES}, found {names}")
        self.lower = np.array([j.lower for j in movable])
        self.upper = np.array([j.upper for j in movable])
        self._unit_axes = {j.name: j.axis / np.linalg.norm(j.axis) for j in movable}

    def frames(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """tool0 pose (4x4), and each movable joint's axis (6, 3) and origin (6, 3) in the base frame."""
        t = np.eye(4)
        axes, origins, i = np.empty((6, 3)), np.empty((6, 3)), 0
        for j in self.joints:
            t = t @ j.origin
            if j.kind != "fixed":
                axes[i], origins[i] = t[:3, :3] @ j.axis, t[:3, 3]
                r = np.eye(4)
                r[:3, :3] = axis_rotation(self._unit_axes[j.name], q[i])
                t = t @ r
                i += 1
        return t, axes, origins

    def fk(self, q) -> np.ndarray:
        """4x4 pose of tool0 in the base frame for joint angles q (6,)."""
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (6,) or not np.all(np.isfinite(q)):
            raise ValueError(f"joint angles must be 6 finite numbers, got {q!r}")
        return self.frames(q)[0]

    def fk_pose(self, q) -> np.ndarray:
        """tool0 pose (x, y, z, rx, ry, rz) with a rotation vector, as ur-rtde's getActualTCPPose."""
        return matrix_to_pose(self.fk(q))

    def jacobian(self, q) -> np.ndarray:
        """6x6 geometric Jacobian of tool0 (linear velocity; angular velocity) in the base frame."""
        t, axes, origins = self.frames(np.asarray(q, dtype=np.float64))
        return np.vstack([np.cross(axes, t[:3, 3] - origins).T, axes.T])

    def solve(self, target: np.ndarray, q_seed, iterations: int = 15, tol: float = 1e-5, damping: float = 1e-2,
              max_step: float | None = None, clip: bool = False) -> tuple[np.ndarray, float]:
        """Damped least-squares steps from ``q_seed`` toward the 4x4 ``target``; returns (q, residual norm).

        ``max_step`` caps each iteration's joint change (rad) so a far target is approached smoothly instead
        of jumping branches; ``clip`` keeps q inside the URDF limits. The caller judges the residual.
        """
        q = np.array(q_seed, dtype=np.float64)
        err_norm = np.inf
        for _ in range(iterations):
            t, axes, origins = self.frames(q)
            err = np.concatenate([target[:3, 3] - t[:3, 3], rotvec_from_matrix(target[:3, :3] @ t[:3, :3].T)])
            err_norm = float(np.linalg.norm(err))
            if err_norm < tol:
                break
            jac = np.vstack([np.cross(axes, t[:3, 3] - origins).T, axes.T])
            dq = jac.T @ np.linalg.solve(jac @ jac.T + damping**2 * np.eye(6), err)
            if max_step is not None and np.max(np.abs(dq)) > max_step:
                dq *= max_step / np.max(np.abs(dq))
            q = q + dq
            if clip:
                q = np.clip(q, self.lower, self.upper)
        return q, err_norm

    def ik(self, pose, q_seed, tol: float = 1e-9, max_iter: int = 100, damping: float = 1e-3) -> np.ndarray:
        """Joint angles reaching ``pose`` (x, y, z, rx, ry, rz) nearest to ``q_seed``.

        Raises ValueError if the pose is not reached (unreachable, or too far from the seed).
        """
        q, residual = self.solve(pose_to_matrix(pose), q_seed, iterations=max_iter, tol=tol, damping=damping)
        if residual >= tol:
            raise ValueError(f"IK did not converge to pose {np.round(pose, 4).tolist()} from seed "
                             f"{np.round(q_seed, 3).tolist()} (residual {residual:.2e})")
        return q


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
