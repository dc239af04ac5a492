"""3Dconnexion SpaceMouse on Linux without a HID library: hidraw reports -> axes and buttons -> a twist.

Why hidraw (``/dev/hidrawN``) and not evdev (``/dev/input/eventN``): a hidraw read returns exactly one raw HID
report, and the SpaceMouse's reports are simple and fixed (below). Through evdev the same device looks different
per model and kernel (relative axes on some, absolute on others, and the kernel drops zero-valued relative
events, so "the cap is back at rest" has to be guessed from what is missing).

Reports (the first byte is the report id; values little-endian int16, roughly -350..350 at full deflection):
  id 1, 6 bytes    translation x y z
  id 1, 12 bytes   translation x y z and rotation rx ry rz (newer models, e.g. SpaceMouse Wireless)
  id 2, 6 bytes    rotation rx ry rz
  id 3, n bytes    buttons, a little-endian bitmask (bit i = button i held)
  other ids (battery level of wireless models, ...) are ignored.
Device frame: x to the right, y towards the user, z down (a right-handed frame); rotations about those axes.

No ROS import: the teleop node (amplify_ros/teleop_node.py) wires this in; tests feed byte strings.
"""

from __future__ import annotations

import os
import re
import select
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VENDOR_3DCONNEXION = 0x256F
VENDOR_LOGITECH = 0x046D  # older 3Dconnexion devices carry Logitech's vendor id, next to every Logitech mouse
LOGITECH_SPACE_PRODUCTS = {  # so only these Logitech products count
    0xC603, 0xC605, 0xC606,  # SpaceMouse Plus XT, CADman, SpaceMouse Classic
    0xC621, 0xC623, 0xC625,  # SpaceBall 5000, SpaceTraveler, SpacePilot
    0xC626, 0xC627, 0xC628,  # SpaceNavigator, SpaceExplorer, SpaceNavigator for Notebooks
    0xC629, 0xC62B,  # SpacePilot Pro, SpaceMouse Pro
}
NOT_A_SPACEMOUSE = re.compile(r"cadmouse|keyboard", re.IGNORECASE)  # 3Dconnexion's plain mice and keyboards
REPORT_SIZE = 64  # bytes read at once; every SpaceMouse report is shorter (a short read would truncate it)


class SpaceMouseError(RuntimeError):
    """The device is missing, unreadable or was unplugged; the message names it."""


@dataclass(frozen=True)
class SpaceMouseState:
    axes: tuple = (0, 0, 0, 0, 0, 0)  # raw counts x y z rx ry rz, device frame
    buttons: int = 0  # bitmask, bit i = button i held


def parse_report(report: bytes, state: SpaceMouseState) -> SpaceMouseState:
    """The device state after one HID report (a report that carries only some axes keeps the others)."""
    if len(report) < 2:
        return state
    rid, body = report[0], report[1:]
    axes = list(state.axes)
    if rid == 1 and len(body) >= 12:
        axes = list(struct.unpack_from("<6h", body))
    elif rid == 1 and len(body) >= 6:
        axes[:3] = struct.unpack_from("<3h", body)
    elif rid == 2 and len(body) >= 6:
        axes[3:] = struct.unpack_from("<3h", body)
    elif rid == 3:
        return SpaceMouseState(state.axes, int.from_bytes(body, "little"))
    else:
        return state
    return SpaceMouseState(tuple(axes), state.buttons)


def pressed(before: int, after: int) -> list[int]:
    """Buttons that went down between two bitmasks (a held button fires once)."""
    down = after & ~before
    return [i for i in range(down.bit_length()) if down >> i & 1]


