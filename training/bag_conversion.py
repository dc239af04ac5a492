"""ROS 2 bags -> the episode store: one bag per episode, resampled onto the 20 Hz control clock.

No rclpy here: bags are read and deserialized with ``rosbags`` (pure Python), so the conversion runs on
any machine. The command line lives in ``training/bags_to_episodes.py``; the rules are documented in
``docs/data_collection.md`` (section "Bags -> episodes") and summarised here.

Bag layouts accepted (each one is one episode, named after the directory or file):

* a rosbag2 directory: ``metadata.yaml`` + its ``.mcap`` or ``.db3`` file(s) (``ros2 bag record``, rosbags);
* a directory holding exactly one ``.mcap`` or ``.db3`` file and no ``metadata.yaml`` (e.g. written by
  ``mcap_ros2.writer``): read as a bare storage file, so there is no ``custom_data``;
* a bare ``.mcap`` / ``.db3`` file directly in the bags directory (episode name = file stem).

Episode metadata (task, embodiment, success, operator note), first source that has the field wins:
``episode.json`` in the bag directory, then the ``amplify.*`` keys of ``custom_data`` in metadata.yaml,
then (task only) the last message on the task topic, then the command-line defaults.

Alignment: ticks every 1/fps from the first instant at which every required stream has a message until
the last instant all of them still have one. Stamped messages are timed by ``header.stamp`` (a topic whose
stamps are all zero falls back to the bag's receive time, with a warning). Per tick:

* camera: the newest frame stamped <= tick;
* joint state (and the ``gripper`` joint): linearly interpolated between the samples around the tick
  (``state_sampling: interpolate``, default; clamped to the last sample at the end) or the newest sample
  <= tick (``state_sampling: newest``);
* action, ``action_source: command``: the newest command stamped < tick + 1/fps, i.e. the command issued
  in response to this tick's observation (a command stamped exactly on a tick belongs to that tick);
* action, ``action_source: measured``: the measured TCP pose at tick + 1/fps (same sampling rule as the
  joint states, rotations by slerp) and the gripper state there.

Rotation vectors are made continuous along the episode (each one is replaced by the equivalent
``(angle + 2 pi k) * axis`` nearest the previous one), so a rotation through 180 degrees does not flip sign.
Stamps that go backwards by at most ``max_stamp_backstep`` seconds are sorted (and counted in the
report); a larger jump back rejects the bag.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import yaml
from scipy.spatial.transform import Rotation, Slerp

from amplify_core.episodes import EMBODIMENTS, EPISODE_SUFFIX, Episode, write_episode
from amplify_core.ur5 import JOINT_NAMES
from amplify_ros.image_conversion import ImageConversionError, image_to_rgb, resize_to

log = logging.getLogger(__name__)

STORAGE_SUFFIXES = (".mcap", ".db3")
EPISODE_JSON = "episode.json"
EPISODE_JSON_SCHEMA = 1
REPORT_NAME = "conversion_report.json"
ACTION_NAMES = ("x", "y", "z", "rx", "ry", "rz", "gripper")
STATE_NAMES = (*JOINT_NAMES, "gripper")
ENCODINGS = ("rgb8", "bgr8", "mono8", "rgba8", "bgra8")

TYPES = {
    "camera": "sensor_msgs/msg/Image",
    "joint_states": "sensor_msgs/msg/JointState",
    "tcp_pose": "geometry_msgs/msg/PoseStamped",
    "command": "trajectory_msgs/msg/JointTrajectory",
    "task": "std_msgs/msg/String",
}

# The built-in settings; config/bag_conversion.yaml holds the same values with comments.
DEFAULTS: dict = {
    "fps": 20.0,
    "views": ["front", "side", "corner"],
    "topics": {
        "cameras": {
            "front": "/cameras/front/image_raw",
            "side": "/cameras/side/image_raw",
            "corner": "/cameras/corner/image_raw",
        },
        "joint_states": "/joint_states",
        "tcp_pose": "/ur5/tcp_pose",
        "command": "/ur5/command",
        "task": "/task",
    },
    "joint_names": list(JOINT_NAMES),
    "gripper_joint": "gripper",
    "command_names": list(ACTION_NAMES),
    "action_source": "command",
    "state_sampling": "interpolate",
    "min_frames": 16,
    "max_stamp_backstep": 0.1,
    "image_size": None,
}


class BagError(ValueError):
    """A bag cannot be converted. The message names the bag and the problem."""


class SettingsError(ValueError):
    """The conversion settings (config file or flags) are invalid."""


# ----------------------------------------------------------------------------------------------- settings


def _merge(base: dict, update: dict, where: str) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if key not in base:
            raise SettingsError(f"{where}: unknown key {key!r}; known: {sorted(base)}")
        if isinstance(base[key], dict) and key != "cameras":
            if not isinstance(value, dict):
                raise SettingsError(f"{where}: {key!r} must be a mapping")
            out[key] = _merge(base[key], value, f"{where} {key}")
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_settings(config: str | Path | None = None, overrides: dict | None = None) -> dict:
    """DEFAULTS, updated by a YAML ``config`` file, then by ``overrides`` (non-None values); validated."""
    settings = copy.deepcopy(DEFAULTS)
    if config is not None:
        config = Path(config)
        if not config.is_file():
            raise SettingsError(f"config {config}: no such file")
        loaded = yaml.safe_load(config.read_text()) or {}
        if not isinstance(loaded, dict):
            raise SettingsError(f"config {config}: expected a mapping at the top level")
        settings = _merge(settings, loaded, f"config {config}")
    for key, value in (overrides or {}).items():
        if value is not None:
            settings = _merge(settings, {key: value}, "override")
    validate_settings(settings)
    return settings


def validate_settings(s: dict) -> None:
    if not (isinstance(s["fps"], (int, float)) and not isinstance(s["fps"], bool) and 0 < s["fps"] < math.inf):
        raise SettingsError(f"fps must be a positive finite number (Hz), got {s['fps']!r}")
    if s["action_source"] not in ("command", "measured"):
        raise SettingsError(f"action_source must be 'command' or 'measured', got {s['action_source']!r}")
    if s["state_sampling"] not in ("interpolate", "newest"):
        raise SettingsError(f"state_sampling must be 'interpolate' or 'newest', got {s['state_sampling']!r}")
    if not s["views"]:
        raise SettingsError("views: at least one camera view is needed")
    unknown = [v for v in s["views"] if v not in s["topics"]["cameras"]]
    if unknown:
        raise SettingsError(f"views {unknown} have no topic in topics.cameras {sorted(s['topics']['cameras'])}")
    if not (isinstance(s["min_frames"], int) and s["min_frames"] >= 1):
        raise SettingsError(f"min_frames must be an integer >= 1, got {s['min_frames']!r}")
    if not (isinstance(s["max_stamp_backstep"], (int, float)) and s["max_stamp_backstep"] >= 0):
        raise SettingsError(f"max_stamp_backstep must be >= 0 seconds, got {s['max_stamp_backstep']!r}")
    if s["image_size"] is not None and not (isinstance(s["image_size"], int) and s["image_size"] > 0):
        raise SettingsError(f"image_size must be a positive integer or null, got {s['image_size']!r}")
    if len(s["command_names"]) != 7:
        raise SettingsError(f"command_names must name x y z rx ry rz gripper (7 names), got {s['command_names']}")
    if len(s["joint_names"]) != 6:
        raise SettingsError(f"joint_names must list the six arm joints, got {s['joint_names']}")


# ----------------------------------------------------------------------------------------------- finding bags


@dataclass
class BagSource:
    """One bag on disk: ``path`` is what rosbags opens (a rosbag2 directory or a bare storage file)."""

    name: str
    location: Path  # the directory (or bare file) found in the bags directory
    path: Path
    layout: str  # 'rosbag2', 'storage-dir', 'storage-file'
    problem: str | None = None  # set when the entry looks like a bag but cannot be opened as one


def find_bags(directory: str | Path, exclude: Iterable[Path] = ()) -> list[BagSource]:
    """Bags in ``directory`` (sorted by name). Sub-directories without any bag file are reported as
    problems; other plain files (README, notes) are ignored. A directory that is itself a bag is accepted."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BagError(f"{directory}: bags directory does not exist")
    excluded = {p.resolve() for p in exclude}
    if (directory / "metadata.yaml").exists():
        return [_bag_in_dir(directory)]
    bags = []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith(".") or entry.resolve() in excluded:
            continue
        if entry.is_dir():
            bags.append(_bag_in_dir(entry))
        elif entry.suffix in STORAGE_SUFFIXES:
            bags.append(BagSource(entry.stem, entry, entry, "storage-file"))
    return bags


