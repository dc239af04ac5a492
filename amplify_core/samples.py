"""Synthetic videos with known motion: the built-in sample and the tracker's ground truth.

A textured square moves rigidly (translation and/or rotation) over a static textured background.
Frames are rendered 4x supersampled and area-downsampled, so they are band-limited like camera
images and a tracker can be held to sub-pixel accuracy. Because the motion is analytic, the true
position of any point at any frame is known (:meth:`MovingSquare.true_tracks`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .episodes import Episode

_SUPERSAMPLE = 4
_TEXELS_PER_PIXEL = 4


def _texture(rng: np.random.Generator, size: int, blur_px: float) -> np.ndarray:
    noise = rng.random((size, size)).astype(np.float32)
    tex = cv2.GaussianBlur(noise, (0, 0), blur_px * _TEXELS_PER_PIXEL)
    tex -= tex.min()
    return tex / max(float(tex.max()), 1e-6)


@dataclass
class MovingSquare:
    """A rigid textured square: at frame k its object coordinates u map to ``R(angle_k) u + centre_k``.

    Args:
        size: image side in pixels.
        num_frames: frames in the video.
        velocity: translation per frame (dx, dy) in pixels.
        angular_velocity: rotation per frame in degrees.
        half_side: half the square's side in pixels.
        seed: seeds both textures.
    """

    size: int = 128
    num_frames: int = 32
    velocity: tuple[float, float] = (1.3, 0.7)
    angular_velocity: float = 0.0
    half_side: float = 30.0
    seed: int = 0

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        tex_size = int(2 * self.half_side * _TEXELS_PER_PIXEL) + 8
        self._object = _texture(rng, tex_size, 1.2)
        self._background = _texture(rng, self.size * _TEXELS_PER_PIXEL + 8, 1.5)
        k = np.arange(self.num_frames, dtype=np.float64)
        travel = np.array(self.velocity) * (self.num_frames - 1)
        start = self.size / 2.0 - travel / 2.0  # centred path, stays in view
        self.centres = start[None] + k[:, None] * np.array(self.velocity)[None]
        self.angles = np.deg2rad(self.angular_velocity) * k

    def _object_coords(self, x: np.ndarray, y: np.ndarray, frame: int) -> tuple[np.ndarray, np.ndarray]:
        c, s = np.cos(self.angles[frame]), np.sin(self.angles[frame])
        dx, dy = x - self.centres[frame, 0], y - self.centres[frame, 1]
        return c * dx + s * dy, -s * dx + c * dy  # R(-angle) (p - centre)

    def render(self, frame: int) -> np.ndarray:
        """uint8 RGB (size, size, 3) image of ``frame``."""
        hi = self.size * _SUPERSAMPLE
        coords = (np.arange(hi, dtype=np.float32) + 0.5) / _SUPERSAMPLE - 0.5
        x, y = np.meshgrid(coords, coords)
        u, v = self._object_coords(x, y, frame)
        tex_scale = _TEXELS_PER_PIXEL
        obj = cv2.remap(
            self._object,
            ((u + self.half_side) * tex_scale + 4).astype(np.float32),
            ((v + self.half_side) * tex_scale + 4).astype(np.float32),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )
        bg = cv2.remap(
            self._background,
            ((x + 0.5) * tex_scale + 4).astype(np.float32),
            ((y + 0.5) * tex_scale + 4).astype(np.float32),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )
        inside = (np.abs(u) <= self.half_side) & (np.abs(v) <= self.half_side)
        grey = np.where(inside, 0.15 + 0.8 * obj, 0.1 + 0.5 * bg)
        grey = cv2.resize(grey, (self.size, self.size), interpolation=cv2.INTER_AREA)
        rgb = np.stack([grey, 0.8 * grey + 0.1, 1.0 - 0.7 * grey], axis=-1)
        return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)

    def video(self) -> np.ndarray:
        """uint8 RGB (num_frames, size, size, 3)."""
        return np.stack([self.render(k) for k in range(self.num_frames)])

    def true_tracks(self, points: np.ndarray, start: int, horizon: int) -> np.ndarray:
        """True pixel positions (horizon, N, 2) of square points ``points`` (N, 2) given at frame ``start``.

        Past the last frame positions are held (the video's end is padded by repeating it).
        """
        u, v = self._object_coords(points[:, 0], points[:, 1], start)
        out = np.empty((horizon, len(points), 2), np.float32)
        for j in range(horizon):
            k = min(start + j, self.num_frames - 1)
            c, s = np.cos(self.angles[k]), np.sin(self.angles[k])
            out[j, :, 0] = c * u - s * v + self.centres[k, 0]
            out[j, :, 1] = s * u + c * v + self.centres[k, 1]
        return out

    def inside_square(self, points: np.ndarray, frame: int, margin: float) -> np.ndarray:
        """Mask of points at least ``margin`` pixels inside the square at ``frame``."""
        u, v = self._object_coords(points[:, 0], points[:, 1], frame)
        limit = self.half_side - margin
        return (np.abs(u) <= limit) & (np.abs(v) <= limit)


SAMPLE_MOTIONS = {
    "front": dict(velocity=(0.25, 0.12), angular_velocity=0.0),
    "side": dict(velocity=(0.0, 0.0), angular_velocity=0.4),
    "corner": dict(velocity=(-0.2, 0.15), angular_velocity=-0.3),
}


def sample_scenes(num_frames: int = 300, size: int = 128, seed: int = 0) -> dict[str, MovingSquare]:
    """The scenes behind the built-in sample: one moving square per view, each moving differently."""
    return {
        view: MovingSquare(size=size, num_frames=num_frames, seed=seed + i, **motion)
        for i, (view, motion) in enumerate(SAMPLE_MOTIONS.items())
    }


def sample_episode(num_frames: int = 300, size: int = 128, seed: int = 0) -> Episode:
    """The built-in sample: three views ('front', 'side', 'corner') of moving textured squares.

    A human-embodiment, action-free episode at 20 Hz; it exercises the whole track pipeline without any
    download. Each view moves differently (translation, rotation, both).
    """
    frames = {view: scene.video() for view, scene in sample_scenes(num_frames, size, seed).items()}
    return Episode(frames=frames, task="watch the textured square move", embodiment="human", fps=20.0)
