"""Run the scripted expert of a task in the workcell and collect an episode (frames, state, actions).

``run_expert`` is what the dataset generator, the tests and the ground-truth tracker share. After the
predicate first holds the rollout continues for ``tail_steps`` more steps (the expert keeps retreating),
so videos do not stop on the frame of success. A play episode (``tasks.PLAY``, ``play.py``) has no predicate:
it ends when its primitives are done and counts as a success if that happens within the step limit. Per-frame simulator states (qpos, mocap poses) and body
poses are kept so the episode can be re-rendered and ground-truth tracks computed later.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .env import WorkcellEnv
from .experts import ScriptedExpert
from .play import PlayExpert


@dataclass
class Rollout:
    success: bool
    steps: int
    frames: dict = field(default_factory=dict)  # view -> (T, H, W, 3) uint8
    state: np.ndarray | None = None  # (T, 7)
    actions: np.ndarray | None = None  # (T, 7): the action taken after observing frame t
    qpos: np.ndarray | None = None  # (T, nq)
    mocap_pos: np.ndarray | None = None  # (T, nmocap, 3)
    mocap_quat: np.ndarray | None = None  # (T, nmocap, 4)
    body_pos: np.ndarray | None = None  # (T, nbody, 3) world positions
    body_quat: np.ndarray | None = None  # (T, nbody, 4) world orientations (w, x, y, z)
    clamp_count: int = 0


def run_expert(env: WorkcellEnv, seed: int, tail_steps: int = 10, record: bool = True) -> Rollout:
    """Reset ``env`` with ``seed`` and run the task's scripted expert until success + ``tail_steps``
    or the step limit. With ``record`` the frames (if the env renders) and per-frame states are kept.

    Frame t is the observation before action t; the final observation is kept with a copy of the last
    action, so every array has one row per frame.
    """
    play = env.task.kind == "play"
    # play draws its primitives from its own stream of the seed (the layout uses the seed itself)
    expert = PlayExpert(np.random.default_rng([seed, 1])) if play else ScriptedExpert(env.task)
    obs = env.reset(seed)
    frames, states, actions, sims, poses = [], [], [], [], []
    success_at = None
    info = {"clamp_count": 0}

    def keep(o):
        if record:
            if "images" in o:
                frames.append(o["images"])
            states.append(o["proprio"])
            sims.append(env.sim_state())
            poses.append((env.data.xpos.copy(), env.data.xquat.copy()))

    keep(obs)
    while True:
        action = expert.act(env)
        obs, _, terminated, truncated, info = env.step(action)
        if record:
            actions.append(action.astype(np.float32))
        keep(obs)
        if terminated and success_at is None:
            success_at = env.steps
        if play and expert.done:
            break
        if truncated or (success_at is not None and env.steps - success_at >= tail_steps):
            break
        if success_at is not None and env.steps >= env.max_steps:
            break
    success = expert.done if play else bool(env.success())
    out = Rollout(success=success, steps=env.steps, clamp_count=info["clamp_count"])
    if record:
        actions.append(actions[-1] if actions else np.zeros(7, np.float32))
        if frames:
            out.frames = {v: np.stack([f[v] for f in frames]) for v in frames[0]}
        out.state = np.stack(states)
        out.actions = np.stack(actions)
        out.qpos = np.stack([s["qpos"] for s in sims])
        out.mocap_pos = np.stack([s["mocap_pos"] for s in sims])
        out.mocap_quat = np.stack([s["mocap_quat"] for s in sims])
        out.body_pos = np.stack([p[0] for p in poses])
        out.body_quat = np.stack([p[1] for p in poses])
    return out
