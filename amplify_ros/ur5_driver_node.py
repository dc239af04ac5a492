"""UR5 driver node: streams the policy's Cartesian commands to a UR5 with ur-rtde, and owns safety.

ROS contract (all names relative to the node's namespace; QoS depth 10 reliable unless noted)
  Subscriptions
    /ur5/command          trajectory_msgs/JointTrajectory, ONE point; joint_names
                          ["x","y","z","rx","ry","rz","gripper"]: absolute tool0 pose in the robot base frame
                          (m, UR rotation vector in rad), gripper 0 = open .. 1 = closed. header.stamp = stamp of
                          the observation the command was computed from. The already-ensembled stream.
    /policy/action_chunk  trajectory_msgs/JointTrajectory, chunk_size points (time_from_start k*50 ms), same
                          joint_names; ensembled here (amplify_core.ensembling, rotation dims 3..5) at control_rate.
                          ``input_mode`` chooses which of the two is active ("command", "action_chunk", "both").
  Publications
    /joint_states         sensor_msgs/JointState (amplify_core.ur5.JOINT_NAMES), state_publish_rate
    /ur5/tcp_pose         geometry_msgs/PoseStamped, frame_id = base_frame, quaternion from the rotation vector
    /ur5/status           std_msgs/String, JSON: enabled, dry_run, connected, robot_mode, safety_mode,
                          program_running, streaming, last_command_age_ms, counts {accepted, clamped, rejected},
                          last_violation, stop_reason, achieved_rate_hz; at status_rate
  Services
    /ur5/enable           std_srvs/SetBool: true enables motion (refused unless connected, safety NORMAL and the
                          control script running); false stops the arm (servoStop) and disables
    /ur5/reconnect        std_srvs/Trigger: stop, drop the ur-rtde clients, connect again (uploads the script)
  Parameters: declared below with descriptions and ranges; defaults in config/ur5_driver.yaml.

Architecture: this node never calls ur-rtde. The ur-rtde clients and the paced servo loop with every safety
rule (checks, enable, dry run, command watchdog) run in a separate robot process (amplify_ros.robot.robot_worker)
reached through amplify_ros.robot.robot_process.RobotProcess: commands go in, state samples (the heartbeat),
loss and stop events come out. ur-rtde holds the GIL while it blocks; in its own process that can no longer
freeze this node. Status counts are those of the current robot process (they restart on reconnect).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading

import numpy as np
from geometry_msgs.msg import PoseStamped
import rclpy
from rclpy.executors import ExternalShutdownException, ShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

from amplify_core.ensembling import TemporalEnsembler
from amplify_core.ur5 import JOINT_NAMES
from amplify_ros.robot.robot_process import RobotProcess
from amplify_ros.robot.rtde_connection import SAFETY_NORMAL, SAFETY_REDUCED
from amplify_ros.robot.safety import SafetyLimits
from amplify_ros.robot.servo_loop import ServoConfig
from amplify_ros.diagnostics import ERROR, OK, WARN, Diagnostics
from amplify_ros.node_runner import run_node
from amplify_ros.parameters import declare, float_param, int_param, text_param

COMMAND_AXES = ("x", "y", "z", "rx", "ry", "rz", "gripper")
INPUT_MODES = ("command", "action_chunk", "both")


PARAMETERS = {  # name: (default, descriptor)
    "robot_ip": ("127.0.0.1", text_param("UR controller address")),
    "rtde_frequency": (125.0, float_param("servo streaming rate in Hz: 125 on CB3, 500 on e-Series", 1.0, 500.0)),
    "servo_mode": ("servoL", text_param("servoL (Cartesian) or servoJ (IK in the node)")),
    "input_mode": ("command", text_param("active input: command, action_chunk or both")),
    "dry_run": (False, text_param("log setpoints, never send motion")),
    "servo_wake_on_command": (True, text_param(
        "send the first setpoint toward a new command at once instead of at the next servo tick")),
    "servo_lookahead_time": (0.1, float_param("servo lookahead_time in s (UR range 0.03-0.2)", 0.03, 0.2)),
    "servo_gain": (300.0, float_param("servo proportional gain (UR range 100-2000)", 100.0, 2000.0)),
    "max_linear_speed": (0.25, float_param("TCP speed cap in m/s", 0.001, 1.0)),
    "max_angular_speed": (1.0, float_param("TCP angular speed cap in rad/s", 0.001, 3.14)),
    "max_step_linear": (0.05, float_param("max distance of a command from the current TCP position in m", 0.001, 0.5)),
    "max_step_angular": (0.5, float_param("max rotation of a command from the current TCP orientation in rad",
                                          0.001, 3.14)),
    "workspace_min": ([-0.8, -0.8, 0.0], text_param("workspace box lower corner x,y,z in m (base frame)")),
    "workspace_max": ([0.8, 0.8, 0.9], text_param("workspace box upper corner x,y,z in m (base frame)")),
    "violation_action": ("clamp", text_param("clamp or reject commands that break a limit")),
    "watchdog_timeout_ms": (200, int_param("servoStop when no fresh command arrived for this long (ms)", 5, 10000)),
    "stop_deceleration": (10.0, float_param("servoStop deceleration", 0.1, 40.0)),
    "connect_timeout": (5.0, float_param("seconds allowed for each connection step", 0.5, 60.0)),
    "heartbeat_timeout_ms": (500, int_param("robot process silent this long (ms) = hung: killed, reported disconnected",
                                       50, 10000)),
    "stop_timeout": (3.0, float_param("seconds the robot process gets to servoStop/stopScript on shutdown", 0.5, 30.0)),
    "gripper_output": ("tool", text_param("gripper signal: tool digital output or standard digital output")),
    "gripper_pin": (0, int_param("digital output index driving the gripper (high = closed)", 0, 7)),
    "control_rate": (20.0, float_param("policy tick in Hz (action-chunk ensembling)", 1.0, 100.0)),
    "chunk_size": (16, int_param("actions per /policy/action_chunk message", 1, 256)),
    "ensemble_m": (0.01, float_param("temporal ensembling weight decay m", 0.0, 10.0)),
    "state_publish_rate": (50.0, float_param("rate of /joint_states and /ur5/tcp_pose in Hz", 1.0, 500.0)),
    "status_rate": (10.0, float_param("rate of /ur5/status in Hz", 0.5, 100.0)),
    "diagnostics_rate": (1.0, float_param("rate of /diagnostics (diagnostic_msgs/DiagnosticArray) in Hz", 0.1, 10.0)),
    "base_frame": ("base", text_param("frame_id of /ur5/tcp_pose")),
}


class UR5DriverNode(Node):
    def __init__(self):
        super().__init__("ur5_driver")
        p = declare(self, PARAMETERS)
        if p["input_mode"] not in INPUT_MODES:
            raise ValueError(f"parameter input_mode must be one of {INPUT_MODES}, got {p['input_mode']!r}")
        self.params = p
        self.robot = RobotProcess(self._robot_config(p), heartbeat_timeout=p["heartbeat_timeout_ms"] / 1000.0,
                                  start_timeout=3 * p["connect_timeout"] + 15.0, stop_timeout=p["stop_timeout"])
        self.ensembler = TemporalEnsembler(p["chunk_size"], m=p["ensemble_m"], rotation_dims=3)
        self._tick = 0

        self.joint_pub = self.create_publisher(JointState, "joint_states", 10)
        self.pose_pub = self.create_publisher(PoseStamped, "ur5/tcp_pose", 10)
        self.status_pub = self.create_publisher(String, "ur5/status", 10)
        if p["input_mode"] in ("command", "both"):
            self.create_subscription(JointTrajectory, "ur5/command", self.on_command, 10)
        if p["input_mode"] in ("action_chunk", "both"):
            self.create_subscription(JointTrajectory, "policy/action_chunk", self.on_chunk, 10)
            self.create_timer(1.0 / p["control_rate"], self.on_control_tick)
        # The node spins on a single-threaded executor: rclpy's multi-threaded one added ~4 ms median and ~10 ms
        # p99 to every command (measured, docs/ur5_driver.md). A reconnect blocks for seconds, so the services
        # live on a companion node with its own executor thread and never hold up commands, timers or status.
        # The process's command line (launch's ``-r __node:=<name>``) must not rename it too, or the graph holds
        # two nodes of the driver's name; it has no parameters of its own, so no parameter services either.
        self.service_node = rclpy.create_node(f"{self.get_name()}_services", namespace=self.get_namespace(),
                                              context=self.context, use_global_arguments=False,
                                              start_parameter_services=False)
        self.service_node.create_service(SetBool, "ur5/enable", self.on_enable)
        self.service_node.create_service(Trigger, "ur5/reconnect", self.on_reconnect)
        self._service_executor = SingleThreadedExecutor(context=self.context)
        self._service_executor.add_node(self.service_node)
        self._services_stop = threading.Event()
        self._services_thread = threading.Thread(target=self._spin_services, name="ur5_services", daemon=True)
        self._services_thread.start()
        self.create_timer(1.0 / p["state_publish_rate"], self.publish_state)
        self.create_timer(1.0 / p["status_rate"], self.publish_status)
        self.diagnostics = Diagnostics(self, hardware_id=f"UR controller {p['robot_ip']}")
        self.create_timer(1.0 / p["diagnostics_rate"], self.publish_diagnostics)

        # the first connection runs in the background so the node spins (and reports) while it connects
        threading.Thread(target=self.connect, name="ur5_first_connect", daemon=True).start()

    @staticmethod
    def _robot_config(p: dict) -> dict:
        """Everything the robot process needs; the dataclasses validate here, naming the bad parameter."""
        limits = SafetyLimits(tuple(p["workspace_min"]), tuple(p["workspace_max"]), p["max_linear_speed"],
                              p["max_angular_speed"], p["max_step_linear"], p["max_step_angular"],
                              p["violation_action"])
        servo = ServoConfig(p["rtde_frequency"], p["servo_mode"], p["servo_lookahead_time"], p["servo_gain"],
                            p["watchdog_timeout_ms"] / 1000.0, p["stop_deceleration"], p["dry_run"],
                            p["servo_wake_on_command"])
        if p["gripper_output"] not in ("tool", "standard"):
            raise ValueError(f"parameter gripper_output must be 'tool' or 'standard', got {p['gripper_output']!r}")
        return {"connection": {"host": p["robot_ip"], "frequency": p["rtde_frequency"],
                               "connect_timeout": p["connect_timeout"], "gripper_output": p["gripper_output"],
                               "gripper_pin": p["gripper_pin"]},
                "servo": dataclasses.asdict(servo), "limits": dataclasses.asdict(limits),
                "interp": {"max_linear_speed": p["max_linear_speed"], "max_angular_speed": p["max_angular_speed"],
                           "min_period": 1.0 / p["rtde_frequency"]},
                "sample_period": min(0.02, 1.0 / p["state_publish_rate"])}

    # ---- connection ------------------------------------------------------------------------------
    def connect(self) -> tuple[bool, str]:
        ok, message = self.robot.start()
        if not ok:
            self.get_logger().error(f"UR connection failed: {message}")
        return ok, message

    def _spin_services(self) -> None:
        # spin_once with a timeout and a flag of our own instead of spin(): shutdown() must be able to end this
        # thread and join it before the executor and the node it waits on are destroyed (see shutdown())
        try:
            while self.context.ok() and not self._services_stop.is_set():
                self._service_executor.spin_once(timeout_sec=0.1)
        except (ExternalShutdownException, ShutdownException):
            pass
        except _rclpy.RCLError:
            # SIGINT/SIGTERM: rclpy's handler shuts the context down while this thread builds its next wait set
            # ("context is not valid"; seen once in CI, Ctrl-C of the rehearsal launch). That is the requested shutdown,
            # as in node_runner.run_node; anything while the context is still valid is a fault.
            if self.context.ok():
                raise

    def on_reconnect(self, request, response):
        response.success, response.message = self.connect()
        return response

    def on_enable(self, request, response):
        if not request.data:
            self.robot.send("enable", False, "disabled by operator")
            response.success, response.message = True, "motion disabled"
            return response
        state = self.robot.state()
        if not state.get("connected"):
            response.success, response.message = False, "not connected to the robot"
        elif state.get("safety_mode") not in (SAFETY_NORMAL, SAFETY_REDUCED):
            response.success, response.message = False, f"safety mode {state.get('safety_mode')} is not NORMAL"
        elif not state.get("program_running"):
            response.success, response.message = False, "control script not running (call /ur5/reconnect)"
        elif not self.robot.send("enable", True, ""):
            response.success, response.message = False, "robot process gone"
        else:
            response.success = True
            response.message = "motion enabled" + (" (dry run: nothing is sent)" if self.params["dry_run"] else "")
        self.get_logger().info(f"enable request: {response.message}")
        return response

    # ---- commands --------------------------------------------------------------------------------
    def on_command(self, msg: JointTrajectory) -> None:
        values = self._axes(msg, expected_points=1)
        if values is not None:
            self.robot.send("command", values[0, :6].tolist(), float(values[0, 6]))

    def on_chunk(self, msg: JointTrajectory) -> None:
        values = self._axes(msg, expected_points=self.params["chunk_size"])
        if values is None:
            return
        try:
            self.ensembler.add(values, self._tick)
        except ValueError as exc:
            self._reject(f"action chunk: {exc}")

    def on_control_tick(self) -> None:
        action = self.ensembler.action(self._tick)
        self._tick += 1
        if action is not None:
            self.robot.send("command", [float(v) for v in action[:6]], float(action[6]))

    def _axes(self, msg: JointTrajectory, expected_points: int):
        """(points, 7) array in COMMAND_AXES order, or None (counted as rejected) if malformed."""
        if len(msg.points) != expected_points:
            return self._reject(f"expected {expected_points} trajectory point(s), got {len(msg.points)}")
        try:
            order = [list(msg.joint_names).index(a) for a in COMMAND_AXES]
        except ValueError:
            return self._reject(f"joint_names must contain {COMMAND_AXES}, got {list(msg.joint_names)}")
        try:
            return np.array([[pt.positions[i] for i in order] for pt in msg.points], dtype=np.float64)
        except IndexError:
            return self._reject("trajectory point has fewer positions than joint_names")

    def _reject(self, reason: str):
        self.robot.send("reject", reason)  # counted with the robot process's other rejections
        self.get_logger().warning(f"command rejected: {reason}")
        return None

    # ---- publishing ------------------------------------------------------------------------------
    def publish_state(self) -> None:
        state = self.robot.state()
        if not state.get("connected") or state.get("q") is None:
            return
        stamp = self.get_clock().now().to_msg()
        js = JointState()
        js.header.stamp = stamp
        js.name = list(JOINT_NAMES)
        js.position = [float(v) for v in state["q"]]
        self.joint_pub.publish(js)
        ps = PoseStamped()
        ps.header.stamp = stamp
        ps.header.frame_id = self.params["base_frame"]
        x, y, z, *rv = (float(v) for v in state["tcp_pose"])
        ps.pose.position.x, ps.pose.position.y, ps.pose.position.z = x, y, z
        qx, qy, qz, qw = Rotation.from_rotvec(rv).as_quat()
        ps.pose.orientation.x, ps.pose.orientation.y = float(qx), float(qy)
        ps.pose.orientation.z, ps.pose.orientation.w = float(qz), float(qw)
        self.pose_pub.publish(ps)

    def status(self) -> dict:
        state = self.robot.state()
        return {"enabled": state.get("enabled", False), "dry_run": self.params["dry_run"],
                "connected": state["connected"], "robot_mode": state.get("robot_mode", -1),
                "safety_mode": state.get("safety_mode", -1), "program_running": state["program_running"],
                "streaming": state["streaming"], "last_command_age_ms": state.get("last_command_age_ms"),
                "counts": state.get("counts", {"accepted": 0, "clamped": 0, "rejected": 0}),
                "last_violation": state.get("last_violation", ""), "stop_reason": state.get("stop_reason", ""),
                "achieved_rate_hz": state.get("achieved_rate_hz", 0.0),
                "servo_commands_sent": state.get("servo_commands_sent", 0)}

    def publish_status(self) -> None:
        self.status_pub.publish(String(data=json.dumps(self.status())))

    def diagnostic_level(self, status: dict) -> tuple[bytes, str]:
        """ERROR: no robot, a safety stop or no control script; WARN: connected but not moving the arm (motion
        disabled, dry run); OK: enabled."""
        if not status["connected"]:
            return ERROR, "not connected to the robot"
        if status["safety_mode"] not in (SAFETY_NORMAL, SAFETY_REDUCED):
            return ERROR, f"safety mode {status['safety_mode']} is not NORMAL"
        if not status["program_running"]:
            return ERROR, "control script not running (call /ur5/reconnect)"
        if not status["enabled"]:
            return WARN, "motion disabled (call /ur5/enable)" + (f"; last stop: {status['stop_reason']}"
                                                                 if status["stop_reason"] else "")
        if status["dry_run"]:
            return WARN, "enabled in dry run: nothing is sent"
        return OK, f"enabled, servo at {status['achieved_rate_hz']} Hz"

    def publish_diagnostics(self) -> None:
        status = self.status()
        limits = {k: self.params[k] for k in ("max_linear_speed", "max_angular_speed", "max_step_linear",
                                              "max_step_angular", "workspace_min", "workspace_max",
                                              "violation_action", "watchdog_timeout_ms")}
        self.diagnostics.publish(*self.diagnostic_level(status), {**status, **limits})

    def shutdown(self, reason: str) -> None:
        """servoStop + stopScript + disconnect in the robot process, bounded by stop_timeout."""
        self.robot.stop(reason)
        # End the services thread first. Left waiting inside rclpy, it woke up during interpreter exit, when Python
        # ends daemon threads with pthread_exit and the unwinding through rclpy's C++ frames aborts ("terminate
        # called without an active exception", traced with gdb: 5 of 25 SIGINTs to a disconnected driver). A
        # SIGSEGV seen once at shutdown fits the same thread waiting on guard conditions the executor destroyed.
        self._services_stop.set()
        self._services_thread.join(timeout=2.0)
        self._service_executor.shutdown(timeout_sec=1.0)
        self.service_node.destroy_node()


def main(args=None) -> None:
    # the executor, the first-connect thread and the robot-process reader share one GIL; the default 5 ms switch interval would
    # let a command wait up to 5 ms behind a timer callback
    sys.setswitchinterval(0.001)
    # on every exit path: servoStop + stopScript + disconnect, whatever happened
    run_node(UR5DriverNode, args, threads=1, before_destroy=lambda node: node.shutdown("node shutdown"))


if __name__ == "__main__":
    main()
