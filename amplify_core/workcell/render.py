"""Offscreen rendering of the workcell cameras: RGB, depth and segmentation, headless.

One ``mujoco.Renderer`` (EGL by default, ``MUJOCO_GL=osmesa`` also works) is shared by the three views;
shadows, reflections, skybox, fog and haze are switched off because the images do not need them and
each costs time on a software rasteriser.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

_OFF_FLAGS = (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION, mujoco.mjtRndFlag.mjRND_SKYBOX,
              mujoco.mjtRndFlag.mjRND_FOG, mujoco.mjtRndFlag.mjRND_HAZE)


class CameraRenderer:
    """Renders named cameras of ``model`` at ``size`` x ``size`` pixels."""

    def __init__(self, model: mujoco.MjModel, size: int):
        self.model = model
        self.size = size
        self._renderer = mujoco.Renderer(model, size, size)
        for flag in _OFF_FLAGS:
            self._renderer.scene.flags[flag] = False

    def rgb(self, data: mujoco.MjData, views) -> dict[str, np.ndarray]:
        out = {}
        for view in views:
            self._renderer.update_scene(data, view)
            out[view] = self._renderer.render().copy()
        return out

    def depth_and_segmentation(self, data: mujoco.MjData, view: str) -> tuple[np.ndarray, np.ndarray]:
        """Linear depth along the optical axis (m, H x W) and the body id under each pixel (-1 = none)."""
        r = self._renderer
        r.update_scene(data, view)
        r.enable_depth_rendering()
        depth = r.render().copy()
        r.disable_depth_rendering()
        r.enable_segmentation_rendering()
        seg = r.render().copy()
        r.disable_segmentation_rendering()
        geom = seg[..., 0]
        is_geom = (seg[..., 1] == mujoco.mjtObj.mjOBJ_GEOM) & (geom >= 0)
        body = np.full(geom.shape, -1, np.int64)
        body[is_geom] = self.model.geom_bodyid[geom[is_geom]]
        return depth, body

    def close(self) -> None:
        self._renderer.close()
