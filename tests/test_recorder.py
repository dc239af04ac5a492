"""The episode recorder with real processes: amplify_ros.fake_cameras_node (config/fake_cameras.yaml, 128x128,
30 Hz) and amplify_ros.recorder_node, plus this test's probe node publishing the robot topics and calling the
services. The bags are read back with rosbags (Reader + Jazzy typestore)."""

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from ros_processes import ROOT, Probe, node_argv, start_process, stop_process, use_ros_env_here  # noqa: E402

pytest.importorskip("rclpy")
pytest.importorskip("rosbags")
use_ros_env_here()
from geometry_msgs.msg import PoseStamped  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rosbags.rosbag2 import Reader  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from amplify_ros.camera_sync import stamp_to_ns  # noqa: E402
from amplify_ros.fake_cameras_node import render  # noqa: E402

CAMERAS = ["/cameras/front/image_raw", "/cameras/side/image_raw", "/cameras/corner/image_raw"]
ROBOT_TOPICS = ["/joint_states", "/ur5/tcp_pose", "/ur5/command", "/task"]
TASK = "put the red block in the bowl"
JOINTS = [f"joint_{i}" for i in range(6)]
TYPESTORE = get_typestore(Stores.ROS2_JAZZY)


def tail(path, n=3000):
    return path.read_text()[-n:] if path.exists() else ""


class Rig:
    """Cameras + recorder processes, the probe publishing the robot topics at fixed rates with known values."""

    def __init__(self, tmp: Path):
        self.tmp, self.out = tmp, tmp / "bags"
        self.procs = {
            "cameras": start_process(node_argv("amplify_ros.fake_cameras_node", ROOT / "config/fake_cameras.yaml"),
                                     tmp / "cameras.log"),
            "recorder": self.start_recorder("recorder", self.out),
        }
        self.probe = Probe("recorder_probe")
        node = self.probe.node
        for topic in CAMERAS:
            self.probe.record(Image, topic, keep=400)
        self.probe.record(String, "/recorder/status", keep=50)
        self.pubs = {"/joint_states": node.create_publisher(JointState, "/joint_states", 10),
                     "/ur5/tcp_pose": node.create_publisher(PoseStamped, "/ur5/tcp_pose", 10),
                     "/ur5/command": node.create_publisher(JointTrajectory, "/ur5/command", 10),
                     "/task": node.create_publisher(String, "/task", 10)}
        self.sent_joints: dict[int, list] = {}  # sequence number -> positions
        self.seq = 0
        node.create_timer(0.02, self.publish_state)  # 50 Hz
        node.create_timer(0.1, self.publish_command_and_task)  # 10 Hz

    def start_recorder(self, name, out, **params):
        """A recorder process named ``name`` (its services are /<name>/start ...), bags in ``out``."""
        argv = node_argv("amplify_ros.recorder_node", ROOT / "config/recorder.yaml", output_dir=str(out), **params)
        if name != "recorder":
            argv += ["-r", f"__node:={name}"]  # the params file's `recorder:` key no longer applies: same defaults
        return start_process(argv, self.tmp / f"{name}.log")

    def publish_state(self):
        self.seq += 1
        now = self.probe.node.get_clock().now().to_msg()
        positions = [self.seq * 0.001 + j for j in range(6)]
        self.sent_joints[self.seq] = positions
        js = JointState(name=JOINTS, position=positions, velocity=[0.1] * 6, effort=[])
        js.header.stamp, js.header.frame_id = now, str(self.seq)
        self.pubs["/joint_states"].publish(js)
        pose = PoseStamped()
        pose.header.stamp, pose.header.frame_id = now, "base"
        pose.pose.position.x, pose.pose.orientation.w = float(self.seq), 1.0
        self.pubs["/ur5/tcp_pose"].publish(pose)

    def publish_command_and_task(self):
        cmd = JointTrajectory(joint_names=["x", "y", "z", "rx", "ry", "rz", "gripper"],
                              points=[JointTrajectoryPoint(positions=[0.1] * 7)])
        cmd.header.stamp = self.probe.node.get_clock().now().to_msg()
        self.pubs["/ur5/command"].publish(cmd)
        self.pubs["/task"].publish(String(data=TASK))

    def set_params(self, node="/recorder", **params):
        request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg()
                                                    for k, v in params.items()])
        results = self.probe.call(SetParameters, f"{node}/set_parameters", request).results
        return [(r.successful, r.reason) for r in results]

    def start(self, node="/recorder"):
        return self.probe.call(Trigger, f"{node}/start", Trigger.Request())

    def stop(self, success=True, node="/recorder"):
        return self.probe.call(SetBool, f"{node}/stop", SetBool.Request(data=success), timeout=30)

    def discard(self, node="/recorder"):
        return self.probe.call(Trigger, f"{node}/discard", Trigger.Request())

    def wait_ready(self, timeout=40):
        """The recorder is up and receives every camera and every robot topic."""
        self.probe.wait_for(lambda: all(len(self.probe.get(t)) > 5 for t in CAMERAS), timeout, "camera frames")
        self.probe.wait_for(lambda: all(p.get_subscription_count() >= 1 for p in self.pubs.values()), timeout,
                            "the recorder subscribing the robot topics")
        self.probe.wait_for(lambda: self.probe.get("/recorder/status"), timeout, "recorder status")

    def close(self):
        self.probe.close()
        for proc in self.procs.values():
            stop_process(proc)


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("recorder")
    rig = Rig(tmp)
    try:
        rig.wait_ready()
        yield rig
        for name, proc in rig.procs.items():
            assert proc.poll() is None, f"{name} exited:\n{tail(tmp / f'{name}.log')}"
    except BaseException:
        for name in rig.procs:
            print(f"==== {name}\n{tail(tmp / f'{name}.log')}")
        raise
    finally:
        rig.close()


