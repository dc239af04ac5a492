"""URDF -> MJCF: the MuJoCo model of the workcell, generated from ``urdf/ur5.urdf`` and ``urdf/workcell.urdf``.

Nothing about the arm's kinematics is typed here: every arm body is placed at its URDF joint origin and
turns about the URDF joint axis, in chain order, so MuJoCo's tool0 pose equals ``amplify_core.ur5`` FK.
Link capsules are drawn from each link frame to the next joint origin (looks only; the arm links have no
collision). Cameras sit at the URDF optical frames turned by pi about x (MuJoCo cameras look along -z
with y up; the URDF optical frames look along +z with y down).

Two embodiments share the table, objects and cameras:

* ``robot``: the UR5 with a parallel gripper on tool0 (two slide fingers, one position actuator each);
* ``human``: no arm; a floating skin-coloured hand (palm, fingers, thumb, forearm made of capsules) on a
  mocap body that the env moves to the commanded tool0 pose, for action-free "human" videos.

Only primitive geoms and two small procedural textures are used, shadows and reflections are off: this
keeps offscreen rendering at a couple of milliseconds per 128 px camera on a CPU.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from ..ur5 import default_kinematics
from .config import WorkcellConfig
from .scene import BLOCKS, BLOCK_HALF, BOWL, CABINET, DRAWER, PLATE

EMBODIMENTS = ("robot", "human")

# Gripper geometry in the tool0 frame (z = approach direction). The grasp centre is where a grasped
# block's centre sits; experts aim tool0 at (target + GRASP_OFFSET along -z) when pointing down.
PALM_HALF = (0.02, 0.05, 0.015)
FINGER_HALF = (0.01, 0.008, 0.035)
FINGER_TOP = 2 * PALM_HALF[2]
FINGERTIP_Z = FINGER_TOP + 2 * FINGER_HALF[2]  # 0.10 m below tool0
GRASP_OFFSET = FINGERTIP_Z - 0.02  # tool0 -> grasp centre distance along tool z

# Collision bits: 1 = table, fixtures, objects; 2 = drawer (slides through its housing freely);
# grippers and the hand carry both so they can push objects and pull the drawer.
_STATIC = 'contype="1" conaffinity="1"'
_DRAWER = 'contype="2" conaffinity="2"'
_EFFECTOR = 'contype="3" conaffinity="3"'
_VISUAL = 'contype="0" conaffinity="0"'

ARM_RGBA = "0.6 0.65 0.7 1"
SKIN_RGBA = "0.87 0.68 0.55 1"

# Surface patterns: a point tracker needs texture to follow a surface (an evenly coloured link is a blank
# window for Lucas-Kanade, its points stay behind while the arm moves), so everything that moves carries a checker
# of two shades whose squares are CHECKER_SQUARE metres wide on every face, whatever the geom's size
# (``texuniform``). Boxes take 2-D textures cleanly on all faces, capsules and cylinders do not, hence the
# box-shaped links and fingers. name -> (light rgb, dark rgb)
CHECKER_SQUARE = 0.04
MATERIALS = {
    "arm": ("0.72 0.75 0.8", "0.42 0.45 0.52"),
    "joint": ("0.3 0.36 0.48", "0.16 0.19 0.26"),
    "gripper": ("0.38 0.38 0.4", "0.12 0.12 0.13"),
    "skin": ("0.9 0.72 0.6", "0.55 0.38 0.28"),
    "sleeve": ("0.34 0.4 0.68", "0.2 0.24 0.45"),
    "cabinet": ("0.5 0.34 0.22", "0.36 0.24 0.15"),
    "drawer": ("0.74 0.59 0.38", "0.55 0.42 0.26"),
    "drawer_front": ("0.33 0.6 0.66", "0.2 0.4 0.45"),
    "bowl": ("0.93 0.93 0.97", "0.7 0.7 0.78"),
    "plate": ("0.96 0.58 0.78", "0.78 0.4 0.6"),
}


def _materials_xml() -> str:
    return "\n".join(
        f'    <texture name="{n}_tex" type="2d" builtin="checker" rgb1="{a}" rgb2="{b}" width="32" height="32"/>\n'
        f'    <material name="{n}_mat" texture="{n}_tex" specular="0" reflectance="0"/>'
        for n, (a, b) in MATERIALS.items())


def _box_mesh_name(half) -> str:
    return "box_" + "_".join(f"{h * 1e4:.0f}" for h in half)


def _box_mesh_xml(name: str) -> str:
    """A box mesh whose faces carry texture coordinates in metres (one checker tile per 2 squares), so every face
    shows the same square size. MuJoCo's own boxes map a 2-D texture well on two faces only (the others get
    stripes, which a point tracker cannot follow along the stripes)."""
    half = np.array([float(v) * 1e-4 for v in name.split("_")[1:]])
    vertices, uv, faces = [], [], []
    for axis in range(3):
        u, v = [a for a in range(3) if a != axis]
        for sign in (1.0, -1.0):
            corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)] if sign > 0 else [(-1, -1), (-1, 1), (1, 1), (1, -1)]
            if axis == 1:  # keep the winding counter-clockwise seen from outside (x, z is a left-handed pair)
                corners = corners[::-1]
            base = len(vertices)
            for cu, cv in corners:
                p = np.zeros(3)
                p[axis], p[u], p[v] = sign * half[axis], cu * half[u], cv * half[v]
                vertices.append(p)
                uv.append((p[u] / (2 * CHECKER_SQUARE), p[v] / (2 * CHECKER_SQUARE)))
            faces += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
    return (f'    <mesh name="{name}" vertex="{_fmt(np.ravel(vertices))}" texcoord="{_fmt(np.ravel(uv))}" '
            f'face="{" ".join(str(i) for f in faces for i in f)}"/>')


def _box(half, material: str, attrs: str = "", collide: str | None = None, name: str | None = None) -> str:
    """A checkered box: a textured visual mesh, plus (with ``collide`` contact bits) a box of the same size that
    collides and is not drawn (geom group 3). ``attrs``: placement (pos / quat) shared by both."""
    mesh = _box_mesh_name(half)
    out = f'<geom type="mesh" mesh="{mesh}" {attrs} material="{material}_mat" {_VISUAL}/>'
    if collide is not None:
        named = f'name="{name}" ' if name else ""
        out += f'<geom {named}type="box" size="{_fmt(half)}" {attrs} group="3" {collide}/>'
    return out


def _fmt(values) -> str:
    return " ".join(f"{float(v):.10g}" for v in values)


def _quat(rot: np.ndarray) -> str:
    """MuJoCo (w, x, y, z) quaternion of a rotation matrix."""
    x, y, z, w = Rotation.from_matrix(rot).as_quat()
    return _fmt((w, x, y, z))


def optical_to_mujoco_camera(optical: np.ndarray) -> np.ndarray:
    """4x4 MuJoCo camera frame (x right, y up, looking along -z) of a URDF optical frame (y down, +z)."""
    flip = np.diag([1.0, -1.0, -1.0, 1.0])
    return optical @ flip


def _bar(start, end, half_width: float, material: str) -> str:
    """A checkered box of square section from ``start`` to ``end`` (visual only)."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    half = (half_width, half_width, np.linalg.norm(end - start) / 2)
    return _box(half, material, f'pos="{_fmt((start + end) / 2)}" quat="{_quat(_along(end - start))}"')


