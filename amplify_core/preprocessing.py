"""Episode -> keypoint tracks + local-window labels (paper Appendix D.4), one episode at a time.

``compute_view_tracks`` is the per-view pipeline: track a fresh grid from every frame through the
frames that span 0.8 s at the video's own rate, normalise to [-1, 1], resample to 16 steps with a cubic
spline, label each step as a local-window class (pixel-to-pixel moves). Steps past the last frame of the video
(where the tracker repeats the last frame) are marked not visible: nothing was observed there, so they neither
train the tokenizer nor count in label statistics and track scores. ``preprocess_episode`` runs it over the views of an
episode file and writes the sidecar; ``preprocess_store`` runs a shard of a whole store with resume
and a per-episode error report. The command line lives in ``training/preprocess_tracks.py``.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .episodes import EpisodeError, EpisodeReader, list_episodes, tracks_path, validate_frames
from .tracks import (
    HORIZON,
    LABEL_IMAGE_SIZE,
    TARGET_FPS,
    normalize,
    observed_steps,
    resample_tracks,
    source_horizon,
    tracks_to_labels,
)
from .tracks_store import ViewTracks, changed_settings, tracks_complete, write_tracks

log = logging.getLogger(__name__)


def compute_view_tracks(
    frames: np.ndarray,
    fps: float,
    tracker,
    horizon: int = HORIZON,
    target_fps: float = TARGET_FPS,
    label_image_size: int = LABEL_IMAGE_SIZE,
    where: str = "frames",
) -> ViewTracks:
    """Tracks, visibility and labels of one view's uint8 RGB video (num_frames, H, W, 3)."""
    frames = validate_frames(frames, where)
    h, w = frames.shape[1:3]
    k = source_horizon(fps, horizon, target_fps)
    result = tracker.track(frames, horizon=k)  # videos shorter than k are padded by the tracker
    tracks = normalize(result.points, h, w)
    tracks, visible = resample_tracks(tracks, result.visible & observed_steps(len(frames), k)[:, :, None], horizon)
    tracks = np.clip(tracks, -1.0, 1.0)
    labels = tracks_to_labels(tracks, label_image_size).astype(np.uint8)
    return ViewTracks(tracks=tracks, visible=visible, labels=labels, image_size=(h, w))


def tracking_settings(tracker, horizon: int, target_fps: float) -> dict:
    """What a sidecar's tracks depend on besides the frames (stored in it; a resumed run compares them)."""
    return {"horizon": int(horizon), "grid_size": int(getattr(tracker, "grid_size", 0)),
            "target_fps": float(target_fps), "tracker": tracker.name, "tracker_params": tracker.params()}


def preprocess_episode(
    path: str | Path,
    tracker,
    views: list[str] | None = None,
    horizon: int = HORIZON,
    target_fps: float = TARGET_FPS,
    overwrite: bool = False,
) -> Path:
    """Compute and write the track sidecar of one episode file; returns the sidecar path."""
    path = Path(path)
    with EpisodeReader(path) as episode:
        chosen = views or episode.views
        for view in chosen:  # fail before any work if a view is missing
            episode.image_size(view)
        out = {
            view: compute_view_tracks(
                episode.frames(view), episode.fps, tracker, horizon, target_fps, where=f"{path} view {view!r}"
            )
            for view in chosen
        }
        meta = {"episode": path.name, "num_frames": episode.num_frames, "source_fps": episode.fps,
                **tracking_settings(tracker, horizon, target_fps)}
    return write_tracks(tracks_path(path), out, meta, overwrite=overwrite)


@dataclass
class StoreReport:
    """What a preprocessing run did, episode by episode."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already complete (resume)
    failed: dict[str, str] = field(default_factory=dict)  # episode -> reason

    def summary(self) -> str:
        lines = [f"tracked {len(self.done)}, already done {len(self.skipped)}, failed {len(self.failed)}"]
        lines += [f"  FAILED {name}: {why}" for name, why in self.failed.items()]
        return "\n".join(lines)


def shard_of(items: list, shard: int, num_shards: int) -> list:
    """Every ``num_shards``-th item starting at ``shard`` (round-robin keeps shards balanced)."""
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in [0, num_shards), got shard={shard} num_shards={num_shards}")
    return items[shard::num_shards]


def preprocess_store(
    directory: str | Path,
    tracker,
    views: list[str] | None = None,
    shard: int = 0,
    num_shards: int = 1,
    overwrite: bool = False,
    horizon: int = HORIZON,
    target_fps: float = TARGET_FPS,
    progress: Callable[[Iterable], Iterable] = lambda x: x,
) -> StoreReport:
    """Preprocess this shard of an episode store. A bad episode is reported and the rest go on."""
    report = StoreReport()
    for path in progress(shard_of(list_episodes(directory), shard, num_shards)):
        try:
            if not overwrite:
                with EpisodeReader(path) as episode:
                    chosen = views or episode.views
                    n = episode.num_frames
                sidecar = tracks_path(path)
                if tracks_complete(sidecar, chosen, n):
                    changed = changed_settings(sidecar, tracking_settings(tracker, horizon, target_fps))
                    if changed:  # made with other settings: not done, and not silently replaced either
                        raise FileExistsError(f"{sidecar}: made with other settings ({'; '.join(changed)}); "
                                              "pass --overwrite to recompute it")
                    report.skipped.append(path.name)
                    continue
            preprocess_episode(path, tracker, views, horizon, target_fps, overwrite=overwrite)
            report.done.append(path.name)
        except (EpisodeError, ValueError, FileExistsError) as exc:
            report.failed[path.name] = str(exc)
            log.error("%s", exc)
        except Exception as exc:  # keep going: one broken file must not stop a night-long run
            report.failed[path.name] = f"{type(exc).__name__}: {exc}"
            log.error("%s: unexpected error\n%s", path, traceback.format_exc())
    return report
