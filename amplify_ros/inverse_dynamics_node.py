"""Inverse-dynamics node: motion codes + the matching observation + robot state -> action chunk -> command.

ROS contract
  Subscriptions
    /cameras/{front,side,corner}/image_raw  sensor_msgs/Image, same parameters and QoS as the forward node
                          (camera_topics, camera_reliability, camera_depth, sync_slop); kept for
                          ``sync_queue_size`` frames so the observation of a code message can be found by stamp.
    /amplify/codes        trajectory_msgs/JointTrajectory, one point of 15 codes (forward_dynamics_node);
                          header.stamp = the observation's reference-camera stamp. Reliable, depth 10.
    /joint_states         sensor_msgs/JointState (the UR5 driver): the six arm joints in
                          amplify_core.ur5.JOINT_NAMES order (matched by name). Reliable, depth 10.
                          Proprioception = 6 joints + gripper, as in the workcell data: the gripper is the
                          joint ``gripper_joint`` if /joint_states has it, else the last commanded gripper value
                          (the driver does not publish a gripper state).
  Publications
    /policy/action_chunk  trajectory_msgs/JointTrajectory, ``chunk`` (16) points, time_from_start k * 50 ms,
                          joint_names x y z rx ry rz gripper, header.stamp = observation stamp. Reliable, depth 10.
    /ur5/command          trajectory_msgs/JointTrajectory, ONE point (same joint_names), the temporally ensembled
                          action (amplify_core.ensembling.TemporalEnsembler, rotation dims 3..5) at each control
                          tick; header.stamp = stamp of the newest observation used. A tick happens as soon as a
                          new chunk is ready (the forward node's ``rate`` paces the loop, no timer latency added),
                          or, when a chunk is later than 1.25 periods of ``control_rate``, from the earlier chunks.
    /amplify/status       std_msgs/String JSON at ``status_rate`` (node, chunks, commands, achieved_rate_hz,
                          latency_ms {median, p99} camera stamp -> command publish, idle_reason, ...).
  Parameters: PARAMETERS below; defaults in config/inverse_dynamics.yaml.

Safety: stale or missing inputs (no codes for ``max_observation_age``, a camera stopped, no joint state for
``max_state_age``, a model that did not load, a frame that cannot be converted) -> nothing is published, the
ensembler is cleared so old chunks are never replayed, and the reason is logged once. The UR5 driver's
watchdog then stops the arm.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections import deque

import numpy as np
from builtin_interfaces.msg import Duration
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from amplify_core.ensembling import TemporalEnsembler
from amplify_core.ur5 import JOINT_NAMES
from amplify_ros.camera_sync import ns_to_stamp_fields, stamp_to_ns
from amplify_ros.camera_inputs import CAMERA_PARAMETERS, CameraInputs
from amplify_ros.diagnostics import Diagnostics, model_node_level
from amplify_ros.model_loading import MODEL_PARAMETERS, LoadedModel, load_or_explain, set_threads
from amplify_ros.node_status import RateMeter, ReasonLog
from amplify_ros.parameters import declare, float_param, text_param
from amplify_ros.node_runner import run_node

COMMAND_AXES = ["x", "y", "z", "rx", "ry", "rz", "gripper"]

PARAMETERS = {
    **CAMERA_PARAMETERS,
    **MODEL_PARAMETERS,
    "control_rate": (20.0, float_param("rate of /ur5/command in Hz; also the chunk step (time_from_start)", 1.0, 100.0)),
    "codes_topic": ("amplify/codes", text_param("JointTrajectory topic of the motion codes")),
    "joint_states_topic": ("joint_states", text_param("sensor_msgs/JointState of the arm")),
    "gripper_joint": ("gripper", text_param("name of the gripper in /joint_states; when absent the last commanded "
                                             "gripper value is the gripper state")),
    "max_state_age": (0.5, float_param("a joint state older than this (s, receive time) is stale", 0.01, 10.0)),
    "ensemble_m": (0.01, float_param("temporal ensembling weight decay m (w_i = exp(-m i))", 0.0, 10.0)),
    "command_topic": ("ur5/command", text_param("topic of the ensembled one-point command")),
    "chunk_topic": ("policy/action_chunk", text_param("topic of the whole action chunk")),
}


class InverseModel(LoadedModel):
    """The inverse model: images, raw proprio, codes -> an action chunk in robot units."""

    def __init__(self, checkpoint: str, onnx_dir: str, device: str, threads: int):
        from amplify_core.normalization import Normalizer

        super().__init__("inverse", checkpoint, onnx_dir, device, threads)
        meta = self.meta
        self.chunk = int(meta["chunk"]) if self.onnx is not None else self.model.config.chunk
        if self.model is not None and self.model.config.text_dim:
            raise ValueError(f"{checkpoint}: this inverse model needs the task text (a language-conditioned BC "
                             f"baseline for offline evaluation); the node runs AMPLIFY or inverse-only models")
        self.use_codes = bool(meta.get("use_codes", True))
        self.proprio_norm = Normalizer.from_dict(meta["proprio_norm"])
        self.action_norm = Normalizer.from_dict(meta["action_norm"])
        if self.action_norm.dim != len(COMMAND_AXES):
            raise ValueError(f"{self.source}: actions have {self.action_norm.dim} dims, the UR5 command needs "
                             f"{len(COMMAND_AXES)} ({COMMAND_AXES})")

    def predict(self, images: list[np.ndarray], proprio: np.ndarray, codes: np.ndarray) -> np.ndarray:
        batch = np.stack([im.transpose(2, 0, 1) for im in images])[None]
        q = self.proprio_norm.normalize(np.asarray(proprio, np.float32))[None]
        if self.onnx is not None:
            feeds = {"images": batch, "proprio": q}
            if self.use_codes:
                feeds["codes"] = np.asarray(codes, np.int64)[None]
            return self.action_norm.unnormalize(self.onnx.inverse.run(None, feeds)[0][0])
        import torch

        with torch.inference_mode():
            code_t = torch.from_numpy(np.asarray(codes, np.int64)[None]).to(self.device) if self.use_codes else None
            mean, _ = self.model(torch.from_numpy(batch).to(self.device), torch.from_numpy(q).to(self.device), code_t)
        return self.action_norm.unnormalize(mean[0].cpu().numpy())


def trajectory(stamp_ns: int, rows: np.ndarray, step_s: float) -> JointTrajectory:
    msg = JointTrajectory()
    msg.header.stamp.sec, msg.header.stamp.nanosec = ns_to_stamp_fields(stamp_ns)
    msg.joint_names = list(COMMAND_AXES)
    for k, row in enumerate(rows):
        t = k * step_s
        msg.points.append(JointTrajectoryPoint(positions=[float(v) for v in row],
                                               time_from_start=Duration(sec=int(t), nanosec=int(round((t % 1) * 1e9)))))
    return msg


class InverseDynamicsNode(Node):
    def __init__(self):
        super().__init__("inverse_dynamics")
        p = self.p = declare(self, PARAMETERS)
        set_threads(p["num_threads"])
        self.reasons = ReasonLog(self.get_logger())
        self.model, self.model_error = load_or_explain(
            self, "inverse", lambda: InverseModel(p["checkpoint"], p["onnx_dir"], p["device"], p["num_threads"]),
            p["views"])
        chunk = self.model.chunk if self.model else 16
        self.ensembler = TemporalEnsembler(chunk, p["ensemble_m"], rotation_dims=3)
        self.lock = threading.Lock()  # ensembler, tick, newest observation stamp
        self.tick = 0
        self.newest_obs: int | None = None
        self.joint_state: tuple[float, JointState] | None = None  # (monotonic receive time, message)
        self.gripper_command = 0.0

        sensors = MutuallyExclusiveCallbackGroup()
        self.cameras = CameraInputs(self, p, sensors, on_new_set=self._retry_pending)
        # Codes (a few bytes) can overtake their frames (~1 MB each at 640x480): they wait here for those frames
        # instead of being dropped. (stamp ns, codes); a newer code message replaces it.
        self.pending: tuple[int, np.ndarray] | None = None
        self.pending_lock = threading.Lock()
        self.create_subscription(JointState, p["joint_states_topic"], self.on_joint_state, 10, callback_group=sensors)
        # inference in its own group: under a multi-threaded executor the control tick would not wait for it
        self.create_subscription(JointTrajectory, p["codes_topic"], self.on_codes, 10,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        self.chunk_pub = self.create_publisher(JointTrajectory, p["chunk_topic"], 10)
        self.command_pub = self.create_publisher(JointTrajectory, p["command_topic"], 10)
        self.status_pub = self.create_publisher(String, "amplify/status", 10)
        self.diagnostics = Diagnostics(self)
        self.chunks = self.commands = self.unmatched_codes = 0
        self.rate_meter = RateMeter()
        self.latency_ms: deque[float] = deque(maxlen=400)
        self.step_ms: deque[float] = deque(maxlen=200)
        self.last_tick = time.monotonic()
        self.create_timer(0.5 / p["control_rate"], self.on_timer, callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(1.0 / p["status_rate"], self.publish_status)

    # ---- inputs ----------------------------------------------------------------------------------
    def on_joint_state(self, msg: JointState) -> None:
        self.joint_state = (time.monotonic(), msg)

    def proprio(self) -> np.ndarray | str:
        """6 joints + gripper, or the reason there is none."""
        if self.joint_state is None:
            return f"no joint state on {self.p['joint_states_topic']}"
        received, msg = self.joint_state
        if time.monotonic() - received > self.p["max_state_age"]:
            return f"joint state older than {self.p['max_state_age']} s on {self.p['joint_states_topic']}"
        names = list(msg.name)
        missing = [j for j in JOINT_NAMES if j not in names]
        if missing:
            return f"{self.p['joint_states_topic']} lacks joints {missing}"
        q = [msg.position[names.index(j)] for j in JOINT_NAMES]
        g = self.p["gripper_joint"]
        q.append(msg.position[names.index(g)] if g in names else self.gripper_command)
        return np.asarray(q, np.float32)

    def on_codes(self, msg: JointTrajectory) -> None:
        if self.model is None:
            return self.reasons.idle(f"model not loaded ({self.model_error})")
        stamp = stamp_to_ns(msg.header.stamp)
        now = self.get_clock().now().nanoseconds
        if now - stamp > self.p["max_observation_age"] * 1e9:
            return self.reasons.idle(f"codes for an observation {(now - stamp) / 1e6:.0f} ms old (> max_observation_age)")
        if len(msg.points) != 1:
            return self.reasons.idle(f"{self.p['codes_topic']}: expected one point, got {len(msg.points)}")
        codes = np.rint(np.asarray(msg.points[0].positions)).astype(np.int64)
        obs = self.cameras.lookup(stamp)
        if obs is None:
            with self.pending_lock:
                replaced, self.pending = self.pending, (stamp, codes)
            if replaced is not None:
                self._unmatched(replaced[0])
            return
        self._act(stamp, codes, obs)

    def _retry_pending(self) -> None:
        with self.pending_lock:
            if self.pending is None:
                return
            stamp, codes = self.pending
            obs = self.cameras.lookup(stamp)
            expired = obs is None and self.get_clock().now().nanoseconds - stamp > self.p["max_observation_age"] * 1e9
            if obs is not None or expired:
                self.pending = None
        if obs is not None:
            self._act(stamp, codes, obs)
        elif expired:
            self._unmatched(stamp)

    def _unmatched(self, stamp: int) -> None:
        self.unmatched_codes += 1
        self.reasons.idle(f"no synchronised frames with the stamp of the codes ({stamp} ns); "
                          f"check that both nodes subscribe the same cameras")

    def _act(self, stamp: int, codes: np.ndarray, obs) -> None:
        """Chunk from the codes and their observation, then the ensembled command at once."""
        q = self.proprio()
        if isinstance(q, str):
            return self.reasons.idle(q)
        t0 = time.perf_counter()
        images, problem = self.cameras.images(obs, self.model.image_shape)
        if problem:
            return self.reasons.idle(problem)
        try:
            chunk = self.model.predict(images, q, codes)
        except (ValueError, IndexError) as exc:  # e.g. codes of another tokenizer, non-finite proprio
            return self.reasons.idle(f"inverse model refused the input: {exc}")
        self.step_ms.append((time.perf_counter() - t0) * 1000)
        self.chunk_pub.publish(trajectory(stamp, chunk, 1.0 / self.p["control_rate"]))
        self.chunks += 1
        with self.lock:
            if self.newest_obs is not None and stamp <= self.newest_obs:
                return  # an older observation than one already used: do not feed it to the ensembler
            self.ensembler.add(chunk, self.tick)  # its first action is for this tick
            self.newest_obs = stamp
        self.control_step()  # act now: waiting for a timer would add up to a period of latency

    # ---- control tick ----------------------------------------------------------------------------
    def on_timer(self) -> None:
        """Fallback tick: keeps ``control_rate`` from the ensembled earlier chunks when a chunk is late."""
        if time.monotonic() - self.last_tick >= 1.25 / self.p["control_rate"]:
            self.control_step()

    def control_step(self) -> None:
        """One control tick: the ensembled action for it on /ur5/command, if every input is fresh."""
        now = self.get_clock().now().nanoseconds
        problem = self.cameras.freshness_problem(now, self.p["max_observation_age"])
        if self.model is None:
            problem = f"model not loaded ({self.model_error})"
        with self.lock:
            tick, self.tick = self.tick, self.tick + 1
            self.last_tick = time.monotonic()
            newest = self.newest_obs
            if problem is None and (newest is None or now - newest > self.p["max_observation_age"] * 1e9):
                problem = (f"no action chunk from an observation newer than {self.p['max_observation_age'] * 1000:.0f}"
                           f" ms (codes on {self.p['codes_topic']} stopped or late)")
            if problem is None and isinstance(self.proprio(), str):
                problem = self.proprio()
            if problem is not None:
                self.ensembler.reset()  # never blend chunks from before the gap into new commands
                self.newest_obs = None
                return self.reasons.idle(problem)
            action = self.ensembler.action(tick)
        if action is None:
            return self.reasons.idle("no action chunk covers this tick yet")
        self.gripper_command = float(np.clip(action[6], 0.0, 1.0))
        self.command_pub.publish(trajectory(newest, action[None], 0.0))
        self.commands += 1
        self.rate_meter.tick()
        self.latency_ms.append((self.get_clock().now().nanoseconds - newest) / 1e6)
        self.reasons.ok()

    def publish_status(self) -> None:
        lat = sorted(self.latency_ms)
        status = {"node": self.get_name(), "model": self.model.source if self.model else None,
                  "model_error": self.model_error, "chunks": self.chunks, "commands": self.commands,
                  "achieved_rate_hz": round(self.rate_meter.rate(), 1),
                  "unmatched_codes": self.unmatched_codes,
                  "latency_ms": {"median": round(statistics.median(lat), 1),
                                 "p99": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1)} if lat else None,
                  "step_ms": round(statistics.median(self.step_ms), 1) if self.step_ms else None,
                  "idle_reason": self.reasons.reason, **self.cameras.status()}
        self.status_pub.publish(String(data=json.dumps(status)))
        self.diagnostics.publish(*model_node_level(status), {**status, "last_idle_reason": self.reasons.last})


def main(args=None) -> None:
    # single-threaded: rclpy's multi-threaded executor costs more per callback than it gains on 2 cores
    # (amplify-benchmark-pipeline, 128x128: p99 58 ms single-threaded vs 213 ms with 3 threads)
    run_node(InverseDynamicsNode, args)


if __name__ == "__main__":
    main()
