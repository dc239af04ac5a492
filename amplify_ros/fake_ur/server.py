"""TCP servers of the fake UR controller, bound to 127.0.0.1 only: RTDE (30004), dashboard (29999) and the
script port (30003), plus the tick thread that advances the kinematic model and streams RTDE data packages.

Extensions to the real dashboard protocol, for tests and benchmarks in other processes:
``fake protective stop``, ``fake emergency stop``, ``fake stats`` (one JSON line: command counts, modes,
joints, TCP pose, digital outputs, and the ``time.monotonic()`` arrival of the last servo command
(``last_servo_received``) and of the last stop command (``stop_received``) and when a stop brought the arm to
rest (``at_rest_since``)) and ``fake servo log`` (JSON list of the servo commands received since the last call, with
their ``time.monotonic()`` arrival times; used by amplify-benchmark-driver). SIGUSR1 also triggers a protective stop in the ``amplify-fake-ur`` process.

Python API: ``FakeURServer(...).start()``; ``.controller`` is the ``FakeURController`` (its
``on_joint_state`` list takes callbacks ``f(q)`` called every tick, e.g. to let a simulator follow).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import struct
import sys
import threading
import time


from amplify_ros.fake_ur import rtde_protocol as rp
from amplify_ros.fake_ur.controller import (ROBOT_MODE_NAMES, RUNTIME_PLAYING, SAFETY_MODE_NAMES,
                                            FakeURController)

log = logging.getLogger(__name__)

HOST = "127.0.0.1"  # never another interface: this is a developer tool that pretends to be a robot
RTDE_PORT, DASHBOARD_PORT, SCRIPT_PORT = 30004, 29999, 30003
SEND_TIMEOUT = 0.5  # s; a client that stops reading is dropped instead of stalling the tick thread


class _RtdeSession:
    """One RTDE client connection: its recipes and whether it asked for data packages."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.output: rp.Recipe | None = None
        self.output_every = 1
        self.inputs: dict[int, rp.Recipe] = {}
        self.started = False
        self.malformed = 0  # messages logged and ignored
        self.send_lock = threading.Lock()

    def send(self, kind: int, payload: bytes = b"") -> None:
        with self.send_lock:
            self.sock.sendall(rp.message(kind, payload))


