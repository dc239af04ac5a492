"""ROS 2 bags -> episode store (training/bag_conversion.py, training/bags_to_episodes.py).

Real bags are written to disk with rosbags (mcap and sqlite3) and with a different writer (mcap_ros2), then
converted; the frame each control tick picked is read back from the pixel values (a frame counter).
"""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pytest
import yaml
from mcap_ros2.writer import Writer as McapRos2Writer
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from amplify_core.datasets import TrackWindows, load_episodes
from amplify_core.episodes import read_episode
from amplify_core.preprocessing import preprocess_store
from amplify_core.tracking import LucasKanadeTracker
from amplify_core.ur5 import JOINT_NAMES
from training.bag_conversion import (DEFAULTS, SettingsError, continuous_rotvec, convert_directory,
                                     load_settings)
from training.bags_to_episodes import main

T0 = 1_700_000_000  # s, a realistic wall-clock epoch: stamps are large integers of nanoseconds
DT = 50_000_000  # 20 Hz in ns
VIEWS = ("front", "side", "corner")
CAM_OFFSET = {"front": 0.004, "side": 0.013, "corner": 0.021}  # s, cameras are not in phase
ENCODING = {"front": "rgb8", "side": "bgr8", "corner": "mono8"}
CMD_NAMES = ("x", "y", "z", "rx", "ry", "rz", "gripper")
TS = get_typestore(Stores.ROS2_JAZZY)


def ns(t: float) -> int:
    return T0 * 1_000_000_000 + int(round(t * 1e9))


# ------------------------------------------------------------------------------------- the recorded scene


def joint_values(t):  # linear in time: interpolation to a tick is exact
    return [0.1 * i + 0.2 * t for i in range(6)]


def gripper_joint(t):
    return 0.01 + 0.02 * t


def tcp_angle(t):  # rotation about z, passes through pi at t = 0.47 s
    return 3.0 + 0.3 * t


def tcp_position(t):
    return [0.3 + 0.1 * t, -0.2, 0.4 + 0.05 * t]