@dataclass(frozen=True)
class TwistMapping:
    """Raw axes -> base-frame twist: ``base[i] = signs[i] * device[axis_map[i]]``, deadband, then scale."""

    deadband: int = 20  # counts: a cap at rest reads a few counts off zero, and a hand brushing it too
    full_scale: int = 350  # counts at which the speed reaches its maximum
    linear_speed: float = 0.05  # m/s at full scale
    angular_speed: float = 0.3  # rad/s at full scale
    # device frame (x right, y towards you, z down) -> x right, y away from you, z up: a 180 degree turn about x
    signs: tuple = (1, -1, -1, 1, -1, -1)
    axis_map: tuple = (0, 1, 2, 3, 4, 5)

    def __post_init__(self):
        if len(self.signs) != 6 or any(s not in (-1, 0, 1) for s in self.signs):
            raise ValueError(f"axis signs must be six of -1, 0 (axis off), 1; got {list(self.signs)}")
        if len(self.axis_map) != 6 or sorted(self.axis_map) != list(range(6)):
            raise ValueError(f"axis map must be a permutation of 0..5; got {list(self.axis_map)}")
        if not 0 <= self.deadband < self.full_scale:
            raise ValueError(f"need 0 <= deadband < full_scale; got {self.deadband}, {self.full_scale}")

    def twist(self, axes) -> np.ndarray:
        """(vx vy vz wx wy wz) in m/s and rad/s; exactly zero inside the deadband."""
        raw = np.asarray(axes, dtype=np.float64)[list(self.axis_map)] * np.asarray(self.signs, dtype=np.float64)
        # the ramp starts at the deadband's edge, so speed grows from 0 without a jump
        level = np.clip((np.abs(raw) - self.deadband) / (self.full_scale - self.deadband), 0.0, 1.0)
        return np.sign(raw) * level * np.array([self.linear_speed] * 3 + [self.angular_speed] * 3)


def find_spacemice(sysfs: str | Path = "/sys/class/hidraw") -> list[tuple[str, str]]:
    """(``/dev/hidrawN``, product name) of every connected 3Dconnexion device, by the vendor id in its uevent."""
    found = []
    root = Path(sysfs)
    for entry in sorted(root.glob("hidraw*"), key=lambda p: (len(p.name), p.name)):  # hidraw2 before hidraw10
        try:
            uevent = (entry / "device" / "uevent").read_text()
        except OSError:
            continue
        fields = dict(line.split("=", 1) for line in uevent.splitlines() if "=" in line)
        try:  # HID_ID=<bus>:<vendor>:<product>, hex
            _, vendor, product = (int(x, 16) for x in fields.get("HID_ID", "").split(":"))
        except ValueError:
            continue
        name = fields.get("HID_NAME", "")
        ours = vendor == VENDOR_3DCONNEXION or (vendor == VENDOR_LOGITECH and product in LOGITECH_SPACE_PRODUCTS)
        if ours and not NOT_A_SPACEMOUSE.search(name):
            found.append((f"/dev/{entry.name}", name))
    return found


def open_device(path: str) -> int:
    """A non-blocking read descriptor of the device; SpaceMouseError with the reason and the fix otherwise."""
    try:
        return os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise SpaceMouseError(f"SpaceMouse device {path} does not exist (unplugged? connected devices: "
                              f"{find_spacemice() or 'none found in /sys/class/hidraw'})") from None
    except PermissionError:
        raise SpaceMouseError(
            f"cannot read SpaceMouse device {path}: permission denied. hidraw devices are root-only by default; "
            'add a udev rule, e.g. /etc/udev/rules.d/99-spacemouse.rules: KERNEL=="hidraw*", '
            'ATTRS{idVendor}=="256f", MODE="0660", GROUP="plugdev" (046d for older models; your user in plugdev), '
            'then replug') from None
    except OSError as e:
        raise SpaceMouseError(f"cannot open SpaceMouse device {path}: {e}") from None


class SpaceMouseReader:
    """Reads the device on a thread: ``on_report(bytes)`` per report, ``on_lost(message)`` once when it goes away.

    Opens the device at once, so a missing or unreadable device fails the caller (SpaceMouseError), not the thread.
    """

    def __init__(self, path: str, on_report, on_lost):
        self.path = path
        self.on_report, self.on_lost = on_report, on_lost
        self._fd = open_device(path)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="teleop_spacemouse", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._fd], [], [], 0.1)
                if not ready:
                    continue
                report = os.read(self._fd, REPORT_SIZE)  # hidraw: exactly one report per read
            except BlockingIOError:
                continue
            except OSError as e:  # an unplugged hidraw device fails its reads
                self.on_lost(f"SpaceMouse {self.path} failed: {e} (unplugged?)")
                return
            if not report:  # end of file: nothing more will come
                self.on_lost(f"SpaceMouse {self.path} closed (unplugged?)")
                return
            self.on_report(report)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=1.0)
        os.close(self._fd)
