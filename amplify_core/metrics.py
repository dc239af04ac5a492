"""Track-prediction metrics of the paper (Appendix D.3), on tracks normalised to [-1, 1].

* ``track_mse``: mean squared error of the normalised (x, y) coordinates.
* ``pixel_accuracy``: fraction of predicted points that land on exactly the reference pixel (both
  coordinates rounded to the pixel grid of an ``image_size`` image).
* ``delta_auc``: for thresholds x = 1..10 px, delta_t^x is the fraction of points within x pixels
  (Euclidean, strictly less than x, as in TAP-Vid) of the reference at step t; the metric is the mean
  of delta_t^x over the steps and the 10 thresholds, hence in [0, 1].

All functions take arrays (..., T, N, 2) of predictions and references with the same shape; the caller
chooses the steps (predictions usually exclude step 0, which is the query grid itself).
"""

from __future__ import annotations

import numpy as np

from .tracks import LABEL_IMAGE_SIZE, denormalize

AUC_THRESHOLDS = tuple(range(1, 11))


def _check(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = np.asarray(pred, np.float64), np.asarray(ref, np.float64)
    if pred.shape != ref.shape or pred.shape[-1] != 2:
        raise ValueError(f"predictions {pred.shape} and references {ref.shape} must match and end in 2")
    if not (np.all(np.isfinite(pred)) and np.all(np.isfinite(ref))):
        raise ValueError("tracks contain NaN or infinite values")
    return pred, ref


def track_mse(pred: np.ndarray, ref: np.ndarray) -> float:
    pred, ref = _check(pred, ref)
    return float(np.mean((pred - ref) ** 2))


def pixel_accuracy(pred: np.ndarray, ref: np.ndarray, image_size: int = LABEL_IMAGE_SIZE) -> float:
    pred, ref = _check(pred, ref)
    p = np.rint(denormalize(pred, image_size, image_size))
    r = np.rint(denormalize(ref, image_size, image_size))
    return float(np.mean(np.all(p == r, axis=-1)))


def delta_auc(
    pred: np.ndarray, ref: np.ndarray, image_size: int = LABEL_IMAGE_SIZE, thresholds=AUC_THRESHOLDS
) -> float:
    pred, ref = _check(pred, ref)
    # normalised -> pixels is a pure scale (image_size / 2) for distances
    dist = np.linalg.norm(pred - ref, axis=-1) * (image_size / 2.0)
    return float(np.mean([np.mean(dist < x) for x in thresholds]))


def track_metrics(pred: np.ndarray, ref: np.ndarray, image_size: int = LABEL_IMAGE_SIZE) -> dict[str, float]:
    """All three metrics as a dict: ``mse``, ``pixel_accuracy``, ``delta_auc``."""
    return {
        "mse": track_mse(pred, ref),
        "pixel_accuracy": pixel_accuracy(pred, ref, image_size),
        "delta_auc": delta_auc(pred, ref, image_size),
    }


def success_interval(successes: int, episodes: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a success rate (95 % for z = 1.96): honest at 0 and at n successes of n,
    where the normal approximation collapses to a zero-width interval."""
    if episodes <= 0:
        raise ValueError(f"episodes must be > 0, got {episodes}")
    if not 0 <= successes <= episodes:
        raise ValueError(f"successes must lie in [0, {episodes}], got {successes}")
    p = successes / episodes
    denom = 1.0 + z * z / episodes
    centre = (p + z * z / (2 * episodes)) / denom
    half = z * np.sqrt(p * (1 - p) / episodes + z * z / (4 * episodes * episodes)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