class FakeURServer:
    def __init__(self, controller: FakeURController | None = None, controller_version=(3, 15, 7, 106331),
                 host: str = HOST, ports=(RTDE_PORT, DASHBOARD_PORT, SCRIPT_PORT)):
        if host != HOST:
            raise ValueError(f"host must be {HOST} (the fake controller never listens elsewhere), got {host!r}")
        self.version = tuple(int(v) for v in controller_version)
        frequency = 125.0 if self.version[0] <= 3 else 500.0
        self.controller = controller or FakeURController(frequency=frequency)
        self.host, self.ports = host, ports
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listeners: list[socket.socket] = []
        self._clients: set[socket.socket] = set()
        self._sessions: list[_RtdeSession] = []
        self.malformed_messages = 0  # RTDE messages logged and ignored, over all sessions
        self._lock = threading.Lock()

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "FakeURServer":
        handlers = (self._serve_rtde, self._serve_dashboard, self._serve_script)
        for port, handler in zip(self.ports, handlers):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, port))
            sock.listen(8)
            sock.settimeout(0.2)  # so accept loops notice stop()
            self._listeners.append(sock)
            self._spawn(self._accept_loop, sock, handler)
        self._spawn(self._tick_loop)
        log.info("fake UR controller on %s: RTDE %d, dashboard %d, script %d (controller version %s)",
                 self.host, *self.ports, ".".join(map(str, self.version)))
        return self

    def stop(self) -> None:
        self._stop.set()
        for sock in self._listeners + list(self._clients):
            _close(sock)
        for t in self._threads:
            t.join(timeout=2.0)
        self._threads.clear()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _spawn(self, target, *args) -> threading.Thread:
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self._threads.append(t)
        return t

    def _accept_loop(self, listener: socket.socket, handler) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(None)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # OS-level send timeout: applies to sendall only, so reader threads may block on recv
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 0, int(SEND_TIMEOUT * 1e6)))
            with self._lock:
                self._clients.add(conn)
            threading.Thread(target=self._run_client, args=(conn, handler), daemon=True).start()

    def _run_client(self, conn: socket.socket, handler) -> None:
        try:
            handler(conn)
        except (ConnectionError, OSError, rp.ProtocolError) as exc:
            log.debug("client closed: %s", exc)
        finally:
            with self._lock:
                self._clients.discard(conn)
            _close(conn)

    # ---- RTDE ------------------------------------------------------------------------------------
    def _serve_rtde(self, conn: socket.socket) -> None:
        session = _RtdeSession(conn)
        conn.settimeout(None)
        rp.enable_arrival_stamps(conn)
        try:
            while not self._stop.is_set():
                kind, payload, arrival = rp.read_message_timed(conn)
                self._handle_rtde(session, kind, payload, arrival)
        finally:
            with self._lock:
                if session in self._sessions:
                    self._sessions.remove(session)

    def _handle_rtde(self, s: _RtdeSession, kind: int, payload: bytes, arrival: float) -> None:
        """One message. Malformed input is logged and answered where the protocol has an answer (a failed
        setup); it never ends the session, as a real controller keeps talking to a client that erred once."""
        try:
            self._dispatch_rtde(s, kind, payload, arrival)
        except (rp.MalformedMessage, struct.error, UnicodeDecodeError, IndexError) as exc:
            s.malformed += 1
            self.malformed_messages += 1
            log.warning("RTDE: malformed %r message (%d bytes) ignored: %s", chr(kind), len(payload), exc)
            if kind in (rp.SETUP_OUTPUTS, rp.SETUP_INPUTS):
                s.send(kind, struct.pack(">B", 0))  # recipe id 0: setup failed
        except Exception:  # a bug of the fake: say so loudly, but keep serving the client
            log.exception("RTDE: the fake controller failed on a %r message", chr(kind))

    def _dispatch_rtde(self, s: _RtdeSession, kind: int, payload: bytes, arrival: float) -> None:
        if kind == rp.REQUEST_PROTOCOL_VERSION:
            s.send(kind, struct.pack(">B", 1))
        elif kind == rp.GET_URCONTROL_VERSION:
            s.send(kind, struct.pack(">IIII", *self.version))
        elif kind == rp.SETUP_OUTPUTS:
            if len(payload) < 8:
                raise rp.MalformedMessage("an output setup starts with the frequency (8-byte double)")
            (frequency,) = struct.unpack(">d", payload[:8])
            names = [n for n in payload[8:].decode().split(",") if n]
            recipe = rp.Recipe(1, names, rp.OUTPUT_TYPES)
            missing = [n for n, t in zip(names, recipe.types) if t == "NOT_FOUND"]
            if missing:
                log.info("RTDE output names not found: %s", missing)
            s.output = recipe if recipe.valid else None
            s.output_every = max(1, round(self.controller.frequency / max(frequency, 1.0)))
            s.send(kind, struct.pack(">B", recipe.id if recipe.valid else 0) + ",".join(recipe.types).encode())
        elif kind == rp.SETUP_INPUTS:
            names = [n for n in payload.decode().split(",") if n]
            recipe = rp.Recipe(len(s.inputs) + 1, names, rp.INPUT_TYPES)
            if recipe.valid:
                s.inputs[recipe.id] = recipe
            s.send(kind, struct.pack(">B", recipe.id if recipe.valid else 0) + ",".join(recipe.types).encode())
        elif kind == rp.START:
            s.started = s.output is not None or bool(s.inputs)
            with self._lock:
                if s not in self._sessions:
                    self._sessions.append(s)
            s.send(kind, struct.pack(">B", 1 if s.started else 0))
        elif kind == rp.PAUSE:
            s.started = False
            s.send(kind, struct.pack(">B", 1))
        elif kind == rp.DATA_PACKAGE:
            recipe = s.inputs.get(payload[0]) if payload else None
            if recipe is None:
                raise rp.MalformedMessage(f"data package for unknown input recipe {payload[:1]!r}")
            self.controller.apply_inputs(recipe.unpack(payload), arrival)
        else:
            log.warning("unhandled RTDE message type %r", chr(kind))

    def _tick_loop(self) -> None:
        """Advance the model and stream data packages at the controller's rate, on a monotonic clock."""
        period = 1.0 / self.controller.frequency
        next_time = last = time.monotonic()
        tick = 0
        while not self._stop.is_set():
            now = time.monotonic()
            # the time that really passed (a late tick moves the arm further), so that speeds hold in wall-clock
            # time on a loaded machine; capped so a long stall does not jump
            self.controller.tick(min(max(now - last, 0.25 * period), 4.0 * period))
            last = now
            with self._lock:
                sessions = [s for s in self._sessions if s.started and s.output is not None]
            if sessions:
                values = _with_defaults(self.controller.snapshot())
                for s in sessions:
                    if tick % s.output_every:
                        continue
                    try:
                        s.send(rp.DATA_PACKAGE, s.output.pack(values))
                    except OSError:
                        s.started = False
                        _close(s.sock)
            tick += 1
            next_time += period
            delay = next_time - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_time = time.monotonic()  # fell behind: don't try to catch up with a burst

    # ---- dashboard -------------------------------------------------------------------------------
    def _serve_dashboard(self, conn: socket.socket) -> None:
        conn.sendall(b"Connected: Universal Robots Dashboard Server\n")
        buffer = b""
        while not self._stop.is_set():
            chunk = conn.recv(4096)
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                reply = self.dashboard_reply(line.decode(errors="replace").strip())
                conn.sendall(reply.encode() + b"\n")
                if reply == "Disconnected":
                    return

    def dashboard_reply(self, command: str) -> str:
        c = self.controller
        lower = command.lower()
        if lower == "robotmode":
            return f"Robotmode: {ROBOT_MODE_NAMES.get(c.robot_mode, c.robot_mode)}"
        if lower in ("safetymode", "safetystatus"):
            return f"{command.capitalize()}: {SAFETY_MODE_NAMES.get(c.safety_mode, c.safety_mode)}"
        if lower == "programstate":
            return ("PLAYING" if c.runtime_state == RUNTIME_PLAYING else "STOPPED") + " <unnamed>"
        if lower == "running":
            return f"Program running: {'true' if c.runtime_state == RUNTIME_PLAYING else 'false'}"
        if lower == "power on":
            c.power_on()
            return "Powering on"
        if lower == "brake release":
            c.brake_release()
            return "Brake releasing"
        if lower == "unlock protective stop":
            return "Protective stop releasing" if c.unlock_protective_stop() else "Cannot unlock protective stop"
        if lower == "polyscopeversion":
            return "URSoftware " + ".".join(map(str, self.version))
        if lower == "is in remote control":
            return "true"
        if lower == "get robot model":
            return "UR5"
        if lower == "get serial number":
            return "0000000000"
        if lower == "stop":
            return "Stopped"
        if lower == "play":
            return "Starting program"
        if lower == "close popup":
            return "closing popup"
        if lower == "quit":
            return "Disconnected"
        if lower == "fake protective stop":
            c.trigger_protective_stop()
            return "Protective stop triggered"
        if lower == "fake emergency stop":
            c.trigger_emergency_stop()
            return "Emergency stop triggered"
        if lower == "fake stats":
            return json.dumps(self.stats())
        if lower == "fake servo log":
            return json.dumps(self.take_servo_log())
        return f"could not understand: '{command}'"

    def stats(self) -> dict:
        c = self.controller
        with c.lock:
            return {"counts": dict(c.counts), "robot_mode": c.robot_mode, "safety_mode": c.safety_mode,
                    "runtime_state": c.runtime_state, "q": c.q.tolist(), "qd": c.qd.tolist(),
                    "tcp_pose": c.robot_pose().tolist(), "digital_out": c.digital_out,
                    "last_servo": list(c.servo_log[-1][2]) if c.servo_log else None,
                    "last_servo_received": c.servo_log[-1][0] if c.servo_log else None,
                    "stop_received": c.stop_received, "at_rest_since": c.at_rest_since,
                    "last_error": c.last_error,
                    "malformed_messages": self.malformed_messages}

    def take_servo_log(self) -> list:
        """Every servoJ/servoL received since the last call, as [monotonic time, name, 6 targets], then cleared.
        CLOCK_MONOTONIC is system-wide on Linux, so another process on this machine can compare the times."""
        c = self.controller
        with c.lock:
            entries = [[t, name, list(target)] for t, name, target in c.servo_log]
            c.servo_log.clear()
        return entries

    # ---- script port -----------------------------------------------------------------------------
    def _serve_script(self, conn: socket.socket) -> None:
        """Collect a URScript program; when the sender pauses (100 ms), it counts as uploaded and starts."""
        program = b""
        conn.settimeout(0.1)
        while not self._stop.is_set():
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                if program:
                    self._run_script(program)
                    program = b""
                continue
            if not chunk:
                if program:
                    self._run_script(program)
                return
            program += chunk

    def _run_script(self, program: bytes) -> None:
        text = program.decode(errors="replace")
        if "def " in text:
            log.info("control script uploaded (%d bytes)", len(program))
            self.controller.script_uploaded()
        else:
            log.info("ignoring script text %r", text[:80])


