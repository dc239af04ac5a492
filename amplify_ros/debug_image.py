"""The forward node's optional debug picture: the predicted codes decoded into tracks, drawn over the image.

It shows what the motion prior "imagines" for the next 16 steps, in RViz or rqt_image_view. Decoding needs the
motion tokenizer (the forward checkpoint records the tokenizer it was trained with; ``tokenizer_checkpoint``
overrides it). It runs on its own timer at ``debug_rate``, on the latest prediction, so the control-rate step
never pays for decoding or drawing.
"""

from __future__ import annotations

import threading

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image

from amplify_core.visualize import draw_tracks
from amplify_ros.camera_sync import ns_to_stamp_fields
from amplify_ros.parameters import float_param, int_param, text_param

DEBUG_PARAMETERS = {
    "debug_image": (False, text_param("publish the predicted tracks over the camera image on debug_image_topic")),
    "debug_image_topic": ("amplify/debug_image", text_param("sensor_msgs/Image (rgb8) topic of the debug picture")),
    "debug_rate": (5.0, float_param("debug pictures per second at most (each costs a tokenizer decode)", 0.1, 30.0)),
    "debug_view": ("front", text_param("camera view drawn in the debug picture (one of views)")),
    "debug_scale": (4, int_param("upscaling of the model-size image in the debug picture", 1, 16)),
    "tokenizer_checkpoint": ("", text_param(
        "motion tokenizer .pt used to decode codes for the debug picture; empty = the one the forward checkpoint "
        "was trained with")),
}


class TrackOverlay:
    """Publishes ``draw_tracks(image, tokenizer.codes_to_tracks(codes))`` for the newest prediction."""

    def __init__(self, node: Node, p: dict, recorded_tokenizer: str | None):
        views = list(p["views"])
        if p["debug_view"] not in views:
            raise ValueError(f"parameter debug_view {p['debug_view']!r} is not one of views {views}")
        path = p["tokenizer_checkpoint"] or recorded_tokenizer
        if not path:
            raise ValueError("the debug image needs a tokenizer: set parameter tokenizer_checkpoint (this forward "
                             "checkpoint or export records none)")
        from amplify_core.checkpoint import load_model

        self.tokenizer = load_model(path, "tokenizer", "cpu")[0]
        self.view = self.tokenizer.config.views.index(p["debug_view"])
        self.view_index = views.index(p["debug_view"])
        self.scale = int(p["debug_scale"])
        self.publisher = node.create_publisher(Image, p["debug_image_topic"], 2)
        self._lock = threading.Lock()
        self._latest = None  # (image uint8 HxWx3 RGB, codes, stamp ns)
        self.published = 0
        node.create_timer(1.0 / p["debug_rate"], self._publish)
        node.get_logger().info(f"debug image of view {p['debug_view']!r} on {p['debug_image_topic']} "
                               f"(tokenizer {path})")

    def offer(self, images: list[np.ndarray], codes: np.ndarray, stamp_ns: int, frame_id: str) -> None:
        """The step's model-input images (view order), predicted codes, and the frame_id of the debug view's
        camera (the picture is in its frame); cheap, called every step."""
        with self._lock:
            self._latest = (images[self.view_index], np.asarray(codes), stamp_ns, frame_id)

    def _publish(self) -> None:
        with self._lock:
            latest, self._latest = self._latest, None
        if latest is None:
            return  # nothing new since the last picture
        image, codes, stamp, frame_id = latest
        tracks = self.tokenizer.codes_to_tracks(codes)[self.view]
        canvas = np.ascontiguousarray(draw_tracks(image, tracks, scale=self.scale))
        msg = Image(height=canvas.shape[0], width=canvas.shape[1], encoding="rgb8", is_bigendian=0,
                    step=canvas.shape[1] * 3, data=canvas.tobytes())
        msg.header.stamp.sec, msg.header.stamp.nanosec = ns_to_stamp_fields(stamp)
        msg.header.frame_id = frame_id
        self.publisher.publish(msg)
        self.published += 1