def _along(axis) -> np.ndarray:
    """A rotation taking z onto ``axis`` (the joint housings are boxes whose long side is the joint axis)."""
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    rot, _ = Rotation.align_vectors([axis], [[0.0, 0.0, 1.0]])
    return rot.as_matrix()


def _arm_xml() -> tuple[str, str]:
    """Nested arm bodies from the URDF chain and their actuators."""
    kin = default_kinematics()
    joints = kin.joints
    body_lines, close = [], []
    indent = "    "
    for i, joint in enumerate(joints):
        origin = joint.origin
        next_origin = joints[i + 1].origin[:3, 3] if i + 1 < len(joints) else None
        if joint.kind == "fixed":
            # tool0: a frame on wrist_3, carrying the gripper
            body_lines.append(f'{indent}<body name="{joint.child}" pos="{_fmt(origin[:3, 3])}" quat="{_quat(origin[:3, :3])}" gravcomp="1">')
            body_lines.append(f'{indent}  <site name="tool0" size="0.005" rgba="1 0 0 0" group="4"/>')
            body_lines.append(_gripper_xml(indent + "  "))
            close.append(f"{indent}</body>")
            continue
        body_lines.append(f'{indent}<body name="{joint.child}" pos="{_fmt(origin[:3, 3])}" quat="{_quat(origin[:3, :3])}" gravcomp="1">')
        body_lines.append(f'{indent}  <inertial pos="0 0 0" mass="{2.0 if i < 3 else 0.8}" diaginertia="0.01 0.01 0.01"/>')
        body_lines.append(f'{indent}  <joint name="{joint.name}" axis="{_fmt(joint.axis)}" range="{joint.lower} {joint.upper}"/>')
        body_lines.append(f'{indent}  ' + _box((0.055, 0.055, 0.065), "joint", f'quat="{_quat(_along(joint.axis))}"'))
        if next_origin is not None and np.linalg.norm(next_origin) > 1e-6:
            body_lines.append(f'{indent}  ' + _bar(np.zeros(3), next_origin, 0.045, "arm"))
        close.append(f"{indent}</body>")
        indent += "  "
    actuators = "\n".join(
        f'    <position name="{j.name}" joint="{j.name}" kp="1500" kv="60" ctrlrange="{j.lower} {j.upper}"/>'
        for j in joints if j.kind != "fixed"
    )
    return "\n".join(body_lines + close[::-1]), actuators


