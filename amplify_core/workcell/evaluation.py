"""Closed-loop evaluation in the workcell: a controller acts until the task's predicate holds or time runs out.

A controller is anything with ``reset()`` and ``act(env, obs) -> action (7,)``: the trained policy
(:class:`PolicyController` over :class:`amplify_core.policy.AmplifyPolicy`, AMPLIFY or the BC baseline), the
scripted expert (an upper reference) or :class:`HoldController` (does nothing: a lower reference). The same seed
gives the same scene for every controller, so settings are compared on identical episodes.

:func:`run_policy_episodes` runs many episodes of a policy in lockstep, one batched model call per step for all
of them: the same result as one episode at a time (each keeps its own ensembler), several times cheaper.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .env import WorkcellEnv
from .experts import ScriptedExpert


@dataclass
class EpisodeResult:
    task: str
    seed: int
    success: bool
    steps: int
    frames: list = field(default_factory=list)  # rendered views per step, when recorded (for GIFs)


class HoldController:
    """Sends the current commanded pose back: the arm stays where it is."""

    def reset(self) -> None:
        pass

    def act(self, env: WorkcellEnv, obs: dict) -> np.ndarray:
        return np.concatenate([env.tool0_pose(), [0.0]])


class ExpertController:
    """The task's scripted expert (it reads the simulator state, which a learned policy never sees)."""

    def __init__(self):
        self.expert = None

    def reset(self) -> None:
        self.expert = None

    def act(self, env: WorkcellEnv, obs: dict) -> np.ndarray:
        if self.expert is None:
            self.expert = ScriptedExpert(env.task)
        return self.expert.act(env)


class PolicyController:
    """A trained policy: camera images + proprioception (+ the task text for AMPLIFY) -> ensembled action."""

    def __init__(self, policy):
        self.policy = policy

    def reset(self) -> None:
        self.policy.reset()

    def act(self, env: WorkcellEnv, obs: dict) -> np.ndarray:
        images = {v: obs["images"][v] for v in self.policy.views}
        return self.policy.act(images, obs["proprio"], env.task.text)


def run_episode(env: WorkcellEnv, controller, seed: int, record: bool = False) -> EpisodeResult:
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


def run_policy_episodes(envs: list[WorkcellEnv], policy, seeds: list[int],
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
