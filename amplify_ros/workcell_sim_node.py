"""Rehearsal without hardware: the MuJoCo workcell as three ROS cameras, its arm driven through a fake UR controller.

The node hosts the fake UR controller (RTDE, dashboard and script ports on 127.0.0.1, as ``amplify-fake-ur``)
with its arm starting at the workcell's home pose; every ``1 / rate`` s the simulated arm follows the
controller's joint angles (the gripper follows tool digital output 0, as the driver's default
``gripper_output: tool``, ``gripper_pin: 0``), the physics advances and the three cameras are rendered and
published. The UR5 driver connects to it like to a robot, so the whole collection workflow (driver, teleop,
recorder, converter) runs on a laptop.

ROS contract
  Publications
    /cameras/{front,side,corner}/image_raw   sensor_msgs/Image rgb8, ``image_size`` square, at ``rate`` Hz,
                                             header.stamp = render time, frame_id = the view's optical frame
                                             (<view>_camera_optical_frame, urdf/workcell.urdf). Reliable, depth 2.
    /cameras/{front,side,corner}/camera_info sensor_msgs/CameraInfo, same header: the workcell camera's pinhole
                                             (fovy of config/workcell.yaml, amplify_ros/camera_info.py).
    /workcell/status                         std_msgs/String JSON at 1 Hz: task, success, frames, attached.
  Parameters: PARAMETERS below; defaults in config/workcell_sim.yaml.
"""

from __future__ import annotations

import json
import threading

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from amplify_ros.camera_info import info_topic, optical_frame, pinhole_camera_info
from amplify_ros.qos_matching import camera_qos
from amplify_ros.camera_sync import ns_to_stamp_fields
from amplify_ros.node_runner import run_node
from amplify_ros.parameters import declare, float_param, int_param, text_param

TOOL_OUTPUT_0 = 1 << 16  # actual_digital_output_bits: tool outputs start at bit 16

PARAMETERS = {
    "task": ("open the drawer", text_param("workcell task whose scene is loaded (amplify_core.workcell.tasks)")),
    "seed": (0, int_param("scene layout seed", 0, 2**31 - 1)),
    "rate": (20.0, float_param("camera frames per second (each frame also advances the physics)", 1.0, 60.0)),
    "image_size": (128, int_param("square camera image side in pixels", 32, 1024)),
}


class WorkcellSimNode(Node):
    def __init__(self):
        super().__init__("workcell_sim")
        p = self.p = declare(self, PARAMETERS)
        from amplify_core.workcell.env import WorkcellEnv
        from amplify_core.workcell.config import VIEWS
        from amplify_ros.fake_ur.controller import FakeURController
        from amplify_ros.fake_ur.server import FakeURServer

        self.env = WorkcellEnv(p["task"], "robot", image_size=p["image_size"])
        self.env.reset(seed=p["seed"])
        self.views = list(VIEWS)
        self.controller = FakeURController(q0=self.env.start_q)
        self.server = FakeURServer(self.controller).start()
        topics = {v: f"cameras/{v}/image_raw" for v in self.views}
        self.publishers_ = {v: self.create_publisher(Image, topics[v], camera_qos("reliable", 2)) for v in self.views}
        size = self.env.config.image_size
        self.infos = {v: pinhole_camera_info(size, size, self.env.config.cameras[v].fovy_deg, optical_frame(v))
                      for v in self.views}
        self.info_publishers = {v: self.create_publisher(CameraInfo, info_topic(topics[v]), camera_qos("reliable", 2))
                                for v in self.views}
        self.status_pub = self.create_publisher(String, "workcell/status", 10)
        self.frames = 0
        self.lock = threading.Lock()
        self.create_timer(1.0 / p["rate"], self.on_frame)
        self.create_timer(1.0, self.publish_status)
        self.get_logger().info(f"workcell {p['task']!r} (seed {p['seed']}) with a fake UR controller on 127.0.0.1; "
                               f"cameras {self.views} at {p['rate']:g} Hz")

    def on_frame(self) -> None:
        with self.controller.lock:
            q = np.array(self.controller.q, dtype=np.float64)
            grip = 1.0 if self.controller.digital_out & TOOL_OUTPUT_0 else 0.0
        with self.lock:
            self.env.follow_joints(q, grip)
            images = self.env.render()
        stamp = ns_to_stamp_fields(self.get_clock().now().nanoseconds)
        for view in self.views:
            frame = np.ascontiguousarray(images[view])
            msg = Image(height=frame.shape[0], width=frame.shape[1], encoding="rgb8", is_bigendian=0,
                        step=frame.shape[1] * 3, data=frame.tobytes())
            msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
            msg.header.frame_id = optical_frame(view)
            self.publishers_[view].publish(msg)
            info = self.infos[view]
            info.header.stamp = msg.header.stamp
            self.info_publishers[view].publish(info)
        self.frames += 1

    def publish_status(self) -> None:
        with self.lock:
            status = {"node": self.get_name(), "task": self.p["task"], "success": bool(self.env.success()),
                      "frames": self.frames, "attached": self.env.attached}
        self.status_pub.publish(String(data=json.dumps(status)))

    def close(self) -> None:
        self.server.stop()
        self.env.close()


def main(args=None) -> None:
    import sys

    sys.setswitchinterval(0.001)  # the fake controller's threads answer the driver while frames render
    run_node(WorkcellSimNode, args, before_destroy=lambda node: node.close())


if __name__ == "__main__":
    main()
