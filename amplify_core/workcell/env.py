"""Gymnasium-style environment of the simulated UR5 workcell (no gymnasium dependency).

``env = WorkcellEnv("put the red block in the bowl")``; ``obs = env.reset(seed)``;
``obs, reward, terminated, truncated, info = env.step(action)``.

* Action (7,): absolute tool0 pose (x, y, z, rx, ry, rz) in the robot base frame, rotation vector as
  the UR controller uses it (``amplify_core.ur5``), then the gripper command in [0, 1] (0 = open,
  1 = closed). One step = 1 / control_hz s (20 Hz) with the physics substeps inside.
* Bad input: a non-finite or wrongly shaped action raises ValueError; a position outside the
  workspace box of ``config/workcell.yaml`` is clamped into it and a gripper value outside [0, 1]
  is clipped; ``info['clamped']`` says whether this step was clamped, ``info['clamp_count']`` counts
  clamped steps since reset.
* Observation: ``images`` {view: uint8 (H, W, 3)} for 'front', 'side', 'corner' and ``proprio`` (7,):
  the six joint angles and the gripper opening in [0, 1] (1 = fully open). For the 'human' embodiment
  (a floating hand, no arm) ``proprio`` is the hand's tool0 pose (6) and its grasp command.
* reward = 1.0 when the task predicate holds, terminated = success, truncated after ``max_steps``.

Arm control: each step solves IK for the target (seeded by the previous solution) and ramps the joint
position actuators' set-points to it over the substeps. Grasping uses an attachment: when the gripper
is commanded closed with a block's centre between the fingers (``ATTACH_BOX`` around the grasp point), the block is
rigidly attached to the grasp frame (its free joint is overwritten after every physics substep) until
the gripper opens; friction grasps of 4 cm blocks proved fragile at this time step. Pushing and the
drawer use real contacts.
"""

from __future__ import annotations

import logging
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
from scipy.spatial.transform import Rotation, Slerp  # noqa: E402

from ..ur5 import JOINT_NAMES, default_kinematics, pose_to_matrix, rotvec_from_matrix  # noqa: E402
from . import scene  # noqa: E402
from .config import VIEWS, WorkcellConfig, load_config  # noqa: E402
from .description import build_mjcf  # noqa: E402
from .render import CameraRenderer  # noqa: E402
from .tasks import Task, get_task, is_success, sample_task_layout  # noqa: E402

log = logging.getLogger(__name__)

ACTION_NAMES = ("x", "y", "z", "rx", "ry", "rz", "gripper")
STATE_NAMES = (*JOINT_NAMES, "gripper_opening")
# A closed gripper holds a block whose centre lies in this box around the grasp point (grasp frame: x across
# the fingers' faces, y between the fingers, z along the approach): between the fingers, not in front of them.
ATTACH_BOX = np.array([0.015, 0.03, 0.025])
# Home: tool0 above the middle of the workspace pointing down, elbow up (IK from the usual UR seed).
HOME_POSE = np.array([-0.45, 0.0, 0.35, np.pi, 0.0, 0.0])
_HOME_SEED = np.array([0.0, -np.pi / 2, np.pi / 2, -np.pi / 2, -np.pi / 2, 0.0])


