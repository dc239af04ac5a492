"""The episode store: one HDF5 file per episode, the unit every later stage reads.

AMPLIFY learns from two kinds of data (paper, Sec. 3): videos with a task text but no actions (any
embodiment, e.g. a human hand) and robot interaction data with actions. Both are stored in the same
schema, so the forward model can read every episode and the inverse model only those with actions.

Schema (``SCHEMA_VERSION`` = 1)::

    /                       attrs: schema_version, task, embodiment ('robot' | 'human'), fps, views
    /observations/<view>    uint8 (num_frames, H, W, 3) RGB, one HDF5 chunk per frame
    /robot/state            float32 (num_frames, D)   optional; attrs: names
    /robot/actions          float32 (num_frames, A)   optional; attrs: names

Keypoint tracks are not written into this file: ``amplify_core.tracks_store`` keeps them in a
sidecar ``<episode>.tracks.h5`` so that preprocessing never rewrites (or risks) the frames.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import h5py
import numpy as np

from .atomic_files import atomic_output

SCHEMA_VERSION = 1
EMBODIMENTS = ("robot", "human")
EPISODE_SUFFIX = ".h5"
TRACKS_SUFFIX = ".tracks.h5"


class EpisodeError(ValueError):
    """An episode file is missing, unreadable or does not follow the schema.

    The message always starts with the file path so that a user scanning a log of a thousand episodes
    can find the bad one.
    """


@dataclass
class Episode:
    """One episode in memory. ``frames`` maps a view name to uint8 RGB frames (num_frames, H, W, 3)."""

    frames: Mapping[str, np.ndarray]
    task: str
    embodiment: str
    fps: float
    state: np.ndarray | None = None
    actions: np.ndarray | None = None
    state_names: Sequence[str] = field(default_factory=tuple)
    action_names: Sequence[str] = field(default_factory=tuple)

    @property
    def views(self) -> list[str]:
        return list(self.frames)

    @property
    def num_frames(self) -> int:
        return len(next(iter(self.frames.values())))


def validate_frames(frames: np.ndarray, where: str) -> np.ndarray:
    """Check that ``frames`` is a uint8 (num_frames, H, W, 3) RGB array; ``where`` names it in errors."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise EpisodeError(f"{where}: frames must be uint8 RGB, got dtype {frames.dtype}")
    if frames.ndim != 4:
        raise EpisodeError(
            f"{where}: frames must have shape (num_frames, H, W, 3), got {frames.ndim}-D shape {frames.shape}"
        )
    if frames.shape[-1] != 3:
        raise EpisodeError(f"{where}: frames must have 3 colour channels (RGB), got {frames.shape[-1]}")
    if frames.shape[0] < 1:
        raise EpisodeError(f"{where}: episode has no frames")
    return frames


def _validate(episode: Episode, path: Path) -> None:
    if not episode.frames:
        raise EpisodeError(f"{path}: an episode needs at least one camera view")
    if episode.embodiment not in EMBODIMENTS:
        raise EpisodeError(f"{path}: embodiment must be one of {EMBODIMENTS}, got {episode.embodiment!r}")
    if not np.isfinite(episode.fps) or episode.fps <= 0:
        raise EpisodeError(f"{path}: fps must be a positive number, got {episode.fps}")
    lengths = set()
    for view, frames in episode.frames.items():
        lengths.add(len(validate_frames(frames, f"{path} view {view!r}")))
    if len(lengths) != 1:
        raise EpisodeError(f"{path}: views have different frame counts {sorted(lengths)}")
    n = lengths.pop()
    for name, array in (("robot/state", episode.state), ("robot/actions", episode.actions)):
        if array is None:
            continue
        array = np.asarray(array)
        if array.ndim != 2 or len(array) != n:
            raise EpisodeError(f"{path}: {name} must have shape ({n}, D), got {array.shape}")
        if not np.all(np.isfinite(array)):
            raise EpisodeError(f"{path}: {name} contains NaN or infinite values")