def bag_path(message: str) -> Path:
    return Path(message.rsplit(" to ", 1)[1].split(" (")[0])


def read_bag(path: Path) -> dict[str, list]:
    """topic -> [(bag timestamp, message)], the message types being Jazzy's."""
    out: dict[str, list] = {}
    with Reader(path) as reader:
        for conn in reader.connections:
            out.setdefault(conn.topic, [])
        for conn, t, raw in reader.messages():
            out[conn.topic].append((t, TYPESTORE.deserialize_cdr(raw, conn.msgtype)))
    return out


def check_storage_file(path: Path, storage: str, count: int) -> None:
    """The storage file as ROS 2 Jazzy's own plugins expect it, read with independent libraries."""
    if storage == "mcap":
        from mcap.reader import make_reader
        from mcap_ros2.decoder import DecoderFactory

        (file,) = path.glob("*.mcap")
        with open(file, "rb") as fh:
            reader = make_reader(fh, decoder_factories=[DecoderFactory()])
            assert reader.get_header().profile == "ros2"
            summary = reader.get_summary()  # rosbag2_storage_mcap needs the summary section
            assert summary.statistics.message_count == count
            assert {s.encoding for s in summary.schemas.values()} == {"ros2msg"}
            decoded = [m for _, _, _, m in reader.iter_decoded_messages(topics=["/joint_states"])]
            assert decoded and len(decoded[0].position) == 6
    else:
        import sqlite3

        (file,) = path.glob("*.db3")
        with sqlite3.connect(file) as db:
            assert db.execute("select schema_version from schema").fetchone()[0] == 4  # Jazzy's sqlite3 schema
            assert db.execute("select count(*) from messages").fetchone()[0] == count


