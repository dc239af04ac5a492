"""Forward-dynamics node: three synchronised cameras + task text -> AMPLIFY motion codes, at the control rate.

ROS contract
  Subscriptions
    /cameras/front/image_raw   sensor_msgs/Image (rgb8, bgr8 or mono8, any size: resized to the model's
    /cameras/side/image_raw    input with INTER_AREA). Topics: ``camera_topics``; QoS per stream:
    /cameras/corner/image_raw  ``camera_reliability`` (auto: reliable while every publisher is, else best effort,
                               re-checked each second and logged, amplify_ros/qos_matching.py; or reliable |
                               best_effort) and ``camera_depth`` (keep-last depth); default auto, depth 2.
                               The streams are approximately synchronised by header.stamp (``sync_slop``).
    /task                      std_msgs/String (reliable, volatile, depth 10: matches any publisher): the
                               instruction; also the ``task`` parameter. A change takes effect at the next step
                               that has the task's text embedding.
  Publications
    /amplify/codes             trajectory_msgs/JointTrajectory with ONE point: joint_names
                               ["code_0" .. "code_14"], positions = the motion codes (integers as floats),
                               header.stamp = stamp of the observation (the reference camera's frame stamp)
                               the codes were predicted from. Reliable, depth 10.
    /amplify/debug_image       sensor_msgs/Image rgb8, only with ``debug_image``: the predicted tracks over the
                               ``debug_view`` image (amplify_ros/debug_image.py).
    /amplify/status            std_msgs/String JSON at ``status_rate``: node, model, task, published,
                               achieved_rate_hz, camera_rate_hz, synced_rate_hz, sync counters, bad_frames,
                               step_ms (median), idle_reason, model_error.
  Parameters: PARAMETERS below (each with a description); defaults in config/forward_dynamics.yaml.

Safety: nothing is published when the model did not load, a camera is stale or missing, a frame cannot be
converted, or the task has no embedding yet; the reason is logged once (and kept on the status topic).
The node never exits on bad input, so a launch file never restarts it in a loop.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections import deque

import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from amplify_ros.camera_inputs import CAMERA_PARAMETERS, CameraInputs
from amplify_ros.camera_sync import ns_to_stamp_fields
from amplify_ros.diagnostics import Diagnostics, model_node_level
from amplify_ros.debug_image import DEBUG_PARAMETERS, TrackOverlay
from amplify_ros.model_loading import MODEL_PARAMETERS, LoadedModel, load_or_explain, set_threads
from amplify_ros.node_status import RateMeter, ReasonLog
from amplify_ros.parameters import declare, float_param, text_param
from amplify_ros.node_runner import run_node

PARAMETERS = {
    **CAMERA_PARAMETERS,
    **MODEL_PARAMETERS,
    **DEBUG_PARAMETERS,
    "rate": (20.0, float_param("prediction rate in Hz (the control rate)", 0.5, 100.0)),
    "task": ("", text_param("task instruction; /task messages override it, a change applies at the next step")),
    "task_topic": ("task", text_param("std_msgs/String topic carrying the task instruction")),
    "codes_topic": ("amplify/codes", text_param("JointTrajectory topic of the predicted motion codes")),
    "text_cache": ("", text_param("npz cache of task embeddings (amplify_core.text); empty = in memory only")),
    "unseen_tasks": ("refuse", text_param(
        "a task the checkpoint was not trained on (its recorded task list): refuse = publish nothing and say why "
        "(the arm stops); allow = run it anyway, zero-shot")),
}
UNSEEN_TASKS = ("refuse", "allow")


class ForwardModel(LoadedModel):
    """The forward model: images + text embedding -> codes."""

    def __init__(self, checkpoint: str, onnx_dir: str, device: str, threads: int):
        super().__init__("forward", checkpoint, onnx_dir, device, threads)
        meta = self.meta
        if self.onnx is not None and not meta.get("use_codes", True):
            raise ValueError(f"onnx_dir {onnx_dir}: this export has no forward model (inverse-only policy)")
        self.text_encoder, self.t5_path = meta.get("text_encoder", "minilm"), meta.get("t5_path")
        self.tasks = meta.get("tasks")  # the instructions it was trained on (None: not recorded)
        self.tokenizer_path = meta.get("tokenizer")  # the tokenizer whose codes it predicts

    def predict(self, images: list[np.ndarray], text: np.ndarray) -> np.ndarray:
        """[uint8 (H, W, 3)] in view order, text (1, D) -> int64 codes (L,)."""
        batch = np.stack([im.transpose(2, 0, 1) for im in images])[None]
        if self.onnx is not None:
            return self.onnx.generate(batch, text)[0]
        import torch

        with torch.inference_mode():
            codes = self.model.generate(torch.from_numpy(batch).to(self.device),
                                        torch.from_numpy(np.asarray(text, np.float32)).to(self.device))
        return codes[0].cpu().numpy()


class ForwardDynamicsNode(Node):
    def __init__(self):
        super().__init__("forward_dynamics")
        p = self.p = declare(self, PARAMETERS, runtime=("task",))
        if p["unseen_tasks"] not in UNSEEN_TASKS:
            raise ValueError(f"parameter unseen_tasks must be one of {UNSEEN_TASKS}, got {p['unseen_tasks']!r}")
        set_threads(p["num_threads"])
        self.reasons = ReasonLog(self.get_logger())
        self.model, self.model_error = load_or_explain(
            self, "forward", lambda: ForwardModel(p["checkpoint"], p["onnx_dir"], p["device"], p["num_threads"]),
            p["views"])

        self.task = p["task"]
        self._embeddings: dict[str, np.ndarray] = {}
        self._embedding_errors: dict[str, str] = {}
        self._embedding_threads: dict[str, threading.Thread] = {}
        self._text_cache = None

        # separate groups: safe under a multi-threaded executor too (run_node spins single-threaded, measured faster)
        sensors = MutuallyExclusiveCallbackGroup()
        self.cameras = CameraInputs(self, p, sensors)
        self.create_subscription(String, p["task_topic"], self.on_task, 10, callback_group=sensors)
        self.add_on_set_parameters_callback(self.on_parameters)
        self.codes_pub = self.create_publisher(JointTrajectory, p["codes_topic"], 10)
        self.status_pub = self.create_publisher(String, "amplify/status", 10)
        self.diagnostics = Diagnostics(self)
        self.published, self.last_stamp = 0, None
        self.rate_meter = RateMeter()
        self.step_ms: deque[float] = deque(maxlen=200)
        self.create_timer(1.0 / p["rate"], self.on_step, callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(1.0 / p["status_rate"], self.publish_status)
        self.debug, self.debug_error = None, None
        if p["debug_image"] and self.model is not None:
            try:  # an optional picture: a failure is reported, never stops the codes
                self.debug = TrackOverlay(self, p, self.model.tokenizer_path)
            except Exception as exc:
                self.debug_error = f"{type(exc).__name__}: {exc}"
                self.get_logger().error(f"debug image disabled: {self.debug_error}")
        if self.task:
            self._request_embedding(self.task)

    # ---- task ------------------------------------------------------------------------------------
    def on_task(self, msg: String) -> None:
        self._set_task(msg.data, "topic")

    def on_parameters(self, params) -> SetParametersResult:
        for prm in params:
            if prm.name == "task":
                self._set_task(str(prm.value), "parameter")
        return SetParametersResult(successful=True)

    def _set_task(self, task: str, source: str) -> None:
        task = task.strip()
        if task != self.task:
            self.get_logger().info(f"task ({source}): {task!r}")
            self.task = task
            if task:
                self._request_embedding(task)

    def _request_embedding(self, task: str) -> None:
        """Embeddings are computed off the control thread: a new instruction may load the text encoder (~9 s)."""
        if task in self._embeddings or task in self._embedding_threads or self.model is None:
            return
        thread = threading.Thread(target=self._embed, args=(task,), daemon=True)
        self._embedding_threads[task] = thread
        thread.start()

    def _embed(self, task: str) -> None:
        try:
            if self._text_cache is None:
                from amplify_core.text import TextEmbeddingCache

                self._text_cache = TextEmbeddingCache(self.p["text_cache"] or None, self.model.text_encoder,
                                                      self.model.t5_path)
            self._embeddings[task] = self._text_cache([task])
        except Exception as exc:
            self._embedding_errors[task] = f"{type(exc).__name__}: {exc}"
            self.get_logger().error(f"cannot embed task {task!r}: {self._embedding_errors[task]}")

    # ---- step ------------------------------------------------------------------------------------
    def on_step(self) -> None:
        if self.model is None:
            return self.reasons.idle(f"model not loaded ({self.model_error})")
        now = self.get_clock().now().nanoseconds
        problem = self.cameras.freshness_problem(now, self.p["max_observation_age"])
        if problem:
            return self.reasons.idle(problem)
        task = self.task
        if not task:
            return self.reasons.idle(f"no task (parameter task or topic {self.p['task_topic']})")
        if self.model.tasks and task not in self.model.tasks and self.p["unseen_tasks"] != "allow":
            return self.reasons.idle(
                f"task {task!r} is not one of the {len(self.model.tasks)} tasks the checkpoint was trained on "
                f"({self.model.tasks[:5]}{' ...' if len(self.model.tasks) > 5 else ''}); parameter unseen_tasks:=allow "
                f"runs it zero-shot")
        if task in self._embedding_errors:
            return self.reasons.idle(f"task {task!r} has no embedding ({self._embedding_errors[task]})")
        text = self._embeddings.get(task)
        if text is None:
            return self.reasons.idle(f"computing the text embedding of task {task!r}")
        obs = self.cameras.latest()
        if obs.stamp == self.last_stamp:
            return  # no new observation since the last step: codes for it were published already
        t0 = time.perf_counter()
        images, problem = self.cameras.images(obs, self.model.image_shape)
        if problem:
            return self.reasons.idle(problem)
        codes = self.model.predict(images, text)
        self.step_ms.append((time.perf_counter() - t0) * 1000)
        self.last_stamp = obs.stamp
        msg = JointTrajectory()
        msg.header.stamp.sec, msg.header.stamp.nanosec = ns_to_stamp_fields(obs.stamp)
        msg.joint_names = [f"code_{i}" for i in range(len(codes))]
        msg.points = [JointTrajectoryPoint(positions=[float(c) for c in codes])]
        self.codes_pub.publish(msg)
        self.published += 1
        if self.debug is not None:
            self.debug.offer(images, codes, obs.stamp, obs.msgs[self.p["debug_view"]].header.frame_id)
        self.rate_meter.tick()
        self.reasons.ok()

    def join_embeddings(self, timeout: float = 5.0) -> None:
        """Shutdown: wait for embedding threads (daemon threads still inside torch at interpreter exit can abort)."""
        deadline = time.monotonic() + timeout
        for thread in list(self._embedding_threads.values()):
            thread.join(max(0.0, deadline - time.monotonic()))

    def publish_status(self) -> None:
        status = {"node": self.get_name(), "model": self.model.source if self.model else None,
                  "model_error": self.model_error, "task": self.task, "published": self.published,
                  "achieved_rate_hz": round(self.rate_meter.rate(), 1),
                  "step_ms": round(statistics.median(self.step_ms), 1) if self.step_ms else None,
                  "idle_reason": self.reasons.reason, **self.cameras.status(),
                  "debug_images": self.debug.published if self.debug else 0, "debug_error": self.debug_error}
        self.status_pub.publish(String(data=json.dumps(status)))
        self.diagnostics.publish(*model_node_level(status), {**status, "last_idle_reason": self.reasons.last})


def main(args=None) -> None:
    # single-threaded: rclpy's multi-threaded executor costs more per callback than it gains on 2 cores
    # (amplify-benchmark-pipeline, 128x128: p99 58 ms single-threaded vs 213 ms with 3 threads)
    run_node(ForwardDynamicsNode, args, before_destroy=lambda node: node.join_embeddings())


if __name__ == "__main__":
    main()
