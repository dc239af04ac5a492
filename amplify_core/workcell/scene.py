"""The workcell's objects and fixtures, and the seeded sampling of their initial layout.

Objects: four 4 cm blocks (red, green, blue, yellow; free bodies), a bowl and a plate (static bodies moved
at reset), and a cabinet with a drawer that slides towards the robot (+x) to open. Positions are in the
robot base frame; the layout is drawn from a ``numpy`` generator seeded by the episode seed, so the same
seed always gives the same scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

BLOCK_HALF = 0.02
BLOCKS = {  # name -> rgba (the texture is a checker of this colour and a darker shade)
    "red_block": "0.85 0.15 0.12 1",
    "green_block": "0.15 0.7 0.2 1",
    "blue_block": "0.15 0.3 0.85 1",
    "yellow_block": "0.9 0.8 0.1 1",
}
BOWL = {"radius": 0.06, "wall_height": 0.04, "rgba": "0.9 0.9 0.95 1"}
PLATE = {"radius": 0.07, "half_height": 0.005, "rgba": "0.95 0.55 0.75 1"}
CABINET = {"pos": (-0.74, 0.17), "half": (0.09, 0.095, 0.045), "rgba": "0.45 0.3 0.2 1"}
DRAWER = {"half": (0.08, 0.08, 0.035), "travel": 0.15, "handle_gap": 0.06,
          "rgba": "0.7 0.55 0.35 1", "front_rgba": "0.3 0.55 0.6 1"}

# Where movable objects are placed (x, y ranges); it keeps clear of the drawer's sweep (y > 0.08).
PLACEMENT_LOW = np.array([-0.6, -0.24])
PLACEMENT_HIGH = np.array([-0.34, 0.06])
_RADIUS = {"bowl": 0.085, "plate": 0.09, **{b: 0.035 for b in BLOCKS}}



@dataclass
class Layout:
    """Initial xy of every object and the drawer opening (m)."""

    xy: dict
    drawer_opening: float


def sample_layout(rng: np.random.Generator, drawer_range: tuple[float, float] = (0.0, 0.0),
                  first: str | None = None, keep_out=None, max_tries: int = 2000,
                  jitter: float | None = None, nominal: dict | None = None) -> Layout:
    """Non-overlapping object positions (rejection sampling; deterministic for a given generator).

    With ``jitter`` (m) and ``nominal`` ({name: xy}) every object lies within +- jitter of its nominal place
    (LIBERO's kind of variation: the scene is recognisably the same, the objects are never exactly where they
    were); otherwise anywhere in the placement area. ``first`` is placed before the others; ``keep_out(xy, name,
    p)`` may reject position ``p`` of object ``name`` given the objects placed so far (e.g. a push corridor).
    """
    names = ["bowl", "plate", *BLOCKS]
    if first is not None:
        names.remove(first)
        names.insert(0, first)
    for _ in range(max_tries):
        xy = {}
        ok = True
        for name in names:
            for _attempt in range(200):
                if jitter is None:
                    p = rng.uniform(PLACEMENT_LOW, PLACEMENT_HIGH)
                else:
                    p = np.asarray(nominal[name]) + rng.uniform(-jitter, jitter, 2)
                if keep_out is not None and keep_out(xy, name, p):
                    continue
                if all(np.linalg.norm(p - q) > _RADIUS[name] + _RADIUS[n] for n, q in xy.items()):
                    xy[name] = p
                    break
            else:
                ok = False
                break
        if ok:
            return Layout(xy=xy, drawer_opening=float(rng.uniform(*drawer_range)))
    raise RuntimeError("could not place the workcell objects without overlap; the placement area is too small")


def fits(xy: dict, keep_out=None, first: str | None = None) -> bool:
    """Whether positions ``xy`` ({name: xy}) are free of overlaps and of ``keep_out`` (checked in placing order)."""
    names = list(xy)
    if first is not None:
        names.remove(first)
        names.insert(0, first)
    placed = {}
    for name in names:
        p = xy[name]
        if keep_out is not None and keep_out(placed, name, p):
            return False
        if any(np.linalg.norm(p - q) <= _RADIUS[name] + _RADIUS[n] for n, q in placed.items()):
            return False
        placed[name] = p
    return True


def apply_layout(model: mujoco.MjModel, data: mujoco.MjData, layout: Layout, table_top: float) -> None:
    """Move the objects of ``layout`` into ``model``/``data`` (static bodies via body_pos, blocks via qpos)."""
    for name in ("bowl", "plate"):
        model.body(name).pos[:2] = layout.xy[name]
    for name in BLOCKS:
        adr = model.jnt_qposadr[model.body(name).jntadr[0]]
        data.qpos[adr:adr + 3] = (*layout.xy[name], table_top + BLOCK_HALF)
        data.qpos[adr + 3:adr + 7] = (1.0, 0.0, 0.0, 0.0)
    data.qpos[model.jnt_qposadr[model.joint("drawer").id]] = layout.drawer_opening


def body_position(model: mujoco.MjModel, data: mujoco.MjData, name: str) -> np.ndarray:
    return data.body(name).xpos.copy()


def drawer_opening(model: mujoco.MjModel, data: mujoco.MjData) -> float:
    return float(data.qpos[model.jnt_qposadr[model.joint("drawer").id]])


def drawer_handle_position(model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
    """World position of the middle of the drawer handle bar."""
    return data.geom("drawer_handle").xpos.copy()


def drawer_front_x(model: mujoco.MjModel, data: mujoco.MjData) -> float:
    """x of the outer face of the drawer front panel."""
    g = data.geom("drawer_front")
    return float(g.xpos[0] + model.geom("drawer_front").size[0])