def record(rig, seconds, success=True):
    started = rig.start()
    assert started.success, started.message
    time.sleep(seconds)
    stopped = rig.stop(success)
    assert stopped.success, stopped.message
    path = bag_path(started.message)
    return path, stopped.message


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_robot_episode_is_a_readable_bag_with_what_was_published(rig, storage):
    assert rig.set_params(storage=storage, task=TASK, embodiment="robot", operator_note="first try") == [(True, "")] * 4
    path, message = record(rig, 2.0)
    assert path.parent == rig.out and path.is_dir() and path.name.startswith("episode_")
    meta = json.loads((path / "episode.json").read_text())
    assert {k: meta[k] for k in ("schema", "task", "embodiment", "operator_note", "success", "interrupted")} == {
        "schema": 1, "task": TASK, "embodiment": "robot", "operator_note": "first try", "success": True,
        "interrupted": False}
    duration = (meta["end_time_ns"] - meta["start_time_ns"]) / 1e9
    assert 1.9 < duration < 4.0, duration
    info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == 9 and info["storage_identifier"] == storage
    assert info["custom_data"] == {"amplify.schema": "1", "amplify.task": TASK, "amplify.embodiment": "robot",
                                   "amplify.success": "true", "amplify.operator_note": "first try",
                                   "amplify.interrupted": "false"}
    types = {t["topic_metadata"]["name"]: t["topic_metadata"]["type"] for t in info["topics_with_message_count"]}
    assert types == {**{c: "sensor_msgs/msg/Image" for c in CAMERAS}, "/joint_states": "sensor_msgs/msg/JointState",
                     "/ur5/tcp_pose": "geometry_msgs/msg/PoseStamped",
                     "/ur5/command": "trajectory_msgs/msg/JointTrajectory", "/task": "std_msgs/msg/String"}

    bag = read_bag(path)
    assert {t: len(m) for t, m in bag.items()} == meta["topics"]
    assert sum(meta["dropped"].values()) == 0 and meta["write_error"] is None
    check_storage_file(path, storage, info["message_count"])
    for t, _ in (x for msgs in bag.values() for x in msgs):
        assert meta["start_time_ns"] <= t <= meta["end_time_ns"]  # bag time = receive time during the episode

    # cameras: ~30 Hz x duration each, 128x128 rgb8, pixels equal to what the fake camera published (same stamp)
    probe_frames = {c: {stamp_to_ns(m.header.stamp): bytes(m.data) for _, _, m in rig.probe.get(c)} for c in CAMERAS}
    for i, camera in enumerate(CAMERAS):
        frames = bag[camera]
        assert 0.7 * 30 * duration - 2 <= len(frames) <= 30 * duration + 3, (camera, len(frames), duration)
        references = [render(128, 128, k, 8, i).tobytes() for k in range(8)]
        compared = 0
        for _, img in frames:
            assert (img.width, img.height, img.encoding, img.step, img.header.frame_id) == (
                128, 128, "rgb8", 384, f"{camera.split('/')[2]}_camera_optical_frame")
            data = img.data.tobytes()
            assert data in references
            stamp = img.header.stamp.sec * 10**9 + img.header.stamp.nanosec
            if stamp in probe_frames[camera]:
                assert data == probe_frames[camera][stamp]
                compared += 1
        assert compared >= 0.8 * len(frames), (camera, compared, len(frames))

    # joint states: exactly the published values, consecutive (none lost), in order
    joints = [m for _, m in bag["/joint_states"]]
    assert 0.6 * 50 * duration <= len(joints) <= 50 * duration + 5, (len(joints), duration)  # probe timer 50 Hz
    seqs = [int(m.header.frame_id) for m in joints]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # every message published in between
    for seq, m in zip(seqs, joints):
        assert list(m.name) == JOINTS and np.array_equal(m.position, rig.sent_joints[seq])
    poses = [m for _, m in bag["/ur5/tcp_pose"]]
    assert abs(len(poses) - len(joints)) <= 2 and all(p.header.frame_id == "base" for p in poses)
    assert len(bag["/ur5/command"]) >= 0.6 * 10 * duration - 2
    assert len(bag["/task"]) >= 0.6 * 10 * duration - 2 and {m.data for _, m in bag["/task"]} == {TASK}
    assert "dropped 0" in message and f"/cameras/front/image_raw {len(bag[CAMERAS[0]])}" in message


def test_human_episode_records_the_cameras_only(rig):
    assert rig.set_params(embodiment="human", task="", storage="mcap") == [(True, "")] * 3
    try:
        path, _ = record(rig, 1.0, success=False)
    finally:
        rig.set_params(embodiment="robot", task=TASK)
    meta = json.loads((path / "episode.json").read_text())
    assert meta["embodiment"] == "human" and meta["success"] is False and meta["task"] == ""
    bag = read_bag(path)
    assert sorted(bag) == sorted(CAMERAS) and sorted(meta["topics"]) == sorted(CAMERAS)
    assert all(len(bag[c]) >= 20 for c in CAMERAS), {c: len(bag[c]) for c in CAMERAS}


