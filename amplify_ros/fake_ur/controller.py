"""The fake UR controller's state: a kinematic UR5, robot/safety modes, RTDE registers and the ur-rtde
control script's register handshake.

Kinematics come from ``urdf/ur5.urdf`` through ``amplify_core.ur5`` so the TCP pose the fake reports agrees
with the project's FK exactly. There are no dynamics: joints follow targets kinematically.

Servo semantics (an approximation of UR's servoj, documented in docs/ur5_driver.md): a servo target
(servoJ joints, or servoL pose -> IK seeded at the current joints) is approached each controller tick by a
first-order lag with time constant ``time + lookahead_time / 2`` (seconds); a longer lookahead smooths more,
as on the real arm. Joint speed is capped at the URDF limit (3.15 rad/s). servoStop / speedStop / stopJ /
stopL decelerate the current joint velocity at the given rate until at rest. A protective stop halts the
arm at once (a category-2 stop is not modelled) and stops the control script, as PolyScope does.

Command ids of the ur-rtde control script: moveJ 1, moveL 3, speedJ 9, speedL 10, servoJ 11, speedStop 15,
servoStop 16, servoL 24, stopL 33, stopJ 34, setWatchdog 35, stopScript 255; 0 = no command. The script
writes output_int_register_0 = 1 when ready, 2 when done with a (non real-time) command; the client then
writes command 0 and the script goes back to 1.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable

import numpy as np

from amplify_core.ur5 import UR5Kinematics, default_kinematics

log = logging.getLogger(__name__)

# UR robot modes and safety modes (RTDE robot_mode / safety_mode).
ROBOT_MODE_POWER_OFF, ROBOT_MODE_IDLE, ROBOT_MODE_RUNNING = 3, 5, 7
SAFETY_NORMAL, SAFETY_PROTECTIVE_STOP, SAFETY_ROBOT_EMERGENCY_STOP = 1, 3, 7
RUNTIME_STOPPED, RUNTIME_PLAYING = 1, 2
ROBOT_MODE_NAMES = {-1: "NO_CONTROLLER", 0: "DISCONNECTED", 1: "CONFIRM_SAFETY", 2: "BOOTING", 3: "POWER_OFF",
                    4: "POWER_ON", 5: "IDLE", 6: "BACKDRIVE", 7: "RUNNING"}
SAFETY_MODE_NAMES = {1: "NORMAL", 2: "REDUCED", 3: "PROTECTIVE_STOP", 4: "RECOVERY", 5: "SAFEGUARD_STOP",
                     6: "SYSTEM_EMERGENCY_STOP", 7: "ROBOT_EMERGENCY_STOP", 8: "VIOLATION", 9: "FAULT"}

CMD_NONE, CMD_MOVEJ, CMD_MOVEL, CMD_SPEEDJ, CMD_SPEEDL, CMD_SERVOJ = 0, 1, 3, 9, 10, 11
CMD_SPEED_STOP, CMD_SERVO_STOP, CMD_SERVOL, CMD_STOPL, CMD_STOPJ, CMD_WATCHDOG, CMD_STOP_SCRIPT = \
    15, 16, 24, 33, 34, 35, 255
REALTIME_COMMANDS = {CMD_SERVOJ, CMD_SERVOL, CMD_SPEEDJ, CMD_SPEEDL}
COMMAND_NAMES = {CMD_MOVEJ: "moveJ", CMD_MOVEL: "moveL", CMD_SPEEDJ: "speedJ", CMD_SPEEDL: "speedL",
                 CMD_SERVOJ: "servoJ", CMD_SPEED_STOP: "speedStop", CMD_SERVO_STOP: "servoStop",
                 CMD_SERVOL: "servoL", CMD_STOPL: "stopL", CMD_STOPJ: "stopJ", CMD_WATCHDOG: "setWatchdog",
                 CMD_STOP_SCRIPT: "stopScript"}

SCRIPT_READY, SCRIPT_DONE = 1, 2
MAX_JOINT_SPEED = 3.15  # rad/s, urdf/ur5.urdf
HOME_Q = np.array([0.0, -1.5708, 1.5708, -1.5708, -1.5708, 0.0])  # elbow up, tool pointing down


class FakeURController:
    """Thread-safe state of the fake arm; ``tick(dt)`` advances it, the server feeds it RTDE inputs."""

    def __init__(self, q0=HOME_Q, kinematics: UR5Kinematics | None = None, frequency: float = 125.0):
        self.kin = kinematics or default_kinematics()  # the same URDF chain the driver uses
        self.frequency = frequency
        self.lock = threading.RLock()
        self.q = np.array(q0, dtype=np.float64)
        self.qd = np.zeros(6)
        self.robot_mode = ROBOT_MODE_RUNNING
        self.safety_mode = SAFETY_NORMAL
        self.runtime_state = RUNTIME_STOPPED
        self.inputs: dict[str, object] = {}
        self.out_int = [0] * 48
        self.out_double = [0.0] * 48
        self.digital_out = 0  # actual_digital_output_bits: standard 0-7, configurable 8-15, tool 16-17
        self.started = time.monotonic()
        self._servo_q: np.ndarray | None = None
        self._servo_tau = 0.05
        self._speed_qd: np.ndarray | None = None
        self._move_q: np.ndarray | None = None
        self._move_speed = 1.0
        self._decel: float | None = None
        self._last_cmd = CMD_NONE
        self.counts = {name: 0 for name in COMMAND_NAMES.values()}
        self.counts["script_uploads"] = 0
        self.counts["protective_stops"] = 0
        # (monotonic time, command name, 6 targets) of recent real-time commands, for latency measurements.
        self.servo_log: deque = deque(maxlen=20000)
        # When the last stop command (servoStop, speedStop, stopJ, stopL, stopScript) arrived and when the arm then
        # came to rest (monotonic times, None before the first): tests measure stop times against these.
        self.stop_received: float | None = None
        self.at_rest_since: float | None = None
        self.on_joint_state: list[Callable[[np.ndarray], None]] = []

    # ---- state read by the RTDE server -------------------------------------------------------------
    def snapshot(self) -> dict:
        """Every output variable the fake fills with a real value (others are sent as zeros)."""
        with self.lock:
            pose = self.kin.fk_pose(self.q)
            playing = self.runtime_state == RUNTIME_PLAYING
            powered = self.robot_mode in (4, 5, 6, 7)
            status_bits = (1 if powered else 0) | (2 if playing else 0)
            safety_bits = {SAFETY_NORMAL: 1, SAFETY_PROTECTIVE_STOP: 1 << 2,
                           SAFETY_ROBOT_EMERGENCY_STOP: 1 << 6}.get(self.safety_mode, 0)
            target_q = self._servo_q if self._servo_q is not None else self.q
            values = {
                "timestamp": time.monotonic() - self.started,
                "actual_q": tuple(self.q), "target_q": tuple(target_q), "actual_qd": tuple(self.qd),
                "target_qd": tuple(self.qd), "actual_TCP_pose": tuple(pose),
                "target_TCP_pose": tuple(self.kin.fk_pose(target_q)),
                "robot_mode": self.robot_mode, "safety_mode": self.safety_mode,
                "runtime_state": self.runtime_state, "robot_status_bits": status_bits,
                "safety_status_bits": safety_bits, "speed_scaling": 1.0, "target_speed_fraction": 1.0,
                "actual_digital_output_bits": self.digital_out, "joint_mode": (255,) * 6,
                "actual_main_voltage": 48.0, "actual_robot_voltage": 48.0, "joint_temperatures": (30.0,) * 6,
            }
            for i in range(48):
                values[f"output_int_register_{i}"] = self.out_int[i]
                values[f"output_double_register_{i}"] = self.out_double[i]
            return values

    def robot_pose(self) -> np.ndarray:
        with self.lock:
            return self.kin.fk_pose(self.q)

    # ---- inputs written by clients -----------------------------------------------------------------
    def apply_inputs(self, values: dict, received: float | None = None) -> None:
        """A client's RTDE data package: update registers and IO, then run the control script's step.

        ``received``: its arrival time (time.monotonic clock; the server passes the kernel's receive stamp)."""
        received = time.monotonic() if received is None else received
        with self.lock:
            self.inputs.update(values)
            self._apply_io(values)
            if "input_int_register_0" in values and self.runtime_state == RUNTIME_PLAYING:
                self._script_command(int(values["input_int_register_0"]), received)

    def _apply_io(self, values: dict) -> None:
        for mask_name, value_name, shift in (("standard_digital_output_mask", "standard_digital_output", 0),
                                             ("configurable_digital_output_mask", "configurable_digital_output", 8),
                                             ("tool_digital_output_mask", "tool_digital_output", 16)):
            if mask_name in values and value_name in values:
                mask = int(values[mask_name]) << shift
                self.digital_out = (self.digital_out & ~mask) | ((int(values[value_name]) << shift) & mask)

    def _doubles(self, n: int) -> np.ndarray:
        return np.array([float(self.inputs.get(f"input_double_register_{i}", 0.0)) for i in range(n)])

    def _script_command(self, cmd: int, received: float) -> None:
        if cmd == CMD_NONE:
            self.out_int[0] = SCRIPT_READY
            self._last_cmd = CMD_NONE
            return
        name = COMMAND_NAMES.get(cmd, f"cmd{cmd}")
        if cmd in REALTIME_COMMANDS:
            self.counts[name] += 1
            self._realtime(cmd, received)
            return
        if cmd == self._last_cmd and self.out_int[0] == SCRIPT_DONE:
            return  # the same command package again before the client cleared it
        self._last_cmd = cmd
        self.counts[name] = self.counts.get(name, 0) + 1
        d = self._doubles(11)
        if cmd in (CMD_SERVO_STOP, CMD_SPEED_STOP, CMD_STOPJ, CMD_STOPL):
            self.stop_received = received
            self._stop(decel=d[0] if d[0] > 0 else 10.0)
        elif cmd == CMD_MOVEJ:
            self._start_move(d[:6], speed=d[6])
        elif cmd == CMD_MOVEL:
            self._start_move(self._ik(d[:6]), speed=d[6] * 4.0)
        elif cmd == CMD_STOP_SCRIPT:
            self.stop_received = received
            self._stop(decel=10.0)
            self.runtime_state = RUNTIME_STOPPED
        log.debug("script command %s", name)
        if cmd not in (CMD_MOVEJ, CMD_MOVEL):
            self.out_int[0] = SCRIPT_DONE  # moves signal done when they arrive (tick)

    def _realtime(self, cmd: int, received: float) -> None:
        d = self._doubles(11)
        self._decel = None
        self._move_q = None
        if cmd in (CMD_SERVOJ, CMD_SERVOL):
            target = d[:6] if cmd == CMD_SERVOJ else self._ik(d[:6])
            if target is None:
                return
            self._servo_q = target
            self._servo_tau = max(d[8], 1e-3) + max(d[9], 0.0) / 2.0
            self._speed_qd = None
            self.servo_log.append((received, COMMAND_NAMES[cmd], tuple(d[:6])))
        elif cmd == CMD_SPEEDJ:
            self._speed_qd, self._servo_q = d[:6].copy(), None
        elif cmd == CMD_SPEEDL:
            jac = self.kin.jacobian(self.q)
            self._speed_qd, self._servo_q = np.linalg.lstsq(jac, d[:6], rcond=None)[0], None

    def _ik(self, pose) -> np.ndarray | None:
        try:
            return self.kin.ik(pose, self.q, tol=1e-8)
        except ValueError as exc:  # a real controller raises a protective stop / script error here
            log.warning("fake UR: %s", exc)
            return None

    def _start_move(self, q, speed: float) -> None:
        if q is None:
            self.out_int[0] = SCRIPT_DONE
            return
        self._servo_q = self._speed_qd = self._decel = None
        self._move_q = np.asarray(q, dtype=np.float64)
        self._move_speed = float(np.clip(speed if speed > 0 else 1.0, 0.01, MAX_JOINT_SPEED))

    def _stop(self, decel: float) -> None:
        self._servo_q = self._speed_qd = self._move_q = None
        self._decel = float(decel)

    # ---- operator actions ------------------------------------------------------------------------
    def trigger_protective_stop(self) -> None:
        with self.lock:
            self.safety_mode = SAFETY_PROTECTIVE_STOP
            self._halt()
            self.counts["protective_stops"] += 1
        log.warning("fake UR: protective stop")

    def trigger_emergency_stop(self) -> None:
        with self.lock:
            self.safety_mode = SAFETY_ROBOT_EMERGENCY_STOP
            self.robot_mode = ROBOT_MODE_POWER_OFF
            self._halt()
        log.warning("fake UR: emergency stop")

    def _halt(self) -> None:
        self._servo_q = self._speed_qd = self._move_q = self._decel = None
        self.qd[:] = 0.0
        self.runtime_state = RUNTIME_STOPPED  # PolyScope stops the program on a safety stop
        self.out_int[0] = 0

    def unlock_protective_stop(self) -> bool:
        with self.lock:
            if self.safety_mode != SAFETY_PROTECTIVE_STOP:
                return False
            self.safety_mode = SAFETY_NORMAL
            return True

    def power_on(self) -> None:
        with self.lock:
            if self.safety_mode == SAFETY_ROBOT_EMERGENCY_STOP:
                self.safety_mode = SAFETY_NORMAL
            self.robot_mode = ROBOT_MODE_IDLE

    def brake_release(self) -> None:
        with self.lock:
            if self.robot_mode in (4, 5):
                self.robot_mode = ROBOT_MODE_RUNNING

    def script_uploaded(self) -> None:
        """The control script arrived on port 30003: it starts if the arm may move."""
        with self.lock:
            self.counts["script_uploads"] += 1
            if self.robot_mode == ROBOT_MODE_RUNNING and self.safety_mode == SAFETY_NORMAL:
                self.runtime_state = RUNTIME_PLAYING
                self.out_int[0] = SCRIPT_READY
                self._last_cmd = CMD_NONE
            else:
                log.warning("fake UR: script not started (robot mode %s, safety mode %s)",
                            ROBOT_MODE_NAMES.get(self.robot_mode), SAFETY_MODE_NAMES.get(self.safety_mode))

    # ---- kinematic step --------------------------------------------------------------------------
    def tick(self, dt: float) -> None:
        with self.lock:
            q_prev = self.q.copy()
            if self._servo_q is not None:
                alpha = min(1.0, dt / self._servo_tau)
                step = (self._servo_q - self.q) * alpha
                self.q = self.q + _cap(step, MAX_JOINT_SPEED * dt)
            elif self._speed_qd is not None:
                self.q = self.q + _cap(self._speed_qd * dt, MAX_JOINT_SPEED * dt)
            elif self._move_q is not None:
                err = self._move_q - self.q
                self.q = self.q + _cap(err, self._move_speed * dt)
                if np.max(np.abs(self._move_q - self.q)) < 1e-9:
                    self._move_q = None
                    self.out_int[0] = SCRIPT_DONE
            elif self._decel is not None:
                speed = np.linalg.norm(self.qd)
                new_speed = max(0.0, speed - self._decel * dt)
                if new_speed == 0.0:
                    self._decel = None
                    self.q = q_prev
                    self.at_rest_since = time.monotonic()
                else:
                    self.q = self.q + self.qd * (new_speed / speed) * dt
            self.qd = (self.q - q_prev) / dt
            q = self.q.copy()
        for callback in list(self.on_joint_state):
            callback(q)


def _cap(step: np.ndarray, limit: float) -> np.ndarray:
    """Scale a joint step so no joint moves more than ``limit``."""
    biggest = np.max(np.abs(step))
    return step if biggest <= limit else step * (limit / biggest)
