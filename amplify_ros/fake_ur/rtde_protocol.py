"""RTDE wire format (Universal Robots Real-Time Data Exchange, protocol version 2), server side.

Every message is ``>HB`` (total size including the 3-byte header, message type) followed by a big-endian
payload. Variable names and their types are those of UR's public RTDE guide; a name not in the tables is
answered ``NOT_FOUND`` during recipe setup, exactly as a real controller does for variables it lacks.
"""

from __future__ import annotations

import socket
import struct
import time

# Message types (ASCII codes).
REQUEST_PROTOCOL_VERSION = ord("V")
GET_URCONTROL_VERSION = ord("v")
TEXT_MESSAGE = ord("M")
DATA_PACKAGE = ord("U")
SETUP_OUTPUTS = ord("O")
SETUP_INPUTS = ord("I")
START = ord("S")
PAUSE = ord("P")

HEADER = struct.Struct(">HB")

# RTDE type name -> struct format of one value.
TYPE_FORMATS = {
    "BOOL": "?", "UINT8": "B", "UINT32": "I", "UINT64": "Q", "INT32": "i", "DOUBLE": "d",
    "VECTOR3D": "3d", "VECTOR6D": "6d", "VECTOR6INT32": "6i", "VECTOR6UINT32": "6I",
}


def _registers(prefix: str) -> dict[str, str]:
    out = {}
    for i in range(48):
        out[f"{prefix}_int_register_{i}"] = "INT32"
        out[f"{prefix}_double_register_{i}"] = "DOUBLE"
    for i in range(64, 128):
        out[f"{prefix}_bit_register_{i}"] = "BOOL"
    out[f"{prefix}_bit_registers0_to_31"] = "UINT32"
    out[f"{prefix}_bit_registers32_to_63"] = "UINT32"
    return out


_VEC6 = ("target_q target_qd target_qdd target_current target_moment actual_q actual_qd actual_current "
         "joint_control_output actual_TCP_pose actual_TCP_speed actual_TCP_force target_TCP_pose target_TCP_speed "
         "joint_temperatures actual_joint_voltage ft_raw_wrench payload_inertia actual_current_window "
         "actual_current_as_torque").split()
_DOUBLE = ("timestamp actual_execution_time speed_scaling target_speed_fraction actual_momentum actual_main_voltage "
           "actual_robot_voltage actual_robot_current standard_analog_input0 standard_analog_input1 "
           "standard_analog_output0 standard_analog_output1 io_current tool_analog_input0 tool_analog_input1 "
           "tool_output_current tool_temperature tcp_force_scalar payload").split()
_UINT32 = ("runtime_state robot_status_bits safety_status_bits analog_io_types tool_mode tool_analog_input_types "
           "script_control_line").split()

# Controller -> client variables (inputs are readable as outputs too, as on a real controller).
OUTPUT_TYPES: dict[str, str] = {
    **{n: "VECTOR6D" for n in _VEC6}, **{n: "DOUBLE" for n in _DOUBLE}, **{n: "UINT32" for n in _UINT32},
    "actual_tool_accelerometer": "VECTOR3D", "payload_cog": "VECTOR3D", "elbow_position": "VECTOR3D",
    "elbow_velocity": "VECTOR3D", "actual_digital_input_bits": "UINT64", "actual_digital_output_bits": "UINT64",
    "robot_mode": "INT32", "safety_mode": "INT32", "joint_mode": "VECTOR6INT32", "tool_output_voltage": "INT32",
    "tool_output_mode": "UINT8", "tool_digital_output0_mode": "UINT8", "tool_digital_output1_mode": "UINT8",
    **_registers("output"), **_registers("input"),
}

# Client -> controller variables.
INPUT_TYPES: dict[str, str] = {
    **_registers("input"),
    "standard_digital_output_mask": "UINT8", "standard_digital_output": "UINT8",
    "configurable_digital_output_mask": "UINT8", "configurable_digital_output": "UINT8",
    "tool_digital_output_mask": "UINT8", "tool_digital_output": "UINT8",
    "standard_analog_output_mask": "UINT8", "standard_analog_output_type": "UINT8",
    "standard_analog_output_0": "DOUBLE", "standard_analog_output_1": "DOUBLE",
    "speed_slider_mask": "UINT32", "speed_slider_fraction": "DOUBLE",
    "external_force_torque": "VECTOR6D", "ft_rtde_input_enable": "BOOL", "payload_mass": "DOUBLE",
    "payload_cog": "VECTOR3D", "script_control_line": "UINT32",
}