def _gripper_xml(indent: str) -> str:
    ph, fh = PALM_HALF, FINGER_HALF
    fz = FINGER_TOP + fh[2]
    lines = [indent + _box(ph, "gripper", f'pos="0 0 {ph[2]}"', _EFFECTOR, name="palm")]
    for side, sign in (("left", 1.0), ("right", -1.0)):
        lines += [
            f'{indent}<body name="finger_{side}" pos="0 {sign * fh[1]} {fz}" gravcomp="1">',
            f'{indent}  <inertial pos="0 0 0" mass="0.05" diaginertia="1e-5 1e-5 1e-5"/>',
            f'{indent}  <joint name="finger_{side}" type="slide" axis="0 {sign} 0" range="0 0.045" damping="5"/>',
            f'{indent}  ' + _box(fh, "gripper", "", f'friction="1.5 0.01 0.001" {_EFFECTOR}'),
            f"{indent}</body>",
        ]
    lines.append(f'{indent}<site name="grasp" pos="0 0 {GRASP_OFFSET}" size="0.004" rgba="0 1 0 0" group="4"/>')
    return "\n".join(lines)


def _hand_xml() -> str:
    """A floating hand on a mocap body whose frame is the commanded tool0 frame (z along the fingers)."""
    r = 0.009
    # fingers: capsules collide (their round tips slide into the drawer's handle slot), boxes are seen (a capsule
    # takes no checker texture); the capsules sit in geom group 3, which cameras do not draw
    fingers = "\n".join(
        f'      <geom type="capsule" size="{r}" fromto="{dx} {sign * 0.032} 0.035 {dx} {sign * 0.032} {FINGERTIP_Z - r}" '
        f'group="3" {_EFFECTOR}/>\n'
        f'      ' + _bar([dx, sign * 0.032, 0.035], [dx, sign * 0.032, FINGERTIP_Z - r], r, "skin")
        for sign in (1.0, -1.0) for dx in (-0.012, 0.012)
    )
    return f"""
    <body name="hand" mocap="true" pos="-0.45 0 0.3" quat="0 1 0 0">
      <site name="tool0" size="0.005" rgba="1 0 0 0" group="4"/>
      <site name="grasp" pos="0 0 {GRASP_OFFSET}" size="0.004" rgba="0 1 0 0" group="4"/>
      {_box((0.03, 0.045, 0.018), "skin", 'pos="0 0 0.02"', _EFFECTOR, name="palm")}
{fingers}
      {_bar([0, 0, 0], [0, 0, -0.22], 0.035, "sleeve")}
    </body>"""


