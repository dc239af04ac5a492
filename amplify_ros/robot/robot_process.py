"""The node's handle on the robot process (``robot_worker``): start it, send it commands, watch its heartbeat.

The node never calls ur-rtde itself (ur-rtde can hold the GIL for as long as a dead controller keeps it
waiting). It talks to a child process over a socket pair and keeps the latest state sample it received.
A reader thread per child process waits on the pipe without the GIL and decides liveness:

* no sample for ``heartbeat_timeout`` s -> the child is hung (typically inside ur-rtde): it is killed
  (SIGKILL: a process stuck in C code while holding the GIL runs no Python handler) and reported;
* the pipe closes (the child exited or crashed) -> reported with the child's last message;
* nothing restarts by itself: ``start()`` is called again only on an explicit reconnect, so a controller that
  keeps failing can never cause a crash loop.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection

from amplify_ros.robot.rtde_connection import construction_hard_limit

log = logging.getLogger(__name__)

WORKER_MODULE = "amplify_ros.robot.robot_worker"
READ_POLL = 0.05  # s; how often a silent pipe is checked against the heartbeat timeout


class _Child:
    """One robot process and its pipe; a fresh one per connection attempt."""

    def __init__(self, proc: subprocess.Popen, conn: Connection):
        self.proc, self.conn = proc, conn
        self.send_lock = threading.Lock()
        self.started = self.last_sample_time = time.monotonic()
        self.alive = True
        self.shutting_down = False


class RobotProcess:
    def __init__(self, config: dict, heartbeat_timeout: float = 0.5, start_timeout: float = 30.0,
                 stop_timeout: float = 3.0):
        if not 0.05 <= heartbeat_timeout <= 10.0:
            raise ValueError(f"heartbeat_timeout must be in [0.05, 10] s, got {heartbeat_timeout}")
        if not start_timeout > 0:
            raise ValueError(f"start_timeout must be > 0 s, got {start_timeout}")
        if not stop_timeout > 0:
            raise ValueError(f"stop_timeout must be > 0 s, got {stop_timeout}")
        self.config = config
        self.heartbeat_timeout, self.start_timeout, self.stop_timeout = heartbeat_timeout, start_timeout, stop_timeout
        self.lock = threading.Lock()
        self.sample: dict | None = None  # latest state sample of the current (or last) robot process
        self.disconnect_reason = "not connected yet"
        self._child: _Child | None = None
        self._start_lock = threading.Lock()  # one connection attempt at a time

    # ---- state -----------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        with self.lock:
            return self._child is not None and self._child.alive and bool(self.sample and self.sample["connected"])

    def state(self) -> dict:
        """The latest sample; when the robot process is gone, marked disconnected with the reason."""
        with self.lock:
            sample = dict(self.sample or {})
            alive = self._child is not None and self._child.alive
            reason = self.disconnect_reason
        if not (alive and sample.get("connected")):
            sample.update(connected=False, enabled=False, streaming=False, program_running=False,
                          stop_reason=f"disconnected ({reason})")
        return sample

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self) -> tuple[bool, str]:
        """Stop any current robot process, start a fresh one and wait (bounded) until it is connected."""
        with self._start_lock:
            self.stop("reconnect")
            parent_end, child_end = socket.socketpair()
            try:
                proc = subprocess.Popen([sys.executable, "-m", WORKER_MODULE, str(child_end.fileno())],
                                        pass_fds=(child_end.fileno(),))
            finally:
                child_end.close()
            conn = Connection(parent_end.detach())
            child = _Child(proc, conn)
            with self.lock:
                self._child = child
                self.disconnect_reason = "connecting"
            conn.send(("config", self.config))
            ok, message = self._await_connection(child)
            if not ok:
                self._kill(child, message)
                conn.close()  # no reader thread owns it yet
                return False, message
            threading.Thread(target=self._read, args=(child,), name="robot_process_reader", daemon=True).start()
            log.info("robot process %d connected", proc.pid)
            return True, "connected"

    def _await_connection(self, child: _Child) -> tuple[bool, str]:
        # The child's own ur-rtde construction is bounded by faulthandler; this bound covers the rest too.
        if not child.conn.poll(self.start_timeout):
            return False, f"robot process not connected within start_timeout {self.start_timeout:.0f} s"
        try:
            kind, payload = child.conn.recv()
        except (EOFError, OSError):
            message = f"robot process exited during connection (exit code {child.proc.wait(5)})"
            hard_limit = construction_hard_limit(self.config["connection"]["connect_timeout"])
            if time.monotonic() - child.started >= hard_limit:  # faulthandler's exit: it sends nothing first
                message += (f": the ur-rtde clients were not created within {hard_limit:.0f} s (3 x connect_timeout "
                            f"+ 5 s; typically a controller that accepts connections but does not answer), "
                            f"traceback in the log")
            return False, message
        if kind != "connected":
            return False, str(payload)
        with self.lock:
            self.sample = payload
            child.last_sample_time = time.monotonic()
        return True, "connected"

    def stop(self, reason: str) -> None:
        """Ask the robot process to stop the arm (servoStop, stopScript) and exit; kill it after stop_timeout."""
        with self.lock:
            child = self._child
        if child is None or child.proc.poll() is not None:
            return
        child.shutting_down = True
        self.send("shutdown", reason)
        try:
            child.proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            self._kill(child, f"robot process did not stop within stop_timeout {self.stop_timeout} s")
            return
        self._mark_dead(child, f"stopped: {reason}")

    # ---- messages --------------------------------------------------------------------------------
    def send(self, *message) -> bool:
        """Send to the current robot process; False (and nothing sent) if there is none."""
        with self.lock:
            child = self._child
        if child is None or not child.alive:
            return False
        try:
            with child.send_lock:
                child.conn.send(message)
            return True
        except (OSError, ValueError) as exc:
            self._mark_dead(child, f"pipe to the robot process broken: {exc}")
            return False

    def _read(self, child: _Child) -> None:
        try:
            self._read_until_dead(child)
        finally:
            child.conn.close()

    def _read_until_dead(self, child: _Child) -> None:
        while child.alive:
            try:
                ready = child.conn.poll(READ_POLL)
                message = child.conn.recv() if ready else None
            except (EOFError, OSError):
                code = child.proc.wait(5) if child.proc.poll() is None else child.proc.returncode
                if not child.shutting_down:
                    self._mark_dead(child, f"robot process exited (code {code})")
                return
            now = time.monotonic()
            if message is None:
                silent = now - child.last_sample_time
                if silent > self.heartbeat_timeout and not child.shutting_down:
                    self._kill(child, f"no state from the robot process for {silent * 1000:.0f} ms "
                                      f"(heartbeat_timeout); killed it")
                continue
            kind, payload = message
            if kind == "sample":
                with self.lock:
                    if self._child is child:
                        self.sample = payload
                child.last_sample_time = now
            elif kind == "lost":
                self._mark_dead(child, payload)
            elif kind == "stopped":
                log.info("robot process: %s", payload)

    def _mark_dead(self, child: _Child, reason: str) -> None:
        with self.lock:
            if not child.alive:
                return
            child.alive = False
            if self._child is child:
                self.disconnect_reason = reason
        if child.shutting_down:
            log.info("robot process %s", reason)
        else:
            log.error("robot disconnected: %s", reason)

    def _kill(self, child: _Child, reason: str) -> None:
        self._mark_dead(child, reason)
        if child.proc.poll() is None:
            child.proc.kill()  # the reader then sees EOF, ends and closes the pipe
            child.proc.wait(5)