def write_episode(path: str | os.PathLike, episode: Episode, overwrite: bool = False) -> Path:
    """Write ``episode`` to ``path`` atomically (a temporary file renamed into place).

    An existing file is never replaced unless ``overwrite`` is set: recorded demonstrations are the
    most expensive thing a lab owns.
    """
    path = Path(path)
    _validate(episode, path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: episode already exists (pass overwrite=True to replace it)")
    with atomic_output(path, overwrite) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["task"] = episode.task
            f.attrs["embodiment"] = episode.embodiment
            f.attrs["fps"] = float(episode.fps)
            f.attrs["views"] = list(episode.views)
            obs = f.create_group("observations")
            for view, frames in episode.frames.items():
                frames = np.asarray(frames)
                obs.create_dataset(view, data=frames, chunks=(1, *frames.shape[1:]), compression="lzf")
            if episode.state is not None or episode.actions is not None:
                robot = f.create_group("robot")
                if episode.state is not None:
                    d = robot.create_dataset("state", data=np.asarray(episode.state, np.float32))
                    d.attrs["names"] = list(episode.state_names)
                if episode.actions is not None:
                    d = robot.create_dataset("actions", data=np.asarray(episode.actions, np.float32))
                    d.attrs["names"] = list(episode.action_names)
    return path


class EpisodeStream:
    """Write an episode one frame at a time, for sources too long to hold in memory (an imported video).

    The file appears complete at ``path`` when ``finish`` returns, or not at all (an error, ``abort``, or leaving a
    ``with`` block by an exception removes the partial file; see ``atomic_output``). ``extra_attrs`` are written
    as root attributes beside the schema's (e.g. where an imported episode came from); readers ignore them.
    """

    def __init__(self, path: str | os.PathLike, views: Sequence[str], height: int, width: int, task: str,
                 embodiment: str, fps: float, overwrite: bool = False, extra_attrs: Mapping | None = None):
        self.path = Path(path)
        if not views:
            raise EpisodeError(f"{self.path}: an episode needs at least one camera view")
        if embodiment not in EMBODIMENTS:
            raise EpisodeError(f"{self.path}: embodiment must be one of {EMBODIMENTS}, got {embodiment!r}")
        if not np.isfinite(fps) or fps <= 0:
            raise EpisodeError(f"{self.path}: fps must be a positive number, got {fps}")
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path}: episode already exists (pass overwrite=True to replace it)")
        self.views, self.shape = list(views), (int(height), int(width), 3)
        self.num_frames = 0
        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_output(self.path, overwrite))
        self._file = self._stack.enter_context(h5py.File(tmp, "w"))
        attrs = {**(extra_attrs or {}), "schema_version": SCHEMA_VERSION, "task": task, "embodiment": embodiment,
                 "fps": float(fps), "views": self.views}
        for key, value in attrs.items():
            self._file.attrs[key] = value
        obs = self._file.create_group("observations")
        self._datasets = {view: obs.create_dataset(view, shape=(0, *self.shape), maxshape=(None, *self.shape),
                                                   dtype=np.uint8, chunks=(1, *self.shape), compression="lzf")
                          for view in self.views}

    def __enter__(self) -> "EpisodeStream":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif self._file is not None:
            self.abort()
            raise EpisodeError(f"{self.path}: episode stream left without finish(); nothing written")

    def append(self, frames: Mapping[str, np.ndarray]) -> None:
        """One frame per view (uint8 RGB of the stream's height x width)."""
        if set(frames) != set(self.views):
            raise EpisodeError(f"{self.path}: a frame needs exactly the views {self.views}, got {sorted(frames)}")
        for view, frame in frames.items():
            frame = np.asarray(frame)
            if frame.dtype != np.uint8 or frame.shape != self.shape:
                raise EpisodeError(f"{self.path} view {view!r}: frame {self.num_frames} is {frame.dtype} "
                                   f"{frame.shape}, expected uint8 {self.shape}")
            d = self._datasets[view]
            d.resize(self.num_frames + 1, axis=0)
            d[self.num_frames] = frame
        self.num_frames += 1

    def finish(self, state=None, actions=None, state_names: Sequence[str] = (),
               action_names: Sequence[str] = ()) -> Path:
        """Write the robot arrays (one row per frame, when given) and move the complete file into place."""
        n = self.num_frames
        try:
            if n < 1:
                raise EpisodeError(f"{self.path}: episode has no frames")
            robot = None
            for name, array, names in (("state", state, state_names), ("actions", actions, action_names)):
                if array is None:
                    continue
                array = np.asarray(array, np.float32)
                if array.ndim != 2 or len(array) != n:
                    raise EpisodeError(f"{self.path}: robot/{name} must have shape ({n}, D), got {array.shape}")
                if not np.all(np.isfinite(array)):
                    raise EpisodeError(f"{self.path}: robot/{name} contains NaN or infinite values")
                robot = robot or self._file.create_group("robot")
                robot.create_dataset(name, data=array).attrs["names"] = list(names)
        except BaseException:
            self.abort()
            raise
        self._file = None
        self._stack.close()  # closes the HDF5 file, then moves it into place (FileExistsError if raced)
        return self.path

    def abort(self) -> None:
        """Discard everything written; the target path is left as it was."""
        if self._file is None:
            return
        self._file = None
        self._stack.__exit__(_Aborted, _Aborted(), None)  # closes the file; atomic_output removes it


class _Aborted(Exception):
    pass


