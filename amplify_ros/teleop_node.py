"""Keyboard teleoperation of the UR5 through the driver node, with episode keys for the recorder.

ROS contract
  Subscriptions
    /ur5/tcp_pose        geometry_msgs/PoseStamped (the driver): the target starts at the measured pose, and
                         never runs further ahead of it than ``max_lead`` (holding a key against a workspace
                         limit does not wind the target up).
  Publications
    /ur5/command         trajectory_msgs/JointTrajectory, ONE point, joint_names x y z rx ry rz gripper, at ``rate``
                         Hz: the current target (held when no key is pressed). Nothing before the first TCP pose;
                         nothing after quitting, so the driver's watchdog stops the arm.
  Service clients
    /recorder/start (Trigger), /recorder/stop (SetBool: success), /recorder/discard (Trigger).

Every safety rule stays in the driver (explicit /ur5/enable, workspace, speed and step limits, watchdog): this
node only moves a target. Each key press moves it by one step, so a held key (terminal auto-repeat, ~30/s) moves
the arm at up to 30 steps/s, which the driver caps at its max speed.

Keys (read from the node's terminal; a pipe works too, one character per key):
  w/s  +x/-x     a/d  +y/-y     r/v  +z/-z            (base frame, ``linear_step`` m)
  i/k  +rx/-rx   j/l  +ry/-ry   u/o  +rz/-rz          (base frame, ``angular_step`` rad)
  space  gripper open/close      h  target := measured pose
  1  start episode   2  stop episode (success)   3  stop episode (failure)   0  discard episode
  Q  quit (commands stop; the driver's watchdog stops the arm)

A SpaceMouse is not supported yet (no HID library is installable here); see docs/data_collection.md.
"""

from __future__ import annotations

import os
import select
import sys
import termios
import threading
import tty

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from scipy.spatial.transform import Rotation
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from amplify_core.ur5 import axis_rotation, matrix_to_pose, pose_to_matrix
from amplify_ros.node_runner import run_node
from amplify_ros.parameters import declare, float_param

COMMAND_AXES = ["x", "y", "z", "rx", "ry", "rz", "gripper"]
LINEAR_KEYS = {"w": (0, 1), "s": (0, -1), "a": (1, 1), "d": (1, -1), "r": (2, 1), "v": (2, -1)}
ANGULAR_KEYS = {"i": (0, 1), "k": (0, -1), "j": (1, 1), "l": (1, -1), "u": (2, 1), "o": (2, -1)}
EPISODE_KEYS = {"1": "start", "2": "stop_success", "3": "stop_failure", "0": "discard"}
RECORDER_DISCOVERY_S = 2.0  # how long a key press waits for the recorder services to be discovered

PARAMETERS = {
    "rate": (20.0, float_param("rate of /ur5/command in Hz (keep above 1000 / the driver's watchdog_timeout_ms)",
                               5.0, 200.0)),
    "linear_step": (0.005, float_param("target move per key press in m", 0.0001, 0.05)),
    "angular_step": (0.05, float_param("target rotation per key press in rad", 0.001, 0.5)),
    "max_lead": (0.05, float_param("the target stays within this distance (m) of the measured TCP position",
                                   0.005, 0.5)),
}


def apply_key(pose: np.ndarray, key: str, linear_step: float, angular_step: float) -> np.ndarray:
    """The target pose (x y z rx ry rz) after one motion key; unchanged for other keys."""
    pose = np.array(pose, dtype=np.float64)
    if key in LINEAR_KEYS:
        axis, sign = LINEAR_KEYS[key]
        pose[axis] += sign * linear_step
    elif key in ANGULAR_KEYS:
        axis, sign = ANGULAR_KEYS[key]
        t = pose_to_matrix(pose)
        t[:3, :3] = axis_rotation(np.eye(3)[axis], sign * angular_step) @ t[:3, :3]  # about the base axis
        pose = matrix_to_pose(t)
    return pose


def limit_lead(target: np.ndarray, measured: np.ndarray, max_lead: float) -> np.ndarray:
    """Pull the target position back to within ``max_lead`` of the measured position."""
    offset = target[:3] - measured[:3]
    dist = float(np.linalg.norm(offset))
    if dist <= max_lead:
        return target
    out = np.array(target, dtype=np.float64)
    out[:3] = measured[:3] + offset * (max_lead / dist)
    return out


