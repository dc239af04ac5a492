"""LIBERO controllers for closed-loop evaluation (:mod:`amplify_core.closed_loop` runs the episodes), the
counterparts of the workcell's: the scripted LIBERO-Object expert (an upper reference) and a controller that
holds still (a lower reference)."""

from __future__ import annotations

import numpy as np

from .env import NOOP
from .experts import LiberoObjectExpert


class HoldController:
    """Zero OSC deltas, gripper open: the arm stays where it is."""

    def reset(self) -> None:
        pass

    def act(self, env, obs: dict) -> np.ndarray:
        return NOOP.copy()


class ExpertController:
    """The LIBERO-Object expert; it reads object positions from the simulator."""

    def __init__(self):
        self.expert = None

    def reset(self) -> None:
        self.expert = None

    def act(self, env, obs: dict) -> np.ndarray:
        if self.expert is None:
            self.expert = LiberoObjectExpert(env)
        return self.expert.act(env)
