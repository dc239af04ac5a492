"""Point trackers that turn a video into per-frame keypoint tracks (paper Sec. 3.1, Appendix D.4).

For every frame t a fresh 20x20 grid is tracked through frames t .. t+K-1 (K = 16 at 20 Hz). Past the
end of the video the last frame is repeated, i.e. the points stand still (the authors' code pads the
same way). Output for one view: positions (num_frames, K, N, 2) in pixels and visibility
(num_frames, K, N).

Two implementations of the default Lucas-Kanade tracker are kept side by side:

* :meth:`LucasKanadeTracker.track` advances every window alive at frame k (those started at frames
  k-K+2 .. k) in ONE ``calcOpticalFlowPyrLK`` call from frame k to k+1 -- one pass over the video;
* :meth:`LucasKanadeTracker.track_naive` tracks each window on its own, the way a per-window loop over
  a point tracker does. It exists as the reference the one-pass form is tested and benchmarked
  against (identical tracks; ``training/benchmark_tracking.py`` prints the speed ratio).

A lost point (LK status 0, or the point left the image) keeps its last position and is marked
invisible for the rest of its track; both forms apply that rule identically.

CoTracker (Karaev et al.; the paper's tracker) is an optional backend: :class:`CoTrackerTracker`
adapts an installed ``cotracker`` predictor loaded from a local checkpoint to the same output contract.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .tracks import GRID_SIZE, HORIZON, grid_points


@dataclass
class TrackResult:
    """Tracks of one view: ``points`` (num_frames, K, N, 2) float32 pixels, ``visible`` (num_frames, K, N)."""

    points: np.ndarray
    visible: np.ndarray


def to_gray(frames: np.ndarray) -> list[np.ndarray]:
    """uint8 RGB frames (num_frames, H, W, 3) -> list of uint8 grey images (the tracker's input)."""
    return [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]


@dataclass
class LucasKanadeTracker:
    """OpenCV pyramidal Lucas-Kanade over a uniform grid, one pass per video.

    Args:
        win_size: side of the LK integration window in pixels. 9 is sub-pixel accurate on textured
            128 px images; larger windows are slower and blur motion boundaries.
        max_level: pyramid levels above the image. 2 levels track steps beyond the +-7 px range the
            labels can express at 128 px.
        iterations, epsilon: LK stopping criteria per level.
        min_eig_threshold: points whose window has less texture than this are reported lost.
        grid_size: query points per side (20 -> N = 400).
        velocity_prior: start each point from its previous step's displacement and refine on the
            full-resolution image, retrying failures with the pyramid (about 2x faster, same accuracy
            on smooth motion). For a window's first step the guess is the displacement of the same
            grid point in the window started one frame earlier.
        retry_error: mean absolute grey-level residual (0-255 scale) above which a guessed point is
            re-tracked with the pyramid. Correct matches on textured surfaces stay near 1, wrong
            local minima measured here were above 6.
        fb_threshold: forward-backward check (Kalal et al., 2010): each step is also tracked back from the new
            image, and a point whose return lands farther than this many pixels from where it started is marked
            lost. It catches the points LK gets wrong: a window on a moving edge that slides with the background,
            a match on a neighbouring texture square. Measured in the workcell against simulator ground truth
            (``amplify-workcell-track-accuracy``): Delta_AUC on moving points 0.92 -> 0.97 (robot), keeping 84 % of
            them. None switches the check off (half the cost).
    """

    win_size: int = 9
    max_level: int = 2
    iterations: int = 10
    epsilon: float = 0.01
    min_eig_threshold: float = 1e-4
    grid_size: int = GRID_SIZE
    velocity_prior: bool = True
    retry_error: float = 5.0
    fb_threshold: float | None = 1.0

    name = "lucas_kanade"

    def __post_init__(self) -> None:
        if self.win_size < 3 or self.win_size % 2 == 0:
            raise ValueError(f"win_size must be an odd number >= 3, got {self.win_size}")
        if self.max_level < 0:
            raise ValueError(f"max_level must be >= 0, got {self.max_level}")
        if self.grid_size < 1:
            raise ValueError(f"grid_size must be >= 1, got {self.grid_size}")
        if self.fb_threshold is not None and not self.fb_threshold > 0:
            raise ValueError(f"fb_threshold must be > 0 pixels (or None to switch the check off), got {self.fb_threshold}")

    def params(self) -> dict:
        return {
            "win_size": self.win_size,
            "max_level": self.max_level,
            "iterations": self.iterations,
            "epsilon": self.epsilon,
            "min_eig_threshold": self.min_eig_threshold,
            "grid_size": self.grid_size,
            "velocity_prior": self.velocity_prior,
            "retry_error": self.retry_error,
            "fb_threshold": self.fb_threshold,
        }

    def _lk(self, prev, nxt, pts, guess, max_level):
        flags = 0 if guess is None else cv2.OPTFLOW_USE_INITIAL_FLOW
        new, status, err = cv2.calcOpticalFlowPyrLK(
            prev,
            nxt,
            pts.reshape(-1, 1, 2),
            None if guess is None else guess.reshape(-1, 1, 2).copy(),
            winSize=(self.win_size, self.win_size),
            maxLevel=max_level,
            criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, self.iterations, self.epsilon),
            flags=flags,
            minEigThreshold=self.min_eig_threshold,
        )
        new = new.reshape(-1, 2)
        h, w = prev.shape
        inside = (new[:, 0] >= -0.5) & (new[:, 0] <= w - 0.5) & (new[:, 1] >= -0.5) & (new[:, 1] <= h - 0.5)
        found = status.reshape(-1).astype(bool) & inside & np.all(np.isfinite(new), axis=1)
        return new, found, err.reshape(-1)

    def _step(self, prev: np.ndarray, nxt: np.ndarray, pts: np.ndarray, velocity: np.ndarray):
        """Advance (M, 2) points from image ``prev`` to ``nxt``; returns new points and a found mask.

        Points start from a constant-velocity guess (``pts + velocity``) and are refined on the full
        image only, which is ~2x cheaper than a pyramid. Where that fails or converges to a poor match
        (residual above ``retry_error``: a sudden start, a fast jerk), the point is tracked again from
        scratch with the full pyramid (``max_level``). Both
        passes work point by point, so the result of a point never depends on what else is batched.
        """
        new, found = self._one_way(prev, nxt, pts, velocity)
        if self.fb_threshold is not None:
            back, back_found = self._one_way(nxt, prev, new, -velocity if velocity is not None else None)
            found &= back_found & (np.linalg.norm(back - pts, axis=1) < self.fb_threshold)
        return new, found

    def _one_way(self, prev, nxt, pts, velocity):
        if not self.velocity_prior:
            return self._lk(prev, nxt, pts, None, self.max_level)[:2]
        new, found, err = self._lk(prev, nxt, pts, pts + velocity, 0)
        # a wrong local minimum still reports success, but leaves a large residual
        retry = ~found | (err > self.retry_error)
        if retry.any():
            new[retry], found[retry], _ = self._lk(prev, nxt, pts[retry], None, self.max_level)
        return new, found

    def _allocate(self, gray: list[np.ndarray], horizon: int) -> tuple[np.ndarray, np.ndarray]:
        h, w = gray[0].shape
        grid = grid_points(h, w, self.grid_size)
        points = np.empty((len(gray), horizon, len(grid), 2), np.float32)
        points[:, 0] = grid
        visible = np.ones((len(gray), horizon, len(grid)), bool)
        return points, visible

    def track(self, frames: np.ndarray, horizon: int = HORIZON) -> TrackResult:
        """Track a fresh grid from every frame through ``horizon`` frames, in one pass over the video."""
        gray = to_gray(frames)
        points, visible = self._allocate(gray, horizon)
        n = len(gray)
        for k in range(n - 1):
            # windows alive at frame k: started at s with 0 <= k - s <= horizon - 2
            starts = np.arange(max(0, k - horizon + 2), k + 1)
            steps = k - starts
            old = points[starts, steps].reshape(-1, 2)
            was_visible = visible[starts, steps].reshape(-1)
            velocity = _previous_velocity(points, starts, steps).reshape(-1, 2)
            new, found = self._step(gray[k], gray[k + 1], old, velocity)
            keep = was_visible & found
            new = np.where(keep[:, None], new, old)
            points[starts, steps + 1] = new.reshape(len(starts), -1, 2)
            visible[starts, steps + 1] = keep.reshape(len(starts), -1)
        _pad_past_end(points, visible)
        return TrackResult(points, visible)

    def track_naive(self, frames: np.ndarray, horizon: int = HORIZON) -> TrackResult:
        """Reference form: each frame's window tracked on its own (horizon-1 tracker calls per frame)."""
        gray = to_gray(frames)
        points, visible = self._allocate(gray, horizon)
        n = len(gray)
        for s in range(n):
            for j in range(horizon - 1):
                k = s + j
                if k + 1 >= n:
                    break
                old = points[s, j]
                velocity = _previous_velocity(points, np.array([s]), np.array([j]))[0]
                new, found = self._step(gray[k], gray[k + 1], old, velocity)
                keep = visible[s, j] & found
                points[s, j + 1] = np.where(keep[:, None], new, old)
                visible[s, j + 1] = keep
        _pad_past_end(points, visible)
        return TrackResult(points, visible)


