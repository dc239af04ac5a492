"""Scripted experts for LIBERO-Object: pick the named object, place it in the basket.

They read the simulator's object positions (a learned policy never sees them) and drive the end effector
with LIBERO's OSC_POSE delta actions: a proportional step toward the phase's target, clipped to the
controller's input range (1 = 5 cm per step). Phases: above the object, down to it, close, lift, over the
basket, down, open, hold. A phase ends when the gripper is within ``tolerance`` of its target or after its
step budget (the grasp height may be unreachable by a few mm when the fingers touch the table).
"""

from __future__ import annotations

import numpy as np

from .suites import LiberoTask

OPEN, CLOSE = -1.0, 1.0
ACTION_SCALE = 0.05  # metres per unit action of LIBERO's OSC_POSE controller (its output_max)


class ExpertError(ValueError):
    """The task is not one the experts know (only LIBERO-Object's pick-and-place tasks)."""


def object_and_container(env) -> tuple[str, str]:
    """The object to move and the container, from the task's BDDL goal ``(In <object> <container>_contain_region)``."""
    goal = env.env.env.parsed_problem["goal_state"]
    if len(goal) != 1 or goal[0][0].lower() != "in":
        raise ExpertError(f"no scripted expert for {env.task.text!r}: its goal is {goal}, the experts place one "
                          f"object in a container (LIBERO-Object)")
    _, obj, region = goal[0]
    return obj, region.removesuffix("_contain_region")


class LiberoObjectExpert:
    # (name, gripper, step budget); targets are computed when the phase starts
    PHASES = (("above", OPEN, 80), ("down", OPEN, 60), ("close", CLOSE, 15), ("lift", CLOSE, 60),
              ("carry", CLOSE, 100), ("lower", CLOSE, 60), ("release", OPEN, 20), ("hold", OPEN, 10**9))

    def __init__(self, env, tolerance: float = 0.005):
        self.obj, self.container = object_and_container(env)
        self.tolerance = tolerance
        self.phase = 0
        self.phase_steps = 0
        self.target = None

    @property
    def done(self) -> bool:
        return self.PHASES[self.phase][0] == "hold"

    def _target(self, name: str, raw: dict) -> np.ndarray | None:
        eef, obj, box = raw["robot0_eef_pos"], raw[f"{self.obj}_pos"], raw[f"{self.container}_pos"]
        return {"above": obj + [0, 0, 0.12], "down": obj.copy(), "lift": eef + [0, 0, 0.25],
                "carry": np.r_[box[:2], eef[2]], "lower": box + [0, 0, 0.15]}.get(name)

    def act(self, env) -> np.ndarray:
        raw = env.raw_obs
        name, grip, budget = self.PHASES[self.phase]
        if self.phase_steps == 0:
            self.target = self._target(name, raw)
        move = np.zeros(3)
        if self.target is not None:
            error = self.target - raw["robot0_eef_pos"]
            move = np.clip(error / ACTION_SCALE, -1.0, 1.0)
            reached = np.linalg.norm(error) < self.tolerance
        else:
            reached = False  # gripper-only phases run their whole budget
        self.phase_steps += 1
        if reached or self.phase_steps >= budget:
            self.phase, self.phase_steps = min(self.phase + 1, len(self.PHASES) - 1), 0
        return np.r_[move, 0.0, 0.0, 0.0, grip]


def run_expert(env, seed: int, max_steps: int | None = None, tail_steps: int = 5):
    """One expert episode from initial state ``seed``; returns ``(success, demo)`` with a
    :class:`~.demo_files.Demo` of every step (images as rendered when ``env`` renders). The episode stops
    ``tail_steps`` after LIBERO's success check first holds, or at ``max_steps`` (default ``env.max_steps``)."""
    from .demo_files import Demo
    from .env import VIEWS

    expert = LiberoObjectExpert(env)
    env.reset(seed)
    demo = Demo()
    cameras = {f"{v}_rgb": VIEWS[v] for v in env.views} if env.render else {}
    success_at = None
    for _ in range(max_steps or env.max_steps):
        action = expert.act(env)
        demo.add(env.raw_obs, env.sim_state(), action, cameras)
        _, _, success, _, _ = env.step(action)
        if success and success_at is None:
            success_at = env.steps
        if success_at is not None and env.steps >= success_at + tail_steps:
            break
    return success_at is not None and bool(env.env.check_success()), demo
