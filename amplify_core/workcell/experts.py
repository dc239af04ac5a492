"""Scripted experts: one waypoint plan per task kind, followed at bounded speed at 20 Hz.

The plan is made at the first call from the simulator's privileged state (object and handle positions)
and replayed as absolute tool0 targets with the gripper pointing down. Each waypoint carries the gripper
command, a speed (m per step) and a number of steps to hold once reached (to let the gripper close or a
released block settle). The same plans drive the robot gripper and the floating hand; only the yaw of
pushes differs, so that the effector presents a flat face to the block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .description import GRASP_OFFSET
from .scene import BLOCK_HALF, PLATE, BOWL, drawer_front_x, drawer_handle_position
from .tasks import Task

FAST, SLOW = 0.035, 0.018  # m per 20 Hz step (0.7 and 0.36 m/s)
CLEAR = 0.16  # grasp-centre height above the table for transfers


@dataclass
class Waypoint:
    grasp: np.ndarray  # where the grasp centre should be (base frame)
    gripper: float
    speed: float = FAST
    hold: int = 0
    yaw: float | None = None  # tool yaw at this waypoint (None: the expert's one yaw; play turns it per waypoint)


def down_rotvec(yaw: float) -> np.ndarray:
    """Rotation vector of tool0 pointing down (tool z = -z), turned by ``yaw`` about the vertical.

    R = Rz(yaw) Rx(pi) is a half turn about the horizontal axis (cos(yaw/2), sin(yaw/2), 0): writing it
    this way keeps the rotation vector continuous in yaw for yaw in (-pi, pi].
    """
    yaw = (yaw + np.pi) % (2 * np.pi) - np.pi
    return np.pi * np.array([np.cos(yaw / 2), np.sin(yaw / 2), 0.0])


def push_yaw(direction: np.ndarray, embodiment: str) -> float:
    """The yaw that presents a flat face along the push ``direction``: the gripper's closed fingers side by side
    (tool x along it), the hand's finger pairs one behind the other (tool y along it). The parallel gripper looks
    the same turned by a half turn, so its yaw is taken in [-pi/2, pi/2], the one nearer the start pose's 0."""
    if embodiment == "robot":
        yaw = float(np.arctan2(direction[1], direction[0]))
        if yaw > np.pi / 2:
            yaw -= np.pi
        elif yaw <= -np.pi / 2 - 1e-9:
            yaw += np.pi
        return yaw
    return float(np.arctan2(direction[0], -direction[1]))