class KeyReader:
    """Characters from stdin on a thread: cbreak mode on a terminal (restored on close), plain reads on a pipe."""

    def __init__(self, on_key, stream=None):
        self.stream = stream or sys.stdin
        self.on_key = on_key
        self._fd = self.stream.fileno()
        self._saved = None
        if os.isatty(self._fd):
            self._saved = termios.tcgetattr(self._fd)
            tty.setcbreak(self._fd)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="teleop_keys", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.1)
            if not ready:
                continue
            data = os.read(self._fd, 64)
            if not data:  # end of input (a closed pipe): nothing more will come
                return
            for ch in data.decode(errors="ignore"):
                self.on_key(ch)

    def close(self) -> None:
        self._stop.set()
        if self._saved is not None:
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)


class TeleopNode(Node):
    def __init__(self):
        super().__init__("teleop")
        self.p = declare(self, PARAMETERS)
        self.lock = threading.Lock()
        self.measured: np.ndarray | None = None
        self.target: np.ndarray | None = None
        self.gripper = 0.0
        self.quit = False
        self.keys_seen = 0
        self.create_subscription(PoseStamped, "/ur5/tcp_pose", self.on_pose, 10)
        self.command_pub = self.create_publisher(JointTrajectory, "/ur5/command", 10)
        self.clients_ = {"start": self.create_client(Trigger, "/recorder/start"),
                         "stop": self.create_client(SetBool, "/recorder/stop"),
                         "discard": self.create_client(Trigger, "/recorder/discard")}
        self.create_timer(1.0 / self.p["rate"], self.publish_command)
        self.keys = KeyReader(self.on_key)
        self.get_logger().info("teleop ready: w/s a/d r/v move, i/k j/l u/o rotate, space gripper, h re-sync, "
                               "1 start / 2 success / 3 failure / 0 discard episode, Q quit")

    def on_pose(self, msg: PoseStamped) -> None:
        p, q = msg.pose.position, msg.pose.orientation
        rotvec = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_rotvec()
        with self.lock:
            self.measured = np.array([p.x, p.y, p.z, *rotvec])
            if self.target is None:
                self.target = self.measured.copy()
                self.get_logger().info(f"target starts at the measured pose {np.round(self.measured, 4).tolist()}")

    def on_key(self, key: str) -> None:
        with self.lock:
            self.keys_seen += 1
            if key == "Q":
                self.quit = True
                self.get_logger().info("quit: no more commands (the driver's watchdog stops the arm)")
                self.context.try_shutdown()  # ends the spin; run_node cleans up
                return
            if self.target is None:
                return  # no pose yet: nothing to move from
            if key == " ":
                self.gripper = 1.0 - self.gripper
                self.get_logger().info(f"gripper {'closed' if self.gripper else 'open'}")
            elif key == "h":
                self.target = self.measured.copy()
            elif key in LINEAR_KEYS or key in ANGULAR_KEYS:
                moved = apply_key(self.target, key, self.p["linear_step"], self.p["angular_step"])
                self.target = limit_lead(moved, self.measured, self.p["max_lead"])
        if key in EPISODE_KEYS:
            self.episode(EPISODE_KEYS[key])

    def episode(self, action: str) -> None:
        """Ask the recorder; the answer is logged when it comes.

        Runs on the key thread, so waiting a moment for discovery is fine: a recorder started just before (or a
        slow DDS discovery) would otherwise be reported missing on the first key press.
        """
        if action == "start":
            client, request = self.clients_["start"], Trigger.Request()
        elif action == "discard":
            client, request = self.clients_["discard"], Trigger.Request()
        else:
            client, request = self.clients_["stop"], SetBool.Request(data=action == "stop_success")
        if not client.wait_for_service(timeout_sec=RECORDER_DISCOVERY_S):
            self.get_logger().error(f"episode {action}: {client.srv_name} is not available (is the recorder running?)")
            return
        future = client.call_async(request)
        future.add_done_callback(lambda f: self.get_logger().info(
            f"episode {action}: {'ok' if f.result().success else 'refused'}: {f.result().message}"))

    def publish_command(self) -> None:
        with self.lock:
            if self.quit or self.target is None:
                return
            target, gripper = self.target.copy(), self.gripper
        msg = JointTrajectory()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.joint_names = COMMAND_AXES
        msg.points = [JointTrajectoryPoint(positions=[float(v) for v in target] + [gripper])]
        self.command_pub.publish(msg)


def main(args=None) -> None:
    run_node(TeleopNode, args, before_destroy=lambda node: node.keys.close())


if __name__ == "__main__":
    main()