def _with_defaults(values: dict) -> dict:
    """Fill every output variable the model does not compute with zeros of the right shape."""
    return _DefaultValues(values)


class _DefaultValues(dict):
    def __missing__(self, name):
        kind = rp.OUTPUT_TYPES[name]
        n = {"VECTOR3D": 3, "VECTOR6D": 6, "VECTOR6INT32": 6, "VECTOR6UINT32": 6}.get(kind)
        zero = False if kind == "BOOL" else (0.0 if kind in ("DOUBLE", "VECTOR3D", "VECTOR6D") else 0)
        return (zero,) * n if n else zero


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="amplify-fake-ur",
        description="Protocol-level fake UR5 controller on 127.0.0.1 (RTDE 30004, dashboard 29999, script 30003) "
                    "for testing the UR5 driver with the real ur-rtde client. SIGUSR1 triggers a protective stop; "
                    "dashboard 'fake protective stop' / 'fake stats' also work. Example: amplify-fake-ur --e-series",
    )
    parser.add_argument("--e-series", action="store_true",
                        help="report controller version 5.x, so clients stream at 500 Hz (default CB3, 125 Hz)")
    parser.add_argument("--q0", type=float, nargs=6, metavar="Q", default=None,
                        help="initial joint angles in rad (default: elbow up, tool down)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # the tick thread is CPU-heavy Python; with the default 5 ms GIL switch interval a client's packet could wait
    # that long to be read, which would be the fake's delay, not the driver's
    sys.setswitchinterval(0.001)
    version = (5, 15, 0, 0) if args.e_series else (3, 15, 7, 106331)
    controller = FakeURController(q0=args.q0, frequency=500.0 if args.e_series else 125.0) if args.q0 \
        else FakeURController(frequency=500.0 if args.e_series else 125.0)
    server = FakeURServer(controller, controller_version=version)
    done = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: controller.trigger_protective_stop())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    server.start()
    try:
        while not done.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
