"""Closed-loop episodes of any environment with the project's interface (the workcell, LIBERO).

An environment has ``reset(seed) -> obs``, ``step(action) -> (obs, reward, terminated, truncated, info)``,
``task.text`` and ``steps``; ``obs`` holds ``images`` (view -> HxWx3, when it renders) and ``proprio``. A
controller has ``reset()`` and ``act(env, obs) -> action``.

:func:`run_policy_episodes` runs many episodes of a policy in lockstep, one batched model call per step for all
of them: the same result as one episode at a time (each keeps its own ensembler), several times cheaper.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class EpisodeResult:
    task: str
    seed: int
    success: bool
    steps: int
    frames: list = field(default_factory=list)  # rendered views per step, when recorded (for GIFs)


class PolicyController:
    """A trained policy: camera images + proprioception (+ the task text for AMPLIFY) -> ensembled action."""

    def __init__(self, policy):
        self.policy = policy

    def reset(self) -> None:
        self.policy.reset()

    def act(self, env, obs: dict) -> np.ndarray:
        images = {v: obs["images"][v] for v in self.policy.views}
        return self.policy.act(images, obs["proprio"], env.task.text)


def run_episode(env, controller, seed: int, record: bool = False) -> EpisodeResult:
    """One episode from ``env.reset(seed)`` until success or ``env.max_steps``."""
    controller.reset()
    obs = env.reset(seed)
    frames = [obs["images"]] if record and "images" in obs else []
    success = False
    while True:
        obs, _, terminated, truncated, _ = env.step(controller.act(env, obs))
        if record and "images" in obs:
            frames.append(obs["images"])
        if terminated:
            success = True
            break
        if truncated:
            break
    return EpisodeResult(env.task.text, int(seed), success, env.steps, frames)


def run_policy_episodes(envs: list, policy, seeds: list[int],
                        record: list[bool] | None = None) -> list[EpisodeResult]:
    """Episode ``i`` in ``envs[i]`` from ``seeds[i]``; every step, one batched policy call for those still running."""
    record = record or [False] * len(envs)
    obs = [env.reset(seed) for env, seed in zip(envs, seeds)]
    frames = [[o["images"]] if rec else [] for o, rec in zip(obs, record)]
    ensemblers = [policy.new_ensembler() for _ in envs]
    success = [False] * len(envs)
    running = list(range(len(envs)))
    while running:
        chunks = policy.predict_chunks([{v: obs[i]["images"][v] for v in policy.views} for i in running],
                                       [obs[i]["proprio"] for i in running], [envs[i].task.text for i in running])
        still = []
        for i, chunk in zip(running, chunks):
            obs[i], _, terminated, truncated, _ = envs[i].step(ensemblers[i].step(chunk).astype(np.float32))
            if record[i]:
                frames[i].append(obs[i]["images"])
            success[i] = bool(terminated)
            if not (terminated or truncated):
                still.append(i)
        running = still
    return [EpisodeResult(env.task.text, int(seed), ok, env.steps, f)
            for env, seed, ok, f in zip(envs, seeds, success, frames)]