class WorkcellEnv:
    """The UR5 workcell with three static cameras; see the module docstring for the contract."""

    def __init__(self, task: str, embodiment: str = "robot", image_size: int | None = None,
                 max_steps: int | None = None, render: bool = True, config: WorkcellConfig | None = None,
                 views: list[str] | None = None):
        self.task: Task = get_task(task)
        self.config = config or load_config(image_size=image_size)
        if image_size is not None and self.config.image_size != image_size:
            raise ValueError(f"image_size {image_size} conflicts with the given config ({self.config.image_size})")
        self.embodiment = embodiment
        self.model = mujoco.MjModel.from_xml_string(build_mjcf(self.config, embodiment))
        self.data = mujoco.MjData(self.model)
        self.max_steps = int(max_steps if max_steps is not None else self.config.max_steps)
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        self.render_images = render
        self.views = list(views) if views is not None else list(VIEWS)  # rendered into observations
        unknown = [v for v in self.views if v not in VIEWS]
        if unknown:
            raise ValueError(f"views {unknown} are not workcell cameras {list(VIEWS)}")
        self.renderer = CameraRenderer(self.model, self.config.image_size) if render else None
        self.ik = default_kinematics()
        self.table_top = self.config.table.top_z
        self._static_pos = self.model.body_pos.copy()  # layout is re-applied on top of these at reset
        self._robot = embodiment == "robot"
        if self._robot:
            self._arm_qpos = np.array([self.model.jnt_qposadr[self.model.joint(n).id] for n in JOINT_NAMES])
            self._arm_act = np.array([self.model.actuator(n).id for n in JOINT_NAMES])
            self._finger_qpos = np.array([self.model.jnt_qposadr[self.model.joint(f"finger_{s}").id] for s in ("left", "right")])
            self._finger_act = np.array([self.model.actuator(f"finger_{s}").id for s in ("left", "right")])
            self.home_q, residual = self.ik.solve(pose_to_matrix(HOME_POSE), _HOME_SEED, iterations=200, tol=1e-10,
                                                     max_step=0.4, clip=True)
            if residual > 1e-6:
                raise RuntimeError(f"home pose {HOME_POSE.tolist()} is unreachable (IK residual {residual:.2e})")
        else:
            self._mocap = self.model.body("hand").mocapid[0]
        self._tool_site = self.model.site("tool0").id
        self._grasp_site = self.model.site("grasp").id
        self.seed = None
        self.steps = 0
        self.clamp_count = 0
        self.attached: str | None = None
        self._attach_rel = np.eye(4)
        self.initial_positions: dict = {}

    # ----------------------------------------------------------------------------------------- reset
    def reset(self, seed: int = 0) -> dict:
        """Seeded initial state (object layout, drawer opening); returns the first observation."""
        self.seed = int(seed)
        rng = np.random.default_rng(self.seed)
        mujoco.mj_resetData(self.model, self.data)
        self.model.body_pos[:] = self._static_pos
        layout = sample_task_layout(self.task, rng, self.config.layout_jitter)
        scene.apply_layout(self.model, self.data, layout, self.table_top)
        start = HOME_POSE.copy()  # drawn after the layout: a seed's layout does not depend on the jitter
        start[:3] += rng.uniform(-1.0, 1.0, 3) * self.config.start_jitter
        if self._robot:
            q, residual = self.ik.solve(pose_to_matrix(start), self.home_q, iterations=200, tol=1e-10,
                                        max_step=0.4, clip=True)
            if residual > 1e-6:
                raise RuntimeError(f"start pose {start.tolist()} is unreachable (IK residual {residual:.2e})")
            self.data.qpos[self._arm_qpos] = q
            self.data.ctrl[self._arm_act] = q
            self.data.qpos[self._finger_qpos] = self.config.gripper_stroke
            self.data.ctrl[self._finger_act] = self.config.gripper_stroke
            self._q_cmd = q.copy()
            self.start_q = q.copy()  # the arm's joints at the start of this episode (``home_q`` + the jitter)
        else:
            self.data.mocap_pos[self._mocap] = start[:3]
            self.data.mocap_quat[self._mocap] = _wxyz(Rotation.from_rotvec(start[3:]))
        self._command = start.copy()
        self._gripper = 0.0
        self.attached = None
        self.steps = 0
        self.clamp_count = 0
        mujoco.mj_forward(self.model, self.data)
        self.initial_positions = {name: self.body_position(name) for name in scene.BLOCKS}
        return self._observation()

    # ------------------------------------------------------------------------------------------ step
    def step(self, action) -> tuple[dict, float, bool, bool, dict]:
        if self.seed is None:
            raise RuntimeError("call reset(seed) before step()")
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (7,):
            raise ValueError(f"action must have shape (7,) = (x, y, z, rx, ry, rz, gripper), got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action contains NaN or infinite values: {action.tolist()}")
        pos = np.clip(action[:3], self.config.workspace_low, self.config.workspace_high)
        grip = float(np.clip(action[6], 0.0, 1.0))
        clamped = bool(np.any(pos != action[:3]) or grip != action[6])
        self.clamp_count += int(clamped)
        target = np.concatenate([pos, action[3:6]])
        residual = self._drive_robot(target, grip) if self._robot else self._drive_hand(target, grip)
        self._update_grasp(grip)
        mujoco.mj_forward(self.model, self.data)
        self.steps += 1
        success = self.success()
        truncated = self.steps >= self.max_steps and not success
        info = {"success": success, "clamped": clamped, "clamp_count": self.clamp_count,
                "ik_residual": residual, "steps": self.steps, "attached": self.attached}
        return self._observation(), float(success), success, truncated, info

    def _drive_robot(self, target: np.ndarray, grip: float) -> float:
        q_target, residual = self.ik.solve(pose_to_matrix(target), self._q_cmd, max_step=0.4, clip=True)
        if residual > 1e-3:
            log.debug("IK residual %.3g for target %s (moving to the nearest pose)", residual, target)
        finger = self.config.gripper_stroke * (1.0 - grip)
        n = self.config.substeps
        for k in range(n):
            self.data.ctrl[self._arm_act] = self._q_cmd + (q_target - self._q_cmd) * (k + 1) / n
            self.data.ctrl[self._finger_act] = finger
            self._physics_step()
        self._q_cmd = q_target
        self._command, self._gripper = target, grip
        return residual

    def follow_joints(self, q: np.ndarray, grip: float) -> None:
        """Drive the arm to joint angles ``q`` (6,) over one control period (physics, grasping included).

        For an outside controller, e.g. the fake UR controller of a ROS rehearsal: the arm follows its joint
        states instead of this env's IK. ``grip`` 1 = closed.
        """
        if not self._robot:
            raise ValueError("follow_joints needs the robot embodiment")
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (6,) or not np.all(np.isfinite(q)):
            raise ValueError(f"joint angles must be 6 finite numbers, got {q!r}")
        grip = float(np.clip(grip, 0.0, 1.0))
        n = self.config.substeps
        for k in range(n):
            self.data.ctrl[self._arm_act] = self._q_cmd + (q - self._q_cmd) * (k + 1) / n
            self.data.ctrl[self._finger_act] = self.config.gripper_stroke * (1.0 - grip)
            self._physics_step()
        self._q_cmd, self._gripper = q.copy(), grip
        self._update_grasp(grip)
        mujoco.mj_forward(self.model, self.data)

    def _drive_hand(self, target: np.ndarray, grip: float) -> float:
        start, end = self._command, target
        n = self.config.substeps
        fractions = np.arange(1, n + 1) / n
        quats = Slerp([0.0, 1.0], Rotation.from_rotvec([start[3:], end[3:]]))(fractions).as_quat()[:, [3, 0, 1, 2]]
        for k in range(n):
            self.data.mocap_pos[self._mocap] = start[:3] + (end[:3] - start[:3]) * fractions[k]
            self.data.mocap_quat[self._mocap] = quats[k]
            self._physics_step()
        self._command, self._gripper = target, grip
        return 0.0

    def _physics_step(self) -> None:
        mujoco.mj_step(self.model, self.data)
        if self.attached is not None:
            mujoco.mj_kinematics(self.model, self.data)
            self._hold_attached()

    # --------------------------------------------------------------------------------------- grasping
    def _grasp_frame(self) -> np.ndarray:
        t = np.eye(4)
        t[:3, :3] = self.data.site_xmat[self._grasp_site].reshape(3, 3)
        t[:3, 3] = self.data.site_xpos[self._grasp_site]
        return t

    def _update_grasp(self, grip: float) -> None:
        if grip < 0.5:
            self.attached = None
            return
        if self.attached is not None:
            return
        mujoco.mj_kinematics(self.model, self.data)
        grasp = self._grasp_frame()
        for name in scene.BLOCKS:
            body = self.data.body(name)
            local = grasp[:3, :3].T @ (body.xpos - grasp[:3, 3])
            if np.all(np.abs(local) < ATTACH_BOX):
                obj = np.eye(4)
                obj[:3, :3] = body.xmat.reshape(3, 3)
                obj[:3, 3] = body.xpos
                self._attach_rel = np.linalg.inv(grasp) @ obj
                self.attached = name
                return

    def _hold_attached(self) -> None:
        body = self.model.body(self.attached)
        joint = body.jntadr[0]
        qadr, vadr = self.model.jnt_qposadr[joint], self.model.jnt_dofadr[joint]
        pose = self._grasp_frame() @ self._attach_rel
        self.data.qpos[qadr:qadr + 3] = pose[:3, 3]
        quat = np.empty(4)
        mujoco.mju_mat2Quat(quat, np.ascontiguousarray(pose[:3, :3]).ravel())
        self.data.qpos[qadr + 3:qadr + 7] = quat
        self.data.qvel[vadr:vadr + 6] = 0.0

    # ----------------------------------------------------------------------------------- observation
    def success(self) -> bool:
        """Whether the task predicate holds now."""
        return is_success(self.task, self)

    def proprio(self) -> np.ndarray:
        if self._robot:
            opening = np.mean(self.data.qpos[self._finger_qpos]) / self.config.gripper_stroke
            return np.concatenate([self.data.qpos[self._arm_qpos], [np.clip(opening, 0.0, 1.0)]]).astype(np.float32)
        return np.concatenate([self._command, [self._gripper]]).astype(np.float32)

    def render(self) -> dict[str, np.ndarray]:
        """RGB images (uint8 H x W x 3) of the env's ``views`` (all three cameras unless fewer were asked for)."""
        if self.renderer is None:
            self.renderer = CameraRenderer(self.model, self.config.image_size)
        return self.renderer.rgb(self.data, self.views)

    def _observation(self) -> dict:
        obs = {"proprio": self.proprio()}
        if self.render_images:
            obs["images"] = self.render()
        return obs

    def tool0_pose(self) -> np.ndarray:
        """Actual tool0 pose (x, y, z, rx, ry, rz) in the base frame."""
        rot = self.data.site_xmat[self._tool_site].reshape(3, 3)
        return np.concatenate([self.data.site_xpos[self._tool_site], rotvec_from_matrix(rot)])

    def body_position(self, name: str) -> np.ndarray:
        return scene.body_position(self.model, self.data, name)

    def drawer_opening(self) -> float:
        return scene.drawer_opening(self.model, self.data)

    def sim_state(self) -> dict[str, np.ndarray]:
        """What restores the rendered state exactly (with the same seed's layout): qpos and mocap poses."""
        return {"qpos": self.data.qpos.copy(), "mocap_pos": self.data.mocap_pos.copy(),
                "mocap_quat": self.data.mocap_quat.copy()}

    def set_sim_state(self, qpos: np.ndarray, mocap_pos: np.ndarray, mocap_quat: np.ndarray) -> None:
        """Restore a state saved by :meth:`sim_state` (after ``reset`` with the episode's seed)."""
        self.data.qpos[:] = qpos
        self.data.mocap_pos[:] = mocap_pos
        self.data.mocap_quat[:] = mocap_quat
        mujoco.mj_forward(self.model, self.data)

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()
            self.renderer = None

    def __enter__(self) -> "WorkcellEnv":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _wxyz(rotation: Rotation) -> np.ndarray:
    x, y, z, w = rotation.as_quat()
    return np.array([w, x, y, z])
