"""Data collection end to end: camera and robot-topic publishers -> recorder_node -> bag on disk ->
amplify-bags-to-episodes -> an episode store that track preprocessing and the training stages accept.

Real processes: fake_cameras_node (3 x 30 Hz, stamp jitter) and recorder_node; this test's probe node publishes
/joint_states (a known ramp of its header stamp, 100 Hz), /ur5/tcp_pose and /ur5/command (20 Hz) and records the
front frames it also receives. The recorded bag, read back here, is the reference for the frame count and for the
frame each 20 Hz tick must hold; the probe's copies and the camera's own images check the bag's pixels."""

import json
import time

import numpy as np
import pytest

from ros_processes import ROOT, Probe, node_argv, start_process, stop_process, use_ros_env_here

pytest.importorskip("rclpy")
pytest.importorskip("rosbags")
use_ros_env_here()
from geometry_msgs.msg import PoseStamped  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from amplify_core.ur5 import JOINT_NAMES  # noqa: E402
from amplify_ros.camera_sync import ns_to_stamp_fields, stamp_to_ns  # noqa: E402

TASK = "open the drawer"
VIEWS = ("front", "side", "corner")
DT = 50_000_000  # ns, the 20 Hz control clock
Q0 = np.array([0.1, -1.5, 1.4, -1.2, -1.57, 0.2])
RAMP = np.array([0.05, -0.02, 0.03, 0.01, 0.0, -0.04])  # rad/s: joint i = Q0 + RAMP * (stamp - T0)


