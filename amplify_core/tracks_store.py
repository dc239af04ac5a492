"""The track sidecar of an episode: ``<episode>.tracks.h5``, written once, atomically, beside the frames.

Schema (``TRACKS_SCHEMA_VERSION`` = 1)::

    /                  attrs: schema_version, episode (file name), num_frames, horizon, grid_size,
                              source_fps, target_fps, tracker (name), tracker_params (JSON)
    /<view>/tracks     float32 (num_frames, T, N, 2)  normalised to [-1, 1] (see amplify_core.tracks)
    /<view>/visible    bool    (num_frames, T, N)
    /<view>/labels     uint8   (num_frames, T-1, N)   local-window class of each velocity (225 classes)
    /<view>           attrs: image_size (H, W)

The file appears under its final name only when every view is written (a ``.partial`` file is renamed
into place), so "the sidecar exists" means "this episode is done" and interrupted runs resume cleanly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .episodes import EpisodeError

TRACKS_SCHEMA_VERSION = 1


@dataclass
class ViewTracks:
    tracks: np.ndarray  # (num_frames, T, N, 2) float32 in [-1, 1]
    visible: np.ndarray  # (num_frames, T, N) bool
    labels: np.ndarray  # (num_frames, T-1, N) uint8
    image_size: tuple[int, int]


def write_tracks(path: str | os.PathLike, views: dict[str, ViewTracks], meta: dict, overwrite: bool = False) -> Path:
    """Write the sidecar atomically; refuses to replace an existing file unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: tracks already exist (use overwrite to recompute them)")
    tmp = path.with_name(path.name + ".partial")
    with h5py.File(tmp, "w") as f:
        f.attrs["schema_version"] = TRACKS_SCHEMA_VERSION
        for key, value in meta.items():
            f.attrs[key] = json.dumps(value) if isinstance(value, dict) else value
        for view, vt in views.items():
            g = f.create_group(view)
            g.attrs["image_size"] = list(vt.image_size)
            g.create_dataset("tracks", data=vt.tracks.astype(np.float32), compression="lzf")
            g.create_dataset("visible", data=vt.visible.astype(bool), compression="lzf")
            g.create_dataset("labels", data=vt.labels.astype(np.uint8), compression="lzf")
    os.replace(tmp, path)
    return path


def read_tracks(path: str | os.PathLike, views: list[str] | None = None) -> dict[str, ViewTracks]:
    """Read the sidecar (all views, or ``views``); raises EpisodeError naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise EpisodeError(f"{path}: no tracks file; run `amplify-preprocess` on the episode store first")
    try:
        with h5py.File(path, "r") as f:
            version = int(f.attrs.get("schema_version", -1))
            if version != TRACKS_SCHEMA_VERSION:
                raise EpisodeError(f"{path}: tracks schema_version {version}, expected {TRACKS_SCHEMA_VERSION}")
            wanted = views if views is not None else list(f.keys())
            out = {}
            for view in wanted:
                if view not in f:
                    raise EpisodeError(f"{path}: no tracks for view {view!r}; it has {sorted(f.keys())}")
                g = f[view]
                out[view] = ViewTracks(
                    tracks=g["tracks"][()],
                    visible=g["visible"][()],
                    labels=g["labels"][()],
                    image_size=tuple(int(x) for x in g.attrs["image_size"]),
                )
            return out
    except OSError as exc:
        raise EpisodeError(f"{path}: unreadable tracks file ({exc})") from exc


def tracks_metadata(path: str | os.PathLike) -> dict:
    """Root attributes of a sidecar (tracker params decoded from JSON)."""
    with h5py.File(path, "r") as f:
        meta = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
    if isinstance(meta.get("tracker_params"), str):
        meta["tracker_params"] = json.loads(meta["tracker_params"])
    return meta


def tracks_complete(path: str | os.PathLike, views: list[str], num_frames: int) -> bool:
    """True if the sidecar exists, is readable and holds every view with ``num_frames`` frames."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            return all(v in f and f[v]["tracks"].shape[0] == num_frames for v in views)
    except OSError:
        return False
