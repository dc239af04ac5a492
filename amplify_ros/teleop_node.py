"""Teleoperation of the UR5 through the driver node (keyboard, optionally a SpaceMouse), with episode keys.

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

SpaceMouse (``input: spacemouse``; hidraw reports, amplify_ros/spacemouse.py): the cap's deflection is a velocity;
each command tick moves the target by velocity * tick time (same ``max_lead`` rule). The keyboard keeps working
next to it (episode keys, Q). The target stops when the cap is at rest (deadband), when no report came for
``spacemouse_timeout`` (a stalled device or reader), and if the device goes away the node stops commanding
(the driver's watchdog stops the arm) and exits with code 1. Buttons act as keys (``spacemouse_buttons``).

Keys (read from the node's terminal; a pipe works too, one character per key):
  w/s  +x/-x     a/d  +y/-y     r/v  +z/-z            (base frame, ``linear_step`` m)
  i/k  +rx/-rx   j/l  +ry/-ry   u/o  +rz/-rz          (base frame, ``angular_step`` rad)
  space  gripper open/close      h  target := measured pose
  1  start episode   2  stop episode (success)   3  stop episode (failure)   0  discard episode
  Q  quit (commands stop; the driver's watchdog stops the arm)
"""

from __future__ import annotations

import os
import queue
import select
import sys
import termios
import threading
import time
import tty

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from scipy.spatial.transform import Rotation
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from amplify_core.ur5 import axis_rotation, matrix_to_pose, pose_to_matrix
from amplify_ros.node_runner import run_node
from amplify_ros.parameters import declare, float_param, int_param, text_param
from amplify_ros.spacemouse import (SpaceMouseError, SpaceMouseReader, SpaceMouseState, TwistMapping,
                                    find_spacemice, parse_report, pressed)

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
    "input": ("keyboard", text_param("keyboard, or spacemouse (a SpaceMouse, with the keyboard still active)")),
    "spacemouse_device": ("auto", text_param("hidraw device of the SpaceMouse, e.g. /dev/hidraw3; auto = the first "
                                             "3Dconnexion device in /sys/class/hidraw")),
    "spacemouse_linear_speed": (0.05, float_param("target speed in m/s at full deflection", 0.001, 0.25)),
    "spacemouse_angular_speed": (0.3, float_param("target angular speed in rad/s at full deflection", 0.01, 1.0)),
    "spacemouse_deadband": (20, int_param("raw counts around rest that mean no motion", 0, 300)),
    "spacemouse_full_scale": (350, int_param("raw counts of full deflection (350 on most models)", 50, 2000)),
    "spacemouse_axis_signs": ([1, -1, -1, 1, -1, -1], text_param(
        "per base axis x y z rx ry rz: 1, -1 (reversed) or 0 (off); the default turns the device frame (x right, "
        "y towards you, z down) into x right, y away from you, z up")),
    "spacemouse_axis_map": ([0, 1, 2, 3, 4, 5], text_param(
        "base axis i follows device axis map[i] (0-2 translation, 3-5 rotation), e.g. [1, 0, 2, 4, 3, 5] when "
        "you stand at the robot's side")),
    "spacemouse_timeout": (0.3, float_param("no report for this long (s) while deflected = stop the target",
                                            0.05, 5.0)),
    "spacemouse_buttons": ([" ", "1"], text_param("the key each button presses (button 0 first, '' = none), "
                                                  "e.g. gripper and start episode")),
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


def apply_twist(pose: np.ndarray, twist: np.ndarray, dt: float) -> np.ndarray:
    """The target pose after moving with ``twist`` (m/s, rad/s, base frame) for ``dt`` seconds."""
    t = pose_to_matrix(pose)
    t[:3, 3] += np.asarray(twist[:3]) * dt
    w = np.asarray(twist[3:], dtype=np.float64)
    angle = float(np.linalg.norm(w)) * dt
    if angle > 0:
        t[:3, :3] = axis_rotation(w / np.linalg.norm(w), angle) @ t[:3, :3]  # about the base axis, like apply_key
    return matrix_to_pose(t)


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


class SetupError(RuntimeError):
    """A bad parameter or a missing device: the node does not start (the message says why)."""