def test_publishers_recorder_bag_converter_store(tmp_path):
    from amplify_core.configs import load_config
    from amplify_core.datasets import TrackWindows, load_episodes
    from amplify_core.episodes import read_episode
    from amplify_core.preprocessing import preprocess_store
    from amplify_core.tracking import LucasKanadeTracker
    from amplify_ros.fake_cameras_node import render
    from training.bags_to_episodes import main as convert
    from training.stages import train_inverse, train_tokenizer

    bags, store = tmp_path / "bags", tmp_path / "episodes"
    procs = {
        "cameras": start_process(node_argv("amplify_ros.fake_cameras_node", ROOT / "config/fake_cameras.yaml"),
                                 tmp_path / "cameras.log"),
        "recorder": start_process(node_argv("amplify_ros.recorder_node", ROOT / "config/recorder.yaml",
                                            output_dir=str(bags), task=TASK), tmp_path / "recorder.log"),
    }
    probe = Probe("collection_probe")
    t0_ns = time.time_ns()
    try:
        probe.record(Image, "/cameras/front/image_raw", qos=50, keep=2000)
        node = probe.node
        js_pub = node.create_publisher(JointState, "/joint_states", 50)
        pose_pub = node.create_publisher(PoseStamped, "/ur5/tcp_pose", 50)
        cmd_pub = node.create_publisher(JointTrajectory, "/ur5/command", 50)

        def publish_state():
            now = time.time_ns()
            msg = JointState(name=list(JOINT_NAMES), position=[float(v) for v in Q0 + RAMP * (now - t0_ns) / 1e9])
            msg.header.stamp.sec, msg.header.stamp.nanosec = ns_to_stamp_fields(now)
            js_pub.publish(msg)
            pose = PoseStamped()
            pose.header = msg.header
            pose.pose.position.x, pose.pose.orientation.w = 0.4 + 0.01 * (now - t0_ns) / 1e9, 1.0
            pose_pub.publish(pose)

        def publish_command():
            now = time.time_ns()
            msg = JointTrajectory(joint_names=["x", "y", "z", "rx", "ry", "rz", "gripper"])
            msg.header.stamp.sec, msg.header.stamp.nanosec = ns_to_stamp_fields(now)
            msg.points = [JointTrajectoryPoint(positions=[0.4, (now - t0_ns) / 1e9, 0.3, 3.14, 0.0, 0.0, 1.0])]
            cmd_pub.publish(msg)

        node.create_timer(0.01, publish_state)
        node.create_timer(0.05, publish_command)
        probe.wait_for(lambda: len(probe.get("/cameras/front/image_raw")) > 10, 30, "camera frames")
        # the recorder (camera_reliability auto) subscribes to a camera at its first once-a-second look after the
        # camera's publisher appears: frames published before that never reach it, which put the first recorded
        # frame up to 0.7 s after the start call (CI). Start once its status reports every camera subscribed, plus
        # the time the new subscriptions take to match.
        probe.record(String, "/recorder/status", keep=20)
        probe.wait_for(lambda: [m for _, _, m in probe.get("/recorder/status")
                                if None not in json.loads(m.data)["camera_qos"].values()], 15,
                       "the recorder subscribed to every camera")
        time.sleep(0.3)
        start_sent = time.time_ns()
        assert probe.call(Trigger, "/recorder/start", Trigger.Request()).success
        started = time.time_ns()
        time.sleep(3.0)
        stop_sent = time.time_ns()
        reply = probe.call(SetBool, "/recorder/stop", SetBool.Request(data=True))
        stopped = time.time_ns()
        assert reply.success, reply.message
    finally:
        probe.close()
        for proc in procs.values():
            stop_process(proc)

    assert convert([str(bags), str(store)]) == 0
    report = json.loads((store / "conversion_report.json").read_text())
    (entry,) = report["converted"]
    assert report["skipped"] == []
    episode = read_episode(entry["episode"])
    n = episode.num_frames
    assert episode.fps == 20.0 and episode.task == TASK and episode.embodiment == "robot"
    bag = read_bag(entry["path"])
    # frame count: one tick per 50 ms from the first instant every required stream has a message (cameras, joint
    # states, commands) to the last instant all still have one, from the stamps in the bag
    t0 = max(bag[t][0][0] for t in REQUIRED)
    t1 = min(bag[t][-1][0] for t in REQUIRED)
    assert entry["first_tick_ns"] == t0 and n == (t1 - t0) // DT + 1, (entry["first_tick_ns"], t0, n, t1)
    # and the span is the recording's: stamps are wall-clock times of this machine, so it lies between the start
    # and stop calls (0.5 s of slack: under load a message stamped before the start can arrive after it, and the
    # last ones before the stop can still be in flight)
    assert start_sent - 0.5e9 < t0 and t1 < stopped and t1 - t0 > (stop_sent - started) - 0.5e9
    assert {v: f.shape for v, f in episode.frames.items()} == {v: (n, 128, 128, 3) for v in VIEWS}
    ticks = t0 + np.arange(n) * DT
    # proprio: the joint ramp at each tick's time (linear interpolation of the recorded states)
    expected = Q0 + RAMP * (ticks[:, None] - t0_ns) / 1e9
    np.testing.assert_allclose(episode.state[:, :6], expected, atol=2e-5)
    # actions: the newest command stamped before the next tick (its y encodes its stamp)
    assert np.all(episode.actions[:, 1] <= (ticks - t0_ns) / 1e9 + 0.05 + 1e-6)
    assert np.all(episode.actions[:, 1] > (ticks - t0_ns) / 1e9 - 0.06)
    assert np.all(episode.actions[:, 6] == 1.0)
    # pixels, every tick and view: the newest frame of the bag stamped at or before the tick
    for i, view in enumerate(VIEWS):
        frames = bag[f"/cameras/{view}/image_raw"]
        stamps = np.array([s for s, _ in frames])
        picked = np.searchsorted(stamps, ticks, side="right") - 1
        wrong = [k for k, j in enumerate(picked) if not np.array_equal(episode.frames[view][k], frames[j][1])]
        assert not wrong, f"{view}: ticks {wrong} of {n} do not hold the newest bag frame stamped <= the tick"
        # and the bag holds what the camera published: one of its pre-rendered images, not another camera's
        published = [render(128, 128, f, 8, i) for f in range(8)]
        assert all(any(np.array_equal(img, p) for p in published) for _, img in frames), view
    # the probe's copies of the same front frames (same stamp) are byte-identical to the bag's. Not every bag
    # frame need have a copy: the probe and the recorder are separate reliable keep-last subscribers, and under
    # load either may lose a frame the other got, so the bag (what was recorded) is the reference above.
    received = {stamp_to_ns(m.header.stamp): bytes(m.data) for _, _, m in probe.get("/cameras/front/image_raw")}
    shared = [(s, img) for s, img in bag["/cameras/front/image_raw"] if s in received]
    assert len(shared) > len(bag["/cameras/front/image_raw"]) // 2, "the probe missed most front frames"
    assert all(received[s] == img.tobytes() for s, img in shared)
    # the store is what the rest of the project reads: tracks, then a step of the tokenizer and of the inverse
    # model (codes from that tokenizer; images, proprio and actions from the converted episode)
    assert not preprocess_store(store, LucasKanadeTracker()).failed
    loaded = load_episodes([store], list(VIEWS), images=True, tracks=True, need_actions=True)
    assert len(loaded) == 1 and len(TrackWindows(loaded)) == n
    config = load_config("tiny")
    tok = train_tokenizer(config, [store], tmp_path / "run", steps=2, progress=False)
    assert len(tok.losses) == 2 and np.isfinite(tok.losses).all() and (tmp_path / "run" / "tokenizer.pt").is_file()
    inv = train_inverse(config, [store], tmp_path / "run", tokenizer_path=tmp_path / "run" / "tokenizer.pt",
                        steps=1, progress=False)
    assert len(inv.losses) == 1 and np.isfinite(inv.losses).all()


REQUIRED = (*(f"/cameras/{v}/image_raw" for v in VIEWS), "/joint_states", "/ur5/command")


def read_bag(path) -> dict:
    """topic -> [(header stamp ns, payload)] sorted by stamp; payload = the RGB frame for camera topics."""
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_JAZZY)
    out = {}
    with Reader(path) as reader:
        for conn, _, raw in reader.messages():
            msg = typestore.deserialize_cdr(raw, conn.msgtype)
            if not hasattr(msg, "header"):
                continue
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            payload = None
            if conn.msgtype == "sensor_msgs/msg/Image":
                assert msg.encoding == "rgb8" and msg.step == 3 * msg.width
                payload = np.asarray(msg.data, np.uint8).reshape(msg.height, msg.width, 3).copy()
            out.setdefault(conn.topic, []).append((stamp, payload))
    return {topic: sorted(v, key=lambda x: x[0]) for topic, v in out.items()}