class ScriptedExpert:
    """``act(env) -> action (7,)``; a fresh expert per episode (it plans on its first call)."""

    def __init__(self, task: Task):
        self.task = task
        self.plan: list[Waypoint] | None = None
        self.yaw = 0.0
        self._index = 0
        self._held = 0
        self._cmd = None

    def act(self, env) -> np.ndarray:
        if self.plan is None:
            self._home = env.tool0_pose()[:3]
            self.plan = self._make_plan(env)
            self._cmd = self._home - np.array([0.0, 0.0, GRASP_OFFSET])  # grasp centre now
        wp = self.plan[min(self._index, len(self.plan) - 1)]
        self._advance(wp)
        tool = self._cmd + np.array([0.0, 0.0, GRASP_OFFSET])  # pointing down: tool0 is above the grasp centre
        return np.concatenate([tool, down_rotvec(self.yaw), [wp.gripper]])

    def _advance(self, wp: Waypoint, ready: bool = True) -> None:
        """Move the commanded grasp centre towards ``wp`` at its speed; once there (and ``ready``), hold it for
        ``wp.hold`` steps, then go on to the next waypoint."""
        delta = wp.grasp - self._cmd
        dist = float(np.linalg.norm(delta))
        if dist > wp.speed:
            self._cmd = self._cmd + delta * (wp.speed / dist)
        elif ready:
            self._cmd = wp.grasp.copy()
            if self._held >= wp.hold:
                self._index += 1
                self._held = 0
            else:
                self._held += 1

    @property
    def done(self) -> bool:
        return self.plan is not None and self._index >= len(self.plan)

    # ------------------------------------------------------------------------------------------ plans
    def _make_plan(self, env) -> list[Waypoint]:
        """The task's waypoints, then back towards the start pose (the recording's tail is motion, not a pause)."""
        plan = self._task_plan(env)
        return plan + [Waypoint(self._home - np.array([0.0, 0.0, GRASP_OFFSET]), plan[-1].gripper)]

    def _task_plan(self, env) -> list[Waypoint]:
        kind = self.task.kind
        top = env.table_top
        if kind == "drawer":
            return self._drawer_plan(env, top)
        obj = env.body_position(self.task.obj)
        if kind == "push":
            return self._push_plan(env, obj, top)
        plan = self._pick(obj, top)
        if kind == "lift":
            return plan + [Waypoint(np.array([obj[0], obj[1], top + CLEAR + 0.03]), 1.0, SLOW, hold=3)]
        target = env.body_position(self.task.target)
        if kind == "place_in":
            release_z = top + BOWL["wall_height"] + BLOCK_HALF + 0.01
        elif kind == "place_on":
            release_z = top + 2 * PLATE["half_height"] + BLOCK_HALF + 0.006
        else:  # stack
            release_z = target[2] + 2 * BLOCK_HALF + 0.006
        return plan + self._place(target, release_z, top)

    @staticmethod
    def _pick(obj: np.ndarray, top: float) -> list[Waypoint]:
        x, y = obj[:2]
        return [
            Waypoint(np.array([x, y, top + CLEAR]), 0.0),
            Waypoint(np.array([x, y, obj[2]]), 0.0, SLOW),
            Waypoint(np.array([x, y, obj[2]]), 1.0, hold=1),
            Waypoint(np.array([x, y, top + CLEAR]), 1.0),
        ]

    @staticmethod
    def _place(target: np.ndarray, release_z: float, top: float) -> list[Waypoint]:
        x, y = target[:2]
        return [
            Waypoint(np.array([x, y, top + CLEAR]), 1.0),
            Waypoint(np.array([x, y, release_z]), 1.0, SLOW),
            Waypoint(np.array([x, y, release_z]), 0.0, hold=1),
            Waypoint(np.array([x, y, top + CLEAR]), 0.0),
        ]

    def _push_plan(self, env, obj: np.ndarray, top: float) -> list[Waypoint]:
        d = np.array([*self.task.direction, 0.0])
        self.yaw = push_yaw(d, env.embodiment)
        z = top + 0.026  # fingertips 6 mm above the table: push low so the block slides, not tips
        start = np.array([obj[0], obj[1], z]) - d * (BLOCK_HALF + 0.045)
        end = np.array([obj[0], obj[1], z]) + d * 0.13
        return [
            Waypoint(np.array([start[0], start[1], top + CLEAR]), 1.0),
            Waypoint(start, 1.0, SLOW, hold=1),
            Waypoint(end, 1.0, SLOW * 0.8),
            Waypoint(np.array([end[0], end[1], top + CLEAR]) - d * 0.04, 1.0),
        ]

    def _drawer_plan(self, env, top: float) -> list[Waypoint]:
        handle = drawer_handle_position(env.model, env.data)
        front = drawer_front_x(env.model, env.data)
        slot_x = (front + handle[0] - 0.005) / 2  # between the drawer front and the handle bar
        z = top + 0.045
        if self.task.open_drawer:
            travel = 0.14 - env.drawer_opening()
        else:
            travel = -(env.drawer_opening() + 0.01)
        start = np.array([slot_x, handle[1], z])
        end = start + np.array([travel, 0.0, 0.0])
        return [
            Waypoint(np.array([slot_x, handle[1], top + CLEAR]), 1.0),
            Waypoint(start, 1.0, SLOW),
            Waypoint(end, 1.0, SLOW * 0.8),
            Waypoint(np.array([end[0], end[1], top + CLEAR]), 1.0),
        ]
