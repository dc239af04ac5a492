"""The paced streaming thread: interpolated, checked servo commands at the robot interface's rate.

It runs inside the robot process (``robot_worker``), next to the ur-rtde clients, so every safety rule -- the
command checks, enable, dry run and the staleness watchdog -- is enforced at the last step before the arm,
on the age of commands as the robot process received them: if the ROS node stalls or dies, the arm stops.

Pacing uses ``time.monotonic`` and sleeps until the next deadline (never ``waitPeriod``, which paces at the
controller's own rate and holds the GIL). Every period the loop reads the robot state and decides:

* not connected -> nothing is sent; the stop reason says so (reconnect is an explicit call);
* safety mode not NORMAL/REDUCED (protective or emergency stop) -> servoStop, motion disabled;
* not enabled, dry run, or no command yet -> nothing is sent (dry run logs the setpoint instead);
* newest command older than the watchdog timeout -> servoStop once; a fresh command resumes from the
  current pose;
* otherwise -> the interpolated setpoint is sent (servoL, or servoJ after IK when ``servo_mode == "servoJ"``).

``wake_on_command``: a new command wakes the loop at once and the schedule restarts from that moment, instead of
waiting up to one period for the next tick (that wait alone is up to 8 ms at 125 Hz). The interpolator then
advances by the time actually elapsed, so the path speed is unchanged; at most one shorter interval per
command (20 Hz) results. On a real controller the script still reads the registers on its own cycle.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from amplify_core.ur5 import default_kinematics
from amplify_ros.robot.interpolation import PoseInterpolator
from amplify_ros.robot.rtde_connection import RobotConnection, RobotState
from amplify_ros.robot.safety import CommandChecker

log = logging.getLogger(__name__)

SERVO_MODES = ("servoL", "servoJ")


@dataclass
class ServoConfig:
    frequency: float = 125.0  # Hz: 125 on CB3, 500 on e-Series
    servo_mode: str = "servoL"
    lookahead_time: float = 0.1  # s, UR range 0.03-0.2
    gain: float = 300.0  # UR range 100-2000
    watchdog_timeout: float = 0.2  # s without a fresh command -> servoStop
    stop_deceleration: float = 10.0  # servoStop deceleration (m/s^2 for servoL, rad/s^2 joint)
    dry_run: bool = False
    wake_on_command: bool = True  # step as soon as a new command arrives (see the module docstring)

    def __post_init__(self):
        if not 1.0 <= self.frequency <= 1000.0:
            raise ValueError(f"frequency must be in [1, 1000] Hz, got {self.frequency}")
        if self.servo_mode not in SERVO_MODES:
            raise ValueError(f"servo_mode must be one of {SERVO_MODES}, got {self.servo_mode!r}")
        if not 0.03 <= self.lookahead_time <= 0.2:
            raise ValueError(f"lookahead_time must be in [0.03, 0.2] s, got {self.lookahead_time}")
        if not 100 <= self.gain <= 2000:
            raise ValueError(f"gain must be in [100, 2000], got {self.gain}")
        if not 0.005 <= self.watchdog_timeout <= 10.0:
            raise ValueError(f"watchdog_timeout must be in [0.005, 10] s, got {self.watchdog_timeout}")
        if not self.stop_deceleration > 0:
            raise ValueError(f"stop_deceleration must be > 0, got {self.stop_deceleration}")


class ServoLoop:
    def __init__(self, robot: RobotConnection, config: ServoConfig, checker: CommandChecker,
                 interpolator: PoseInterpolator):
        self.robot, self.config, self.checker, self.interp = robot, config, checker, interpolator
        self.period = 1.0 / config.frequency
        self.lock = threading.Lock()
        self.enabled = False
        self.streaming = False
        self.stop_reason = "not enabled"
        self.state = RobotState(connected=False)
        self.last_command_time: float | None = None
        self.command_period = 0.05
        self.sent_count = 0
        self.achieved_rate = 0.0
        self._gripper: float | None = None
        self._gripper_sent: bool | None = None
        self._dry_run_logged = 0.0
        self._stop_event = threading.Event()
        self._wake = threading.Event()  # set by stop requests and, with wake_on_command, by new commands
        self._last_step: float | None = None
        self._kinematics = default_kinematics()
        self._thread: threading.Thread | None = None

    # ---- called from ROS callbacks ---------------------------------------------------------------
    def submit(self, pose, gripper: float) -> str:
        """A new absolute TCP target; returns the check status ('ok', 'clamped', 'rejected')."""
        now = time.monotonic()
        with self.lock:
            current = self.state.tcp_pose if self.state.tcp_pose is not None else self.interp.setpoint
            if current is None:
                self.checker.counts["rejected"] += 1
                self.checker.last_violation = "rejected: robot pose unknown (not connected)"
                return "rejected"
            result = self.checker.check(pose, gripper, current, now)
            if result.pose is None:
                return result.status
            if self.last_command_time is not None:
                # smoothed interval between commands: how long each waypoint's interpolation should take
                self.command_period = 0.8 * self.command_period + 0.2 * min(now - self.last_command_time, 0.2)
            if not self.streaming:
                self.interp.reset(self.state.tcp_pose if self.state.tcp_pose is not None else current)
            self.interp.set_target(result.pose, self.command_period)
            self._gripper = result.gripper
            self.last_command_time = now
        if self.config.wake_on_command:
            self._wake.set()
        return result.status

    def reject(self, reason: str) -> None:
        """Count a command the node could not even parse (wrong point count or joint names)."""
        with self.lock:
            self.checker.counts["rejected"] += 1
            self.checker.last_violation = "rejected: " + reason

    def snapshot(self) -> dict:
        """Robot state and loop status as plain values (sent to the node as the heartbeat sample)."""
        with self.lock:
            st, now = self.state, time.monotonic()
            age = None if self.last_command_time is None else round((now - self.last_command_time) * 1000, 1)
            return {"connected": st.connected, "q": None if st.q is None else [float(v) for v in st.q],
                    "tcp_pose": None if st.tcp_pose is None else [float(v) for v in st.tcp_pose],
                    "robot_mode": st.robot_mode, "safety_mode": st.safety_mode,
                    "program_running": st.program_running, "enabled": self.enabled,
                    "dry_run": self.config.dry_run, "streaming": self.streaming, "last_command_age_ms": age,
                    "counts": dict(self.checker.counts), "last_violation": self.checker.last_violation,
                    "stop_reason": self.stop_reason, "achieved_rate_hz": round(self.achieved_rate, 1),
                    "servo_commands_sent": self.sent_count, "last_error": self.robot.last_error,
                    "sampled_at": now}

    def set_enabled(self, enabled: bool, reason: str = "") -> None:
        with self.lock:
            self.enabled = enabled
            if enabled:
                self.stop_reason = ""
                self.last_command_time = None  # only commands sent after enabling count
                self.checker.reset_history()
        if not enabled:
            self._stop_motion(reason or "disabled by operator")

    # ---- the thread ------------------------------------------------------------------------------
    def start(self) -> None:
        self._stop_event.clear()
        self._thread = threading.Thread(target=self._run, name="ur5_servo_loop", daemon=True)
        self._thread.start()

    def shutdown(self, reason: str = "shutdown") -> None:
        """Stop the thread, decelerate the arm, stop the control script, disconnect."""
        self._stop_event.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self.enabled = False
        self._stop_motion(reason, force=True)
        self.robot.stop_script()
        self.robot.disconnect()

    def _run(self) -> None:
        next_time = time.monotonic()
        window_start, window_count = next_time, 0
        while not self._stop_event.is_set():
            self._step()
            window_count += 1
            now = time.monotonic()
            if now - window_start >= 1.0:
                self.achieved_rate = window_count / (now - window_start)
                window_start, window_count = now, 0
            next_time += self.period
            delay = next_time - time.monotonic()
            if delay > 0 and self._wake.wait(delay):
                next_time = time.monotonic()  # woken by a new command: step now, restart the schedule
            elif delay <= 0:
                next_time = time.monotonic()  # overran: restart the schedule instead of bursting
            self._wake.clear()

    def _step(self) -> None:
        action = self._decide(self.robot.state(), time.monotonic())
        if action is None:
            return
        if action[0] == "stop":
            self._stop_motion(action[1])
        else:
            _, setpoint, gripper, state = action
            self._send(setpoint, state)
            self._send_gripper(gripper)

    def _decide(self, state: RobotState, now: float):
        """What this period does: None, ("stop", reason) or ("send", setpoint, gripper, state)."""
        with self.lock:
            self.state = state
            if not state.connected:
                if self.streaming or not self.stop_reason.startswith("disconnected"):
                    self.streaming = False
                    self.stop_reason = "disconnected" + (f" ({self.robot.last_error})" if self.robot.last_error else "")
                    log.error("robot %s", self.stop_reason)
                return None
            if not state.safety_ok:
                if self.enabled or self.streaming:
                    self.enabled = False
                    return "stop", f"safety stop (safety mode {state.safety_mode})"
                return None
            if not self.enabled or self.last_command_time is None:
                return None
            age = now - self.last_command_time
            if age > self.config.watchdog_timeout:
                if self.streaming:
                    return "stop", f"watchdog: no fresh command for {age * 1000:.0f} ms"
                return None
            # advance by the time really elapsed (a woken step comes early), at most one period
            dt = self.period if self._last_step is None else min(now - self._last_step, self.period)
            self._last_step = now
            return "send", self.interp.step(dt), self._gripper, state

    def _send(self, setpoint: np.ndarray, state: RobotState) -> None:
        c = self.config
        if c.dry_run:
            now = time.monotonic()
            if now - self._dry_run_logged > 1.0:
                log.info("dry run: would send %s %s", c.servo_mode, np.round(setpoint, 4).tolist())
                self._dry_run_logged = now
            self.streaming = True
            return
        if c.servo_mode == "servoL":
            ok = self.robot.servo_l(setpoint, 0.0, 0.0, self.period, c.lookahead_time, c.gain)
        else:
            try:
                q = self._kinematics.ik(setpoint, state.q)
            except ValueError as exc:
                self.checker.counts["rejected"] += 1
                self.checker.last_violation = f"rejected: {exc}"
                return
            ok = self.robot.servo_j(q, 0.0, 0.0, self.period, c.lookahead_time, c.gain)
        if ok:
            self.streaming = True
            self.sent_count += 1

    def _send_gripper(self, gripper: float | None) -> None:
        if gripper is None:
            return
        closed = gripper >= 0.5
        if closed == self._gripper_sent:
            return
        if self.config.dry_run:
            log.info("dry run: would set gripper %s", "closed" if closed else "open")
        elif not self.robot.set_gripper(closed):
            return
        self._gripper_sent = closed

    def _stop_motion(self, reason: str, force: bool = False) -> None:
        with self.lock:
            was_streaming = self.streaming
            self.streaming = False
            self.stop_reason = reason
        if (was_streaming or force) and not self.config.dry_run and self.robot.connected:
            self.robot.servo_stop(self.config.stop_deceleration)
        if was_streaming:
            log.warning("arm stopped: %s", reason)
