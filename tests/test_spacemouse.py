"""SpaceMouse input (amplify_ros/spacemouse.py): HID reports as byte strings -> state -> twist; device discovery.

The end-to-end test (the teleop node reading a fake device and driving the fake UR) is in tests/test_teleop.py.
"""

import os
import struct

import numpy as np
import pytest

from amplify_ros.spacemouse import (SpaceMouseError, SpaceMouseState, TwistMapping, find_spacemice, open_device,
                                    parse_report, pressed)


def report(rid, *values):
    return bytes([rid]) + struct.pack(f"<{len(values)}h", *values)


def test_translation_rotation_and_button_reports():
    s = parse_report(report(1, 100, -200, 350), SpaceMouseState())
    assert s.axes == (100, -200, 350, 0, 0, 0)
    s = parse_report(report(2, -1, 2, -32768), s)  # rotation report keeps the translation
    assert s.axes == (100, -200, 350, -1, 2, -32768)
    s = parse_report(report(1, 0, 0, 0), s)  # translation back at rest keeps the rotation
    assert s.axes == (0, 0, 0, -1, 2, -32768) and s.buttons == 0
    s = parse_report(bytes([3, 0b10, 0]), s)  # button 1 held
    assert s.buttons == 2 and s.axes == (0, 0, 0, -1, 2, -32768)
    s = parse_report(bytes([3, 0, 0, 0, 0b1000_0000]), s)  # a 4-byte mask (SpaceMouse Pro): button 31
    assert s.buttons == 1 << 31
    # the exact bytes of a little-endian report, not just round-tripping through struct
    assert parse_report(b"\x01\x12\x00\xf8\xff\x00\x01", SpaceMouseState()).axes == (18, -8, 256, 0, 0, 0)


def test_six_axis_report_and_ignored_reports():
    s = parse_report(report(1, 1, 2, 3, 4, 5, 6), SpaceMouseState(buttons=5))  # 12 bytes: all six axes
    assert s.axes == (1, 2, 3, 4, 5, 6) and s.buttons == 5
    for other in (bytes([0x17, 80]), b"\x01", b"", report(2, 1, 2), bytes([9]) + bytes(12)):
        # battery level (wireless), a bare id, nothing, a short rotation report, an unknown id: no change
        assert parse_report(other, s) == s


def test_pressed_fires_once_per_press():
    assert pressed(0, 0b101) == [0, 2]
    assert pressed(0b101, 0b101) == []  # held
    assert pressed(0b101, 0b001) == []  # released
    assert pressed(0b001, 0b011) == [1]


def test_twist_deadband_scale_signs_and_axis_map():
    m = TwistMapping(deadband=20, full_scale=350, linear_speed=0.1, angular_speed=0.5)
    np.testing.assert_array_equal(m.twist([19, -20, 0, 15, -5, 20]), np.zeros(6))  # at rest: exactly zero
    # 185 counts = half way from the deadband to full scale; y and z reversed (device y towards you, z down)
    np.testing.assert_allclose(m.twist([185, 185, 185, 0, 0, 0]), [0.05, -0.05, -0.05, 0, 0, 0])
    np.testing.assert_allclose(m.twist([0, 0, 0, 400, -350, 1000]), [0, 0, 0, 0.5, 0.5, -0.5])  # capped
    np.testing.assert_allclose(m.twist([21, 0, 0, 0, 0, 0])[0], 0.1 / 330)  # no jump at the deadband edge
    side = TwistMapping(deadband=0, full_scale=100, linear_speed=1.0, angular_speed=1.0,
                        signs=(1, 1, 0, 1, 1, -1), axis_map=(1, 0, 2, 4, 3, 5))
    np.testing.assert_allclose(side.twist([10, 20, 30, 40, 50, 60]), [0.2, 0.1, 0.0, 0.5, 0.4, -0.6])
    for bad in ({"signs": (1, 1, 1, 1, 1, 2)}, {"signs": (1,) * 5}, {"axis_map": (0, 0, 1, 2, 3, 4)},
                {"deadband": 400}):
        with pytest.raises(ValueError):
            TwistMapping(**bad)


def fake_hidraw(root, name, hid_id, hid_name):
    dev = root / name / "device"
    dev.mkdir(parents=True)
    (dev / "uevent").write_text(f"DRIVER=hid-generic\nHID_ID={hid_id}\nHID_NAME={hid_name}\nHID_PHYS=usb-1/input0\n")


def test_find_spacemice_by_vendor_id(tmp_path):
    fake_hidraw(tmp_path, "hidraw0", "0003:0000046D:0000C52B", "Logitech USB Receiver")  # a Logitech mouse
    fake_hidraw(tmp_path, "hidraw10", "0003:0000046D:0000C626", "3Dconnexion SpaceNavigator")
    fake_hidraw(tmp_path, "hidraw2", "0003:0000256F:0000C635", "3Dconnexion SpaceMouse Compact")
    fake_hidraw(tmp_path, "hidraw3", "0003:0000256F:0000C651", "3Dconnexion CadMouse")
    fake_hidraw(tmp_path, "hidraw4", "0003:00001234:00005678", "some keyboard")
    (tmp_path / "hidraw5" / "device").mkdir(parents=True)  # no uevent: skipped
    assert find_spacemice(tmp_path) == [("/dev/hidraw2", "3Dconnexion SpaceMouse Compact"),
                                        ("/dev/hidraw10", "3Dconnexion SpaceNavigator")]
    assert find_spacemice(tmp_path / "nothing") == []


def test_open_device_errors_name_the_device(tmp_path, monkeypatch):
    with pytest.raises(SpaceMouseError, match=f"SpaceMouse device {tmp_path}/hidraw9 does not exist"):
        open_device(str(tmp_path / "hidraw9"))

    def denied(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", denied)  # this suite runs as root, so a real mode-000 file would open
    with pytest.raises(SpaceMouseError, match=r"cannot read SpaceMouse device /dev/hidraw3: permission denied.*udev"):
        open_device("/dev/hidraw3")
