"""Training samples of the three stages, read from an episode store and its track sidecars.

* :class:`TrackWindows` (tokenizer): per (episode, frame) the velocities and labels of every view.
* :class:`ForwardSamples` (forward dynamics): images at t, the task embedding, and the codes the frozen
  tokenizer assigns to the tracks starting at t. Any episode with a task text counts (human or robot).
* :class:`InverseSamples` (inverse dynamics): images at t, proprioception q_t, codes, and the action
  chunk a_t .. a_{t+T-1} (padded by repeating the last action). Only episodes with actions count.

Episodes are loaded into memory once (uint8 frames), which is what a 2-core machine wants; every problem
with a file raises :class:`~amplify_core.episodes.EpisodeError` naming it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch.utils.data import Dataset

from .episodes import EpisodeError, EpisodeReader, list_episodes, tracks_path
from .tracks import label_mask, velocities
from .tracks_store import read_tracks

log = logging.getLogger(__name__)


@dataclass
class LoadedEpisode:
    path: Path
    task: str
    embodiment: str
    frames: np.ndarray | None  # (num_frames, V, 3, H, W) uint8, or None when images are not needed
    tracks: np.ndarray | None  # (num_frames, V, T, N, 2) float32
    labels: np.ndarray | None  # (num_frames, V, T-1, N) uint8
    visible: np.ndarray | None  # (num_frames, V, T, N) bool
    state: np.ndarray | None
    actions: np.ndarray | None

    @property
    def num_frames(self) -> int:
        for a in (self.frames, self.tracks, self.actions):
            if a is not None:
                return len(a)
        raise ValueError("empty episode")


def episode_paths(stores: Iterable[str | Path]) -> list[Path]:
    paths = []
    for store in stores:
        found = list_episodes(store)
        if not found:
            raise EpisodeError(f"{store}: no episode files (*.h5) in this store")
        paths += found
    return paths


def load_episode(path: Path, views: list[str], images: bool, tracks: bool, need_actions: bool = False) -> LoadedEpisode:
    with EpisodeReader(path) as reader:
        frames = None
        if images:
            sizes = {reader.image_size(v) for v in views}  # also checks every view exists
            if len(sizes) != 1:
                raise EpisodeError(f"{path}: views {views} have different image sizes {sorted(sizes)}")
            frames = np.stack([reader.frames(v) for v in views], axis=1).transpose(0, 1, 4, 2, 3)
        state, actions = reader.state(), reader.actions()
        if need_actions and (actions is None or state is None):
            raise EpisodeError(f"{path}: has no robot state/actions (embodiment {reader.embodiment!r})")
        task, embodiment, n = reader.task, reader.embodiment, reader.num_frames
    track_arr = label_arr = visible_arr = None
    if tracks:
        sidecar = tracks_path(path)
        if not sidecar.is_file():
            raise EpisodeError(f"{path}: no tracks ({sidecar.name} missing); run `amplify-preprocess` on the store")
        per_view = read_tracks(sidecar, views)
        track_arr = np.stack([per_view[v].tracks for v in views], axis=1)
        label_arr = np.stack([per_view[v].labels for v in views], axis=1)
        visible_arr = np.stack([per_view[v].visible for v in views], axis=1)
        if len(track_arr) != n:
            raise EpisodeError(f"{sidecar}: tracks cover {len(track_arr)} frames, the episode has {n}")
    return LoadedEpisode(path, task, embodiment, frames, track_arr, label_arr, visible_arr, state, actions)


def load_episodes(stores, views, images, tracks, need_actions=False, skip_bad=True) -> list[LoadedEpisode]:
    """Load every episode of ``stores``; bad ones are logged and skipped (or raised if ``skip_bad`` is False)."""
    out = []
    for path in episode_paths(stores):
        try:
            out.append(load_episode(path, views, images, tracks, need_actions))
        except EpisodeError as exc:
            if not skip_bad:
                raise
            log.warning("skipping %s", exc)
    if not out:
        raise EpisodeError(f"no usable episode in {list(map(str, stores))} (views {views})")
    return out


class _Indexed(Dataset):
    def __init__(self, episodes: list[LoadedEpisode]):
        self.episodes = episodes
        self.index = [(e, t) for e, ep in enumerate(episodes) for t in range(ep.num_frames)]

    def __len__(self) -> int:
        return len(self.index)


class TrackWindows(_Indexed):
    """(velocities (V, T-1, N, 2) float32, labels (V, T-1, N) int64, mask (V, T-1, N) bool: the labels to trust,
    see ``amplify_core.tracks.label_mask``) for every frame of every episode."""

    def __getitem__(self, i):
        e, t = self.index[i]
        ep = self.episodes[e]
        return {"velocities": torch.from_numpy(velocities(ep.tracks[t])),
                "labels": torch.from_numpy(ep.labels[t].astype(np.int64)),
                "mask": torch.from_numpy(label_mask(ep.visible[t]))}


@torch.no_grad()
def encode_codes(tokenizer, episodes: list[LoadedEpisode], batch: int = 256, device="cpu") -> list[np.ndarray]:
    """Codes (num_frames, T-1) of every episode from the frozen tokenizer (stop-gradient targets)."""
    tokenizer = tokenizer.to(device).eval()
    out = []
    for ep in episodes:
        vel = torch.from_numpy(velocities(ep.tracks))
        codes = [tokenizer.encode(vel[i:i + batch].to(device))[1].cpu() for i in range(0, len(vel), batch)]
        out.append(torch.cat(codes).numpy().astype(np.int64))
    return out


class ForwardSamples(_Indexed):
    """images (V, 3, H, W) uint8, text (D,) float32, codes (L,) int64."""

    def __init__(self, episodes, codes: list[np.ndarray], text_table: dict[str, np.ndarray]):
        super().__init__(episodes)
        self.codes, self.text = codes, text_table

    def __getitem__(self, i):
        e, t = self.index[i]
        ep = self.episodes[e]
        return {"images": torch.from_numpy(ep.frames[t]), "text": torch.from_numpy(self.text[ep.task]),
                "codes": torch.from_numpy(self.codes[e][t])}


class TrackSamples(_Indexed):
    """images (V, 3, H, W) uint8, text (D,) float32, tracks (V, T, N, 2) float32 and their visibility (V, T, N): the
    regression baseline's data."""

    def __init__(self, episodes, text_table: dict[str, np.ndarray]):
        super().__init__(episodes)
        self.text = text_table

    def __getitem__(self, i):
        e, t = self.index[i]
        ep = self.episodes[e]
        return {"images": torch.from_numpy(ep.frames[t]), "text": torch.from_numpy(self.text[ep.task]),
                "tracks": torch.from_numpy(ep.tracks[t]), "visible": torch.from_numpy(ep.visible[t])}


