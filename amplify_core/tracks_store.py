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

from .atomic_files import atomic_output
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
    with atomic_output(path, overwrite) as tmp:
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


# What a sidecar's tracks depend on besides the frames: a sidecar made with other values is not "done".
SETTINGS_KEYS = ("horizon", "target_fps", "grid_size", "tracker", "tracker_params")


def changed_settings(path: str | os.PathLike, settings: dict) -> list[str]:
    """The settings (``SETTINGS_KEYS``) under which the sidecar was made that differ from ``settings``, each as
    ``"key: stored -> wanted"``; empty when they all agree."""
    with h5py.File(path, "r") as f:
        stored = {k: f.attrs.get(k) for k in SETTINGS_KEYS}
    changed = []
    for key in SETTINGS_KEYS:
        if key not in settings:
            continue
        theirs, ours = stored[key], settings[key]
        if key == "tracker_params":
            theirs = json.loads(theirs) if isinstance(theirs, (str, bytes)) else theirs
            same = _plain(theirs) == _plain(ours)
        elif isinstance(ours, float) or key == "target_fps":
            same = theirs is not None and abs(float(theirs) - float(ours)) <= 1e-9 * max(1.0, abs(float(ours)))
        else:
            same = theirs is not None and _plain(theirs) == _plain(ours)
        if not same:
            changed.append(f"{key}: {_plain(theirs)!r} -> {_plain(ours)!r}")
    return changed


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


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