class EpisodeReader:
    """Lazy reader of one episode file; frames are read per view (and per frame range) on demand.

    Use as a context manager. Every schema problem raises :class:`EpisodeError` naming the file.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise EpisodeError(f"{self.path}: no such episode file")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:  # h5py raises OSError for truncated / non-HDF5 files
            raise EpisodeError(f"{self.path}: not a readable HDF5 file ({exc})") from exc
        try:
            self._check_schema()
        except Exception:
            self._file.close()
            raise

    def _check_schema(self) -> None:
        attrs = self._file.attrs
        version = attrs.get("schema_version")
        if version is None:
            raise EpisodeError(f"{self.path}: missing 'schema_version' attribute; not an amplify episode file")
        if int(version) != SCHEMA_VERSION:
            raise EpisodeError(
                f"{self.path}: schema_version {int(version)} is not supported (this reader reads {SCHEMA_VERSION})"
            )
        for key in ("task", "embodiment", "fps", "views"):
            if key not in attrs:
                raise EpisodeError(f"{self.path}: missing root attribute {key!r}")
        if "observations" not in self._file:
            raise EpisodeError(f"{self.path}: missing group 'observations'")
        for view in self.views:
            if view not in self._file["observations"]:
                raise EpisodeError(f"{self.path}: view {view!r} is listed but /observations/{view} is missing")
            shape = self._file["observations"][view].shape
            if len(shape) != 4 or shape[-1] != 3:
                raise EpisodeError(f"{self.path}: /observations/{view} has shape {shape}, expected (N, H, W, 3)")

    def __enter__(self) -> "EpisodeReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    @property
    def task(self) -> str:
        return str(self._file.attrs["task"])

    @property
    def embodiment(self) -> str:
        return str(self._file.attrs["embodiment"])

    @property
    def fps(self) -> float:
        return float(self._file.attrs["fps"])

    @property
    def views(self) -> list[str]:
        return [str(v) for v in self._file.attrs["views"]]

    @property
    def num_frames(self) -> int:
        return int(self._file["observations"][self.views[0]].shape[0])

    def image_size(self, view: str) -> tuple[int, int]:
        """(height, width) of ``view``."""
        shape = self._dataset(view).shape
        return int(shape[1]), int(shape[2])

    def _dataset(self, view: str) -> h5py.Dataset:
        if view not in self.views:
            raise EpisodeError(f"{self.path}: no view {view!r}; this episode has views {self.views}")
        return self._file["observations"][view]

    def frames(self, view: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """uint8 RGB frames ``[start:stop]`` of ``view``; raises EpisodeError if the data are corrupt."""
        dataset = self._dataset(view)
        try:
            frames = dataset[start:stop]
        except OSError as exc:  # a truncated file can open fine and fail on the first chunk read
            raise EpisodeError(f"{self.path}: could not read /observations/{view} ({exc})") from exc
        return validate_frames(frames, f"{self.path} view {view!r}")

    @property
    def has_actions(self) -> bool:
        return "robot" in self._file and "actions" in self._file["robot"]

    def state(self) -> np.ndarray | None:
        return self._robot_array("state")

    def actions(self) -> np.ndarray | None:
        return self._robot_array("actions")

    def _robot_array(self, name: str) -> np.ndarray | None:
        if "robot" not in self._file or name not in self._file["robot"]:
            return None
        return np.asarray(self._file["robot"][name][()], np.float32)

    def load(self) -> Episode:
        """Read the whole episode into memory."""
        robot = self._file.get("robot")
        names = lambda key: [str(n) for n in robot[key].attrs.get("names", [])] if robot is not None and key in robot else []  # noqa: E731
        return Episode(
            frames={view: self.frames(view) for view in self.views},
            task=self.task,
            embodiment=self.embodiment,
            fps=self.fps,
            state=self.state(),
            actions=self.actions(),
            state_names=names("state"),
            action_names=names("actions"),
        )


def read_episode(path: str | os.PathLike) -> Episode:
    """Read a whole episode file into memory."""
    with EpisodeReader(path) as reader:
        return reader.load()


def list_episodes(directory: str | os.PathLike) -> list[Path]:
    """Episode files in ``directory`` (sorted; sidecar track files and partial writes excluded)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise EpisodeError(f"{directory}: episode store directory does not exist")
    return sorted(
        p for p in directory.glob(f"*{EPISODE_SUFFIX}") if not p.name.endswith(TRACKS_SUFFIX) and p.is_file()
    )


def tracks_path(episode_path: str | os.PathLike) -> Path:
    """Where the keypoint tracks of an episode are stored: ``<stem>.tracks.h5`` beside it."""
    episode_path = Path(episode_path)
    return episode_path.with_name(episode_path.name[: -len(EPISODE_SUFFIX)] + TRACKS_SUFFIX)
