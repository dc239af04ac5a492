"""Keypoint-track geometry: the query grid, normalisation, time resampling, velocities and labels.

Paper Sec. 3.1 and Appendix D.4. For every frame t a uniform 20x20 grid (N = 400 points) is tracked
through T = 16 frames; the tracks kappa_t (T, N, 2) are normalised to [-1, 1], resampled in time when
the source is not at 20 Hz, and differenced into velocities u_t (T-1, N, 2). The tokenizer's decoder
predicts each velocity as one of W*W = 225 classes of a local 15x15 pixel window ("local-window
classification", Appendix E), which is what :func:`velocity_to_class` computes.

Conventions used everywhere in the project:

* Pixel coordinates are OpenCV's: (x, y), the centre of the top-left pixel is (0, 0).
* Normalised coordinates put the image *edges* at -1 and +1 (``align_corners=False`` in PyTorch
  terms): ``n = (x + 0.5) / W * 2 - 1``. The grid is therefore symmetric: -0.95 ... 0.95.
* A local-window class is ``(dy + R) * W + (dx + R)`` with R = 7, W = 15: row-major over the window,
  rows along y. The centre class 112 means "no motion".
* Labels of a track (:func:`tracks_to_labels`) are the steps between its positions ROUNDED to the pixel
  grid of a 128 px image: each class is the pixel of the window centred on the previous (rounded) point.
  Integrating them from the rounded start (:func:`labels_to_tracks`) gives back the rounded track exactly
  (while no step exceeds the +-7 px window), so rounding errors never accumulate along a track.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicSpline

HORIZON = 16  # T: frames per track, 0.8 s at 20 Hz (paper, D.4)
GRID_SIZE = 20  # 20x20 query points per frame
TARGET_FPS = 20.0  # the control rate the horizon is defined at
WINDOW_RADIUS = 7  # R: displacement clamp in pixels (of the 128 px image)
WINDOW = 2 * WINDOW_RADIUS + 1  # W = 15
NUM_CLASSES = WINDOW * WINDOW  # 225
LABEL_IMAGE_SIZE = 128  # labels count pixels of a 128 px image, whatever the source resolution


def grid_points(height: int, width: int, grid_size: int = GRID_SIZE) -> np.ndarray:
    """(grid_size**2, 2) float32 pixel coordinates (x, y) of the uniform query grid, row-major.

    Points sit at the centres of a grid_size x grid_size partition of the image, so they are
    uniformly spread and never on the border.
    """
    xs = (np.arange(grid_size) + 0.5) * width / grid_size - 0.5
    ys = (np.arange(grid_size) + 0.5) * height / grid_size - 0.5
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=-1).astype(np.float32)


def normalize(points_px: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixel (x, y) -> [-1, 1] (image edges at +-1)."""
    scale = np.array([width, height], np.float32)
    return ((np.asarray(points_px, np.float32) + 0.5) / scale * 2.0 - 1.0).astype(np.float32)


