"""One LIBERO task as an environment with the project's observation format.

``reset(seed)`` starts episode ``seed`` from the task's fixed initial state ``seed mod 50`` (LIBERO's
evaluation protocol), seeds the simulator with ``seed``, then lets the scene settle for ``settle_steps``
no-op steps that do not count towards ``max_steps``. ``step`` counts steps per episode (reset to 0 at every
reset), ends the episode with ``terminated`` when LIBERO's own success check holds and ``truncated`` at
``max_steps`` (500, as in the paper).

Observations: ``images`` = the rendered views, upright (robosuite renders in OpenGL's convention, bottom row
first; the official datasets store them that way and :mod:`.demo_files` flips them the same), ``proprio`` =
the 7 arm joint angles and the 2 finger positions (``joint_states`` + ``gripper_states`` of the datasets).
Actions: LIBERO's 7-d OSC_POSE deltas (position, axis-angle, gripper -1 open / +1 close); non-finite actions
are refused and the rest clipped to [-1, 1] (the controller's input range).
"""

from __future__ import annotations

import numpy as np

from .installation import import_libero
from .suites import LiberoTask, find_task

VIEWS = {"agentview": "agentview", "eye_in_hand": "robot0_eye_in_hand"}  # our view name -> robosuite camera
PROPRIO_NAMES = [f"joint_{i}" for i in range(7)] + ["finger_left", "finger_right"]
NOOP = np.array([0, 0, 0, 0, 0, 0, -1], np.float64)


class LiberoEnv:
    def __init__(self, suite: str, task: str | int | LiberoTask, image_size: int = 128, render: bool = True,
                 views: list[str] | None = None, max_steps: int = 500, settle_steps: int = 10):
        _, envs = import_libero()
        self.task = task if isinstance(task, LiberoTask) else find_task(suite, task)
        self.views = list(views or VIEWS)
        unknown = [v for v in self.views if v not in VIEWS]
        if unknown:
            raise ValueError(f"LIBERO has no view(s) {unknown}; views: {list(VIEWS)}")
        self.render = render
        self.max_steps = max_steps
        self.settle_steps = settle_steps
        self.image_size = image_size
        kwargs = dict(bddl_file_name=self.task.bddl_file, camera_heights=image_size, camera_widths=image_size)
        if render:
            kwargs["camera_names"] = [VIEWS[v] for v in self.views]
        else:  # physics only: ~10x faster, for scripted experts that do not need pictures
            kwargs.update(has_offscreen_renderer=False, use_camera_obs=False)
        self.env = envs.OffScreenRenderEnv(**kwargs)
        self._init_states = self.task.init_states()
        self.steps = 0
        self.raw_obs: dict = {}

    @property
    def num_init_states(self) -> int:
        return len(self._init_states)

    def _obs(self, raw: dict) -> dict:
        self.raw_obs = raw
        obs = {"proprio": np.concatenate([raw["robot0_joint_pos"], raw["robot0_gripper_qpos"]]).astype(np.float32)}
        if self.render:
            obs["images"] = {v: np.ascontiguousarray(raw[f"{VIEWS[v]}_image"][::-1]) for v in self.views}
        return obs

    def reset(self, seed: int) -> dict:
        self.env.seed(int(seed))
        self.env.reset()
        raw = self.env.set_init_state(self._init_states[int(seed) % self.num_init_states])
        for _ in range(self.settle_steps):
            raw, *_ = self.env.step(NOOP)
        self.steps = 0
        return self._obs(raw)

    def step(self, action):
        action = np.asarray(action, np.float64).reshape(-1)
        if action.shape != (7,) or not np.all(np.isfinite(action)):
            raise ValueError(f"LIBERO action must be 7 finite numbers (OSC_POSE delta + gripper), got {action}")
        raw, reward, _, info = self.env.step(np.clip(action, -1.0, 1.0))
        self.steps += 1
        success = bool(self.env.check_success())
        return self._obs(raw), float(reward), success, (not success) and self.steps >= self.max_steps, info

    def sim_state(self) -> np.ndarray:
        """The flattened MuJoCo state (what LIBERO's datasets keep per step as ``states``)."""
        return np.asarray(self.env.get_sim_state(), np.float64)

    def close(self) -> None:
        self.env.close()
