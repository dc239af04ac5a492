"""Checks every Cartesian command before it may reach the arm, and counts what it changed.

Rules, in order: (1) six finite pose numbers and a finite gripper value, else rejected; (2) position inside
the workspace box; (3) within ``max_step_linear`` / ``max_step_angular`` of the robot's current TCP pose;
(4) the speed implied by the previous accepted command within ``max_linear_speed`` / ``max_angular_speed``.
Violations of (2)-(4) are clamped (moved to the nearest allowed pose) or rejected, as configured. Rule (1) is
always a rejection: there is no meaningful nearest pose to NaN.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from amplify_ros.robot.interpolation import pose_distance

log = logging.getLogger(__name__)

VIOLATION_ACTIONS = ("clamp", "reject")


@dataclass
class SafetyLimits:
    workspace_min: tuple = (-0.8, -0.8, 0.0)
    workspace_max: tuple = (0.8, 0.8, 0.9)
    max_linear_speed: float = 0.25  # m/s
    max_angular_speed: float = 1.0  # rad/s
    max_step_linear: float = 0.05  # m from the current TCP pose
    max_step_angular: float = 0.5  # rad from the current TCP orientation
    violation_action: str = "clamp"

    def __post_init__(self):
        lo, hi = np.asarray(self.workspace_min, float), np.asarray(self.workspace_max, float)
        if lo.shape != (3,) or hi.shape != (3,) or not np.all(np.isfinite(lo)) or not np.all(np.isfinite(hi)):
            raise ValueError(f"workspace_min/workspace_max must be 3 finite numbers, got {self.workspace_min}, "
                             f"{self.workspace_max}")
        if np.any(lo >= hi):
            raise ValueError(f"workspace_min {lo.tolist()} must be below workspace_max {hi.tolist()} on every axis")
        for name in ("max_linear_speed", "max_angular_speed", "max_step_linear", "max_step_angular"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        if self.violation_action not in VIOLATION_ACTIONS:
            raise ValueError(f"violation_action must be one of {VIOLATION_ACTIONS}, got {self.violation_action!r}")


@dataclass
class CheckResult:
    pose: np.ndarray | None  # the pose to use, None if rejected
    gripper: float | None
    status: str  # 'ok', 'clamped' or 'rejected'
    reasons: list = field(default_factory=list)


class CommandChecker:
    def __init__(self, limits: SafetyLimits):
        self.limits = limits
        self.counts = {"accepted": 0, "clamped": 0, "rejected": 0}
        self.last_violation = ""
        self._previous: tuple[float, np.ndarray] | None = None  # (time, pose) of the last accepted command

    def reset_history(self) -> None:
        self._previous = None

    def check(self, pose, gripper: float, current_pose, now: float) -> CheckResult:
        lim = self.limits
        pose = np.asarray(pose, dtype=np.float64)
        if pose.shape != (6,) or not np.all(np.isfinite(pose)) or not np.isfinite(gripper):
            return self._reject(["non-finite or malformed command"])
        reasons = []
        out = pose.copy()
        lo, hi = np.asarray(lim.workspace_min), np.asarray(lim.workspace_max)
        if np.any(out[:3] < lo) or np.any(out[:3] > hi):
            reasons.append(f"position {np.round(out[:3], 3).tolist()} outside workspace box")
            out[:3] = np.clip(out[:3], lo, hi)
        current_pose = np.asarray(current_pose, float)
        clamped = _limit_step(out, current_pose, lim.max_step_linear, lim.max_step_angular)
        if clamped is not None:
            dist, angle = pose_distance(current_pose, out)
            reasons.append(f"step from the current pose ({dist:.3f} m, {angle:.3f} rad) exceeds "
                           f"max_step_linear/max_step_angular")
            out = clamped
        if self._previous is not None:
            t_prev, p_prev = self._previous
            dt = max(now - t_prev, 1e-3)
            clamped = _limit_step(out, p_prev, lim.max_linear_speed * dt, lim.max_angular_speed * dt)
            if clamped is not None:
                reasons.append("speed implied by the previous command exceeds max_linear_speed/max_angular_speed")
                out = clamped
        if reasons and lim.violation_action == "reject":
            return self._reject(reasons)
        grip = float(np.clip(gripper, 0.0, 1.0))
        self._previous = (now, out.copy())
        if reasons:
            self.counts["clamped"] += 1
            self.last_violation = "clamped: " + "; ".join(reasons)
            log.warning("command %s", self.last_violation)
            return CheckResult(out, grip, "clamped", reasons)
        self.counts["accepted"] += 1
        return CheckResult(out, grip, "ok")

    def _reject(self, reasons: list) -> CheckResult:
        self.counts["rejected"] += 1
        self.last_violation = "rejected: " + "; ".join(reasons)
        log.warning("command %s", self.last_violation)
        return CheckResult(None, None, "rejected", reasons)


def _limit_step(pose: np.ndarray, reference: np.ndarray, max_linear: float, max_angular: float):
    """``pose`` moved toward ``reference`` until within the limits, or None if it already is."""
    dist, angle = pose_distance(reference, pose)
    if dist <= max_linear + 1e-12 and angle <= max_angular + 1e-12:
        return None
    out = pose.copy()
    if dist > max_linear:
        out[:3] = reference[:3] + (pose[:3] - reference[:3]) * (max_linear / dist)
    if angle > max_angular:
        r0 = Rotation.from_rotvec(reference[3:6])
        delta = (Rotation.from_rotvec(pose[3:6]) * r0.inv()).as_rotvec()
        out[3:] = (Rotation.from_rotvec(delta * (max_angular / angle)) * r0).as_rotvec()
    return out
