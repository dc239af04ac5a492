"""The cameras of a model node: one subscription per view with its QoS, approximately synchronised by stamp."""

from __future__ import annotations

import threading

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image

from amplify_ros.camera_sync import ApproximateTimeSync, stamp_to_ns
from amplify_ros.image_conversion import ImageConversionError, image_for_model
from amplify_ros.node_status import RateMeter
from amplify_ros.parameters import float_param, int_param, per_camera, text_param
from amplify_ros.qos_matching import MatchedSubscription

DEFAULT_TOPICS = ["cameras/front/image_raw", "cameras/side/image_raw", "cameras/corner/image_raw"]  # relative: a namespace applies


# Parameters of the camera inputs, shared by the forward and the inverse node (both synchronise the cameras).
CAMERA_PARAMETERS = {
    "views": (["front", "side", "corner"], text_param(
        "camera view names in the order of camera_topics; must equal the checkpoint's views")),
    "camera_topics": (DEFAULT_TOPICS, text_param("sensor_msgs/Image topic of each view")),
    "camera_reliability": (["auto"], text_param(
        "QoS reliability per camera, one value for all or one per camera: auto (follow the publishers: reliable "
        "while all are, else best effort; amplify_ros/qos_matching.py), reliable or best_effort (forced)")),
    "camera_depth": ([2], text_param("QoS keep-last depth per camera, one value for all or one per camera")),
    "sync_slop": (0.015, float_param("max stamp difference (s) between a set's frames and the reference "
                                     "(first) camera's frame", 0.0, 1.0)),
    "sync_queue_size": (30, int_param("frames kept per camera for synchronisation and lookup", 1, 1000)),
    "max_observation_age": (0.2, float_param("an observation older than this (s, header stamp vs node "
                                             "clock) is stale: nothing is published", 0.01, 10.0)),
}


class CameraInputs:
    """The camera subscriptions of a node and their synchroniser (thread-safe)."""

    def __init__(self, node: Node, p: dict, callback_group, on_new_set=None):
        """``on_new_set()`` is called after each newly synchronised set (outside the lock)."""
        self.on_new_set = on_new_set
        # fully qualified (a relative name is in the node's namespace): logs and status name the real topic
        views, topics = list(p["views"]), [node.resolve_topic_name(t) for t in p["camera_topics"]]
        if len(views) != len(topics):
            raise ValueError(f"parameters views {views} and camera_topics {topics} must have the same length")
        self.node, self.views, self.topics = node, views, topics
        self.sync = ApproximateTimeSync(views, p["sync_slop"], p["sync_queue_size"])
        self.lock = threading.Lock()
        self.bad_frames = 0  # frames that could not be converted for the model (wrong encoding or size)
        self.rates = {v: RateMeter() for v in views}
        self.synced_rate = RateMeter()
        reliability = per_camera(p["camera_reliability"], len(views), "camera_reliability")
        depth = per_camera(p["camera_depth"], len(views), "camera_depth")
        self.subscriptions = [
            MatchedSubscription(node, Image, topic, lambda msg, v=view: self._on_image(v, msg), dep, rel,
                                callback_group=callback_group)
            for view, topic, rel, dep in zip(views, topics, reliability, depth)]

    def _on_image(self, view: str, msg: Image) -> None:
        self.rates[view].tick()
        with self.lock:
            new_set = self.sync.add(view, stamp_to_ns(msg.header.stamp), msg) is not None
        if new_set:
            self.synced_rate.tick()
            if self.on_new_set is not None:
                self.on_new_set()

    def latest(self):
        with self.lock:
            return self.sync.latest

    def lookup(self, stamp_ns: int):
        with self.lock:
            return self.sync.lookup(stamp_ns)

    def freshness_problem(self, now_ns: int, max_age: float) -> str | None:
        """Why the cameras cannot give a fresh observation now, or None."""
        with self.lock:
            stale = self.sync.stale_streams(now_ns, max_age)
            latest = self.sync.latest
        if stale:
            topics = [self.topics[self.views.index(v)] for v in stale]
            return f"no frame newer than {max_age * 1000:.0f} ms from {topics}"
        if latest is None or now_ns - latest.stamp > max_age * 1e9:
            return f"no synchronised set of the cameras newer than {max_age * 1000:.0f} ms (check sync_slop)"
        return None

    def images(self, observation, image_shape) -> tuple[list[np.ndarray] | None, str | None]:
        """The set's frames as model inputs (``image_shape`` = (3, H, W)), in view order, and None; or None and why
        a frame cannot be used (naming its topic), counted in ``bad_frames``."""
        _, height, width = image_shape
        try:
            return [image_for_model(observation.msgs[v], height, width, self.topics[i])
                    for i, v in enumerate(self.views)], None
        except ImageConversionError as exc:
            self.bad_frames += 1
            return None, str(exc)

    def status(self) -> dict:
        with self.lock:
            counters = self.sync.counters.as_dict()
        return {"bad_frames": self.bad_frames, "camera_rate_hz": {v: round(r.rate(), 1) for v, r in self.rates.items()},
                "synced_rate_hz": round(self.synced_rate.rate(), 1), "sync": counters,
                "camera_qos": {s.topic: s.reliability for s in self.subscriptions}}
