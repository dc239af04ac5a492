"""Play data: undirected interaction in the workcell, recorded with actions and no task text.

The paper's inverse model learns from ANY interaction data, play included (Sec. 3.3): it maps motion codes to
actions, and needs no instruction to do so. ``PlayExpert`` is a scripted source of such data: an episode is a
random sequence of primitives, each planned from the state it starts in (an earlier push may have moved the
block a later grasp reaches for):

- reach: the grasp centre to a random point of the workspace, at a random height, yaw and gripper command;
- push: a random block in a random direction, over a random distance, low over the table as the task expert does;
- pick and drop: grasp a random block, carry it to a random place and release it from a random height;
- drawer: opened when it is mostly shut, shut when it is mostly open (play starts with any opening, ``PLAY``).

The yaw of the tool turns towards each waypoint's yaw at a bounded rate, so no action jumps. The scene is the
nominal layout of the workcell's tasks with the per-episode jitter, the one the task demos start from.
"""

from __future__ import annotations

import numpy as np

from .description import GRASP_OFFSET
from .experts import CLEAR, FAST, SLOW, ScriptedExpert, Waypoint, down_rotvec, push_yaw
from .scene import BLOCK_HALF, BLOCKS, PLACEMENT_HIGH, PLACEMENT_LOW, drawer_front_x, drawer_handle_position
from .tasks import PLAY

PRIMITIVES = ("reach", "push", "pick_drop", "drawer")
WEIGHTS = (0.15, 0.3, 0.3, 0.25)  # how often each primitive is drawn
YAW_RATE = 0.2  # rad per step the tool's yaw turns at most


class PlayExpert(ScriptedExpert):
    """``act(env) -> action (7,)`` for ``primitives`` random primitives drawn from ``rng``, then back to the start
    pose; ``done`` once back. ``history`` lists the primitives as they were planned (name and parameters)."""

    def __init__(self, rng: np.random.Generator, primitives: int = 3):
        super().__init__(PLAY)
        if primitives < 1:
            raise ValueError(f"a play episode needs at least one primitive, got {primitives}")
        self.rng, self.remaining = rng, int(primitives)
        self.history: list[dict] = []
        self._yaw_cmd = 0.0
        self._returning = False

    def act(self, env) -> np.ndarray:
        if self.plan is None:
            self._home = env.tool0_pose()[:3]
            self._cmd = self._home - np.array([0.0, 0.0, GRASP_OFFSET])
            self.plan, self._index = self._next_plan(env), 0
        elif self._index >= len(self.plan) and not self._returning:
            self.plan, self._index = self._next_plan(env), 0
        wp = self.plan[min(self._index, len(self.plan) - 1)]
        target_yaw = self.yaw if wp.yaw is None else wp.yaw
        self._yaw_cmd += float(np.clip(target_yaw - self._yaw_cmd, -YAW_RATE, YAW_RATE))
        self._advance(wp, ready=abs(target_yaw - self._yaw_cmd) < 1e-9)  # reached once the yaw is there too
        tool = self._cmd + np.array([0.0, 0.0, GRASP_OFFSET])
        return np.concatenate([tool, down_rotvec(self._yaw_cmd), [wp.gripper]])

    @property
    def done(self) -> bool:
        return self._returning and self._index >= len(self.plan)

    # ------------------------------------------------------------------------------------- primitives
    def _next_plan(self, env) -> list[Waypoint]:
        if self.remaining == 0:  # back above the start, gripper open
            self._returning = True
            return [Waypoint(self._home - np.array([0.0, 0.0, GRASP_OFFSET]), 0.0, yaw=0.0)]
        self.remaining -= 1
        name = PRIMITIVES[self.rng.choice(len(PRIMITIVES), p=WEIGHTS)]
        plan, params = getattr(self, f"_{name}")(env, env.table_top)
        self.history.append({"primitive": name, **params})
        return plan

    def _reach(self, env, top):
        xy = self.rng.uniform(PLACEMENT_LOW - 0.03, PLACEMENT_HIGH + 0.03)
        z = top + self.rng.uniform(0.04, 0.2)
        yaw = float(self.rng.uniform(-np.pi / 2, np.pi / 2))
        grip = float(self.rng.integers(0, 2))
        point = np.array([xy[0], xy[1], z])
        return [Waypoint(point, grip, FAST, hold=1, yaw=yaw)], {"point": point.round(3).tolist(), "yaw": round(yaw, 3)}

    def _push(self, env, top):
        name = list(BLOCKS)[self.rng.integers(len(BLOCKS))]
        obj = env.body_position(name)
        angle = float(self.rng.uniform(-np.pi, np.pi))
        d = np.array([np.cos(angle), np.sin(angle), 0.0])
        distance = float(self.rng.uniform(0.06, 0.13))
        yaw = push_yaw(d, env.embodiment)
        z = top + 0.026
        start = np.array([obj[0], obj[1], z]) - d * (BLOCK_HALF + 0.045)
        end = np.array([obj[0], obj[1], z]) + d * distance
        plan = [Waypoint(np.array([start[0], start[1], top + CLEAR]), 1.0, yaw=yaw),
                Waypoint(start, 1.0, SLOW, hold=1, yaw=yaw),
                Waypoint(end, 1.0, SLOW * 0.8, yaw=yaw),
                Waypoint(np.array([end[0], end[1], top + CLEAR]) - d * 0.04, 1.0, yaw=yaw)]
        return plan, {"block": name, "direction_deg": round(np.degrees(angle), 1), "distance": round(distance, 3)}

    def _pick_drop(self, env, top):
        name = list(BLOCKS)[self.rng.integers(len(BLOCKS))]
        obj = env.body_position(name)
        xy = self.rng.uniform(PLACEMENT_LOW, PLACEMENT_HIGH)
        release_z = top + self.rng.uniform(BLOCK_HALF + 0.01, 0.1)
        plan = [Waypoint(p.grasp, p.gripper, p.speed, p.hold, yaw=0.0) for p in self._pick(obj, top)]
        plan += [Waypoint(np.array([xy[0], xy[1], top + CLEAR]), 1.0, yaw=0.0),
                 Waypoint(np.array([xy[0], xy[1], release_z]), 1.0, SLOW, yaw=0.0),
                 Waypoint(np.array([xy[0], xy[1], release_z]), 0.0, hold=2, yaw=0.0),
                 Waypoint(np.array([xy[0], xy[1], top + CLEAR]), 0.0, yaw=0.0)]
        return plan, {"block": name, "to": xy.round(3).tolist(), "release_height": round(release_z - top, 3)}

    def _drawer(self, env, top):
        handle = drawer_handle_position(env.model, env.data)
        front = drawer_front_x(env.model, env.data)
        slot_x = (front + handle[0] - 0.005) / 2
        opening = env.drawer_opening()
        closing = opening > 0.07
        travel = -(opening + 0.01) if closing else 0.14 - opening
        start = np.array([slot_x, handle[1], top + 0.045])
        end = start + np.array([travel, 0.0, 0.0])
        plan = [Waypoint(np.array([slot_x, handle[1], top + CLEAR]), 1.0, yaw=0.0),
                Waypoint(start, 1.0, SLOW, yaw=0.0),
                Waypoint(end, 1.0, SLOW * 0.8, yaw=0.0),
                Waypoint(np.array([end[0], end[1], top + CLEAR]), 1.0, yaw=0.0)]
        return plan, {"direction": "close" if closing else "open", "from": round(opening, 3)}
