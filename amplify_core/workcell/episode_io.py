"""Writing workcell rollouts into the episode store, with the simulator state needed to replay them.

The episode itself follows ``amplify_core.episodes`` unchanged (views 'front', 'side', 'corner'; state =
6 joints + gripper opening and 7-d actions for the robot; no state/actions for 'human'). An extra
optional group ``/sim`` (ignored by the episode reader) keeps what ground-truth tracks need::

    /sim   attrs: seed, task, embodiment, image_size
    /sim/qpos (T, nq), /sim/mocap_pos (T, nmocap, 3), /sim/mocap_quat (T, nmocap, 4)
    /sim/body_pos (T, nbody, 3), /sim/body_quat (T, nbody, 4)   world poses, (w, x, y, z)

The file is written under a temporary name and renamed into place, so an interrupted run never leaves
a half-written ``.h5`` that a resumed run would skip.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..atomic_files import atomic_output
from ..episodes import Episode, write_episode
from .env import ACTION_NAMES, STATE_NAMES
from .rollout import Rollout

SIM_GROUP = "sim"
_SIM_ARRAYS = ("qpos", "mocap_pos", "mocap_quat", "body_pos", "body_quat")


@dataclass
class SimRecord:
    seed: int
    task: str
    embodiment: str
    image_size: int
    qpos: np.ndarray
    mocap_pos: np.ndarray
    mocap_quat: np.ndarray
    body_pos: np.ndarray
    body_quat: np.ndarray


def write_rollout(path: str | os.PathLike, rollout: Rollout, task: str, embodiment: str, seed: int,
                  image_size: int, fps: float, with_actions: bool = True) -> Path:
    """Write ``rollout`` as an episode file at ``path`` (never over an existing file). ``with_actions=False`` keeps
    a robot episode's frames only: an action-free robot video, as a lab's recordings without joint logs are."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path}: episode already exists")
    robot = embodiment == "robot" and with_actions
    episode = Episode(
        frames=rollout.frames, task=task, embodiment=embodiment, fps=fps,
        state=rollout.state if robot else None, actions=rollout.actions if robot else None,
        state_names=STATE_NAMES if robot else (), action_names=ACTION_NAMES if robot else (),
    )
    with atomic_output(path, overwrite=False) as tmp:
        write_episode(tmp, episode, overwrite=True)
        with h5py.File(tmp, "a") as f:
            sim = f.create_group(SIM_GROUP)
            sim.attrs.update({"seed": int(seed), "task": task, "embodiment": embodiment,
                              "image_size": int(image_size)})
            for name in _SIM_ARRAYS:
                sim.create_dataset(name, data=getattr(rollout, name), compression="lzf")
    return path


def read_sim(path: str | os.PathLike) -> SimRecord:
    """The ``/sim`` group of a workcell episode; ValueError naming the file if it has none."""
    path = Path(path)
    with h5py.File(path, "r") as f:
        if SIM_GROUP not in f:
            raise ValueError(f"{path}: no /{SIM_GROUP} group; only episodes written by the workcell "
                             "generator can be replayed for ground-truth tracks")
        sim = f[SIM_GROUP]
        return SimRecord(seed=int(sim.attrs["seed"]), task=str(sim.attrs["task"]),
                         embodiment=str(sim.attrs["embodiment"]), image_size=int(sim.attrs["image_size"]),
                         **{name: sim[name][()] for name in _SIM_ARRAYS})