class TeleopNode(Node):
    def __init__(self):
        super().__init__("teleop")
        self.p = declare(self, PARAMETERS)
        self.lock = threading.Lock()
        self.measured: np.ndarray | None = None
        self.target: np.ndarray | None = None
        self.gripper = 0.0
        self.quit = False
        self.exit_code = 0
        self.keys_seen = 0
        self.keys: KeyReader | None = None
        self.spacemouse: SpaceMouseReader | None = None
        self.sm_state = SpaceMouseState()
        self.sm_last_report = 0.0  # monotonic time of the last report
        self.last_tick: float | None = None
        if self.p["input"] not in ("keyboard", "spacemouse"):
            raise SetupError(f"parameter input must be keyboard or spacemouse, not {self.p['input']!r}")
        if self.p["input"] == "spacemouse":
            self.open_spacemouse()  # before anything runs: a missing device stops the node here
        self.create_subscription(PoseStamped, "ur5/tcp_pose", self.on_pose, 10)
        self.command_pub = self.create_publisher(JointTrajectory, "ur5/command", 10)
        self.clients_ = {"start": self.create_client(Trigger, "recorder/start"),
                         "stop": self.create_client(SetBool, "recorder/stop"),
                         "discard": self.create_client(Trigger, "recorder/discard")}
        # recorder calls wait for discovery; on their own thread no input (keys, SpaceMouse) waits behind them
        self.episode_queue: queue.Queue = queue.Queue()
        threading.Thread(target=self.episode_worker, name="teleop_episodes", daemon=True).start()
        self.create_timer(1.0 / self.p["rate"], self.publish_command)
        self.keys = KeyReader(self.on_key)
        self.get_logger().info("teleop ready: w/s a/d r/v move, i/k j/l u/o rotate, space gripper, h re-sync, "
                               "1 start / 2 success / 3 failure / 0 discard episode, Q quit")

    def open_spacemouse(self) -> None:
        try:
            self.mapping = TwistMapping(
                deadband=self.p["spacemouse_deadband"], full_scale=self.p["spacemouse_full_scale"],
                linear_speed=self.p["spacemouse_linear_speed"], angular_speed=self.p["spacemouse_angular_speed"],
                signs=tuple(self.p["spacemouse_axis_signs"]), axis_map=tuple(self.p["spacemouse_axis_map"]))
        except ValueError as e:
            raise SetupError(f"spacemouse parameters: {e}") from None
        path, name = self.p["spacemouse_device"], ""
        if path in ("", "auto"):
            found = find_spacemice()
            if not found:
                raise SetupError("input spacemouse: no 3Dconnexion device (vendor 256f, or 046d SpaceNavigator-era) "
                                 "in /sys/class/hidraw; plug one in or set spacemouse_device")
            (path, name), others = found[0], found[1:]
            if others:
                self.get_logger().info(f"other 3Dconnexion devices, not used: {others}")
        try:
            self.spacemouse = SpaceMouseReader(path, self.on_report, self.on_spacemouse_lost)
        except SpaceMouseError as e:
            raise SetupError(str(e)) from None
        self.get_logger().info(f"SpaceMouse {path} {name}".rstrip() + f": {self.p['spacemouse_linear_speed']} m/s, "
                               f"{self.p['spacemouse_angular_speed']} rad/s at full deflection; buttons press "
                               f"{self.p['spacemouse_buttons']}")

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
                self.stop_commands("quit: no more commands (the driver's watchdog stops the arm)")
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
            self.episode_queue.put(EPISODE_KEYS[key])

    def on_report(self, report: bytes) -> None:
        """One SpaceMouse report (reader thread): new axes for the next ticks; pressed buttons act as their keys."""
        with self.lock:
            before = self.sm_state.buttons
            self.sm_state = parse_report(report, self.sm_state)
            self.sm_last_report = time.monotonic()
            down = pressed(before, self.sm_state.buttons)
        keys = self.p["spacemouse_buttons"]
        for button in down:
            if button < len(keys) and keys[button]:
                self.on_key(keys[button])

    def on_spacemouse_lost(self, message: str) -> None:
        with self.lock:
            self.exit_code = 1
            self.stop_commands(f"{message}: no more commands (the driver's watchdog stops the arm); exiting")

    def stop_commands(self, why: str) -> None:
        """Caller holds the lock. Commands end at once; the spin ends and run_node cleans up."""
        self.quit = True
        (self.get_logger().error if self.exit_code else self.get_logger().info)(why)
        self.context.try_shutdown()

    def episode_worker(self) -> None:
        while True:
            self.episode(self.episode_queue.get())

    def episode(self, action: str) -> None:
        """Ask the recorder; the answer is logged when it comes.

        Waiting a moment for discovery is fine here (own thread): a recorder started just before (or a slow DDS
        discovery) would otherwise be reported missing on the first key press.
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

    def spacemouse_twist(self, now: float) -> np.ndarray:
        """Caller holds the lock. Zero when the cap is at rest or the reports stopped coming."""
        if self.spacemouse is None or now - self.sm_last_report > self.p["spacemouse_timeout"]:
            return np.zeros(6)
        return self.mapping.twist(self.sm_state.axes)

    def publish_command(self) -> None:
        now = time.monotonic()
        # a late tick integrates at most two periods: a stalled process does not make the target jump
        dt = 0.0 if self.last_tick is None else min(now - self.last_tick, 2.0 / self.p["rate"])
        self.last_tick = now
        with self.lock:
            if self.quit or self.target is None:
                return
            twist = self.spacemouse_twist(now)
            if twist.any():
                moved = apply_twist(self.target, twist, dt)
                self.target = limit_lead(moved, self.measured, self.p["max_lead"])
            target, gripper = self.target.copy(), self.gripper
        msg = JointTrajectory()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.joint_names = COMMAND_AXES
        msg.points = [JointTrajectoryPoint(positions=[float(v) for v in target] + [gripper])]
        self.command_pub.publish(msg)

    def close_inputs(self) -> None:
        for reader in (self.keys, self.spacemouse):
            if reader is not None:
                reader.close()


def main(args=None) -> None:
    made = []

    def make() -> TeleopNode:
        made.append(TeleopNode())
        return made[0]

    try:
        run_node(make, args, before_destroy=lambda node: node.close_inputs())
    except SetupError as e:
        print(f"teleop_node: {e}", file=sys.stderr)
        sys.exit(1)
    if made and made[0].exit_code:
        sys.exit(made[0].exit_code)


if __name__ == "__main__":
    main()