def _bag_in_dir(d: Path) -> BagSource:
    if (d / "metadata.yaml").exists():
        return BagSource(d.name, d, d, "rosbag2")
    files = sorted(p for p in d.iterdir() if p.suffix in STORAGE_SUFFIXES and p.is_file())
    if len(files) == 1:
        return BagSource(d.name, d, files[0], "storage-dir")
    problem = (f"not a bag: no metadata.yaml and no {'/'.join(STORAGE_SUFFIXES)} file" if not files else
               f"{len(files)} storage files and no metadata.yaml (a split bag needs its metadata.yaml)")
    return BagSource(d.name, d, d, "unknown", problem)


# ----------------------------------------------------------------------------------------------- metadata


@dataclass
class EpisodeInfo:
    task: str | None = None
    embodiment: str | None = None
    success: bool | None = None
    operator_note: str = ""
    sources: dict = field(default_factory=dict)  # field -> where it came from


def _parse_bool(value, where: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("", "null", "none", "unknown"):
        return None
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise BagError(f"{where}: success must be true, false or null, got {value!r}")


def read_episode_json(path: Path) -> dict:
    """The companion ``episode.json`` (validated); BagError naming the file if it is malformed."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BagError(f"{path}: unreadable episode.json ({exc})") from exc
    if not isinstance(data, dict):
        raise BagError(f"{path}: episode.json must hold an object")
    if data.get("schema") != EPISODE_JSON_SCHEMA:
        raise BagError(f"{path}: episode.json schema {data.get('schema')!r} is not supported (expected "
                       f"{EPISODE_JSON_SCHEMA})")
    return data


def resolve_info(bag: BagSource, custom: dict | None, default_embodiment: str | None) -> EpisodeInfo:
    """Task/embodiment/success/note from episode.json, then metadata.yaml custom_data, then defaults.
    (The task topic is consulted later, between custom_data and the default task.)"""
    info = EpisodeInfo()
    layers = []
    js = bag.location / EPISODE_JSON if bag.location.is_dir() else None
    if js is not None and js.is_file():
        data = read_episode_json(js)
        layers.append((EPISODE_JSON, data, str(js)))
    if custom:
        layers.append(("metadata.yaml custom_data",
                       {k.split(".", 1)[1]: v for k, v in custom.items() if k.startswith("amplify.")},
                       f"{bag.location} metadata.yaml"))
    for source, data, where in layers:
        for key in ("task", "embodiment", "operator_note"):
            value = data.get(key)
            if value not in (None, "") and getattr(info, key) in (None, ""):
                setattr(info, key, str(value))
                info.sources[key] = source
        if "success" in data and "success" not in info.sources:
            value = _parse_bool(data["success"], where)
            if value is not None:
                info.success = value
                info.sources["success"] = source
    if info.embodiment is None and default_embodiment:
        info.embodiment, info.sources["embodiment"] = default_embodiment, "--embodiment"
    if info.embodiment is None:
        raise BagError(f"{bag.location}: embodiment unknown (no episode.json, no amplify.embodiment in "
                       f"metadata.yaml custom_data); pass --embodiment robot|human")
    if info.embodiment not in EMBODIMENTS:
        raise BagError(f"{bag.location}: embodiment must be one of {EMBODIMENTS}, got {info.embodiment!r} "
                       f"(from {info.sources['embodiment']})")
    return info


# ----------------------------------------------------------------------------------------------- reading


@dataclass
class Stream:
    """Times (ns, in receive order) of one topic, plus what was decoded from each message."""

    topic: str
    stamps: list = field(default_factory=list)  # header stamps (0 when unstamped)
    received: list = field(default_factory=list)  # bag receive times
    values: list = field(default_factory=list)
    times: np.ndarray | None = None  # chosen clock, sorted
    order: np.ndarray | None = None  # receive index of each sorted entry
    reordered: int = 0
    clock: str = "header.stamp"


def _stamp_ns(msg) -> int:
    s = msg.header.stamp
    return int(s.sec) * 1_000_000_000 + int(s.nanosec)


def _normalise_type(msgtype: str) -> str:
    parts = msgtype.split("/")
    return f"{parts[0]}/msg/{parts[1]}" if len(parts) == 2 else msgtype


def _order(stream: Stream, tolerance_ns: int, where: str, stamped: bool, warnings: list) -> None:
    stamps = np.asarray(stream.stamps if stamped else stream.received, np.int64)
    if stamped and np.all(stamps == 0):
        stamps, stream.clock = np.asarray(stream.received, np.int64), "receive time"
        warnings.append(f"{stream.topic}: every header.stamp is zero; using the bag receive time")
    elif stamped and np.any(stamps == 0):
        raise BagError(f"{where}: {int(np.sum(stamps == 0))} of {len(stamps)} messages on {stream.topic} have a "
                       f"zero header.stamp")
    elif not stamped:
        stream.clock = "receive time"
    back = np.maximum.accumulate(stamps) - stamps
    worst = int(back.max()) if len(back) else 0
    if worst > tolerance_ns:
        i = int(np.argmax(back))
        raise BagError(f"{where}: stamps on {stream.topic} go backwards by {worst / 1e6:.1f} ms at message {i} "
                       f"(tolerance {tolerance_ns / 1e6:.1f} ms, max_stamp_backstep)")
    stream.reordered = int(np.count_nonzero(back))
    stream.order = np.argsort(stamps, kind="stable")
    stream.times = stamps[stream.order]


def _open_reader(bag: BagSource):
    from rosbags.rosbag2 import Reader

    reader = Reader(bag.path)
    reader.open()
    return reader


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


def _image_info(msg, topic: str, where: str) -> tuple[int, int]:
    enc = str(msg.encoding).lower()
    if enc not in ENCODINGS:
        raise BagError(f"{where}: unsupported image encoding {msg.encoding!r} on {topic} (supported: "
                       f"{', '.join(ENCODINGS)})")
    return int(msg.height), int(msg.width)


def image_msg_to_rgb(msg, source: str) -> np.ndarray:
    """Image message -> uint8 RGB (H, W, 3): rgb8/bgr8/mono8 via amplify_ros.image_conversion, plus rgba8/bgra8."""
    enc = str(msg.encoding).lower()
    if enc not in ("rgba8", "bgra8"):
        return image_to_rgb(msg, source)
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if step < 4 * w or buf.size != step * h:
        raise ImageConversionError(f"{source}: {enc} data has {buf.size} bytes, step {step}, for {w}x{h}")
    px = buf.reshape(h, step)[:, : 4 * w].reshape(h, w, 4)
    return np.ascontiguousarray(px[..., :3] if enc == "rgba8" else px[..., 2::-1])


# ----------------------------------------------------------------------------------------------- geometry


def continuous_rotvec(rotvecs: np.ndarray) -> np.ndarray:
    """Rotation vectors (N, 3) made continuous in time: each becomes the equivalent (angle + 2 pi k) * axis
    nearest the previous one (same rotations, no sign flip when the angle passes pi)."""
    out = np.array(rotvecs, np.float64, copy=True)
    for i in range(1, len(out)):
        angle = np.linalg.norm(out[i])
        if angle < 1e-9:
            axis = out[i - 1] / max(np.linalg.norm(out[i - 1]), 1e-12)
        else:
            axis = out[i] / angle
        candidates = [(angle + 2 * math.pi * k) * axis for k in range(-2, 3)]
        out[i] = min(candidates, key=lambda c: float(np.sum((c - out[i - 1]) ** 2)))
    return out


def _sample(times: np.ndarray, values: np.ndarray, at: np.ndarray, mode: str) -> np.ndarray:
    """Values (N, D) at sorted ``times`` sampled at ``at``: linear interpolation or newest <= t."""
    if mode == "newest":
        idx = np.clip(np.searchsorted(times, at, side="right") - 1, 0, len(times) - 1)
        return values[idx]
    t = (times - times[0]).astype(np.float64)
    a = (at - times[0]).astype(np.float64)
    return np.stack([np.interp(a, t, values[:, j]) for j in range(values.shape[1])], axis=1)


def _sample_pose(times: np.ndarray, pos: np.ndarray, quat_xyzw: np.ndarray, at: np.ndarray,
                 mode: str) -> np.ndarray:
    """(N, 6) x y z rx ry rz at ``at``: positions as in _sample, rotations by slerp (or newest)."""
    xyz = _sample(times, pos, at, mode)
    rotations = Rotation.from_quat(quat_xyzw)
    if mode == "newest" or len(times) < 2:
        idx = np.clip(np.searchsorted(times, at, side="right") - 1, 0, len(times) - 1)
        rot = rotations[idx]
    else:
        t = (times - times[0]).astype(np.float64)
        keep = np.concatenate([[True], np.diff(t) > 0])  # Slerp needs strictly increasing times
        a = np.clip((at - times[0]).astype(np.float64), t[0], t[keep][-1])
        rot = Slerp(t[keep], rotations[np.flatnonzero(keep)])(a)
    return np.concatenate([xyz, rot.as_rotvec()], axis=1)


# ----------------------------------------------------------------------------------------------- conversion


@dataclass
class BagResult:
    name: str
    bag: str
    status: str  # 'converted' | 'skipped'
    kind: str = ""  # for skipped: 'exists' | 'failed_episode' | 'error'
    reason: str = ""
    episode: str = ""
    details: dict = field(default_factory=dict)


def convert_bag(bag: BagSource, out_dir: str | Path, settings: dict, default_task: str | None = None,
                default_embodiment: str | None = None, overwrite: bool = False,
                skip_failed: bool = True) -> BagResult:
    """Convert one bag to ``out_dir/<name>.h5``. Never raises for bad input: returns a skipped result."""
    out = Path(out_dir) / f"{bag.name}{EPISODE_SUFFIX}"
    result = BagResult(bag.name, str(bag.location), "skipped", episode=str(out))
    if out.exists() and not overwrite:
        result.kind, result.reason = "exists", f"{out} already exists (pass --overwrite to replace it)"
        return result
    started = time.perf_counter()
    try:
        if bag.problem:
            raise BagError(f"{bag.location}: {bag.problem}")
        episode, details = _convert(bag, settings, default_task, default_embodiment, skip_failed)
    except _FailedEpisode as exc:
        result.kind, result.reason = "failed_episode", str(exc)
        return result
    except BagError as exc:
        result.kind, result.reason = "error", str(exc)
        return result
    except Exception as exc:  # rosbags/sqlite/mcap errors of a damaged bag: name the bag and go on
        result.kind = "error"
        result.reason = f"{bag.location}: unreadable or corrupt bag ({type(exc).__name__}: {_one_line(exc)})"
        return result
    write_episode(out, episode, overwrite=overwrite)
    details["seconds"] = round(time.perf_counter() - started, 3)
    result.status, result.details = "converted", details
    return result


class _FailedEpisode(Exception):
    pass


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _convert(bag: BagSource, s: dict, default_task, default_embodiment, skip_failed) -> tuple[Episode, dict]:
    where = str(bag.location)
    try:
        reader = _open_reader(bag)
    except Exception as exc:
        raise BagError(f"{where}: cannot open bag: truncated, corrupt or not a rosbag2 bag "
                       f"({type(exc).__name__}: {_one_line(exc)})") from exc
    try:
        return _convert_open(bag, reader, s, default_task, default_embodiment, skip_failed)
    finally:
        reader.close()


def _convert_open(bag, reader, s, default_task, default_embodiment, skip_failed):
    where = str(bag.location)
    custom = getattr(getattr(reader.storage, "metadata", None), "custom", None) or {}
    info = resolve_info(bag, custom, default_embodiment)
    if info.success is False and skip_failed:
        raise _FailedEpisode(f"{where}: episode marked as failed (success: false in {info.sources['success']}); "
                             f"pass --no-skip-failed to convert it")
    robot = info.embodiment == "robot"
    topics, views = s["topics"], list(s["views"])
    fps = float(s["fps"])
    dt = int(round(1e9 / fps))

    # which topics are needed, and of which type
    role_of: dict[str, str] = {topics["cameras"][v]: "camera" for v in views}
    required = list(role_of)
    if robot:
        role_of[topics["joint_states"]] = "joint_states"
        required.append(topics["joint_states"])
        action_topic = topics["command"] if s["action_source"] == "command" else topics["tcp_pose"]
        required.append(action_topic)
        role_of[topics["command"]] = "command"
        role_of[topics["tcp_pose"]] = "tcp_pose"
    role_of.setdefault(topics["task"], "task")

    total = sum(c.msgcount for c in reader.connections)
    if not reader.connections or (total == 0 and bag.layout == "rosbag2"):
        raise BagError(f"{where}: empty bag (no messages)")
    conns: dict[str, list] = {}
    for c in reader.connections:
        if c.topic in role_of:
            expected = TYPES[role_of[c.topic]]
            if _normalise_type(c.msgtype) != expected:
                raise BagError(f"{where}: {c.topic} has type {c.msgtype}, expected {expected}")
            conns.setdefault(c.topic, []).append(c)
    counts = {t: sum(c.msgcount for c in cs) for t, cs in conns.items()}
    missing = [t for t in required if t not in conns]
    if missing:
        present = sorted({c.topic for c in reader.connections})
        raise BagError(f"{where}: missing topic(s) {', '.join(missing)} ({info.embodiment} episode; the bag has "
                       f"{', '.join(present)})")
    empty = [t for t in required if counts.get(t, 0) == 0 and bag.layout == "rosbag2"]
    if empty:
        raise BagError(f"{where}: no messages on {', '.join(empty)}")

    # pass 1: times and small payloads of every needed message
    typestore = _typestore()
    streams = {t: Stream(t) for t in conns}
    sizes: dict[str, tuple[int, int]] = {}
    wanted = [c for cs in conns.values() for c in cs]
    names = list(s["joint_names"])
    gripper_name = s["gripper_joint"]
    command_names = list(s["command_names"])
    gripper_samples: list[tuple[int, int, float]] = []  # (stamp, received, value)
    read = 0
    for conn, received, raw in reader.messages(connections=wanted):
        read += 1
        role = role_of[conn.topic]
        if role == "task":
            msg = typestore.deserialize_cdr(raw, TYPES["task"])
            st = streams[conn.topic]
            st.received.append(received)
            st.values.append(str(msg.data))
            continue
        msg = typestore.deserialize_cdr(raw, TYPES[role])
        st = streams[conn.topic]
        stamp = _stamp_ns(msg)
        if role == "camera":
            size = _image_info(msg, conn.topic, where)
            if sizes.setdefault(conn.topic, size) != size:
                raise BagError(f"{where}: image size on {conn.topic} changes from {sizes[conn.topic]} to {size} "
                               f"(height, width) at message {len(st.stamps)}")
            st.values.append(None)
        elif role == "joint_states":
            index = {n: i for i, n in enumerate(msg.name)}
            if gripper_name in index and len(msg.position) > index[gripper_name]:
                gripper_samples.append((stamp, received, float(msg.position[index[gripper_name]])))
            if not all(n in index for n in names):
                continue  # e.g. a separate gripper publisher on the same topic
            if len(msg.position) < len(msg.name):
                raise BagError(f"{where}: {conn.topic} message with {len(msg.name)} names but "
                               f"{len(msg.position)} positions")
            st.values.append([float(msg.position[index[n]]) for n in names])
        elif role == "tcp_pose":
            p, q = msg.pose.position, msg.pose.orientation
            st.values.append([p.x, p.y, p.z, q.x, q.y, q.z, q.w])
        elif role == "command":
            if len(msg.points) != 1:
                raise BagError(f"{where}: {conn.topic} message {len(st.stamps)} has {len(msg.points)} trajectory "
                               f"points, expected exactly one")
            index = {n: i for i, n in enumerate(msg.joint_names)}
            absent = [n for n in command_names if n not in index]
            if absent:
                raise BagError(f"{where}: {conn.topic} joint_names {list(msg.joint_names)} lack {absent}")
            positions = msg.points[0].positions
            st.values.append([float(positions[index[n]]) for n in command_names])
        st.stamps.append(stamp)
        st.received.append(received)
    if read == 0:
        raise BagError(f"{where}: empty bag (no messages)")
    expected_count = sum(counts.values())
    if bag.layout == "rosbag2" and read != expected_count:
        raise BagError(f"{where}: read {read} messages of the needed topics, metadata.yaml lists {expected_count} "
                       f"(truncated bag?)")
    for t in required:
        if not streams[t].stamps:
            extra = f" with all of {names}" if role_of[t] == "joint_states" else ""
            raise BagError(f"{where}: no messages on {t}{extra}")

    # clocks and ordering
    warnings: list[str] = []
    tolerance = int(round(float(s["max_stamp_backstep"]) * 1e9))
    for t, st in streams.items():
        if st.stamps or st.received:
            _order(st, tolerance, where, stamped=role_of[t] != "task", warnings=warnings)

    # tick window
    starts, ends = [], []
    for t in required:
        times = streams[t].times
        starts.append(int(times[0]))
        end = int(times[-1])
        if robot and s["action_source"] == "measured" and t == topics["tcp_pose"]:
            end -= dt  # the action of the last tick is the pose one tick later
        ends.append(end)
    t0, t1 = max(starts), min(ends)
    n = (t1 - t0) // dt + 1 if t1 >= t0 else 0
    if n < int(s["min_frames"]):
        raise BagError(f"{where}: too short: {n} frames at {fps:g} Hz ({max(t1 - t0, 0) / 1e9:.2f} s where every "
                       f"required stream has data) < min_frames {s['min_frames']}")
    ticks = t0 + dt * np.arange(n, dtype=np.int64)

    # task (needs the task topic) and robot arrays
    task_topic = topics["task"]
    if info.task is None and task_topic in streams and streams[task_topic].values:
        last = streams[task_topic].values[int(streams[task_topic].order[-1])]
        if last.strip():
            info.task, info.sources["task"] = last, f"last message on {task_topic}"
    if info.task is None and default_task:
        info.task, info.sources["task"] = default_task, "--task"
    if info.task is None:
        raise BagError(f"{where}: task unknown (no episode.json, no amplify.task in metadata.yaml custom_data, "
                       f"no message on {task_topic}); pass --task TEXT")

    state = actions = None
    mode = s["state_sampling"]
    if robot:
        js = streams[topics["joint_states"]]
        joints = _sample(js.times, np.asarray(js.values, np.float64)[js.order], ticks, mode)
        cmd = streams.get(topics["command"])
        has_cmd = cmd is not None and len(cmd.stamps) > 0
        gripper, gripper_from = _gripper(gripper_samples, js.clock, cmd if has_cmd else None, ticks, mode,
                                         tolerance, where)
        state = np.concatenate([joints, gripper[:, None]], axis=1)
        if s["action_source"] == "command":
            values = np.asarray(cmd.values, np.float64)[cmd.order]
            idx = np.searchsorted(cmd.times, ticks + dt, side="left") - 1  # newest stamped < tick + dt
            actions = values[idx]
        else:
            tcp = streams[topics["tcp_pose"]]
            v = np.asarray(tcp.values, np.float64)[tcp.order]
            norms = np.linalg.norm(v[:, 3:], axis=1)
            if np.any(norms < 1e-6):
                raise BagError(f"{where}: {topics['tcp_pose']} has a zero orientation quaternion")
            pose = _sample_pose(tcp.times, v[:, :3], v[:, 3:] / norms[:, None], ticks + dt, mode)
            next_gripper, _ = _gripper(gripper_samples, js.clock, cmd if has_cmd else None, ticks + dt, mode,
                                       tolerance, where)
            actions = np.concatenate([pose, next_gripper[:, None]], axis=1)
        actions[:, 3:6] = continuous_rotvec(actions[:, 3:6])
        if not (np.all(np.isfinite(state)) and np.all(np.isfinite(actions))):
            raise BagError(f"{where}: robot state or actions contain NaN/inf values")

    # pass 2: decode only the camera frames the ticks use
    frames, view_stats = _read_frames(reader, wanted, streams, views, topics, ticks, sizes, s["image_size"],
                                      where)
    for v, vs in view_stats.items():
        if vs["gaps"]:
            longest = max(g["max_frame_age_ms"] for g in vs["gaps"])
            warnings.append(f"view {v} ({vs['topic']}): {vs['ticks_with_held_frame']} of {n} frames repeat an older "
                            f"camera frame, in {len(vs['gaps'])} gap(s) (frame age up to {longest:g} ms, camera "
                            f"period {vs['camera_period_ms']:g} ms); see views.{v}.gaps in the report")
    episode = Episode(frames=frames, task=info.task, embodiment=info.embodiment, fps=fps, state=state,
                      actions=actions, state_names=STATE_NAMES if robot else (),
                      action_names=ACTION_NAMES if robot else ())
    details = {
        "frames": int(n), "first_tick_ns": int(ticks[0]), "duration_s": round((n - 1) * dt / 1e9, 3), "fps": fps,
        "task": info.task,
        "embodiment": info.embodiment, "success": info.success, "operator_note": info.operator_note,
        "metadata_sources": info.sources, "layout": bag.layout, "views": view_stats,
        "reordered_stamps": {t: st.reordered for t, st in streams.items() if st.reordered},
        "max_gap_ms": {t: _max_gap_ms(streams[t].times, ticks[0], ticks[-1]) for t in required},
        "clocks": {t: st.clock for t, st in streams.items() if st.times is not None},
        "warnings": warnings,
    }
    if robot:
        details["action_source"] = s["action_source"]
        details["gripper_from"] = gripper_from
    return episode, details


def _max_gap_ms(times: np.ndarray, start: int, stop: int) -> float:
    """Longest time without a message on a stream within [start, stop] (a dropped camera, a stalled driver)."""
    inside = times[(times >= start) & (times <= stop)]
    edges = np.concatenate([[start], inside, [stop]])
    return round(float(np.diff(edges).max()) / 1e6, 1)


def _gripper(samples, clock, cmd: Stream | None, at: np.ndarray, mode: str, tolerance: int, where: str):
    """Gripper value at ``at``: the gripper joint of /joint_states, else the last commanded gripper, else 0."""
    if samples:
        g = Stream("gripper joint", stamps=[x[0] for x in samples], received=[x[1] for x in samples],
                   values=[x[2] for x in samples])
        _order(g, tolerance, where, stamped=clock == "header.stamp", warnings=[])
        values = np.asarray(g.values, np.float64)[g.order][:, None]
        return _sample(g.times, values, at, mode)[:, 0], "gripper joint"
    if cmd is not None:
        values = np.asarray(cmd.values, np.float64)[cmd.order][:, 6]
        idx = np.searchsorted(cmd.times, at, side="right") - 1  # newest command <= t
        return np.where(idx >= 0, values[np.maximum(idx, 0)], 0.0), "last command"
    return np.zeros(len(at)), "none (0)"


def frame_gaps(times: np.ndarray, ticks: np.ndarray, age_ms: np.ndarray) -> dict:
    """Ticks whose frame is older than 1.5 camera periods (or 1.5 ticks, if the camera is slower): a dropped
    or late camera frame that the tick fills with the last frame before it. Runs of such ticks are the gaps."""
    tick_ms = float(np.diff(ticks).mean()) / 1e6 if len(ticks) > 1 else 0.0
    period_ms = float(np.median(np.diff(times))) / 1e6 if len(times) > 1 else tick_ms
    limit = 1.5 * max(period_ms, tick_ms)
    late = age_ms > limit
    gaps, i = [], 0
    while i < len(late):
        if not late[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(late) and late[j + 1]:
            j += 1
        gaps.append({"first_tick": int(i), "ticks": int(j - i + 1),
                     "at_s": round(float(ticks[i] - ticks[0]) / 1e9, 3),
                     "max_frame_age_ms": round(float(age_ms[i:j + 1].max()), 1)})
        i = j + 1
    return {"camera_period_ms": round(period_ms, 1), "ticks_with_held_frame": int(late.sum()), "gaps": gaps}


def _read_frames(reader, connections, streams, views, topics, ticks, sizes, image_size, where):
    """Second pass over the bag: decode only the frames the ticks use. The same connections are read as in
    the first pass, so messages come in the same order (the receive index of a message is the same)."""
    frames, stats = {}, {}
    need: dict[str, dict[int, np.ndarray]] = {}  # topic -> receive index -> tick indices
    for v in views:
        topic = topics["cameras"][v]
        st = streams[topic]
        sorted_idx = np.searchsorted(st.times, ticks, side="right") - 1
        receive_idx = st.order[sorted_idx]
        need[topic] = {int(r): np.flatnonzero(receive_idx == r) for r in np.unique(receive_idx)}
        h, w = (image_size, image_size) if image_size else sizes[topic]
        frames[v] = np.empty((len(ticks), h, w, 3), np.uint8)
        age = (ticks - st.times[sorted_idx]) / 1e6
        stats[v] = {"topic": topic, "messages": len(st.stamps), "distinct_frames_used": len(need[topic]),
                    "max_frame_age_ms": round(float(age.max()), 1), "source_size": list(sizes[topic]),
                    **frame_gaps(st.times, ticks, age)}
    typestore = _typestore()
    view_of = {topics["cameras"][v]: v for v in views}
    seen = {t: -1 for t in view_of}
    for conn, _, raw in reader.messages(connections=connections):
        topic = conn.topic
        if topic not in view_of:
            continue
        seen[topic] += 1
        targets = need[topic].get(seen[topic])
        if targets is None:
            continue
        msg = typestore.deserialize_cdr(raw, TYPES["camera"])
        try:
            rgb = image_msg_to_rgb(msg, f"{where} {topic}")
        except ImageConversionError as exc:
            raise BagError(str(exc)) from exc
        if image_size:
            rgb = resize_to(rgb, image_size, image_size)
        frames[view_of[topic]][targets] = rgb
    for topic, idx in need.items():
        if max(idx) > seen[topic]:
            raise BagError(f"{where}: second read of {topic} ended early (bag changed or corrupt)")
    return frames, stats


# ----------------------------------------------------------------------------------------------- many bags


@dataclass
class ConversionReport:
    results: list[BagResult] = field(default_factory=list)

    @property
    def converted(self) -> list[BagResult]:
        return [r for r in self.results if r.status == "converted"]

    @property
    def skipped(self) -> list[BagResult]:
        return [r for r in self.results if r.status == "skipped"]

    @property
    def errors(self) -> list[BagResult]:
        return [r for r in self.skipped if r.kind == "error"]

    def table(self) -> str:
        rows = [("bag", "result", "frames", "detail")]
        for r in self.results:
            if r.status == "converted":
                d = r.details
                held = {v: vs["ticks_with_held_frame"] for v, vs in d["views"].items() if vs["gaps"]}
                gaps = f", frames held over camera gaps: {held}" if held else ""
                rows.append((r.name, "converted", str(d["frames"]), f"{d['embodiment']}, {d['duration_s']:.2f} s, "
                                                                     f"task {d['task']!r}{gaps}"))
            else:
                rows.append((r.name, f"skipped ({r.kind})", "-", r.reason))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = ["  ".join(row[i].ljust(widths[i]) for i in range(3)) + "  " + row[3] for row in rows]
        lines.insert(1, "-" * min(120, max(len(x) for x in lines)))
        lines.append(f"converted {len(self.converted)}, skipped {len(self.skipped)} "
                     f"({len(self.errors)} with errors)")
        return "\n".join(lines)

    def to_json(self, **extra) -> dict:
        return {
            **extra,
            "converted": [{"bag": r.name, "path": r.bag, "episode": r.episode, **r.details} for r in self.converted],
            "skipped": [{"bag": r.name, "path": r.bag, "kind": r.kind, "reason": r.reason} for r in self.skipped],
        }


def convert_directory(bags_dir: str | Path, out_dir: str | Path, settings: dict, default_task: str | None = None,
                      default_embodiment: str | None = None, overwrite: bool = False, skip_failed: bool = True,
                      progress: Callable[[Iterable], Iterable] = lambda x: x) -> ConversionReport:
    """Convert every bag of ``bags_dir`` into ``out_dir``; bad bags are skipped with a reason."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = ConversionReport()
    for bag in progress(find_bags(bags_dir, exclude=[out_dir])):
        result = convert_bag(bag, out_dir, settings, default_task, default_embodiment, overwrite, skip_failed)
        report.results.append(result)
        if result.status == "converted":
            d = result.details
            log.info("%s: converted %d frames (%.2f s, %s, task %r) -> %s", bag.location, d["frames"],
                     d["duration_s"], d["embodiment"], d["task"], result.episode)
            for w in d["warnings"]:
                log.warning("%s: %s", bag.location, w)
        elif result.kind == "error":
            log.error("skipped: %s", result.reason)
        else:
            log.info("skipped (%s): %s", result.kind, result.reason)
    return report
