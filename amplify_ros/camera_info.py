"""Camera frames and intrinsics of the simulated and fake cameras, as a ROS camera driver publishes them: images
stamped in the camera's optical frame (``<view>_camera_optical_frame`` of urdf/workcell.urdf: z along the optical
axis, x right, y down, REP 103) and a ``sensor_msgs/CameraInfo`` with the same header on ``camera_info`` beside
each ``image_raw``."""

from __future__ import annotations

import math

from sensor_msgs.msg import CameraInfo


def optical_frame(view: str) -> str:
    return f"{view}_camera_optical_frame"


def info_topic(image_topic: str) -> str:
    """``/cameras/front/image_raw`` -> ``/cameras/front/camera_info`` (image_transport's convention)."""
    head, _, _ = image_topic.rpartition("/")
    return f"{head}/camera_info" if head else "camera_info"


def pinhole_camera_info(width: int, height: int, fovy_deg: float, frame_id: str) -> CameraInfo:
    """An ideal pinhole camera (no distortion, square pixels) with vertical field of view ``fovy_deg`` and the
    principal point at the image centre, as MuJoCo renders (amplify_core/workcell/ground_truth.py: pixel centres
    at integer coordinates, so c = size / 2 - 0.5)."""
    f = (height / 2) / math.tan(math.radians(fovy_deg) / 2)
    cx, cy = width / 2 - 0.5, height / 2 - 0.5
    info = CameraInfo(width=int(width), height=int(height), distortion_model="plumb_bob", d=[0.0] * 5)
    info.k = [f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.header.frame_id = frame_id
    return info