def test_refusals_discard_and_never_overwriting(rig):
    # invalid parameter values are refused by the node
    assert rig.set_params(embodiment="robotic")[0][0] is False
    assert rig.set_params(storage="rosbag1")[0][0] is False
    # a robot episode needs a task
    assert rig.set_params(task="", embodiment="robot") == [(True, "")] * 2
    refused = rig.start()
    assert not refused.success and "parameter task is empty" in refused.message
    assert rig.set_params(task=TASK) == [(True, "")]
    # one episode at a time
    started = rig.start()
    assert started.success, started.message
    path = bag_path(started.message)
    again = rig.start()
    assert not again.success and "already recording" in again.message and path.name in again.message
    status = rig.probe.wait_for(lambda: [s for _, _, m in rig.probe.get("/recorder/status")
                                         if (s := json.loads(m.data))["recording"] and s["episode"] == path.name
                                         and s["messages"].get("/joint_states", 0) > 0], 5,
                                "status while recording")[-1]
    assert {"queue_depth", "dropped", "last_error", "messages"} <= set(status)
    # discard deletes the directory
    discarded = rig.discard()
    assert discarded.success and "deleted" in discarded.message, discarded.message
    assert not path.exists()
    assert not rig.discard().success and not rig.stop().success  # nothing recording any more

    # an existing directory is never overwritten: occupy the next name for the next few seconds
    index = int(path.name.rsplit("_", 1)[1]) + 1
    occupied = []
    now = time.time()
    for dt in range(-1, 6):
        d = rig.out / f"episode_{time.strftime('%Y%m%d_%H%M%S', time.localtime(now + dt))}_{index:03d}"
        d.mkdir()
        (d / "keep.txt").write_text("mine")
        occupied.append(d)
    refused = rig.start()
    assert not refused.success and "already exists" in refused.message and "overwrite" in refused.message
    for d in occupied:
        assert [p.name for p in d.iterdir()] == ["keep.txt"] and (d / "keep.txt").read_text() == "mine"


def test_sigint_while_recording_leaves_a_readable_interrupted_bag(rig):
    out = rig.tmp / "sigint_bags"
    # a second recorder (own node name, so /recorder_sigint/start ...); its TCP pose topic has no publisher
    rig.probe.record(String, "/recorder_sigint/status", keep=50)
    proc = rig.start_recorder("recorder_sigint", out, task=TASK, storage="mcap", tcp_pose_topic="/ur5/no_publisher")
    try:
        rig.probe.wait_for(lambda: all(p.get_subscription_count() >= 2 for t, p in rig.pubs.items()
                                       if t != "/ur5/tcp_pose"), 40, "the second recorder subscribing")
        started = rig.start("/recorder_sigint")
        assert started.success, started.message
        path = bag_path(started.message)
        assert path.parent == out
        # interrupt once enough is recorded (by the recorder's own count: a loaded machine publishes slower)
        rig.probe.wait_for(lambda: [s for _, _, m in rig.probe.get("/recorder_sigint/status")
                                    if (s := json.loads(m.data))["recording"]
                                    and min(s["messages"].get(c, 0) for c in CAMERAS) >= 15
                                    and s["messages"].get("/joint_states", 0) >= 25], 30, "15 frames per camera")
        assert stop_process(proc) == 0  # SIGINT
        log = tail(rig.tmp / "recorder_sigint.log")
        assert "shutdown while recording" in log and "INTERRUPTED" in log, log
        assert "no messages on /ur5/no_publisher" in log, log
    finally:
        stop_process(proc)
    meta = json.loads((path / "episode.json").read_text())
    assert meta["interrupted"] is True and meta["success"] is False and meta["task"] == TASK
    bag = read_bag(path)
    counts = {t: len(m) for t, m in bag.items()}
    assert all(counts[c] >= 15 for c in CAMERAS) and counts["/joint_states"] >= 25, counts
    assert bag["/ur5/no_publisher"] == [] and "/ur5/tcp_pose" not in bag
    assert {t: len(m) for t, m in bag.items()} == meta["topics"]
    info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["custom_data"]["amplify.interrupted"] == "true"
