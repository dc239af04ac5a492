"""Run and query the fake UR controller from tests and benchmarks (127.0.0.1 only).

The fake binds the real controller's fixed ports, so only one may run per machine: ``ports_lock`` serialises
users across processes (pytest workers, a benchmark next to a test run) and ``wait_for_free_ports`` waits out
a previous instance that is still closing its sockets.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from amplify_ros.fake_ur.server import DASHBOARD_PORT, RTDE_PORT, SCRIPT_PORT

HOST = "127.0.0.1"
LOCK_PATH = "/tmp/amplify_ros_fake_ur.lock"


def dashboard(command: str, timeout: float = 2.0) -> str:
    """One dashboard command (e.g. ``robotmode``, ``fake stats``) and its one-line answer."""
    with socket.create_connection((HOST, DASHBOARD_PORT), timeout=timeout) as s:
        f = s.makefile("rwb")
        f.readline()  # welcome line
        f.write(command.encode() + b"\n")
        f.flush()
        return f.readline().decode().strip()


def fake_stats() -> dict:
    """The fake's own counters and state (dashboard command ``fake stats``)."""
    return json.loads(dashboard("fake stats"))


def answers() -> bool:
    """True when a controller (fake or not) answers on the dashboard port."""
    try:
        return dashboard("robotmode", timeout=0.5).startswith("Robotmode")
    except OSError:
        return False


@contextlib.contextmanager
def ports_lock():
    """Hold the machine-wide lock of the fake controller's fixed ports."""
    with open(LOCK_PATH, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def wait_for_free_ports(timeout: float = 120.0) -> None:
    """Block until RTDE, dashboard and script ports can be bound; RuntimeError naming the busy ones if not."""
    deadline = time.monotonic() + timeout
    while True:
        busy = []
        for port in (DASHBOARD_PORT, SCRIPT_PORT, RTDE_PORT):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((HOST, port))
                except OSError:
                    busy.append(port)
        if not busy:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"fake UR ports {busy} on {HOST} still in use after {timeout} s")
        time.sleep(0.5)


def stop_process(proc: subprocess.Popen | None, sig: int = signal.SIGINT, timeout: float = 8.0) -> int | None:
    """Ask a process to stop (SIGINT: rclpy nodes shut down cleanly and the driver stops the arm), kill if hung."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return proc.returncode


def start_fake_ur(extra_args=(), log_path: Path | None = None, timeout: float = 15.0, env=None) -> subprocess.Popen:
    """Start ``amplify-fake-ur`` as a process and return once its dashboard answers."""
    log = open(log_path, "w") if log_path else subprocess.PIPE
    proc = subprocess.Popen([sys.executable, "-m", "amplify_ros.fake_ur.server", *extra_args], env=env,
                            stdout=subprocess.DEVNULL, stderr=log, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            why = proc.stderr.read() if proc.stderr else Path(log_path).read_text()
            raise RuntimeError(f"the fake UR controller exited with code {proc.returncode}: {why[-2000:]}")
        if answers():
            return proc
        time.sleep(0.1)
    stop_process(proc, signal.SIGTERM)
    raise RuntimeError(f"the fake UR controller did not answer on {HOST}:{DASHBOARD_PORT} within {timeout} s")
