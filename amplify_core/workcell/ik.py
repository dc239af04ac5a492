"""Fast inverse kinematics of the UR5 for the simulator's 20 Hz control loop.

Same chain and conventions as ``amplify_core.ur5`` (the URDF joint origins, tool0 poses with rotation
vectors), but with the analytic geometric Jacobian (joint axis z_i, cross (p - p_i)) instead of finite
differences, and a bounded number of damped least-squares iterations seeded from the previous solution:
one env step costs a few hundred microseconds. ``amplify_core.ur5.UR5Kinematics.fk`` remains the
reference the tests compare against.
"""

from __future__ import annotations

import mujoco
import numpy as np

from ..ur5 import UR5Kinematics, default_kinematics


def rotvec_from_matrix(rot: np.ndarray) -> np.ndarray:
    """Rotation vector of a 3x3 rotation matrix (MuJoCo's C routines: ~50x faster than scipy here)."""
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(rot, dtype=np.float64).ravel())
    vec = np.empty(3)
    mujoco.mju_quat2Vel(vec, quat, 1.0)
    return vec


def _rot(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation matrix (unit axis)."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


class FastIK:
    """Damped least-squares IK of tool0 with an analytic Jacobian."""

    def __init__(self, kinematics: UR5Kinematics | None = None):
        kin = kinematics or default_kinematics()
        self.joints = kin.joints
        self.lower, self.upper = kin.lower, kin.upper

    def frames(self, q: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """tool0 pose (4x4), and each movable joint's world axis and origin."""
        t = np.eye(4)
        axes, origins = [], []
        i = 0
        for j in self.joints:
            t = t @ j.origin
            if j.kind != "fixed":
                axes.append(t[:3, :3] @ j.axis)
                origins.append(t[:3, 3].copy())
                r = np.eye(4)
                r[:3, :3] = _rot(j.axis / np.linalg.norm(j.axis), q[i])
                t = t @ r
                i += 1
        return t, axes, origins

    def fk(self, q) -> np.ndarray:
        return self.frames(np.asarray(q, float))[0]

    def solve(self, target: np.ndarray, q_seed: np.ndarray, iterations: int = 15, tol: float = 1e-5,
              damping: float = 1e-2, max_step: float = 0.4) -> tuple[np.ndarray, float]:
        """Joint angles approaching the 4x4 ``target`` from ``q_seed``; returns (q, residual norm).

        Each iteration's joint change is capped at ``max_step`` rad so a far target is approached
        smoothly instead of flipping branches; the caller decides what to do with a large residual.
        """
        q = np.array(q_seed, float)
        err_norm = np.inf
        for _ in range(iterations):
            t, axes, origins = self.frames(q)
            p = t[:3, 3]
            err = np.concatenate([target[:3, 3] - p,
                                  rotvec_from_matrix(target[:3, :3] @ t[:3, :3].T)])
            err_norm = float(np.linalg.norm(err))
            if err_norm < tol:
                break
            jac = np.empty((6, 6))
            for i, (z, o) in enumerate(zip(axes, origins)):
                jac[:3, i] = np.cross(z, p - o)
                jac[3:, i] = z
            dq = jac.T @ np.linalg.solve(jac @ jac.T + damping**2 * np.eye(6), err)
            scale = np.max(np.abs(dq)) / max_step
            if scale > 1.0:
                dq /= scale
            q = np.clip(q + dq, self.lower, self.upper)
        return q, err_norm