def _previous_velocity(points: np.ndarray, starts: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Displacement of each (window, step) point over the step before, the tracker's initial guess.

    At step 0 a window has no past; the same grid point of the window started one frame earlier
    has just crossed the same pair of frames, so its first displacement is used (zero at frame 0).
    """
    out = np.zeros((len(starts), points.shape[2], 2), np.float32)
    later = steps > 0
    out[later] = points[starts[later], steps[later]] - points[starts[later], steps[later] - 1]
    first = (steps == 0) & (starts > 0)
    out[first] = points[starts[first] - 1, 1] - points[starts[first] - 1, 0]
    return out


def _pad_past_end(points: np.ndarray, visible: np.ndarray) -> None:
    """Steps past the last frame repeat the last tracked position (the last frame is repeated)."""
    n, horizon = points.shape[:2]
    for s in range(max(0, n - horizon + 1), n):
        last = n - 1 - s  # step index that reached the last frame
        points[s, last + 1 :] = points[s, last]
        visible[s, last + 1 :] = visible[s, last][None]


class CoTrackerTracker:
    """Adapter for the upstream CoTracker predictor (optional; install co-tracker from source).

    Each frame's grid is passed as queries ``(t=0, x, y)`` on its own 16-frame window, windows are
    batched ``batch`` at a time. ``predictor`` may be given directly (any callable with CoTracker's
    ``predictor(video, queries=...) -> (tracks, visibility)`` contract); otherwise it is built from a
    local ``checkpoint`` with ``cotracker.predictor.CoTrackerPredictor``. Nothing is downloaded.
    """

    name = "cotracker"

    def __init__(self, checkpoint: str | None = None, predictor=None, grid_size: int = GRID_SIZE,
                 batch: int = 4, device: str | None = None):
        import torch

        self._torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if predictor is None:
            if checkpoint is None:
                raise ValueError("CoTrackerTracker needs a local checkpoint path (e.g. scaled_offline.pth)")
            try:
                from cotracker.predictor import CoTrackerPredictor  # type: ignore
            except ImportError as exc:
                raise ImportError(
                    "the 'cotracker' package is not installed; install the upstream co-tracker code from "
                    "source and pass --cotracker-checkpoint PATH (see docs/tracking.md)"
                ) from exc
            predictor = CoTrackerPredictor(checkpoint=checkpoint).to(self.device).eval()
        self.predictor = predictor
        self.grid_size = grid_size
        self.batch = batch
        self.checkpoint = checkpoint

    def params(self) -> dict:
        return {"checkpoint": str(self.checkpoint), "grid_size": self.grid_size}

    def track(self, frames: np.ndarray, horizon: int = HORIZON) -> TrackResult:
        torch = self._torch
        n, h, w = frames.shape[:3]
        grid = grid_points(h, w, self.grid_size)
        # pad the end by repeating the last frame, so every window has `horizon` frames
        padded = np.concatenate([frames, np.repeat(frames[-1:], horizon - 1, axis=0)])
        queries = np.concatenate([np.zeros((len(grid), 1), np.float32), grid], axis=1)
        points = np.empty((n, horizon, len(grid), 2), np.float32)
        visible = np.empty((n, horizon, len(grid)), bool)
        for b0 in range(0, n, self.batch):
            starts = range(b0, min(n, b0 + self.batch))
            video = np.stack([padded[s : s + horizon] for s in starts])  # (B, T, H, W, 3)
            video_t = torch.from_numpy(video).permute(0, 1, 4, 2, 3).float().to(self.device)
            q = torch.from_numpy(np.repeat(queries[None], len(video), 0)).to(self.device)
            with torch.no_grad():
                tr, vis = self.predictor(video_t, queries=q)
            points[b0 : b0 + len(video)] = tr.detach().cpu().numpy().astype(np.float32)
            vis = vis.detach().cpu().numpy()
            visible[b0 : b0 + len(video)] = (vis > 0.5) if vis.dtype != bool else vis
        return TrackResult(points, visible)


def make_tracker(name: str, **kwargs):
    """Build a tracker by name: ``lucas_kanade`` (default) or ``cotracker``."""
    if name in ("lucas_kanade", "lk"):
        return LucasKanadeTracker(**kwargs)
    if name == "cotracker":
        return CoTrackerTracker(**kwargs)
    raise ValueError(f"unknown tracker {name!r}; choose 'lucas_kanade' or 'cotracker'")
