"""Camera simulator for tests and benchmarks: N image streams with stamp jitter, each stoppable.

ROS contract
  Publications
    /cameras/<name>/image_raw   sensor_msgs/Image (``encoding``, ``width`` x ``height``) at ``rate`` Hz for every
                                name in ``camera_names`` (topic from ``topic_format``). QoS: ``reliability``
                                (default reliable: it serves reliable AND best-effort subscribers) and ``depth``.
                                header.stamp = publish time minus U(0, 2 * jitter_ms) per camera and frame (a
                                camera's exposure precedes its message), frame_id = ``frame_format`` (the
                                optical frame <name>_camera_optical_frame of urdf/workcell.urdf).
    /cameras/<name>/camera_info sensor_msgs/CameraInfo with the same header, same QoS: an ideal pinhole of
                                vertical field of view ``fovy_deg`` (the workcell cameras'), amplify_ros/camera_info.py.
  Services
    /cameras/<name>/enable      std_srvs/SetBool: false stops that camera, true restarts it.
  Parameters: PARAMETERS below; ``stopped_cameras`` can also be set at run time.

The images are a few pre-rendered frames per camera (a bright square moving over a textured per-camera colour), so
publishing costs no rendering time; the content changes from frame to frame so models see motion.
"""

from __future__ import annotations

import numpy as np
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_srvs.srv import SetBool

from amplify_ros.camera_info import info_topic, pinhole_camera_info
from amplify_ros.camera_sync import ns_to_stamp_fields
from amplify_ros.qos_matching import camera_qos
from amplify_ros.parameters import declare, float_param, int_param
from amplify_ros.image_conversion import fill_image
from amplify_ros.node_runner import run_node

PARAMETERS = {
    "camera_names": (["front", "side", "corner"], ParameterDescriptor(description="one image stream per name")),
    "topic_format": ("cameras/{name}/image_raw", ParameterDescriptor(
        description="image topic of each stream; its CameraInfo goes to camera_info beside it")),
    "frame_format": ("{name}_camera_optical_frame", ParameterDescriptor(
        description="header.frame_id of each stream (the optical frames of urdf/workcell.urdf)")),
    "fovy_deg": (52.0, float_param("vertical field of view in CameraInfo (config/workcell.yaml's cameras)", 1.0, 179.0)),
    "width": (128, int_param("image width in pixels", 8, 4096)),
    "height": (128, int_param("image height in pixels", 8, 4096)),
    "rate": (30.0, float_param("frames per second of every camera", 0.5, 240.0)),
    "jitter_ms": (5.0, float_param("stamps lag the publish time by U(0, 2*jitter_ms)", 0.0, 1000.0)),
    "drop_probability": (0.0, float_param("probability that a camera skips a frame", 0.0, 1.0)),
    "encoding": ("rgb8", ParameterDescriptor(description="rgb8, bgr8 or mono8 (anything else is sent as is, "
                                                         "for tests of bad input)")),
    "reliability": ("reliable", ParameterDescriptor(description="publisher QoS reliability: reliable or best_effort")),
    "depth": (2, int_param("publisher QoS keep-last depth", 1, 100)),
    "stopped_cameras": (["none"], ParameterDescriptor(description="names of cameras that publish nothing "
                                                                  "(['none'] = all run); settable at run time")),
    "seed": (0, int_param("random seed of jitter and drops", 0, 2**31 - 1)),
    "num_frames": (8, int_param("pre-rendered frames per camera (cycled)", 1, 300)),
}


def render(width: int, height: int, index: int, num_frames: int, camera: int) -> np.ndarray:
    colour = np.array([(90, 40, 40), (40, 90, 40), (40, 40, 90), (80, 80, 30)][camera % 4], np.int16)
    # a fixed per-camera texture: flat images give a vision encoder (and a tracker) nothing to look at
    texture = np.random.default_rng(camera).integers(0, 256, (height, width, 3), dtype=np.int16)
    image = ((colour + texture) // 2).astype(np.uint8)
    side = max(2, min(width, height) // 5)
    phase = index / max(num_frames, 1)
    x = int((width - side) * (0.5 + 0.4 * np.sin(2 * np.pi * phase)))
    y = int((height - side) * (0.5 + 0.4 * np.cos(2 * np.pi * phase)))
    image[y:y + side, x:x + side] = 230
    return image


class FakeCamerasNode(Node):
    def __init__(self):
        super().__init__("fake_cameras")
        p = self.p = declare(self, PARAMETERS, runtime=("stopped_cameras",))
        self.rng = np.random.default_rng(p["seed"])
        qos = camera_qos(p["reliability"], p["depth"], "reliability")
        self.stopped = {n for n in p["stopped_cameras"] if n != "none"}
        self.streams = []
        for i, name in enumerate(p["camera_names"]):
            frames = []
            frame_id = p["frame_format"].format(name=name)
            for k in range(p["num_frames"]):
                msg = Image()
                msg.header.frame_id = frame_id
                image = render(p["width"], p["height"], k, p["num_frames"], i)
                if p["encoding"] in ("rgb8", "bgr8", "mono8"):
                    fill_image(msg, image, p["encoding"])
                else:  # an encoding the pipeline does not support: same bytes, wrong label
                    fill_image(msg, image, "rgb8")
                    msg.encoding = p["encoding"]
                frames.append(msg)
            topic = p["topic_format"].format(name=name)
            pub = self.create_publisher(Image, topic, qos)
            info = pinhole_camera_info(p["width"], p["height"], p["fovy_deg"], frame_id)
            self.streams.append((name, pub, frames, self.create_publisher(type(info), info_topic(topic), qos), info))
            self.create_service(SetBool, f"cameras/{name}/enable",
                                lambda req, res, n=name: self.on_enable(n, req, res))
        self.add_on_set_parameters_callback(self.on_parameters)
        self.count = 0
        self.create_timer(1.0 / p["rate"], self.on_frame)
        self.get_logger().info(f"{len(self.streams)} cameras {p['width']}x{p['height']} {p['encoding']} at "
                               f"{p['rate']} Hz, jitter {p['jitter_ms']} ms, QoS {p['reliability']}/{p['depth']}")

    def on_enable(self, name: str, request, response):
        (self.stopped.discard if request.data else self.stopped.add)(name)
        response.success, response.message = True, f"camera {name} {'running' if request.data else 'stopped'}"
        self.get_logger().info(response.message)
        return response

    def on_parameters(self, params) -> SetParametersResult:
        for prm in params:
            if prm.name == "stopped_cameras":
                self.stopped = {n for n in prm.value if n != "none"}
                self.get_logger().info(f"stopped cameras: {sorted(self.stopped)}")
        return SetParametersResult(successful=True)

    def on_frame(self) -> None:
        now = self.get_clock().now().nanoseconds
        jitter_ns = self.p["jitter_ms"] * 1e6
        for name, pub, frames, info_pub, info in self.streams:
            if name in self.stopped or self.rng.random() < self.p["drop_probability"]:
                continue
            msg = frames[self.count % len(frames)]  # serialised at publish: reusing the message is safe
            stamp = now - int(self.rng.uniform(0, 2 * jitter_ns))
            msg.header.stamp.sec, msg.header.stamp.nanosec = ns_to_stamp_fields(stamp)
            info.header.stamp = msg.header.stamp
            pub.publish(msg)
            info_pub.publish(info)
        self.count += 1


def main(args=None) -> None:
    run_node(FakeCamerasNode, args, threads=1)


if __name__ == "__main__":
    main()
