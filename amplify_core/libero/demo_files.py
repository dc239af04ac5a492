"""LIBERO's HDF5 demonstration format: write it (scripted experts), read it (official datasets, ours) into the
project's episode store.

The format (LIBERO v1, one file per task, as the official datasets ``<task>_demo.hdf5``)::

    /data                     attrs: problem_info (JSON, with language_instruction), env_args (JSON),
                                     bddl_file_name, macros_image_convention ('opengl'), num_demos, total, tag
    /data/demo_<i>            attrs: num_samples
        actions               (T, 7)  OSC_POSE deltas + gripper
        states                (T, S)  flattened MuJoCo states
        robot_states          (T, 9)  gripper (2), end-effector position (3), quaternion (4)
        rewards, dones        (T,)
        obs/agentview_rgb     (T, H, W, 3) uint8, as rendered (OpenGL: bottom row first)
        obs/eye_in_hand_rgb   (T, H, W, 3) uint8, as rendered
        obs/joint_states      (T, 7);  obs/gripper_states (T, 2);  obs/ee_pos (T, 3);  obs/ee_ori (T, 3);
        obs/ee_states         (T, 6)

Reading flips the images upright (``macros_image_convention`` 'opengl', the official default; 'opencv'
files are already upright) and keeps ``joint_states`` + ``gripper_states`` as the robot state, the actions
as they are. A file of another layout (robomimic's raw ``agentview_image`` keys, another LIBERO version's
``tag``) is refused with what was expected and what was found.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ..atomic_files import atomic_output
from ..episodes import Episode
from .env import PROPRIO_NAMES

FORMAT_TAG = "libero-v1"
FPS = 20.0  # LIBERO's control frequency
IMAGE_KEYS = {"agentview": "agentview_rgb", "eye_in_hand": "eye_in_hand_rgb"}
REQUIRED = ("actions", "obs/agentview_rgb", "obs/eye_in_hand_rgb", "obs/joint_states", "obs/gripper_states")
ACTION_NAMES = ["dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"]


class LiberoDataError(ValueError):
    """A file that is not a LIBERO v1 demonstration file; the message starts with its path."""


@dataclass
class Demo:
    """One demonstration as LIBERO records it (images as rendered)."""

    actions: list = field(default_factory=list)
    states: list = field(default_factory=list)
    robot_states: list = field(default_factory=list)
    obs: dict = field(default_factory=dict)  # key -> list of per-step arrays

    def add(self, raw: dict, sim_state: np.ndarray, action: np.ndarray, image_keys: dict) -> None:
        """Record the observation ``raw`` (robosuite's dict) and the action taken after it."""
        quat = raw["robot0_eef_quat"]
        from scipy.spatial.transform import Rotation

        ori = Rotation.from_quat(quat).as_rotvec()  # robosuite quaternions are (x, y, z, w)
        values = {"joint_states": raw["robot0_joint_pos"], "gripper_states": raw["robot0_gripper_qpos"],
                  "ee_pos": raw["robot0_eef_pos"], "ee_ori": ori,
                  "ee_states": np.r_[raw["robot0_eef_pos"], ori]}
        for key, camera in image_keys.items():
            values[key] = raw[f"{camera}_image"]
        for key, value in values.items():
            self.obs.setdefault(key, []).append(np.asarray(value))
        self.actions.append(np.asarray(action, np.float64))
        self.states.append(np.asarray(sim_state, np.float64))
        self.robot_states.append(np.r_[raw["robot0_gripper_qpos"], raw["robot0_eef_pos"], quat])


def write_demo_file(path: str | Path, task, demos: list[Demo], env_kwargs: dict) -> Path:
    """Write ``demos`` of LIBERO task ``task`` (:class:`~.suites.LiberoTask`) in LIBERO's format; refuses to
    overwrite an existing file."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path}: exists; not overwritten")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=False) as tmp:
        with h5py.File(tmp, "w") as f:
            data = f.create_group("data")
            data.attrs["problem_info"] = json.dumps({"problem_name": task.suite, "domain_name": "robosuite",
                                                     "language_instruction": task.text})
            data.attrs["env_args"] = json.dumps({"type": 1, "env_name": task.name, "problem_name": task.suite,
                                                 "bddl_file": task.bddl_file, "env_kwargs": env_kwargs})
            data.attrs["bddl_file_name"] = task.bddl_file
            data.attrs["bddl_file_content"] = Path(task.bddl_file).read_text()
            data.attrs["macros_image_convention"] = "opengl"
            data.attrs["tag"] = FORMAT_TAG
            data.attrs["num_demos"] = len(demos)
            data.attrs["total"] = sum(len(d.actions) for d in demos)
            for i, demo in enumerate(demos):
                g = data.create_group(f"demo_{i}")
                g.attrs["num_samples"] = len(demo.actions)
                g.create_dataset("actions", data=np.stack(demo.actions))
                g.create_dataset("states", data=np.stack(demo.states))
                g.create_dataset("robot_states", data=np.stack(demo.robot_states))
                n = len(demo.actions)
                g.create_dataset("rewards", data=np.r_[np.zeros(n - 1), 1].astype(np.uint8))
                g.create_dataset("dones", data=np.r_[np.zeros(n - 1), 1].astype(np.uint8))
                for key, values in demo.obs.items():
                    g.create_dataset(f"obs/{key}", data=np.stack(values))
    return path


def _demo_names(data: h5py.Group) -> list[str]:
    names = [k for k in data if re.fullmatch(r"demo_\d+", k)]
    return sorted(names, key=lambda k: int(k[5:]))


def read_demo_file(path: str | Path) -> list[Episode]:
    """Every demonstration of a LIBERO HDF5 file as an :class:`~amplify_core.episodes.Episode` (robot,
    20 Hz, views ``agentview`` and ``eye_in_hand`` upright)."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise LiberoDataError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:
        if "data" not in f:
            raise LiberoDataError(f"{path}: no /data group (found {list(f)}): not a LIBERO demonstration file")
        data = f["data"]
        tag = data.attrs.get("tag")
        if tag is not None and str(tag) != FORMAT_TAG:
            raise LiberoDataError(f"{path}: a dataset of format {tag!r}; this reader knows {FORMAT_TAG!r}")
        try:
            task = json.loads(data.attrs["problem_info"])["language_instruction"]
        except (KeyError, ValueError, TypeError) as exc:
            raise LiberoDataError(f"{path}: /data has no problem_info with a language_instruction ({exc!r})") from None
        task = "".join(task).strip().strip('"') if isinstance(task, list) else str(task).strip()
        convention = str(data.attrs.get("macros_image_convention", "opengl"))
        if convention not in ("opengl", "opencv"):
            raise LiberoDataError(f"{path}: unknown macros_image_convention {convention!r}")
        names = _demo_names(data)
        if not names:
            raise LiberoDataError(f"{path}: /data holds no demo_<i> groups")
        episodes = []
        for name in names:
            g = data[name]
            missing = [k for k in REQUIRED if k not in g]
            if missing:
                found = sorted(f"obs/{k}" for k in g["obs"]) if "obs" in g else sorted(g)
                raise LiberoDataError(f"{path}: {name} lacks {missing} (found {found}); LIBERO v1 datasets "
                                      f"have {list(REQUIRED)}: a file of another LIBERO version or format?")
            frames = {}
            for view, key in IMAGE_KEYS.items():
                images = g[f"obs/{key}"][()]
                if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
                    raise LiberoDataError(f"{path}: {name}/obs/{key} is {images.dtype} {images.shape}, "
                                          f"expected uint8 (T, H, W, 3)")
                frames[view] = np.ascontiguousarray(images[:, ::-1] if convention == "opengl" else images)
            state = np.concatenate([g["obs/joint_states"][()], g["obs/gripper_states"][()]], axis=1)
            actions = g["actions"][()]
            lengths = {len(state), len(actions), *(len(v) for v in frames.values())}
            if len(lengths) != 1:
                raise LiberoDataError(f"{path}: {name} has arrays of different lengths {sorted(lengths)}")
            episodes.append(Episode(frames=frames, task=task, embodiment="robot", fps=FPS,
                                    state=state.astype(np.float32), actions=actions.astype(np.float32),
                                    state_names=PROPRIO_NAMES, action_names=ACTION_NAMES))
        return episodes
