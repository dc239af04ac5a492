"""Workcell settings read from ``config/workcell.yaml`` and camera poses read from ``urdf/workcell.urdf``.

The URDF files are the single source of every pose (arm joints, table, cameras); the YAML file holds what
a URDF cannot express: camera intrinsics (fovy), image size, control rate, physics step, step limit and
the workspace box actions are clamped into.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ..ur5 import description_dir, parse_urdf

VIEWS = ("front", "side", "corner")


def config_path() -> Path:
    """``config/workcell.yaml`` beside ``urdf/`` (source tree or the installed share directory)."""
    return description_dir().parent / "config" / "workcell.yaml"


@dataclass(frozen=True)
class CameraSpec:
    name: str
    pose: np.ndarray  # 4x4 optical frame (z forward, x right, y down) in the base frame
    fovy_deg: float


@dataclass(frozen=True)
class TableSpec:
    pose: np.ndarray  # 4x4 of the table-top centre in the base frame
    size: np.ndarray  # full box size (x, y, z)
    box_offset: np.ndarray  # centre of the box relative to the table frame

    @property
    def top_z(self) -> float:
        return float(self.pose[2, 3])


@dataclass(frozen=True)
class WorkcellConfig:
    image_size: int
    control_hz: float
    physics_timestep: float
    max_steps: int
    workspace_low: np.ndarray
    workspace_high: np.ndarray
    gripper_stroke: float
    start_jitter: np.ndarray = field(default_factory=lambda: np.zeros(3))  # +- x, y, z of the start pose (m)
    layout_jitter: float | None = None  # +- m around each task's nominal layout; None: anywhere in the area
    cameras: dict = field(default_factory=dict)  # name -> CameraSpec
    table: TableSpec | None = None

    @property
    def substeps(self) -> int:
        return int(round(1.0 / (self.control_hz * self.physics_timestep)))


def _require(mapping: dict, key: str, where: str):
    if key not in mapping:
        raise ValueError(f"{where}: missing key {key!r}")
    return mapping[key]


def load_workcell_urdf(path: str | Path | None = None) -> tuple[TableSpec, dict[str, np.ndarray]]:
    """Table spec and camera optical-frame poses (``{view: 4x4}``) of ``urdf/workcell.urdf``.

    Every joint in that file hangs directly off ``base`` (fixed), so a link's pose is its joint origin.
    """
    import xml.etree.ElementTree as ET

    path = Path(path) if path else description_dir() / "workcell.urdf"
    joints = {j.child: j for j in parse_urdf(path)}
    for child, joint in joints.items():
        if joint.parent != "base" or joint.kind != "fixed":
            raise ValueError(f"{path}: joint {joint.name!r} must be a fixed joint from 'base'")
    if "table" not in joints:
        raise ValueError(f"{path}: no 'table' link")
    root = ET.parse(path).getroot()
    table_link = root.find("link[@name='table']")
    box = table_link.find("collision/geometry/box") if table_link is not None else None
    if box is None:
        raise ValueError(f"{path}: link 'table' needs a <collision><geometry><box size=.../>")
    origin = table_link.find("collision/origin")
    offset = np.array([float(v) for v in (origin.get("xyz") if origin is not None else "0 0 0").split()])
    table = TableSpec(pose=joints["table"].origin, size=np.array([float(v) for v in box.get("size").split()]),
                      box_offset=offset)
    cameras = {}
    for view in VIEWS:
        link = f"{view}_camera_optical_frame"
        if link not in joints:
            raise ValueError(f"{path}: no camera link {link!r}")
        cameras[view] = joints[link].origin
    return table, cameras


def load_config(path: str | Path | None = None, image_size: int | None = None) -> WorkcellConfig:
    """Read the YAML settings and the workcell URDF; ``image_size`` overrides the file's value."""
    path = Path(path) if path else config_path()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read workcell config ({exc})") from exc
    where = str(path)
    size = int(image_size if image_size is not None else _require(raw, "image_size", where))
    if size < 16:
        raise ValueError(f"image_size must be >= 16 pixels, got {size}")
    table, poses = load_workcell_urdf()
    cams_raw = _require(raw, "cameras", where)
    cameras = {}
    for view in VIEWS:
        fovy = float(_require(_require(cams_raw, view, f"{where} cameras"), "fovy_deg", f"{where} cameras.{view}"))
        if not 1.0 < fovy < 179.0:
            raise ValueError(f"{where}: cameras.{view}.fovy_deg must be in (1, 179), got {fovy}")
        cameras[view] = CameraSpec(view, poses[view], fovy)
    ws = _require(raw, "workspace", where)
    cfg = WorkcellConfig(
        image_size=size,
        control_hz=float(_require(raw, "control_hz", where)),
        physics_timestep=float(_require(raw, "physics_timestep", where)),
        max_steps=int(_require(raw, "max_steps", where)),
        workspace_low=np.array(_require(ws, "low", f"{where} workspace"), float),
        workspace_high=np.array(_require(ws, "high", f"{where} workspace"), float),
        gripper_stroke=float(_require(raw, "gripper_stroke", where)),
        start_jitter=np.array(raw.get("start_jitter", [0.0, 0.0, 0.0]), float),
        layout_jitter=None if raw.get("layout_jitter") is None else float(raw["layout_jitter"]),
        cameras=cameras,
        table=table,
    )
    if cfg.workspace_low.shape != (3,) or np.any(cfg.workspace_low >= cfg.workspace_high):
        raise ValueError(f"{where}: workspace low/high must be 3 numbers with low < high")
    if cfg.start_jitter.shape != (3,) or np.any(cfg.start_jitter < 0) or np.any(cfg.start_jitter > 0.15):
        raise ValueError(f"{where}: start_jitter must be 3 numbers in [0, 0.15] m, got {cfg.start_jitter.tolist()}")
    if cfg.layout_jitter is not None and not 0.0 < cfg.layout_jitter <= 0.1:
        raise ValueError(f"{where}: layout_jitter must be in (0, 0.1] m or null, got {cfg.layout_jitter}")
    if cfg.substeps < 1:
        raise ValueError(f"{where}: physics_timestep must be shorter than the control period")
    return cfg
