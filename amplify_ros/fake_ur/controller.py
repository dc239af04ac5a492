"""The fake UR controller's state: a kinematic UR5, robot/safety modes, RTDE registers and the ur-rtde
control script's command handshake, following URScript's semantics for every command it accepts.

Kinematics come from ``urdf/ur5.urdf`` through ``amplify_core.ur5`` (base -> tool0, the flange; the fake's
TCP offset is zero, as a controller's default), so the TCP pose the fake reports agrees with the project's FK
exactly. There are no dynamics: joints follow the commanded motion kinematically.

The control script's protocol (ur-rtde 1.6): the client writes the command id to input_int_register_0 and its
arguments to input_double_register_0.. / input_int_register_1.. in ONE data package; the script answers on
output_int_register_0: 1 = ready, 2 = done with a (non real-time) command; the client then writes command 0 and
the script goes back to 1. Results (FK, IK) come back in output_double_register_0..5, flags (is steady, has an
IK solution, within limits) in output_int_register_1, the asynchronous-move status word in
output_int_register_2 (bit 15 running, bits 16-23 change count, bits 24-30 operation id).

Command semantics (docs/ur5_driver.md, "Fake controller", lists them with their approximations):
- moveJ / moveL (and moveJ_IK, moveL_FK): blend-free trapezoidal profile at the asked speed and acceleration;
  moveJ in joint space (speed/acceleration of the leading joint, all joints arrive together), moveL straight in
  Cartesian space (tool speed in m/s; position interpolated linearly, orientation by slerp; a pure rotation uses
  the speed in rad/s). ``asynchronous``: done at once, the status word says running until the move ends.
- stopL / stopJ (a): an active move decelerates along its path at ``a``; speed and servo motion decelerates
  keeping its direction until the TCP speed (stopL, m/s^2) or the leading joint speed (stopJ, rad/s^2) is zero.
  Synchronous stops answer done when the arm is at rest. servoStop / speedStop do the same (speedStop linear
  after speedL, joint otherwise).
- speedJ / speedL (a): the joint / tool velocity ramps to the target at ``a``; speedL re-solves the Jacobian
  every tick so the tool velocity is held. ``time`` is accepted and ignored (the script repeats the command).
- servoJ / servoL: an approximation of UR's servoj: a first-order lag toward the target (servoL: the IK of the
  pose seeded at the current joints) with time constant ``time + lookahead_time / 2``; joint speed capped at the
  URDF limit (3.15 rad/s).
- FK / IK: the project's UR5 chain (FK with a TCP offset composes it after tool0); IK seeded at ``qnear`` or
  the current joints, solved to a residual of 1e-10. An IK without a solution is a script error, as on a real
  controller: the program stops and the client's call fails.
- setWatchdog(f): from then on every package writing input_int_register_0 (any command, kickWatchdog)
  feeds the watchdog; a gap longer than 1/f stops the program (action "stop"), the arm decelerating to rest.
- A joint commanded or driven beyond its URDF limit raises a protective stop: the arm halts at once (a
  category-2 stop is not modelled) and the program stops, as PolyScope does.
- Every other command id is REFUSED: it is logged as not implemented by the fake and stops the control script
  (what a script error does on a real controller), so the client's call returns failure instead of a fake
  success. ``reuploadScript()`` starts it again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from enum import IntEnum
from typing import Callable

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from amplify_core.ur5 import UR5Kinematics, default_kinematics, matrix_to_pose, pose_to_matrix

log = logging.getLogger(__name__)

# UR robot modes and safety modes (RTDE robot_mode / safety_mode).
ROBOT_MODE_POWER_OFF, ROBOT_MODE_IDLE, ROBOT_MODE_RUNNING = 3, 5, 7
SAFETY_NORMAL, SAFETY_PROTECTIVE_STOP, SAFETY_ROBOT_EMERGENCY_STOP = 1, 3, 7
RUNTIME_STOPPED, RUNTIME_PLAYING = 1, 2
ROBOT_MODE_NAMES = {-1: "NO_CONTROLLER", 0: "DISCONNECTED", 1: "CONFIRM_SAFETY", 2: "BOOTING", 3: "POWER_OFF",
                    4: "POWER_ON", 5: "IDLE", 6: "BACKDRIVE", 7: "RUNNING"}
SAFETY_MODE_NAMES = {1: "NORMAL", 2: "REDUCED", 3: "PROTECTIVE_STOP", 4: "RECOVERY", 5: "SAFEGUARD_STOP",
                     6: "SYSTEM_EMERGENCY_STOP", 7: "ROBOT_EMERGENCY_STOP", 8: "VIOLATION", 9: "FAULT"}


class Cmd(IntEnum):
    """Command ids of the ur-rtde 1.6 control script that the fake implements (the names are the client's)."""
    NONE = 0
    MOVEJ = 1
    MOVEJ_IK = 2
    MOVEL = 3
    MOVEL_FK = 4
    SPEEDJ = 9
    SPEEDL = 10
    SERVOJ = 11
    SPEED_STOP = 15
    SERVO_STOP = 16
    SERVOL = 24
    GET_INVERSE_KINEMATICS_ARGS = 30
    PROTECTIVE_STOP = 31
    STOPL = 33
    STOPJ = 34
    SET_WATCHDOG = 35
    IS_POSE_WITHIN_SAFETY_LIMITS = 36
    IS_JOINTS_WITHIN_SAFETY_LIMITS = 37
    GET_FORWARD_KINEMATICS_DEFAULT = 43
    GET_FORWARD_KINEMATICS_ARGS = 44
    GET_INVERSE_KINEMATICS_DEFAULT = 46
    IS_STEADY = 47
    GET_INVERSE_KINEMATICS_HAS_SOLUTION_DEFAULT = 60
    GET_INVERSE_KINEMATICS_HAS_SOLUTION_ARGS = 61
    WATCHDOG = 99  # kickWatchdog
    STOP_SCRIPT = 255


# Names in the fake's counters ("fake stats"): the ur-rtde method that sends each command.
COMMAND_NAMES = {
    Cmd.MOVEJ: "moveJ", Cmd.MOVEJ_IK: "moveJ_IK", Cmd.MOVEL: "moveL", Cmd.MOVEL_FK: "moveL_FK",
    Cmd.SPEEDJ: "speedJ", Cmd.SPEEDL: "speedL", Cmd.SERVOJ: "servoJ", Cmd.SPEED_STOP: "speedStop",
    Cmd.SERVO_STOP: "servoStop", Cmd.SERVOL: "servoL", Cmd.GET_INVERSE_KINEMATICS_ARGS: "getInverseKinematics",
    Cmd.PROTECTIVE_STOP: "triggerProtectiveStop", Cmd.STOPL: "stopL", Cmd.STOPJ: "stopJ",
    Cmd.SET_WATCHDOG: "setWatchdog", Cmd.IS_POSE_WITHIN_SAFETY_LIMITS: "isPoseWithinSafetyLimits",
    Cmd.IS_JOINTS_WITHIN_SAFETY_LIMITS: "isJointsWithinSafetyLimits",
    Cmd.GET_FORWARD_KINEMATICS_DEFAULT: "getForwardKinematics", Cmd.GET_FORWARD_KINEMATICS_ARGS: "getForwardKinematics",
    Cmd.GET_INVERSE_KINEMATICS_DEFAULT: "getInverseKinematics", Cmd.IS_STEADY: "isSteady",
    Cmd.GET_INVERSE_KINEMATICS_HAS_SOLUTION_DEFAULT: "getInverseKinematicsHasSolution",
    Cmd.GET_INVERSE_KINEMATICS_HAS_SOLUTION_ARGS: "getInverseKinematicsHasSolution",
    Cmd.WATCHDOG: "kickWatchdog", Cmd.STOP_SCRIPT: "stopScript",
}
# ur-rtde's names of the commands the fake refuses, so the log says what was asked for.
REFUSED_NAMES = {5: "MOVEC", 6: "FORCE_MODE", 7: "FORCE_MODE_STOP", 8: "ZERO_FT_SENSOR", 12: "SERVOC",
                 17: "SET_PAYLOAD", 18: "TEACH_MODE", 19: "END_TEACH_MODE", 20: "FORCE_MODE_SET_DAMPING",
                 21: "FORCE_MODE_SET_GAIN_SCALING", 25: "TOOL_CONTACT", 26: "GET_STEPTIME",
                 27: "GET_ACTUAL_JOINT_POSITIONS_HISTORY", 28: "GET_TARGET_WAYPOINT", 29: "SET_TCP",
                 38: "GET_JOINT_TORQUES", 39: "POSE_TRANS", 40: "GET_TCP_OFFSET", 41: "JOG_START", 42: "JOG_STOP",
                 45: "MOVE_PATH", 51: "MOVE_UNTIL_CONTACT", 52: "FREEDRIVE_MODE", 53: "END_FREEDRIVE_MODE",
                 54: "GET_FREEDRIVE_STATUS", 56: "FT_RTDE_INPUT_ENABLE", 57: "ENABLE_EXTERNAL_FT_SENSOR",
                 58: "GET_ACTUAL_TOOL_FLANGE_POSE", 59: "SET_GRAVITY", 62: "START_CONTACT_DETECTION",
                 63: "STOP_CONTACT_DETECTION", 64: "READ_CONTACT_DETECTION"}
# Real-time commands: no done handshake (the client does not wait for one).
REALTIME_COMMANDS = {Cmd.SERVOJ, Cmd.SERVOL, Cmd.SPEEDJ, Cmd.SPEEDL, Cmd.WATCHDOG}
# Register writes through the control interface (setInputIntRegister / setInputDoubleRegister): no script action.
REGISTER_WRITES = {49, 50}

SCRIPT_READY, SCRIPT_DONE = 1, 2
MAX_JOINT_SPEED = 3.15  # rad/s, urdf/ur5.urdf
PROGRAM_STOP_DECELERATION = 10.0  # rad/s^2 when the program stops (stopScript, watchdog, script error)
IK_TOLERANCE = 1e-10
ASYNC_RUNNING_BIT = 0x8000
HOME_Q = np.array([0.0, -1.5708, 1.5708, -1.5708, -1.5708, 0.0])  # elbow up, tool pointing down


_KNOWN_COMMANDS = {c.value for c in Cmd}


class ScriptError(Exception):
    """What stops the control script on a real controller (an IK without solution, a bad argument)."""


class PathMove:
    """A blend-free move along a path parameter s in [0, length] with a trapezoidal speed profile.

    ``point(s)`` gives the joint target (moveJ) or the 4x4 tool pose (moveL). ``stop(decel)`` makes it
    decelerate along the same path until at rest."""

    def __init__(self, length: float, speed: float, accel: float, point: Callable[[float], np.ndarray],
                 linear: bool, asynchronous: bool):
        self.length, self.speed, self.accel = float(length), float(speed), float(accel)
        self.point, self.linear, self.asynchronous = point, linear, asynchronous
        self.s = self.sdot = 0.0
        self.decel: float | None = None

    def advance(self, dt: float) -> bool:
        """One tick; False when the move has ended (target reached, or brought to rest by a stop)."""
        if self.decel is not None:
            self.sdot = max(0.0, self.sdot - self.decel * dt)
        else:
            remaining = max(0.0, self.length - self.s)
            # accelerate, cruise, and brake so that the speed reaches zero exactly at the end
            self.sdot = min(self.speed, self.sdot + self.accel * dt, math.sqrt(2.0 * self.accel * remaining))
        self.s = min(self.length, self.s + self.sdot * dt)
        if self.decel is not None:
            return self.sdot > 0.0 and not self.reached
        return self.length - self.s > 1e-12 and self.sdot > 0.0

    @property
    def reached(self) -> bool:
        return self.length - self.s <= 1e-12


def joint_path(q0: np.ndarray, q1: np.ndarray, speed: float, accel: float, asynchronous: bool) -> PathMove:
    delta = q1 - q0
    length = float(np.max(np.abs(delta)))
    return PathMove(length, speed, accel, lambda s: q0 + delta * (s / length if length > 0 else 1.0),
                    linear=False, asynchronous=asynchronous)


def linear_path(t0: np.ndarray, t1: np.ndarray, speed: float, accel: float, asynchronous: bool) -> PathMove:
    """Straight line from tool pose t0 to t1 (4x4): linear in position, slerp in orientation."""
    p0, p1 = t0[:3, 3], t1[:3, 3]
    rotations = Rotation.from_matrix(np.stack([t0[:3, :3], t1[:3, :3]]))
    slerp = Slerp([0.0, 1.0], rotations)
    distance = float(np.linalg.norm(p1 - p0))
    angle = float((rotations[1] * rotations[0].inv()).magnitude())
    length = distance if distance > 1e-9 else angle  # a pure rotation: speed in rad/s

    def point(s: float) -> np.ndarray:
        f = s / length if length > 0 else 1.0
        t = np.eye(4)
        t[:3, :3] = slerp([f]).as_matrix()[0]
        t[:3, 3] = p0 + (p1 - p0) * f
        return t

    return PathMove(length, speed, accel, point, linear=True, asynchronous=asynchronous)


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
        # the one motion in progress: "servo", "speedj", "speedl", "move", "brake" or None (at rest)
        self._mode: str | None = None
        self._servo_q: np.ndarray | None = None
        self._servo_tau = 0.05
        self._speed_target = np.zeros(6)
        self._speed_accel = 1.0
        self._speed_v = np.zeros(6)  # current joint velocity (speedJ) or tool twist (speedL)
        self._move: PathMove | None = None
        self._brake: tuple[float, bool] | None = None  # (deceleration, linear?)
        self._done_at_rest = False  # a synchronous stop answers done when the arm is at rest
        self._last_cmd = Cmd.NONE
        self._async_op = 0
        self._async_writes = 0
        self._watchdog_period: float | None = None
        self._last_int0 = time.monotonic()
        self.counts = {name: 0 for name in COMMAND_NAMES.values()}
        self.counts.update(script_uploads=0, protective_stops=0, refused=0, watchdog_stops=0, script_errors=0)
        self.last_error = ""  # why the program last stopped on its own (refused command, script error, watchdog)
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
            target_q = self._servo_q if self._mode == "servo" else self.q
            tcp_speed = tuple(self.kin.jacobian(self.q) @ self.qd)
            values = {
                "timestamp": time.monotonic() - self.started,
                "actual_q": tuple(self.q), "target_q": tuple(target_q), "actual_qd": tuple(self.qd),
                "target_qd": tuple(self.qd), "actual_TCP_pose": tuple(pose),
                "target_TCP_pose": tuple(self.kin.fk_pose(target_q)),
                "actual_TCP_speed": tcp_speed, "target_TCP_speed": tcp_speed,
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
            if "input_int_register_0" in values:
                self._last_int0 = received
                if self.runtime_state == RUNTIME_PLAYING:
                    self._script_command(int(values["input_int_register_0"]), values, received)

    def _apply_io(self, values: dict) -> None:
        for mask_name, value_name, shift in (("standard_digital_output_mask", "standard_digital_output", 0),
                                             ("configurable_digital_output_mask", "configurable_digital_output", 8),
                                             ("tool_digital_output_mask", "tool_digital_output", 16)):
            if mask_name in values and value_name in values:
                mask = int(values[mask_name]) << shift
                self.digital_out = (self.digital_out & ~mask) | ((int(values[value_name]) << shift) & mask)

    @staticmethod
    def _doubles(values: dict, first: int, n: int, default: float = 0.0) -> np.ndarray:
        """Arguments of THIS package (stale registers from earlier commands are never read)."""
        return np.array([float(values.get(f"input_double_register_{i}", default)) for i in range(first, first + n)])

    @staticmethod
    def _has_doubles(values: dict, first: int, n: int) -> bool:
        return all(f"input_double_register_{i}" in values for i in range(first, first + n))

    def _script_command(self, cmd: int, values: dict, received: float) -> None:
        if cmd == Cmd.NONE:
            self.out_int[0] = SCRIPT_READY
            self._last_cmd = Cmd.NONE
            self._done_at_rest = False
            return
        if cmd in REGISTER_WRITES:
            return
        if cmd in REALTIME_COMMANDS:
            self.counts[COMMAND_NAMES[Cmd(cmd)]] += 1
            self._realtime(Cmd(cmd), values, received)
            return
        if cmd == self._last_cmd and self.out_int[0] == SCRIPT_DONE:
            return  # the same command package again before the client cleared it
        self._last_cmd = cmd
        if cmd not in _KNOWN_COMMANDS:
            self._refuse(cmd)
            return
        cmd = Cmd(cmd)
        self.counts[COMMAND_NAMES[cmd]] += 1
        log.debug("script command %s", cmd.name)
        try:
            done = self._command(cmd, values, received)
        except ScriptError as exc:
            self.counts["script_errors"] += 1
            self._stop_program(f"script error in {COMMAND_NAMES[cmd]}: {exc}")
            return
        if done:
            self._signal_done()

    def _refuse(self, cmd: int) -> None:
        self.counts["refused"] += 1
        name = REFUSED_NAMES.get(cmd, "unknown")
        self._stop_program(f"command {cmd} ({name}) is not implemented by the fake controller; control script "
                           "stopped, as a script error stops it on a real controller")

    def _command(self, cmd: Cmd, values: dict, received: float) -> bool:
        """Run one non real-time command; True when it is done now (moves and synchronous stops end later)."""
        d = lambda first, n: self._doubles(values, first, n)  # noqa: E731
        asynchronous = int(values.get("input_int_register_1", 0)) == 1
        if cmd in (Cmd.MOVEJ, Cmd.MOVEJ_IK):
            q1 = d(0, 6) if cmd == Cmd.MOVEJ else self._solve_ik(d(0, 6), self.q)
            move = joint_path(self.q.copy(), q1, *self._speed_accel_args(d(6, 2)), asynchronous)
            return self._start_move(move, q1)
        if cmd in (Cmd.MOVEL, Cmd.MOVEL_FK):
            t1 = pose_to_matrix(d(0, 6)) if cmd == Cmd.MOVEL else self.kin.fk(d(0, 6))
            q1 = self._solve_ik(matrix_to_pose(t1), self.q)  # a target without IK is an error before moving
            move = linear_path(self.kin.fk(self.q), t1, *self._speed_accel_args(d(6, 2)), asynchronous)
            return self._start_move(move, q1)
        if cmd in (Cmd.STOPL, Cmd.STOPJ, Cmd.SERVO_STOP, Cmd.SPEED_STOP):
            self.stop_received = received
            decel = float(values.get("input_double_register_0", 0.0))
            linear = cmd == Cmd.STOPL or (cmd == Cmd.SPEED_STOP and self._mode == "speedl")
            self._begin_stop(decel if decel > 0 else 10.0, linear)
            if self._mode is None:
                self.at_rest_since = time.monotonic()
            if asynchronous or self._mode is None:
                return True
            self._done_at_rest = True
            return False
        if cmd == Cmd.GET_FORWARD_KINEMATICS_DEFAULT:
            self._write_doubles(self.kin.fk_pose(self.q))
        elif cmd == Cmd.GET_FORWARD_KINEMATICS_ARGS:
            t = self.kin.fk(d(0, 6))
            if self._has_doubles(values, 6, 6):  # with a TCP offset: tool0 -> TCP
                t = t @ pose_to_matrix(d(6, 6))
            self._write_doubles(matrix_to_pose(t))
        elif cmd in (Cmd.GET_INVERSE_KINEMATICS_DEFAULT, Cmd.GET_INVERSE_KINEMATICS_ARGS):
            seed = d(6, 6) if cmd == Cmd.GET_INVERSE_KINEMATICS_ARGS else self.q
            self._write_doubles(self._solve_ik(d(0, 6), seed))
        elif cmd in (Cmd.GET_INVERSE_KINEMATICS_HAS_SOLUTION_DEFAULT, Cmd.GET_INVERSE_KINEMATICS_HAS_SOLUTION_ARGS,
                     Cmd.IS_POSE_WITHIN_SAFETY_LIMITS):
            seed = d(6, 6) if cmd == Cmd.GET_INVERSE_KINEMATICS_HAS_SOLUTION_ARGS else self.q
            try:
                self._solve_ik(d(0, 6), seed)
                self.out_int[1] = 1
            except ScriptError:
                self.out_int[1] = 0
        elif cmd == Cmd.IS_JOINTS_WITHIN_SAFETY_LIMITS:
            self.out_int[1] = int(self._within_limits(d(0, 6)))
        elif cmd == Cmd.IS_STEADY:
            self.out_int[1] = int(self._mode is None)
        elif cmd == Cmd.SET_WATCHDOG:
            frequency = float(values.get("input_double_register_0", 0.0))
            self._watchdog_period = 1.0 / frequency if frequency > 0 else None
            self._last_int0 = received
            log.info("RTDE watchdog on input_int_register_0: minimum %.1f Hz", frequency)
        elif cmd == Cmd.PROTECTIVE_STOP:
            self.trigger_protective_stop()
            return False
        elif cmd == Cmd.STOP_SCRIPT:
            self.stop_received = received
            self._stop_program("")
            return False
        return True

    @staticmethod
    def _speed_accel_args(args: np.ndarray) -> tuple[float, float]:
        speed, accel = (float(v) for v in args)
        if not (speed > 0 and accel > 0 and math.isfinite(speed) and math.isfinite(accel)):
            raise ScriptError(f"speed {speed} and acceleration {accel} must be positive")
        return speed, accel

    def _solve_ik(self, pose: np.ndarray, seed) -> np.ndarray:
        try:
            q = self.kin.ik(pose, np.asarray(seed, dtype=np.float64), tol=IK_TOLERANCE)
        except ValueError as exc:
            raise ScriptError(f"get_inverse_kin: {exc}") from exc
        if not self._within_limits(q):
            raise ScriptError(f"get_inverse_kin: the solution {np.round(q, 4).tolist()} is beyond the joint limits")
        return q

    def _within_limits(self, q) -> bool:
        q = np.asarray(q)
        return bool(np.all(q >= self.kin.lower) and np.all(q <= self.kin.upper))

    def _write_doubles(self, v) -> None:
        for i, x in enumerate(v):
            self.out_double[i] = float(x)

    def _start_move(self, move: PathMove, q_target: np.ndarray) -> bool:
        if not self._within_limits(q_target):
            self.trigger_protective_stop(f"joint target {np.round(q_target, 4).tolist()} beyond the joint limits")
            return False
        self._clear_motion()  # a new move replaces the one in progress
        self._mode, self._move = "move", move
        if move.asynchronous:
            self._async_op = (self._async_op + 1) & 0x7F
            self._async_status(running=True)
        return move.asynchronous  # an asynchronous move is done at once; a synchronous one when it ends

    def _async_status(self, running: bool, progress: int = 0) -> None:
        self._async_writes = (self._async_writes + 1) & 0xFF
        self.out_int[2] = (self._async_op << 24) | (self._async_writes << 16) | \
            (ASYNC_RUNNING_BIT if running else 0) | (progress & 0x7FFF)

    def _begin_stop(self, decel: float, linear: bool) -> None:
        if self._mode == "move" and self._move is not None:
            self._move.decel = decel
        elif self._mode is not None:
            self._clear_motion()
            self._mode, self._brake = "brake", (decel, linear)

    def _clear_motion(self) -> None:
        if self._move is not None and self._move.asynchronous and self.out_int[2] & ASYNC_RUNNING_BIT:
            self._async_status(running=False)
        self._mode = None
        self._servo_q = self._move = self._brake = None
        self._done_at_rest = False

    def _realtime(self, cmd: Cmd, values: dict, received: float) -> None:
        if cmd == Cmd.WATCHDOG:
            return  # the kick itself (the package's arrival) is all it does
        d = self._doubles(values, 0, 11)
        if cmd in (Cmd.SERVOJ, Cmd.SERVOL):
            try:
                target = d[:6] if cmd == Cmd.SERVOJ else self._solve_ik(d[:6], self.q)
            except ScriptError as exc:
                log.warning("fake UR: servoL: %s", exc)
                return
            if not self._within_limits(target):
                self.trigger_protective_stop(f"servoJ target {np.round(target, 4).tolist()} beyond the joint limits")
                return
            if self._mode != "servo":
                self._clear_motion()
                self._mode = "servo"
            self._servo_q = target
            self._servo_tau = max(d[8], 1e-3) + max(d[9], 0.0) / 2.0
            self.servo_log.append((received, COMMAND_NAMES[cmd], tuple(d[:6])))
            return
        mode = "speedj" if cmd == Cmd.SPEEDJ else "speedl"
        if self._mode != mode:
            current = self.qd.copy() if mode == "speedj" else self.kin.jacobian(self.q) @ self.qd
            self._clear_motion()
            self._mode, self._speed_v = mode, current
        self._speed_target = d[:6].copy()
        self._speed_accel = d[6] if d[6] > 0 else 1.0

    # ---- program and safety stops ------------------------------------------------------------------
    def _stop_program(self, reason: str) -> None:
        """The control script ends (stopScript, watchdog, script error, refused command); the arm brakes."""
        if reason:
            self.last_error = reason
            log.error("fake UR: %s", reason)
        self._begin_stop(PROGRAM_STOP_DECELERATION, linear=False)
        self._done_at_rest = False
        self.runtime_state = RUNTIME_STOPPED
        self.out_int[0] = 0
        self._watchdog_period = None

    def trigger_protective_stop(self, reason: str = "triggered") -> None:
        with self.lock:
            self.safety_mode = SAFETY_PROTECTIVE_STOP
            self._halt()
            self.counts["protective_stops"] += 1
            self.last_error = f"protective stop: {reason}"
        log.warning("fake UR: protective stop: %s", reason)

    def trigger_emergency_stop(self) -> None:
        with self.lock:
            self.safety_mode = SAFETY_ROBOT_EMERGENCY_STOP
            self.robot_mode = ROBOT_MODE_POWER_OFF
            self._halt()
        log.warning("fake UR: emergency stop")

    def _halt(self) -> None:
        self._clear_motion()
        self.qd[:] = 0.0
        self.runtime_state = RUNTIME_STOPPED  # PolyScope stops the program on a safety stop
        self.out_int[0] = 0
        self._watchdog_period = None

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
                self._last_cmd = Cmd.NONE
                self._watchdog_period = None
            else:
                log.warning("fake UR: script not started (robot mode %s, safety mode %s)",
                            ROBOT_MODE_NAMES.get(self.robot_mode), SAFETY_MODE_NAMES.get(self.safety_mode))

    # ---- kinematic step --------------------------------------------------------------------------
    def tick(self, dt: float) -> None:
        with self.lock:
            q_prev = self.q.copy()
            if (self.runtime_state == RUNTIME_PLAYING and self._watchdog_period is not None
                    and time.monotonic() - self._last_int0 > self._watchdog_period):
                self.counts["watchdog_stops"] += 1
                self._stop_program(f"RTDE watchdog: input_int_register_0 not updated for "
                                   f"{time.monotonic() - self._last_int0:.3f} s (minimum frequency "
                                   f"{1.0 / self._watchdog_period:.1f} Hz): program stopped")
            q_new = self._step(dt)
            if q_new is not None and not self._within_limits(q_new):
                self.trigger_protective_stop(f"joint position limit reached at {np.round(q_new, 4).tolist()}")
                q_new = None
            if q_new is not None:
                self.q = q_new
            self.qd = (self.q - q_prev) / dt
            if self._mode is None and self._done_at_rest:
                self._done_at_rest = False
                self._signal_done()
            q = self.q.copy()
        for callback in list(self.on_joint_state):
            callback(q)

    def _step(self, dt: float) -> np.ndarray | None:
        """The joints after one tick of the current motion (None: they stay)."""
        if self._mode == "servo":
            alpha = min(1.0, dt / self._servo_tau)
            return self.q + _cap((self._servo_q - self.q) * alpha, MAX_JOINT_SPEED * dt)
        if self._mode == "speedj":
            self._speed_v = self._speed_v + _cap(self._speed_target - self._speed_v, self._speed_accel * dt)
            self._speed_v = _cap(self._speed_v, MAX_JOINT_SPEED)
            return self.q + self._speed_v * dt
        if self._mode == "speedl":
            diff = self._speed_target - self._speed_v
            size = np.linalg.norm(diff[:3]) or np.linalg.norm(diff[3:])
            step = self._speed_accel * dt
            self._speed_v = self._speed_v + (diff if size <= step else diff * (step / size))
            qd = _cap(np.linalg.lstsq(self.kin.jacobian(self.q), self._speed_v, rcond=None)[0], MAX_JOINT_SPEED)
            return self.q + qd * dt
        if self._mode == "move":
            return self._step_move(dt)
        if self._mode == "brake":
            decel, linear = self._brake
            measure = np.linalg.norm((self.kin.jacobian(self.q) @ self.qd)[:3]) if linear \
                else np.max(np.abs(self.qd))
            if measure <= decel * dt:
                self._at_rest()
                return None
            return self.q + self.qd * ((measure - decel * dt) / measure) * dt
        return None

    def _step_move(self, dt: float) -> np.ndarray | None:
        move = self._move
        moving = move.advance(dt)
        target = move.point(move.s)
        if move.linear:
            try:
                q = self.kin.ik(matrix_to_pose(target), self.q, tol=IK_TOLERANCE)
            except ValueError as exc:
                self.trigger_protective_stop(f"moveL path: {exc}")
                return None
        else:
            q = target
        if not moving:
            if not move.asynchronous:  # a synchronous move is done when it ends (reached, or stopped)
                self._signal_done()
            self._at_rest()  # an asynchronous one's status word stops saying "running"
        return q

    def _at_rest(self) -> None:
        pending = self._done_at_rest  # a synchronous stop waiting for this moment
        self._clear_motion()
        self._done_at_rest = pending
        self.at_rest_since = time.monotonic()

    def _signal_done(self) -> None:
        """Done with the command in progress; if the client already cleared it (cmd 0), ready instead."""
        if self.runtime_state == RUNTIME_PLAYING:
            self.out_int[0] = SCRIPT_DONE if self._last_cmd != Cmd.NONE else SCRIPT_READY


def _cap(step: np.ndarray, limit: float) -> np.ndarray:
    """Scale a joint step so no joint moves more than ``limit``."""
    biggest = np.max(np.abs(step))
    return step if biggest <= limit else step * (limit / biggest)
