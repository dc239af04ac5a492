"""Workcell controllers for closed-loop evaluation (:mod:`amplify_core.closed_loop` runs the episodes).

The scripted expert (an upper reference) and :class:`HoldController` (does nothing: a lower reference) sit
beside the trained policy (:class:`amplify_core.closed_loop.PolicyController`). The same seed gives the same
scene for every controller, so settings are compared on identical episodes.
"""

from __future__ import annotations

import numpy as np

from .env import WorkcellEnv
from .experts import ScriptedExpert


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
