"""Data collection end to end: camera and robot-topic publishers -> recorder_node -> bag on disk ->
amplify-bags-to-episodes -> an episode store that track preprocessing and the training reader accept.

Real processes: fake_cameras_node (3 x 30 Hz, stamp jitter) and recorder_node; this test's probe node publishes
/joint_states (a known ramp of its header stamp, 100 Hz), /ur5/tcp_pose and /ur5/command (20 Hz) and records the
camera frames it also receives, to check which frame each 20 Hz tick of the episode picked."""

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
from std_srvs.srv import SetBool, Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from amplify_core.ur5 import JOINT_NAMES  # noqa: E402
from amplify_ros.camera_sync import ns_to_stamp_fields, stamp_to_ns  # noqa: E402

TASK = "open the drawer"
Q0 = np.array([0.1, -1.5, 1.4, -1.2, -1.57, 0.2])
RAMP = np.array([0.05, -0.02, 0.03, 0.01, 0.0, -0.04])  # rad/s: joint i = Q0 + RAMP * (stamp - T0)


def test_publishers_recorder_bag_converter_store(tmp_path):
    from amplify_core.datasets import TrackWindows, load_episodes
    from amplify_core.episodes import read_episode
    from amplify_core.preprocessing import preprocess_store
    from amplify_core.tracking import LucasKanadeTracker
    from training.bags_to_episodes import main as convert

    bags, store = tmp_path / "bags", tmp_path / "episodes"
    procs = {
        "cameras": start_process(node_argv("amplify_ros.fake_cameras_node", ROOT / "config/fake_cameras.yaml"),
                                 tmp_path / "cameras.log"),
        "recorder": start_process(node_argv("amplify_ros.recorder_node", ROOT / "config/recorder.yaml",
                                            output_dir=str(bags), task=TASK), tmp_path / "recorder.log"),
    }
    probe = Probe("collection_probe")
    t0 = time.time_ns()
    try:
        probe.record(Image, "/cameras/front/image_raw", keep=2000)
        node = probe.node
        js_pub = node.create_publisher(JointState, "/joint_states", 50)
        pose_pub = node.create_publisher(PoseStamped, "/ur5/tcp_pose", 50)
        cmd_pub = node.create_publisher(JointTrajectory, "/ur5/command", 50)

        def publish_state():
            now = time.time_ns()
            msg = JointState(name=list(JOINT_NAMES), position=[float(v) for v in Q0 + RAMP * (now - t0) / 1e9])
            msg.header.stamp.sec, msg.header.stamp.nanosec = ns_to_stamp_fields(now)
            js_pub.publish(msg)
            pose = PoseStamped()
            pose.header = msg.header
            pose.pose.position.x, pose.pose.orientation.w = 0.4 + 0.01 * (now - t0) / 1e9, 1.0
            pose_pub.publish(pose)

        def publish_command():
            now = time.time_ns()
            msg = JointTrajectory(joint_names=["x", "y", "z", "rx", "ry", "rz", "gripper"])
            msg.header.stamp.sec, msg.header.stamp.nanosec = ns_to_stamp_fields(now)
            msg.points = [JointTrajectoryPoint(positions=[0.4, (now - t0) / 1e9, 0.3, 3.14, 0.0, 0.0, 1.0])]
            cmd_pub.publish(msg)

        node.create_timer(0.01, publish_state)
        node.create_timer(0.05, publish_command)
        probe.wait_for(lambda: len(probe.get("/cameras/front/image_raw")) > 10, 30, "camera frames")
        assert probe.call(Trigger, "/recorder/start", Trigger.Request()).success
        time.sleep(3.0)
        reply = probe.call(SetBool, "/recorder/stop", SetBool.Request(data=True))
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
    assert 50 <= n <= 70, n  # ~3 s at 20 Hz (plus the service round trips)
    assert {v: f.shape for v, f in episode.frames.items()} == {v: (n, 128, 128, 3) for v in ("front", "side", "corner")}
    ticks = entry["first_tick_ns"] + np.arange(n) * 50_000_000
    # proprio: the joint ramp at each tick's time (linear interpolation of the recorded states)
    expected = Q0 + RAMP * (ticks[:, None] - t0) / 1e9
    np.testing.assert_allclose(episode.state[:, :6], expected, atol=2e-5)
    # actions: the newest command stamped before the next tick (its y encodes its stamp)
    assert np.all(episode.actions[:, 1] <= (ticks - t0) / 1e9 + 0.05 + 1e-6)
    assert np.all(episode.actions[:, 1] > (ticks - t0) / 1e9 - 0.06)
    assert np.all(episode.actions[:, 6] == 1.0)
    # pixels: each tick holds the newest front frame stamped at or before it, as this probe received them
    received = sorted((stamp_to_ns(m.header.stamp), np.frombuffer(bytes(m.data), np.uint8).reshape(128, 128, 3))
                      for _, _, m in probe.get("/cameras/front/image_raw"))
    stamps = np.array([s for s, _ in received])
    matches = 0
    for k, tick in enumerate(ticks):
        i = np.searchsorted(stamps, tick, side="right") - 1
        matches += i >= 0 and np.array_equal(received[i][1], episode.frames["front"][k])
    assert matches >= 0.9 * n, f"{matches} of {n} ticks hold the expected frame"
    # the store is what the rest of the project reads
    preprocess_store(store, LucasKanadeTracker())
    loaded = load_episodes([store], ["front", "side", "corner"], images=True, tracks=True, need_actions=True)
    assert len(loaded) == 1 and len(TrackWindows(loaded)) > 0