class InverseSamples(_Indexed):
    """images, proprio (P,) and actions (chunk, A) normalised, codes (L,) (absent in inverse-only mode), text (D,)
    (only with a task-text table)."""

    def __init__(self, episodes, codes: list[np.ndarray] | None, proprio_norm, action_norm, chunk: int,
                 text_table: dict[str, np.ndarray] | None = None, demo_share: float | None = None):
        super().__init__(episodes)
        self.codes, self.proprio_norm, self.action_norm, self.chunk = codes, proprio_norm, action_norm, chunk
        self.text = text_table
        self.demo_repeats = 1
        if demo_share is not None:
            self._rebalance(demo_share)

    def _rebalance(self, demo_share: float) -> None:
        """Repeat the frames of the demos (episodes with a task text) until they are at least ``demo_share`` of the
        samples; play (no task text) keeps one copy of each frame. Uniform sampling over demos + play otherwise lets
        the play data drown a few demos (measured: play 92 % of the samples at 2 demos per task)."""
        if not 0.0 < demo_share < 1.0:
            raise ValueError(f"demo_share must be in (0, 1), got {demo_share}")
        demo = [(e, t) for e, t in self.index if self.episodes[e].task]
        play = len(self.index) - len(demo)
        if not demo or not play or len(demo) / len(self.index) >= demo_share:
            return
        self.demo_repeats = int(np.ceil(demo_share / (1.0 - demo_share) * play / len(demo)))
        self.index += demo * (self.demo_repeats - 1)

    @property
    def demo_fraction(self) -> float:
        return sum(1 for e, _ in self.index if self.episodes[e].task) / len(self.index)

    def __getitem__(self, i):
        e, t = self.index[i]
        ep = self.episodes[e]
        steps = np.minimum(np.arange(t, t + self.chunk), ep.num_frames - 1)  # pad with the last action
        item = {"images": torch.from_numpy(ep.frames[t]),
                "proprio": torch.from_numpy(self.proprio_norm.normalize(ep.state[t])),
                "actions": torch.from_numpy(self.action_norm.normalize(ep.actions[steps]))}
        if self.codes is not None:
            item["codes"] = torch.from_numpy(self.codes[e][t])
        if self.text is not None:
            item["text"] = torch.from_numpy(self.text[ep.task])
        return item
