"""Speed-capped pose interpolation between slow policy ticks.

The policy sends a new absolute TCP target every ~50 ms; the servo loop runs at 125/500 Hz. Each new target is
approached at the speed that reaches it when the next target is expected (so 20 Hz waypoints become a smooth
path, not a jump followed by a wait), but never faster than the configured linear and angular speed caps.
Position moves on a straight line; orientation on the shortest rotation (slerp by rotation vector).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


class PoseInterpolator:
    def __init__(self, max_linear_speed: float, max_angular_speed: float, min_period: float = 0.008,
                 max_period: float = 0.2):
        if not (np.isfinite(max_linear_speed) and max_linear_speed > 0):
            raise ValueError(f"max_linear_speed must be > 0 m/s, got {max_linear_speed}")
        if not (np.isfinite(max_angular_speed) and max_angular_speed > 0):
            raise ValueError(f"max_angular_speed must be > 0 rad/s, got {max_angular_speed}")
        self.max_linear_speed = float(max_linear_speed)
        self.max_angular_speed = float(max_angular_speed)
        self.min_period, self.max_period = min_period, max_period
        self.setpoint: np.ndarray | None = None
        self.target: np.ndarray | None = None
        self._linear_speed = 0.0
        self._angular_speed = 0.0

    def reset(self, pose) -> None:
        """Start from ``pose`` (the robot's actual TCP pose) with no pending target."""
        self.setpoint = np.array(pose, dtype=np.float64)
        self.target = self.setpoint.copy()
        self._linear_speed = self._angular_speed = 0.0

    def set_target(self, pose, expected_period: float) -> None:
        """New waypoint, to be reached in ``expected_period`` seconds (capped by the speed limits)."""
        if self.setpoint is None:
            raise RuntimeError("PoseInterpolator.set_target before reset(pose)")
        self.target = np.array(pose, dtype=np.float64)
        period = float(np.clip(expected_period, self.min_period, self.max_period))
        dist, angle = pose_distance(self.setpoint, self.target)
        self._linear_speed = min(dist / period, self.max_linear_speed)
        self._angular_speed = min(angle / period, self.max_angular_speed)

    def step(self, dt: float) -> np.ndarray:
        """Advance the setpoint by one servo period and return it."""
        if self.setpoint is None:
            raise RuntimeError("PoseInterpolator.step before reset(pose)")
        sp, tg = self.setpoint, self.target
        dist, angle = pose_distance(sp, tg)
        new = sp.copy()
        if dist > 0:
            new[:3] = sp[:3] + (tg[:3] - sp[:3]) * min(1.0, self._linear_speed * dt / dist)
        if angle > 0:
            r0 = Rotation.from_rotvec(sp[3:])
            delta = Rotation.from_rotvec(tg[3:]) * r0.inv()
            frac = min(1.0, self._angular_speed * dt / angle)
            new[3:] = (Rotation.from_rotvec(delta.as_rotvec() * frac) * r0).as_rotvec()
            if frac >= 1.0:
                new[3:] = tg[3:]  # keep the caller's rotation-vector branch once arrived
        self.setpoint = new
        return new.copy()


def pose_distance(a, b) -> tuple[float, float]:
    """(translation distance in m, rotation angle in rad) between two (x, y, z, rx, ry, rz) poses."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    rel = Rotation.from_rotvec(b[3:6]) * Rotation.from_rotvec(a[3:6]).inv()
    return float(np.linalg.norm(b[:3] - a[:3])), float(rel.magnitude())
