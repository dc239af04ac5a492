"""The robot process: owns the ur-rtde clients and the paced servo loop; talks to the ROS node through a pipe.

Why a separate process (as Diffusion Policy's RTDE controller): ur-rtde 1.6.5 holds Python's GIL while its
constructors block and while a call waits for a controller that died (its internal reconnect). In the node's
process that froze every ROS callback. Here it can only freeze this process; the node notices that the
heartbeat samples stopped, kills this process and reports the robot disconnected.

One robot process = one connection: it never reconnects by itself. When the connection is lost it reports
why and exits; ``/ur5/reconnect`` starts a fresh process (which uploads the control script again).

Started by ``RobotProcess`` as ``python -m amplify_ros.robot.robot_worker <fd>``, ``fd`` being its end of a
socket pair wrapped in a ``multiprocessing.connection.Connection`` (pickled tuples). Protocol:

  node -> robot process   ("config", dict)            first message: connection, servo, limits, interp, sample_period
                          ("command", pose6, gripper)  a new absolute TCP target (checked here, see ServoLoop.submit)
                          ("enable", bool, reason)     enable motion / stop and disable
                          ("reject", reason)           a message the node could not parse (counted here)
                          ("shutdown", reason)         servoStop + stopScript + disconnect, then exit
  robot process -> node   ("connected", sample) | ("error", message)   once, after the connection attempt
                          ("sample", sample)           every ``sample_period``: state + loop status = heartbeat
                          ("lost", message)            the connection died; the process exits next
                          ("stopped", message)         after a shutdown, just before exiting

If the node goes away (pipe closed) the arm is stopped exactly as on a shutdown request. SIGINT is ignored
here: a Ctrl-C in a terminal reaches the whole process group, and the stop must be ordered by the node.
SIGTERM is also handled like a shutdown request: a service manager (systemd's default KillMode, a container
runtime) may send it to every process of the group at once, and its default action would end this process
before the arm is stopped.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from multiprocessing.connection import Connection

import numpy as np

from amplify_ros.robot.interpolation import PoseInterpolator
from amplify_ros.robot.rtde_connection import ConnectionFailed, RobotConnection
from amplify_ros.robot.safety import CommandChecker, SafetyLimits
from amplify_ros.robot.servo_loop import ServoConfig, ServoLoop

log = logging.getLogger("amplify_ros.robot_process")

COMMAND_POLL = 0.1  # s; how often the main loop looks at the connection state when no command arrives
_terminated = threading.Event()  # set by SIGTERM; the command loop then stops the arm and ends the process


class _Link:
    """The pipe end, with a lock: the sample thread and the main thread both send."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self._lock = threading.Lock()

    def send(self, *message) -> bool:
        try:
            with self._lock:
                self.conn.send(message)
            return True
        except (OSError, ValueError):  # node gone: the main loop sees EOF and stops the arm
            return False


def build_loop(config: dict) -> tuple[RobotConnection, ServoLoop]:
    robot = RobotConnection(**config["connection"])
    interp = config["interp"]
    loop = ServoLoop(robot, ServoConfig(**config["servo"]), CommandChecker(SafetyLimits(**config["limits"])),
                     PoseInterpolator(interp["max_linear_speed"], interp["max_angular_speed"],
                                      min_period=interp["min_period"]))
    return robot, loop


def serve(conn: Connection) -> int:
    link = _Link(conn)
    kind, config = conn.recv()
    if kind != "config":
        raise ValueError(f"first message must be ('config', dict), got {kind!r}")
    robot, loop = build_loop(config)
    try:
        robot.connect()
    except ConnectionFailed as exc:
        link.send("error", str(exc))
        return 1
    loop.state = robot.state()
    loop.start()
    link.send("connected", loop.snapshot())
    done = threading.Event()
    sampler = threading.Thread(target=_send_samples, args=(link, loop, config["sample_period"], done),
                               name="robot_samples", daemon=True)
    sampler.start()
    reason = _handle_commands(conn, loop)
    done.set()
    if reason.startswith("connection lost"):
        link.send("lost", reason)
        return 1
    loop.shutdown(reason)  # servoStop (forced), stopScript, disconnect
    link.send("stopped", f"arm stopped and disconnected: {reason}")
    return 0


def _handle_commands(conn: Connection, loop: ServoLoop) -> str:
    """Apply the node's messages until a shutdown, the node's disappearance or the connection's loss."""
    while True:
        if conn.poll(COMMAND_POLL):  # blocks without the GIL, so the servo thread keeps its pace
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return "ROS node gone (pipe closed)"
            kind = message[0]
            if kind == "command":
                loop.submit(np.asarray(message[1], dtype=np.float64), float(message[2]))
            elif kind == "enable":
                loop.set_enabled(bool(message[1]), message[2])
            elif kind == "reject":
                loop.reject(message[1])
            elif kind == "shutdown":
                return message[1]
            else:
                log.error("unknown message %r from the node ignored", kind)
        if _terminated.is_set():
            return "robot process got SIGTERM"
        if not loop.state.connected:
            return "connection lost: " + (loop.robot.last_error or "no robot data")


def _send_samples(link: _Link, loop: ServoLoop, period: float, done: threading.Event) -> None:
    while not done.wait(period):
        if not link.send("sample", loop.snapshot()):
            return


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not argv[0].isdigit():
        raise SystemExit("usage: python -m amplify_ros.robot.robot_worker <fd of the node's socket pair>")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # only a flag: the command loop then stops the arm in order, wherever the main thread was interrupted
    signal.signal(signal.SIGTERM, lambda *_: _terminated.set())
    # The pipe thread, the servo thread and the sample thread share one GIL; the default 5 ms switch interval
    # would let a waiting thread sit for up to 5 ms after its data arrived (most of a 125 Hz period).
    sys.setswitchinterval(0.001)
    logging.basicConfig(level=logging.INFO, format="[robot process] %(levelname)s %(name)s: %(message)s")
    conn = Connection(int(argv[0]))
    try:
        return serve(conn)
    finally:
        conn.close()


if __name__ == "__main__":
    raise SystemExit(main())