class ProtocolError(RuntimeError):
    """The peer sent something that is not valid RTDE and the stream cannot be followed any more."""


class MalformedMessage(ValueError):
    """One well-framed message with bad content (wrong size for its recipe, unknown recipe): it is ignored."""


class Recipe:
    """One output or input recipe: ordered variable names, their types, and the struct packing them."""

    def __init__(self, recipe_id: int, names: list[str], table: dict[str, str]):
        self.id = recipe_id
        self.names = names
        self.types = [table.get(n, "NOT_FOUND") for n in names]
        self.valid = "NOT_FOUND" not in self.types
        self.struct = struct.Struct(">B" + "".join(TYPE_FORMATS[t] for t in self.types)) if self.valid else None

    def pack(self, values: dict) -> bytes:
        flat = [self.id]
        for name, kind in zip(self.names, self.types):
            v = values[name]
            if kind.startswith("VECTOR"):
                flat.extend(v)
            else:
                flat.append(v)
        return self.struct.pack(*flat)

    def unpack(self, payload: bytes) -> dict:
        if len(payload) != self.struct.size:
            raise MalformedMessage(f"data package of {len(payload)} bytes for input recipe {self.id}, which "
                                   f"packs {self.struct.size} ({len(self.names)} variables)")
        flat = self.struct.unpack(payload)[1:]
        out, i = {}, 0
        for name, kind in zip(self.names, self.types):
            n = _count(kind)
            out[name] = flat[i] if n == 1 else tuple(flat[i:i + n])
            i += n
        return out


def _count(kind: str) -> int:
    return {"VECTOR3D": 3, "VECTOR6D": 6, "VECTOR6INT32": 6, "VECTOR6UINT32": 6}.get(kind, 1)


def message(kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(HEADER.size + len(payload), kind) + payload


def read_exactly(sock: socket.socket, n: int) -> bytes:
    """Read n bytes; raises ConnectionError when the peer closes the connection."""
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(n - got)
        if not chunk:
            raise ConnectionError("peer closed the connection")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_message(sock: socket.socket) -> tuple[int, bytes]:
    kind, payload, _ = read_message_timed(sock)
    return kind, payload


# Linux SO_TIMESTAMPNS / SCM_TIMESTAMPNS (not exported by the socket module): the kernel stamps each received
# segment with CLOCK_REALTIME. The fake reports arrival times from these stamps, so the Python thread's own wake-up
# delay (the GIL, shared with the tick thread) is not counted as latency of the client under test.
SO_TIMESTAMPNS = 35


def enable_arrival_stamps(sock: socket.socket) -> bool:
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        return True
    except OSError:  # not Linux
        return False


def read_message_timed(sock: socket.socket) -> tuple[int, bytes, float]:
    """One RTDE message and the ``time.monotonic()`` at which its first bytes reached the kernel (when arrival
    stamps are enabled on ``sock``; else the time it was read)."""
    data, ancdata, _, _ = sock.recvmsg(HEADER.size, socket.CMSG_SPACE(16))
    read_at_wall, read_at = time.time(), time.monotonic()
    if not data:
        raise ConnectionError("peer closed the connection")
    arrival = read_at
    for level, kind, cdata in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(cdata) >= 16:
            sec, nsec = struct.unpack("qq", cdata[:16])
            arrival = read_at - max(0.0, read_at_wall - (sec + nsec * 1e-9))
    if len(data) < HEADER.size:
        data += read_exactly(sock, HEADER.size - len(data))
    size, kind = HEADER.unpack(data)
    if size < HEADER.size:
        raise ProtocolError(f"RTDE message size {size} is smaller than its header")
    return kind, read_exactly(sock, size - HEADER.size), arrival