def _objects_xml(table_top: float) -> str:
    lines = []
    h = BLOCK_HALF
    for name, rgba in BLOCKS.items():
        lines += [
            f'    <body name="{name}" pos="-0.45 0 {table_top + h}">',
            '      <freejoint/>',
            f'      <geom type="box" size="{h} {h} {h}" material="{name}_mat" mass="0.05" '
            f'friction="1.2 0.01 0.001" {_STATIC}/>',
            "    </body>",
        ]
    # bowl: a floor disc and a ring of wall boxes (a static body, placed at reset)
    r, wall_h, n = BOWL["radius"], BOWL["wall_height"], 10
    lines.append(f'    <body name="bowl" pos="-0.45 0.1 {table_top}">')
    lines.append(f'      <geom type="cylinder" size="{r} 0.003" pos="0 0 0.003" material="bowl_mat" {_STATIC}/>')
    for k in range(n):
        a = 2 * np.pi * k / n
        lines.append(f'      <geom type="box" size="0.006 {r * np.tan(np.pi / n):.4f} {wall_h / 2}" '
                     f'pos="{r * np.cos(a):.4f} {r * np.sin(a):.4f} {wall_h / 2}" euler="0 0 {a:.4f}" '
                     f'material="bowl_mat" {_STATIC}/>')
    lines.append("    </body>")
    lines.append(f'    <body name="plate" pos="-0.45 -0.1 {table_top}">')
    lines.append(f'      <geom type="cylinder" size="{PLATE["radius"]} {PLATE["half_height"]}" '
                 f'pos="0 0 {PLATE["half_height"]}" material="plate_mat" {_STATIC}/>')
    lines.append("    </body>")
    lines.append(_drawer_xml(table_top))
    return "\n".join(lines)


def _drawer_xml(table_top: float) -> str:
    """A fixed cabinet housing with a drawer sliding along +x (towards the robot) to open."""
    cx, cy = CABINET["pos"]
    hx, hy, hz = CABINET["half"]
    t = 0.006  # wall thickness
    d = DRAWER
    housing = [
        (f"{hx} {hy} {t}", f"0 0 {2 * hz - t}"),  # top
        (f"{hx} {t} {hz}", f"0 {hy - t} {hz}"),  # sides
        (f"{hx} {t} {hz}", f"0 {-hy + t} {hz}"),
        (f"{t} {hy} {hz}", f"{-hx + t} 0 {hz}"),  # back
    ]
    geoms = "\n".join("      " + _box([float(v) for v in s.split()], "cabinet", f'pos="{p}"', _STATIC)
                      for s, p in housing)
    dx, dy, dz = d["half"]
    front_x = dx  # drawer frame at the drawer box centre
    hx_bar = front_x + d["handle_gap"] + 0.005
    return f"""
    <body name="cabinet" pos="{cx} {cy} {table_top}">
{geoms}
      <body name="drawer" pos="{hx - dx - t} 0 {dz + 0.004}">
        <joint name="drawer" type="slide" axis="1 0 0" range="0 {d["travel"]}" damping="8" frictionloss="0.3"/>
        <inertial pos="0 0 0" mass="0.4" diaginertia="0.002 0.002 0.002"/>
        {_box((dx, dy, 0.004), "drawer", f'pos="0 0 {-dz + 0.004:g}"', _DRAWER)}
        {_box((0.005, dy, dz), "drawer", f'pos="{-dx + 0.005:g} 0 0"', _DRAWER)}
        {_box((dx, 0.005, dz), "drawer", f'pos="0 {dy - 0.005:g} 0"', _DRAWER)}
        {_box((dx, 0.005, dz), "drawer", f'pos="0 {-dy + 0.005:g} 0"', _DRAWER)}
        {_box((0.006, dy + 0.01, dz + 0.004), "drawer_front", f'pos="{front_x} 0 0.004"', _DRAWER, name="drawer_front")}
        <geom name="drawer_handle" type="capsule" size="0.005" fromto="{hx_bar} {-0.06} 0.01 {hx_bar} 0.06 0.01" rgba="0.1 0.1 0.1 1" {_DRAWER}/>
        <geom type="box" size="{(hx_bar - front_x) / 2} 0.005 0.005" pos="{(hx_bar + front_x) / 2} 0.06 0.01" rgba="0.1 0.1 0.1 1" {_DRAWER}/>
        <geom type="box" size="{(hx_bar - front_x) / 2} 0.005 0.005" pos="{(hx_bar + front_x) / 2} -0.06 0.01" rgba="0.1 0.1 0.1 1" {_DRAWER}/>
      </body>
    </body>"""


