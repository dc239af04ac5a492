"""Pictures of tracks: keypoint tracks drawn over the camera image (as in the paper's Figure 3)."""

from __future__ import annotations

import cv2
import numpy as np

from .tracks import denormalize


def draw_tracks(
    image: np.ndarray,
    tracks: np.ndarray,
    visible: np.ndarray | None = None,
    scale: int = 4,
    color_by_point: bool = True,
) -> np.ndarray:
    """Draw normalised tracks (T, N, 2) over a uint8 RGB image; returns an upscaled RGB copy.

    Each track is a polyline from its query point (a dot) to its last position; colour follows the
    point's place on the grid so neighbouring tracks can be told apart. Invisible steps are skipped.
    """
    h, w = image.shape[:2]
    canvas = cv2.resize(image, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
    px = (denormalize(tracks, h, w) + 0.5) * scale - 0.5
    n = px.shape[1]
    hues = np.linspace(0, 179, n, endpoint=False).astype(np.uint8) if color_by_point else np.zeros(n, np.uint8)
    colors = cv2.cvtColor(np.stack([hues, np.full(n, 220, np.uint8), np.full(n, 255, np.uint8)], -1)[None],
                          cv2.COLOR_HSV2RGB)[0]
    for i in range(n):
        pts = px[:, i]
        if visible is not None:
            pts = pts[visible[:, i]]
        color = tuple(int(c) for c in colors[i])
        if len(pts) > 1:
            cv2.polylines(canvas, [np.round(pts * 16).astype(np.int32)], False, color, 1, cv2.LINE_AA, shift=4)
        cv2.circle(canvas, tuple(int(round(v)) for v in px[0, i]), max(1, scale // 2), color, -1, cv2.LINE_AA)
    return canvas


def side_by_side(images: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """Concatenate RGB images of equal height horizontally with a white gap."""
    h = images[0].shape[0]
    spacer = np.full((h, gap, 3), 255, np.uint8)
    parts = []
    for img in images:
        parts += [img, spacer]
    return np.concatenate(parts[:-1], axis=1)