def command_values(m):
    """Command m: rz passes pi, written in the canonical (sign-flipped) form as a controller would."""
    angle = 3.05 + 0.05 * m
    rz = angle if angle <= math.pi else angle - 2 * math.pi
    return [0.3 + 0.001 * m, -0.2, 0.4, 0.0, 0.0, rz, float((m // 5) % 2)]


def pixel(view, k):
    """RGB value of every pixel of frame k of a view (mono8 frames are grey)."""
    if ENCODING[view] == "mono8":
        return (k % 256,) * 3
    return (k % 256, 50 * VIEWS.index(view), 200)


def header(t, frame_id=""):
    stamp = ns(t)
    return {"stamp": {"sec": stamp // 1_000_000_000, "nanosec": stamp % 1_000_000_000}, "frame_id": frame_id}


def image_fields(view, k, size, encoding=None):
    encoding = encoding or ENCODING[view]
    rgb = np.empty((size, size, 3), np.uint8)
    rgb[:] = pixel(view, k)
    if encoding == "mono8":
        data = rgb[..., 0]
    elif encoding == "bgr8":
        data = rgb[..., ::-1]
    else:
        data = rgb
    data = np.ascontiguousarray(data)
    return {"height": size, "width": size, "encoding": encoding, "is_bigendian": 0,
            "step": data.shape[1] * (1 if data.ndim == 2 else 3), "data": data.tobytes()}


def scene(duration=1.5, size=32, robot=True, views=VIEWS, gripper=True, task="stack the cups", cam_rate=30,
          encodings=None):
    """(receive_ns, topic, type, fields) of a recording, in receive order; plus the stamps it used."""
    msgs, stamps = [], {}
    for v in views:
        frames = int(duration * cam_rate)
        stamps[v] = [ns(CAM_OFFSET[v] + k / cam_rate) for k in range(frames)]
        for k in range(frames):
            t = CAM_OFFSET[v] + k / cam_rate
            fields = {"header": header(t, v), **image_fields(v, k, size, (encodings or {}).get(v))}
            msgs.append((ns(t) + 2_000_000, f"/cameras/{v}/image_raw", "sensor_msgs/msg/Image", fields))
    if robot:
        names = ["elbow_joint", "shoulder_pan_joint", "other_joint", "wrist_3_joint", "shoulder_lift_joint",
                 "wrist_1_joint", "wrist_2_joint"] + (["gripper"] if gripper else [])
        for j in range(int(duration * 125)):
            t = j / 125
            q = dict(zip(JOINT_NAMES, joint_values(t)), other_joint=-1.0, gripper=gripper_joint(t))
            msgs.append((ns(t) + 1_000_000, "/joint_states", "sensor_msgs/msg/JointState",
                         {"header": header(t), "name": names, "position": [q[n] for n in names],
                          "velocity": [], "effort": []}))
            a = tcp_angle(t)
            msgs.append((ns(t) + 1_000_000, "/ur5/tcp_pose", "geometry_msgs/msg/PoseStamped",
                         {"header": header(t, "base"), "pose": {
                             "position": dict(zip("xyz", tcp_position(t))),
                             "orientation": {"x": 0.0, "y": 0.0, "z": math.sin(a / 2), "w": math.cos(a / 2)}}}))
        stamps["command"] = []
        for m in range(int(duration * 20)):
            t = 0.0025 + m / 20
            stamps["command"].append(ns(t))
            msgs.append((ns(t) + 500_000, "/ur5/command", "trajectory_msgs/msg/JointTrajectory",
                         {"header": header(t), "joint_names": list(CMD_NAMES), "points": [{
                             "positions": command_values(m), "velocities": [], "accelerations": [], "effort": [],
                             "time_from_start": {"sec": 0, "nanosec": 0}}]}))
    if task:
        msgs.append((ns(0.001), "/task", "std_msgs/msg/String", {"data": task}))
    msgs.sort(key=lambda m: m[0])
    return msgs, stamps


# ------------------------------------------------------------------------------------- writers


def to_rosbags(msgtype, f):
    T = TS.types
    time_ = lambda d: T["builtin_interfaces/msg/Time"](sec=d["sec"], nanosec=d["nanosec"])  # noqa: E731
    hdr = lambda d: T["std_msgs/msg/Header"](stamp=time_(d["stamp"]), frame_id=d["frame_id"])  # noqa: E731
    if msgtype == "sensor_msgs/msg/Image":
        return T[msgtype](header=hdr(f["header"]), height=f["height"], width=f["width"], encoding=f["encoding"],
                          is_bigendian=0, step=f["step"], data=np.frombuffer(f["data"], np.uint8))
    if msgtype == "sensor_msgs/msg/JointState":
        return T[msgtype](header=hdr(f["header"]), name=f["name"], position=np.array(f["position"]),
                          velocity=np.zeros(0), effort=np.zeros(0))
    if msgtype == "geometry_msgs/msg/PoseStamped":
        p, q = f["pose"]["position"], f["pose"]["orientation"]
        pose = T["geometry_msgs/msg/Pose"](position=T["geometry_msgs/msg/Point"](**p),
                                           orientation=T["geometry_msgs/msg/Quaternion"](**q))
        return T[msgtype](header=hdr(f["header"]), pose=pose)
    if msgtype == "trajectory_msgs/msg/JointTrajectory":
        pt = f["points"][0]
        point = T["trajectory_msgs/msg/JointTrajectoryPoint"](
            positions=np.array(pt["positions"]), velocities=np.zeros(0), accelerations=np.zeros(0),
            effort=np.zeros(0), time_from_start=T["builtin_interfaces/msg/Duration"](sec=0, nanosec=0))
        return T[msgtype](header=hdr(f["header"]), joint_names=f["joint_names"], points=[point])
    return T[msgtype](data=f["data"])


def write_rosbag(path, msgs, storage="mcap", custom=None, episode_json=None, topics_only=None):
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as w:
        for k, v in (custom or {}).items():
            w.set_custom_data(k, v)
        conns = {}
        for topic, msgtype in topics_only or []:
            conns[topic] = w.add_connection(topic, msgtype, typestore=TS)
        for received, topic, msgtype, fields in msgs:
            if topic not in conns:
                conns[topic] = w.add_connection(topic, msgtype, typestore=TS)
            w.write(conns[topic], received, TS.serialize_cdr(to_rosbags(msgtype, fields), msgtype))
    if episode_json is not None:
        (path / "episode.json").write_text(json.dumps(episode_json))
    return path


# Message definitions as ROS 2 concatenates them (what rosbag2 stores in an .mcap schema), written by hand.
_SEP = "=" * 80 + "\n"
_TIME = "MSG: builtin_interfaces/Time\nint32 sec\nuint32 nanosec\n"
_HEADER = "MSG: std_msgs/Header\nbuiltin_interfaces/Time stamp\nstring frame_id\n"
MSGDEFS = {
    "sensor_msgs/msg/Image": "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\n"
                             "uint8 is_bigendian\nuint32 step\nuint8[] data\n" + _SEP + _HEADER + _SEP + _TIME,
    "sensor_msgs/msg/JointState": "std_msgs/Header header\nstring[] name\nfloat64[] position\n"
                                  "float64[] velocity\nfloat64[] effort\n" + _SEP + _HEADER + _SEP + _TIME,
    "geometry_msgs/msg/PoseStamped": "std_msgs/Header header\ngeometry_msgs/Pose pose\n" + _SEP + _HEADER + _SEP
                                     + _TIME + _SEP + "MSG: geometry_msgs/Pose\ngeometry_msgs/Point position\n"
                                     "geometry_msgs/Quaternion orientation\n" + _SEP
                                     + "MSG: geometry_msgs/Point\nfloat64 x\nfloat64 y\nfloat64 z\n" + _SEP
                                     + "MSG: geometry_msgs/Quaternion\nfloat64 x 0\nfloat64 y 0\nfloat64 z 0\n"
                                       "float64 w 1\n",
    "trajectory_msgs/msg/JointTrajectory": "std_msgs/Header header\nstring[] joint_names\n"
                                           "JointTrajectoryPoint[] points\n" + _SEP + _HEADER + _SEP + _TIME + _SEP
                                           + "MSG: trajectory_msgs/JointTrajectoryPoint\nfloat64[] positions\n"
                                           "float64[] velocities\nfloat64[] accelerations\nfloat64[] effort\n"
                                           "builtin_interfaces/Duration time_from_start\n" + _SEP
                                           + "MSG: builtin_interfaces/Duration\nint32 sec\nuint32 nanosec\n",
    "std_msgs/msg/String": "string data\n",
}


def write_mcap_ros2(path, msgs):
    """A bare .mcap written by mcap_ros2 (its own CDR encoder), no metadata.yaml."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        w = McapRos2Writer(f)
        schemas = {t: w.register_msgdef(t, d) for t, d in MSGDEFS.items()}
        for received, topic, msgtype, fields in msgs:
            w.write_message(topic, schemas[msgtype], fields, log_time=received)
        w.finish()
    return path


# ------------------------------------------------------------------------------------- expectations


def expected_ticks(stamps, required):
    t0 = max(stamps[k][0] for k in required)
    t1 = min(stamps[k][-1] for k in required)
    return t0 + DT * np.arange((t1 - t0) // DT + 1)


def check_robot_episode(ep, stamps, gripper):
    ticks = expected_ticks(stamps, [*VIEWS, "command"])
    assert ep.num_frames == len(ticks) and ep.fps == 20.0 and ep.embodiment == "robot"
    assert ep.views == list(VIEWS)
    for v in VIEWS:
        picked = [max(k for k, s in enumerate(stamps[v]) if s <= tick) for tick in ticks]
        expected = np.array([pixel(v, k) for k in picked], np.uint8)
        np.testing.assert_array_equal(ep.frames[v][:, 5, 7], expected)  # frame counter per tick
        assert ep.frames[v].shape[1:] == (32, 32, 3)
    t = (ticks - ns(0)) / 1e9
    q = np.array([joint_values(x) for x in t])
    np.testing.assert_allclose(ep.state[:, :6], q, atol=1e-5)  # interpolated to the tick
    cmds = [max(m for m, s in enumerate(stamps["command"]) if s < tick + DT) for tick in ticks]
    if gripper:
        np.testing.assert_allclose(ep.state[:, 6], gripper_joint(t), atol=1e-6)
    else:  # no gripper joint: the last commanded gripper value
        last = [max(m for m, s in enumerate(stamps["command"]) if s <= tick) for tick in ticks]
        np.testing.assert_array_equal(ep.state[:, 6], [command_values(m)[6] for m in last])
    expected = np.array([command_values(m) for m in cmds])
    expected[:, 5] = [3.05 + 0.05 * m for m in cmds]  # continuous through pi, not sign-flipped
    np.testing.assert_allclose(ep.actions, expected, atol=1e-5)
    assert list(ep.state_names) == [*JOINT_NAMES, "gripper"]
    assert list(ep.action_names) == list(CMD_NAMES)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """Good bags of every layout, converted once through the command line."""
    root = tmp_path_factory.mktemp("good")
    bags, out = root / "bags", root / "episodes"
    bags.mkdir()
    msgs, stamps = scene(gripper=True, task="")
    write_rosbag(bags / "robot_mcap", msgs, "mcap", episode_json={
        "schema": 1, "task": "stack the cups", "embodiment": "robot", "operator_note": "ok", "success": True})
    msgs_nog, stamps_nog = scene(gripper=False, task="")
    write_rosbag(bags / "robot_db3", msgs_nog, "sqlite3",
                 custom={"amplify.task": "stack the cups", "amplify.embodiment": "robot", "amplify.success": "true"})
    msgs_task, _ = scene(gripper=True, task="stack the cups")
    write_mcap_ros2(bags / "robot_mcap_ros2" / "recording.mcap", msgs_task)  # no metadata.yaml
    write_mcap_ros2(bags / "robot_bare_file.mcap", msgs_task)
    human, human_stamps = scene(robot=False, task="")
    write_rosbag(bags / "human_wave", human, "mcap", episode_json={
        "schema": 1, "task": "wave at the camera", "embodiment": "human", "operator_note": "", "success": None})
    (bags / "README.txt").write_text("not a bag, ignored")
    code = main([str(bags), str(out), "--embodiment", "robot", "--quiet"])
    report = json.loads((out / "conversion_report.json").read_text())
    return {"out": out, "code": code, "report": report, "stamps": stamps, "stamps_nog": stamps_nog,
            "human_stamps": human_stamps, "bags": bags}


def test_robot_bags_mcap_and_sqlite_align_frames_state_and_actions(good):
    assert good["code"] == 0, good["report"]
    assert sorted(r["bag"] for r in good["report"]["converted"]) == [
        "human_wave", "robot_bare_file", "robot_db3", "robot_mcap", "robot_mcap_ros2"]
    assert good["report"]["skipped"] == []
    ep = read_episode(good["out"] / "robot_mcap.h5")
    check_robot_episode(ep, good["stamps"], gripper=True)
    assert ep.task == "stack the cups"
    ep = read_episode(good["out"] / "robot_db3.h5")
    check_robot_episode(ep, good["stamps_nog"], gripper=False)
    assert ep.task == "stack the cups"
    by_bag = {r["bag"]: r for r in good["report"]["converted"]}
    assert by_bag["robot_mcap"]["metadata_sources"]["task"] == "episode.json"
    assert by_bag["robot_db3"]["metadata_sources"]["task"] == "metadata.yaml custom_data"
    assert by_bag["robot_db3"]["gripper_from"] == "last command"
    assert by_bag["robot_mcap"]["views"]["front"]["distinct_frames_used"] > 20
    assert by_bag["robot_mcap"]["views"]["front"]["max_frame_age_ms"] < 34  # 30 Hz camera
    assert by_bag["robot_mcap"]["max_gap_ms"]["/cameras/front/image_raw"] == pytest.approx(33.3, abs=0.1)


def test_60_hz_cameras_take_every_third_frame_on_the_20_hz_clock(tmp_path):
    msgs, stamps = scene(cam_rate=60, task="stack the cups")
    write_rosbag(tmp_path / "bags" / "cams60", msgs, "mcap")
    assert main([str(tmp_path / "bags"), str(tmp_path / "out"), "--embodiment", "robot", "--quiet"]) == 0
    (entry,) = json.loads((tmp_path / "out" / "conversion_report.json").read_text())["converted"]
    ep = read_episode(tmp_path / "out" / "cams60.h5")
    check_robot_episode(ep, stamps, gripper=True)  # the rule (newest frame stamped <= tick), state, actions
    # The same picks worked out by hand. Ticks start at 21 ms (the corner camera starts last) and end at the last
    # command (1.4525 s): 29 ticks. At 60 Hz frame k of a view is stamped offset + k/60 s, so tick m (21 + 50 m ms)
    # holds front frame 3m+1 (stamped 0.3 ms before), side frame 3m (8 ms before) and corner frame 3m, stamped
    # exactly on the tick (<= includes it): two of every three frames dropped, none repeated.
    assert ep.num_frames == 29 and entry["first_tick_ns"] == ns(0.021)
    m = np.arange(29)
    for view, first, age_ms in (("front", 1, 0.3), ("side", 0, 8.0), ("corner", 0, 0.0)):
        np.testing.assert_array_equal(ep.frames[view][:, 5, 7], [pixel(view, 3 * i + first) for i in m])
        assert entry["views"][view]["distinct_frames_used"] == 29
        assert entry["views"][view]["max_frame_age_ms"] == pytest.approx(age_ms, abs=0.05)
    assert entry["max_gap_ms"]["/cameras/front/image_raw"] == pytest.approx(16.7, abs=0.1)


def test_bag_from_another_writer_converts_to_the_same_content(good):
    ref = read_episode(good["out"] / "robot_mcap.h5")
    for name in ("robot_mcap_ros2", "robot_bare_file"):
        ep = read_episode(good["out"] / f"{name}.h5")
        assert ep.task == "stack the cups" and ep.embodiment == "robot"  # /task topic, --embodiment
        for v in VIEWS:
            np.testing.assert_array_equal(ep.frames[v], ref.frames[v])
        np.testing.assert_array_equal(ep.state, ref.state)
        np.testing.assert_array_equal(ep.actions, ref.actions)
    by_bag = {r["bag"]: r for r in good["report"]["converted"]}
    assert by_bag["robot_mcap_ros2"]["layout"] == "storage-dir"
    assert by_bag["robot_mcap_ros2"]["metadata_sources"] == {"embodiment": "--embodiment",
                                                             "task": "last message on /task"}


def test_human_bag_has_cameras_only(good):
    ep = read_episode(good["out"] / "human_wave.h5")
    assert ep.embodiment == "human" and ep.task == "wave at the camera"
    assert ep.state is None and ep.actions is None
    ticks = expected_ticks(good["human_stamps"], VIEWS)
    assert ep.num_frames == len(ticks)
    picked = [max(k for k, s in enumerate(good["human_stamps"]["side"]) if s <= tick) for tick in ticks]
    np.testing.assert_array_equal(ep.frames["side"][:, 0, 0], [pixel("side", k) for k in picked])


def test_store_is_accepted_by_preprocessing_and_the_training_reader(good, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    for name in ("robot_mcap", "human_wave"):
        shutil.copy(good["out"] / f"{name}.h5", store)
    report = preprocess_store(store, LucasKanadeTracker())
    assert sorted(report.done) == ["human_wave.h5", "robot_mcap.h5"] and not report.failed
    episodes = load_episodes([store], list(VIEWS), images=True, tracks=True)
    assert {e.embodiment for e in episodes} == {"robot", "human"}
    windows = TrackWindows(episodes)
    assert len(windows) == sum(e.num_frames for e in episodes)
    assert windows[0]["velocities"].shape == (3, 15, 400, 2)
    robot = load_episodes([store], list(VIEWS), images=True, tracks=True, need_actions=True)
    assert [e.path.name for e in robot] == ["robot_mcap.h5"] and robot[0].actions.shape[1] == 7


def test_measured_actions_are_the_next_tick_tcp_pose_with_continuous_rotation(tmp_path):
    msgs, stamps = scene(gripper=True, task="stack the cups")
    write_rosbag(tmp_path / "bags" / "ep", msgs, "sqlite3")
    settings = load_settings(overrides={"action_source": "measured"})
    report = convert_directory(tmp_path / "bags", tmp_path / "out", settings, default_embodiment="robot")
    assert [r.name for r in report.converted] == ["ep"], report.table()
    ep = read_episode(tmp_path / "out" / "ep.h5")
    # required streams: cameras, joint states, tcp pose (ending one tick early: its pose is the action)
    ts_ = {**stamps, "js": [ns(j / 125) for j in range(int(1.5 * 125))]}
    ts_["tcp_end"] = [ts_["js"][0], ts_["js"][-1] - DT]
    ticks = expected_ticks(ts_, [*VIEWS, "js", "tcp_end"])
    assert ep.num_frames == len(ticks)
    t_next = (ticks + DT - ns(0)) / 1e9
    np.testing.assert_allclose(ep.actions[:, :3], [tcp_position(x) for x in t_next], atol=1e-5)
    np.testing.assert_allclose(ep.actions[:, 3:5], 0, atol=1e-6)
    np.testing.assert_allclose(ep.actions[:, 5], tcp_angle(t_next), atol=1e-5)  # through pi, no flip
    assert ep.actions[:, 5].max() > math.pi
    np.testing.assert_allclose(ep.actions[:, 6], gripper_joint(t_next), atol=1e-6)


def test_continuous_rotvec_keeps_rotations_and_removes_flips():
    from scipy.spatial.transform import Rotation

    angles = np.linspace(2.8, 3.6, 9)
    canonical = Rotation.from_rotvec(np.outer(angles, [0.6, 0.0, 0.8])).as_rotvec()
    assert np.linalg.norm(np.diff(canonical, axis=0), axis=1).max() > 5  # the flip at pi
    out = continuous_rotvec(canonical)
    np.testing.assert_allclose(out, np.outer(angles, [0.6, 0.0, 0.8]), atol=1e-9)
    np.testing.assert_allclose(Rotation.from_rotvec(out).as_matrix(), Rotation.from_rotvec(canonical).as_matrix(),
                               atol=1e-9)


def test_image_size_option_and_config_file(tmp_path):
    msgs, _ = scene(duration=1.2, robot=False, views=("front",), task="look", encodings={"front": "bgr8"})
    write_rosbag(tmp_path / "bags" / "ep", msgs, "mcap")
    cfg = tmp_path / "conv.yaml"
    cfg.write_text(yaml.safe_dump({"views": ["front"], "min_frames": 4}))
    code = main([str(tmp_path / "bags"), str(tmp_path / "out"), "--config", str(cfg), "--embodiment", "human",
                 "--image-size", "16", "--fps", "10", "--quiet"])
    assert code == 0
    ep = read_episode(tmp_path / "out" / "ep.h5")
    assert ep.views == ["front"] and ep.frames["front"].shape[1:] == (16, 16, 3) and ep.fps == 10.0
    assert tuple(ep.frames["front"][3, 8, 8]) == pixel("front", 9)  # bgr8 -> RGB; tick 0.3 s after start
    with pytest.raises(SettingsError, match="unknown key"):
        load_settings(overrides={"nope": 1})
    cfg.write_text(yaml.safe_dump({"topics": {"joint_state": "/x"}}))
    assert main([str(tmp_path / "bags"), str(tmp_path / "o2"), "--config", str(cfg)]) == 2


def test_shipped_config_file_equals_the_built_in_defaults():
    path = os.path.join(os.path.dirname(__file__), "..", "config", "bag_conversion.yaml")
    assert yaml.safe_load(open(path)) == DEFAULTS
    assert load_settings(path) == DEFAULTS


def test_help_has_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "amplify-bags-to-episodes" in out and "Example::" in out and "--action-source" in out


# ------------------------------------------------------------------------------------- bad input


def test_bad_bags_are_skipped_with_reasons_and_the_others_converted(tmp_path, capsys):
    bags, out = tmp_path / "bags", tmp_path / "out"
    bags.mkdir()
    msgs, _ = scene(duration=1.2, task="stack the cups")
    for name, storage in (("good", "mcap"), ("cut_mcap", "mcap"), ("cut_db3", "sqlite3"),
                          ("garbage_metadata", "mcap"), ("already_there", "sqlite3")):
        write_rosbag(bags / name, msgs, storage)
    for name, suffix in (("cut_mcap", ".mcap"), ("cut_db3", ".db3")):
        f = next((bags / name).glob(f"*{suffix}"))
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    (bags / "garbage_metadata" / "metadata.yaml").write_text("rosbag2_bagfile_information: [: {{ garbage")
    write_rosbag(bags / "no_corner", [m for m in msgs if "corner" not in m[1]], "mcap")
    # one front frame stamped 0.5 s in the past: a clock jump, not jitter
    back = [list(m) for m in msgs]
    k = [i for i, m in enumerate(back) if m[1] == "/cameras/front/image_raw"][20]
    back[k][3] = {**back[k][3], "header": header((back[k][0] - ns(0)) / 1e9 - 0.5, "front")}
    write_rosbag(bags / "backwards", [tuple(m) for m in back], "mcap")
    # 5 ms of jitter: sorted and counted, converted
    jit = [list(m) for m in msgs]
    fronts = [i for i, m in enumerate(jit) if m[1] == "/cameras/front/image_raw"]
    a, b = fronts[10], fronts[11]
    sa, sb = jit[a][3]["header"], jit[b][3]["header"]
    jit[a][3], jit[b][3] = {**jit[a][3], "header": sb}, {**jit[b][3], "header": sa}  # swapped stamps
    write_rosbag(bags / "jitter", [tuple(m) for m in jit], "mcap")
    short, _ = scene(duration=0.6, task="stack the cups")
    write_rosbag(bags / "short", short, "sqlite3")
    bayer = [m if m[1] != "/cameras/side/image_raw" else (*m[:3], {**m[3], "encoding": "bayer_rggb8"})
             for m in msgs]
    write_rosbag(bags / "bayer", bayer, "mcap")
    write_rosbag(bags / "empty", [], "mcap", topics_only=[("/cameras/front/image_raw", "sensor_msgs/msg/Image")])
    write_rosbag(bags / "failed", msgs, "mcap", episode_json={"schema": 1, "task": "stack the cups",
                                                              "embodiment": "robot", "operator_note": "dropped it",
                                                              "success": False})
    (bags / "not_a_bag").mkdir()
    out.mkdir()
    existing = out / "already_there.h5"
    existing.write_bytes(b"someone's episode")
    os.utime(existing, (1_000_000, 1_000_000))

    code = main([str(bags), str(out), "--embodiment", "robot", "--quiet"])
    assert code == 1
    report = json.loads((out / "conversion_report.json").read_text())
    assert sorted(r["bag"] for r in report["converted"]) == ["good", "jitter"]
    jitter = next(r for r in report["converted"] if r["bag"] == "jitter")
    assert jitter["reordered_stamps"] == {"/cameras/front/image_raw": 1}
    skipped = {r["bag"]: r for r in report["skipped"]}
    assert skipped["already_there"]["kind"] == "exists"
    assert existing.read_bytes() == b"someone's episode" and existing.stat().st_mtime == 1_000_000
    assert skipped["failed"]["kind"] == "failed_episode" and "success: false" in skipped["failed"]["reason"]
    reasons = {name: r["reason"] for name, r in skipped.items() if r["kind"] == "error"}
    assert set(reasons) == {"cut_mcap", "cut_db3", "garbage_metadata", "no_corner", "backwards", "short", "bayer",
                            "empty", "not_a_bag"}
    for name, reason in reasons.items():
        assert str(bags / name) in reason, reason  # every reason names its bag
    assert "missing topic(s) /cameras/corner/image_raw" in reasons["no_corner"]
    assert "stamps on /cameras/front/image_raw go backwards by 46" in reasons["backwards"]
    assert "too short" in reasons["short"] and "min_frames 16" in reasons["short"]
    assert "unsupported image encoding 'bayer_rggb8' on /cameras/side/image_raw" in reasons["bayer"]
    assert "empty bag" in reasons["empty"]
    assert "not a bag" in reasons["not_a_bag"]
    for name in ("cut_mcap", "cut_db3", "garbage_metadata"):
        assert "truncated, corrupt" in reasons[name] and "\n" not in reasons[name]
    assert not (out / "cut_mcap.h5").exists() and not list(out.glob("*.partial"))
    table = capsys.readouterr().out
    assert "skipped (exists)" in table and "converted 2, skipped 11" in table

    # --overwrite replaces the existing file; --no-skip-failed converts the failed episode
    assert main([str(bags), str(out), "--embodiment", "robot", "--quiet", "--overwrite", "--no-skip-failed"]) == 1
    assert read_episode(existing).num_frames > 16 and (out / "failed.h5").exists()


def test_missing_task_or_embodiment_names_the_flag(tmp_path):
    msgs, _ = scene(duration=1.2, robot=False, task="")
    write_rosbag(tmp_path / "bags" / "plain", msgs, "mcap")
    settings = load_settings()
    r = convert_directory(tmp_path / "bags", tmp_path / "out", settings).results[0]
    assert r.status == "skipped" and "--embodiment" in r.reason
    r = convert_directory(tmp_path / "bags", tmp_path / "out", settings, default_embodiment="human").results[0]
    assert r.status == "skipped" and "--task" in r.reason
    r = convert_directory(tmp_path / "bags", tmp_path / "out", settings, default_embodiment="human",
                          default_task="wave").results[0]
    assert r.status == "converted" and read_episode(tmp_path / "out" / "plain.h5").task == "wave"
    # a robot bag needs its robot topics
    r = convert_directory(tmp_path / "bags", tmp_path / "out2", settings, default_embodiment="robot",
                          default_task="wave").results[0]
    assert r.status == "skipped" and "missing topic(s) /joint_states, /ur5/command" in r.reason


@pytest.mark.parametrize("fps", ["inf", "nan", "-20", "0"])
def test_an_impossible_fps_is_a_settings_error_not_a_corrupt_bag(tmp_path, capsys, fps):
    (tmp_path / "bags").mkdir()
    assert main([str(tmp_path / "bags"), str(tmp_path / "out"), "--fps", fps]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fps must be a positive finite number" in err[0] and "corrupt" not in err[0]
    assert not (tmp_path / "out").exists()


def test_dropped_camera_frames_are_listed_per_view_as_gaps(good, tmp_path):
    for entry in good["report"]["converted"]:  # clean recordings: no gaps anywhere
        assert all(v["gaps"] == [] and v["ticks_with_held_frame"] == 0 for v in entry["views"].values()), entry
    msgs, stamps = scene(task="stack the cups")
    dropped = {ns(CAM_OFFSET["front"] + k / 30) for k in range(20, 24)}  # 4 front frames (133 ms) lost
    msgs = [m for m in msgs if not (m[1] == "/cameras/front/image_raw" and m[3]["header"]["stamp"]["sec"] * 10**9
                                    + m[3]["header"]["stamp"]["nanosec"] in dropped)]
    write_rosbag(tmp_path / "bags" / "dropped", msgs, "mcap")
    assert main([str(tmp_path / "bags"), str(tmp_path / "out"), "--embodiment", "robot", "--quiet"]) == 0
    (entry,) = json.loads((tmp_path / "out" / "conversion_report.json").read_text())["converted"]
    front = entry["views"]["front"]
    # worked out from the stamps: ticks whose newest front frame is older than 1.5 x 50 ms
    kept = np.array(sorted(set(stamps["front"]) - dropped))
    ticks = entry["first_tick_ns"] + 50_000_000 * np.arange(entry["frames"])
    age = ticks - kept[np.searchsorted(kept, ticks, side="right") - 1]
    late = np.flatnonzero(age > 75_000_000)
    assert len(late) >= 2 and np.all(np.diff(late) == 1)  # one run of held frames
    assert front["gaps"] == [{"first_tick": int(late[0]), "ticks": len(late),
                              "at_s": round((ticks[late[0]] - ticks[0]) / 1e9, 3),
                              "max_frame_age_ms": round(float(age[late].max()) / 1e6, 1)}]
    assert front["ticks_with_held_frame"] == len(late) and front["camera_period_ms"] == pytest.approx(33.3, abs=0.1)
    ep = read_episode(tmp_path / "out" / "dropped.h5")
    np.testing.assert_array_equal(ep.frames["front"][late, 5, 7], [pixel("front", 19)] * len(late))  # frame 19 held
    assert entry["views"]["side"]["gaps"] == [] and entry["views"]["corner"]["gaps"] == []
    assert any(w.startswith("view front (/cameras/front/image_raw): ") and "gap" in w for w in entry["warnings"])