def denormalize(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """[-1, 1] -> pixel (x, y); inverse of :func:`normalize`."""
    scale = np.array([width, height], np.float32)
    return ((np.asarray(points, np.float32) + 1.0) / 2.0 * scale - 0.5).astype(np.float32)


def source_horizon(fps: float, horizon: int = HORIZON, target_fps: float = TARGET_FPS) -> int:
    """How many source frames span the same time as ``horizon`` frames at ``target_fps``.

    The paper keeps 0.8 s: 16 frames at 20 Hz, 4 frames at 5 Hz (BridgeData), 24 at 30 Hz.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return max(2, int(round(horizon * fps / target_fps)))


def resample_tracks(
    tracks: np.ndarray, visibility: np.ndarray | None, horizon: int = HORIZON
) -> tuple[np.ndarray, np.ndarray | None]:
    """Resample tracks (..., K, N, 2) along time to (..., horizon, N, 2) with a cubic spline.

    The first and last source steps map to the first and last output steps, so a track sampled at
    another rate covers the same 0.8 s. Visibility at an output step is the AND of the two source
    steps around it (a point is only trusted where it was seen on both sides).
    """
    tracks = np.asarray(tracks, np.float32)
    k = tracks.shape[-3]
    if k == horizon:
        return tracks, visibility
    src_t = np.linspace(0.0, 1.0, k)
    dst_t = np.linspace(0.0, 1.0, horizon)
    out = CubicSpline(src_t, tracks, axis=-3)(dst_t).astype(np.float32)
    if visibility is None:
        return out, None
    pos = dst_t * (k - 1)
    lo = np.floor(pos).astype(int)
    hi = np.ceil(pos).astype(int)
    vis = np.take(visibility, lo, axis=-2) & np.take(visibility, hi, axis=-2)
    return out, vis


def observed_steps(num_frames: int, horizon: int) -> np.ndarray:
    """bool (num_frames, horizon): whether step k of the window starting at frame t lies inside the video
    (t + k <= num_frames - 1). Past the end the trackers repeat the last frame: those steps were not observed."""
    return (np.arange(num_frames)[:, None] + np.arange(horizon)[None]) <= num_frames - 1


def label_mask(visible: np.ndarray) -> np.ndarray:
    """bool (..., T-1, N) from visibility (..., T, N): a step's label is trusted when the point is visible at both
    ends of the step (a lost point keeps its last position, so its later labels would say "no motion")."""
    visible = np.asarray(visible, bool)
    return visible[..., 1:, :] & visible[..., :-1, :]


MOVING_THRESHOLD_PX = 1.0  # a point moves when it gets more than this far from its start (label-scale pixels)


def moving_points(tracks: np.ndarray, visible: np.ndarray | None = None, image_size: int = LABEL_IMAGE_SIZE,
                  threshold_px: float = MOVING_THRESHOLD_PX) -> np.ndarray:
    """bool (..., N): the points of each window (tracks (..., T, N, 2)) that get more than ``threshold_px`` from
    their start at some visible step. Most of a grid is static table; motion metrics are given on these points."""
    dist = np.linalg.norm(np.asarray(tracks) - np.asarray(tracks)[..., :1, :, :], axis=-1) * (image_size / 2.0)
    if visible is not None:
        dist = np.where(visible, dist, 0.0)
    return dist.max(axis=-2) > threshold_px


def label_parts(tracks: np.ndarray, visible: np.ndarray, labels: np.ndarray,
                image_size: int = LABEL_IMAGE_SIZE) -> tuple[int, int, np.ndarray, np.ndarray]:
    """What :func:`label_statistics` is computed from, in a form that pools over episodes: the number of trusted
    labels, how many of them are the centre class, and the step lengths (label pixels) and labels of the moving
    points' trusted steps."""
    trusted = label_mask(visible)
    moving = np.broadcast_to(moving_points(tracks, visible, image_size)[..., None, :], trusted.shape) & trusted
    steps = np.linalg.norm(np.diff(np.asarray(tracks, np.float64), axis=-3), axis=-1) * (image_size / 2.0)
    labels = np.asarray(labels)
    return int(trusted.sum()), int((labels[trusted] == NUM_CLASSES // 2).sum()), steps[moving], labels[moving]


def label_statistics(tracks: np.ndarray, visible: np.ndarray, labels: np.ndarray,
                     image_size: int = LABEL_IMAGE_SIZE) -> dict:
    """How much of the motion the local-window labels can see, over trusted steps (:func:`label_mask`).

    tracks (..., T, N, 2), visible (..., T, N), labels (..., T-1, N). Returns the fraction of trusted labels that
    are the centre class (no motion), the fraction of point-steps that belong to moving points
    (:func:`moving_points`), and for those: the median step length in label pixels and the fraction of their
    labels that are not the centre class. Counts are returned too, so several calls can be pooled.
    """
    n_trusted, n_centre, steps, moving_labels = label_parts(tracks, visible, labels, image_size)
    centre = NUM_CLASSES // 2
    n_moving = len(moving_labels)
    return {
        "trusted_labels": n_trusted,
        "centre_fraction": n_centre / n_trusted if n_trusted else float("nan"),
        "moving_labels": n_moving,
        "moving_fraction": n_moving / n_trusted if n_trusted else float("nan"),
        "moving_median_step_px": float(np.median(steps)) if n_moving else float("nan"),
        "moving_not_centre_fraction": float(np.mean(moving_labels != centre)) if n_moving else float("nan"),
    }


def velocities(tracks: np.ndarray) -> np.ndarray:
    """Per-step displacements u_t = kappa_{t+1} - kappa_t along the time axis (-3): (..., T-1, N, 2)."""
    tracks = np.asarray(tracks)
    return np.diff(tracks, axis=-3)


def _to_label_pixels(velocity_norm: np.ndarray, image_size: int) -> np.ndarray:
    # A normalised displacement of 2 spans the whole image: 2 -> image_size pixels.
    return np.asarray(velocity_norm, np.float64) * (image_size / 2.0)


def velocity_to_class(
    velocity_norm: np.ndarray, image_size: int = LABEL_IMAGE_SIZE, radius: int = WINDOW_RADIUS
) -> np.ndarray:
    """Local-window class of each normalised velocity (..., 2) -> (...) int64 in [0, (2R+1)^2).

    The displacement in pixels of an ``image_size`` image is rounded and clamped to [-R, R] per axis.
    """
    px = np.clip(np.rint(_to_label_pixels(velocity_norm, image_size)), -radius, radius).astype(np.int64)
    window = 2 * radius + 1
    return (px[..., 1] + radius) * window + (px[..., 0] + radius)


def class_to_displacement(classes: np.ndarray, radius: int = WINDOW_RADIUS) -> np.ndarray:
    """Inverse of the window indexing: class (...) -> integer pixel displacement (..., 2) as (dx, dy)."""
    classes = np.asarray(classes, np.int64)
    window = 2 * radius + 1
    if np.any((classes < 0) | (classes >= window * window)):
        raise ValueError(f"class indices must lie in [0, {window * window}), got range "
                         f"[{classes.min()}, {classes.max()}]")
    dy, dx = np.divmod(classes, window)
    return np.stack([dx - radius, dy - radius], axis=-1)


def class_to_velocity(
    classes: np.ndarray, image_size: int = LABEL_IMAGE_SIZE, radius: int = WINDOW_RADIUS
) -> np.ndarray:
    """Class (...) -> normalised velocity (..., 2) float32 (the centre of the class's pixel)."""
    return (class_to_displacement(classes, radius) * (2.0 / image_size)).astype(np.float32)


def integrate_velocities(start: np.ndarray, vel: np.ndarray) -> np.ndarray:
    """Rebuild tracks (..., T, N, 2) from start points (..., N, 2) and velocities (..., T-1, N, 2)."""
    start = np.asarray(start, np.float32)
    steps = np.cumsum(np.asarray(vel, np.float32), axis=-3)
    return np.concatenate([start[..., None, :, :], start[..., None, :, :] + steps], axis=-3)


def tracks_to_labels(
    tracks: np.ndarray, image_size: int = LABEL_IMAGE_SIZE, radius: int = WINDOW_RADIUS
) -> np.ndarray:
    """Local-window labels (..., T-1, N) int64 of normalised tracks (..., T, N, 2).

    Positions are rounded to the pixel grid of an ``image_size`` image first, then differenced and
    clamped to the window, so the labels describe pixel-to-pixel moves.
    """
    pixels = np.rint(denormalize(tracks, image_size, image_size).astype(np.float64))
    steps = np.clip(np.diff(pixels, axis=-3), -radius, radius).astype(np.int64)
    window = 2 * radius + 1
    return (steps[..., 1] + radius) * window + (steps[..., 0] + radius)


def labels_to_tracks(
    start: np.ndarray, labels: np.ndarray, image_size: int = LABEL_IMAGE_SIZE, radius: int = WINDOW_RADIUS
) -> np.ndarray:
    """Normalised tracks (..., T, N, 2) from start points (..., N, 2) and labels (..., T-1, N).

    The inverse of :func:`tracks_to_labels` up to rounding: the start is rounded to the pixel grid and
    each label moves the point by its window displacement.
    """
    origin = np.rint(denormalize(start, image_size, image_size).astype(np.float64))
    moves = np.cumsum(class_to_displacement(labels, radius), axis=-3)
    pixels = np.concatenate([origin[..., None, :, :], origin[..., None, :, :] + moves], axis=-3)
    return normalize(pixels, image_size, image_size)