def _cameras_xml(config: WorkcellConfig) -> str:
    lines = []
    for view, cam in config.cameras.items():
        pose = optical_to_mujoco_camera(cam.pose)
        lines.append(f'    <camera name="{view}" pos="{_fmt(pose[:3, 3])}" quat="{_quat(pose[:3, :3])}" fovy="{cam.fovy_deg}"/>')
    return "\n".join(lines)


def build_mjcf(config: WorkcellConfig, embodiment: str = "robot") -> str:
    """The MJCF text of the workcell for ``embodiment`` ('robot' or 'human')."""
    if embodiment not in EMBODIMENTS:
        raise ValueError(f"embodiment must be one of {EMBODIMENTS}, got {embodiment!r}")
    table = config.table
    top = table.top_z
    table_centre = table.pose[:3, 3] + table.pose[:3, :3] @ table.box_offset
    size = config.image_size
    if embodiment == "robot":
        arm, actuators = _arm_xml()
        effector = f"""
    <body name="base" pos="0 0 0">
      {_box((0.07, 0.07, 0.04), "joint", 'pos="0 0 -0.04"')}
{arm}
    </body>"""
        actuators += "\n" + "\n".join(
            f'    <position name="finger_{s}" joint="finger_{s}" kp="300" kv="10" ctrlrange="0 0.045"/>' for s in ("left", "right"))
    else:
        effector, actuators = _hand_xml(), ""
    block_textures = "\n".join(
        f'    <texture name="{n}_tex" type="cube" builtin="checker" rgb1="{_fmt(np.array(c.split()[:3], float))}" '
        f'rgb2="{_fmt(np.array(c.split()[:3], float) * 0.7)}" width="16" height="16"/>\n'
        f'    <material name="{n}_mat" texture="{n}_tex"/>'
        for n, c in BLOCKS.items())
    xml = f"""<mujoco model="ur5_workcell_{embodiment}">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{config.physics_timestep}" integrator="implicitfast" cone="elliptic" impratio="5"/>
  <size memory="4M"/>
  <visual>
    <global offwidth="{size}" offheight="{size}"/>
    <!-- coarse tessellation and no shadow map / multisampling: rendering cost on llvmpipe scales with them -->
    <quality shadowsize="0" offsamples="0" numslices="10" numstacks="3" numquads="1"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.4 0.4 0.4" specular="0 0 0"/>
    <rgba haze="0.6 0.65 0.7 1"/>
    <map znear="0.01" zfar="20"/>
  </visual>
  <asset>
    <texture name="table_tex" type="2d" builtin="checker" rgb1="0.62 0.52 0.4" rgb2="0.55 0.45 0.34" width="64" height="64"/>
    <material name="table_mat" texture="table_tex" texrepeat="6 7" specular="0" reflectance="0"/>
{block_textures}
{_materials_xml()}
{{meshes}}
  </asset>
  <worldbody>
    <light directional="true" pos="0 0 2" dir="0.3 0.2 -1" diffuse="0.5 0.5 0.5" specular="0 0 0" castshadow="false"/>
    <geom name="floor" type="box" size="3 3 0.01" pos="0 0 {top - 0.76}" rgba="0.35 0.35 0.38 1" {_VISUAL}/>
    <geom name="table" type="box" size="{_fmt(table.size / 2)}" pos="{_fmt(table_centre)}" quat="{_quat(table.pose[:3, :3])}" material="table_mat" {_STATIC}/>
{_cameras_xml(config)}
{effector}
{_objects_xml(top)}
  </worldbody>
  <actuator>
{actuators}
  </actuator>
</mujoco>
"""
    import re

    used = sorted(set(re.findall(r'mesh="(box_[0-9_]+)"', xml)))
    return xml.replace("{meshes}", "\n".join(_box_mesh_xml(name) for name in used))
