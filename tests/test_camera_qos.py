"""Camera QoS of the subscribers (amplify_ros/qos_matching.py) with real processes: the model nodes and the recorder
match a best-effort camera publisher, as most camera drivers are, including one that appears after them; a forced
reliable subscription says why it receives nothing. Fake cameras publishing best effort, a forward node with tiny
checkpoints, a recorder, this test's probe."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from ros_processes import (ROOT, TASKS, Probe, call_service, node_argv, start_process, stop_process,  # noqa: E402
                           tiny_checkpoints, use_ros_env_here)

pytest.importorskip("rclpy")
use_ros_env_here()
from rclpy.qos import ReliabilityPolicy  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from amplify_ros.qos_matching import reliability_for  # noqa: E402

CAMERAS = ["/cameras/front/image_raw", "/cameras/side/image_raw", "/cameras/corner/image_raw"]


def test_reliability_follows_the_publishers():
    R, B = ReliabilityPolicy.RELIABLE, ReliabilityPolicy.BEST_EFFORT
    assert reliability_for([])[0] is None
    assert reliability_for([R, R])[0] == "reliable"
    assert reliability_for([R, B]) == ("best_effort", "1 reliable and 1 best-effort publisher(s)")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return tiny_checkpoints(tmp_path_factory.mktemp("qos_tiny"))


def best_effort_cameras(log: Path):
    return start_process(node_argv("amplify_ros.fake_cameras_node", ROOT / "config/fake_cameras.yaml",
                                   reliability="best_effort"), log)


def test_model_node_matches_a_best_effort_camera_that_starts_after_it(checkpoints, tmp_path):
    forward = node_argv("amplify_ros.forward_dynamics_node", ROOT / "config/forward_dynamics.yaml",
                        checkpoint=str(checkpoints["forward"]), task=TASKS[0], text_cache=str(checkpoints["text_cache"]))
    forced = node_argv("amplify_ros.forward_dynamics_node", ROOT / "config/forward_dynamics.yaml",
                       checkpoint=str(checkpoints["forward"]), task=TASKS[0], text_cache=str(checkpoints["text_cache"]),
                       camera_reliability=["reliable"], codes_topic="/forced/codes") + ["-r", "__node:=forced"]
    logs = {n: tmp_path / f"{n}.log" for n in ("forward", "forced", "cameras")}
    procs = {"forward": start_process(forward, logs["forward"]), "forced": start_process(forced, logs["forced"])}
    probe = Probe("qos_probe")
    try:
        probe.record(JointTrajectory, "/amplify/codes")
        probe.record(JointTrajectory, "/forced/codes")
        probe.record(String, "/amplify/status")
        probe.wait_for(lambda: "/cameras/front/image_raw: no publisher yet" in logs["forward"].read_text(), 60,
                       "the forward node waiting for a camera publisher")
        procs["cameras"] = best_effort_cameras(logs["cameras"])  # sensor-data QoS, after the subscribers
        probe.wait_for(lambda: len(probe.get("/amplify/codes")) >= 5, 60, "codes from best-effort cameras")
        text = logs["forward"].read_text()
        for topic in CAMERAS:
            assert f"{topic}: subscribed best_effort, keep last 2 (auto: 0 reliable and 1 best-effort" in text, text
        status = probe.wait_for(lambda: [s for s in probe.statuses("forward_dynamics") if s["published"]], 10,
                                "forward status")[-1]
        assert status["camera_qos"] == {t: "best_effort" for t in CAMERAS}
        # forced reliable: no frame can arrive, and the node says why
        probe.wait_for(lambda: "is incompatible with camera_reliability=reliable" in logs["forced"].read_text(), 20,
                       "the forced node's QoS error")
        assert "subscribed reliable, keep last 2 (parameter camera_reliability)" in logs["forced"].read_text()
        assert probe.get("/forced/codes") == []
    finally:
        probe.close()
        for proc in procs.values():
            stop_process(proc)


def record_every_camera(probe, timeout: float) -> dict:
    """/recorder/start, wait until the recorder's status counts >= 10 written frames of every camera, /recorder/stop;
    returns that status."""
    assert call_service(probe.node.create_client(Trigger, "/recorder/start"), Trigger.Request()).success
    status = probe.wait_for(lambda: [s for s in (json.loads(m.data) for _, _, m in probe.get("/recorder/status"))
                                     if s["recording"] and all(s["messages"].get(t, 0) >= 10 for t in CAMERAS)],
                            timeout, "frames of every camera written")[-1]
    assert set(status["messages"]) == set(CAMERAS)
    assert call_service(probe.node.create_client(SetBool, "/recorder/stop"), SetBool.Request(data=True),
                        timeout=30).success
    return status


def test_recorder_records_best_effort_cameras(tmp_path):
    out = tmp_path / "bags"
    procs = {"cameras": best_effort_cameras(tmp_path / "cameras.log"),
             "recorder": start_process(node_argv("amplify_ros.recorder_node", ROOT / "config/recorder.yaml",
                                                 output_dir=str(out), embodiment="human"), tmp_path / "recorder.log")}
    probe = Probe("qos_recorder_probe")
    try:
        probe.record(String, "/recorder/status")
        status = probe.wait_for(lambda: [json.loads(m.data) for _, _, m in probe.get("/recorder/status")
                                         if all(json.loads(m.data)["camera_qos"].get(t) for t in CAMERAS)], 60,
                                "the recorder subscribing the cameras")[-1]
        assert status["camera_qos"] == {t: "best_effort" for t in CAMERAS}
        record_every_camera(probe, 30)
    finally:
        probe.close()
        for proc in procs.values():
            stop_process(proc)


def test_recorder_start_subscribes_cameras_that_appeared_since_its_last_look(tmp_path):
    """camera_reliability auto looks at the publishers every qos_check_period; a start looks at once, so a camera
    that came up just before it is recorded from the start (here the period is a minute: only that look can)."""
    out = tmp_path / "bags"
    procs = {"recorder": start_process(node_argv("amplify_ros.recorder_node", ROOT / "config/recorder.yaml",
                                                 output_dir=str(out), embodiment="human", qos_check_period=60.0),
                                       tmp_path / "recorder.log")}
    probe = Probe("qos_start_probe")
    statuses = lambda: [json.loads(m.data) for _, _, m in probe.get("/recorder/status")]  # noqa: E731
    try:
        from sensor_msgs.msg import Image

        from amplify_ros.qos_matching import camera_qos

        probe.record(String, "/recorder/status")
        probe.record(Image, CAMERAS[0], qos=camera_qos("best_effort", 10))
        first = probe.wait_for(statuses, 30, "the recorder's status")[-1]
        assert set(first["camera_qos"].values()) == {None}, first  # no camera yet
        procs["cameras"] = best_effort_cameras(tmp_path / "cameras.log")
        # half a second of frames: the recorder's own discovery of the cameras (which its start's look reads) trails
        # the probe's by a moment; with 3 frames the start looked before it had them 1 time in 7
        probe.wait_for(lambda: len(probe.get(CAMERAS[0])) >= 15, 30, "camera frames")
        assert set(statuses()[-1]["camera_qos"].values()) == {None}  # its next own look is a minute away
        last = record_every_camera(probe, 15)
        assert last["camera_qos"] == {t: "best_effort" for t in CAMERAS}
    finally:
        probe.close()
        for proc in procs.values():
            stop_process(proc)


def test_fake_cameras_publish_optical_frames_and_camera_info(tmp_path):
    from sensor_msgs.msg import CameraInfo, Image

    proc = best_effort_cameras(tmp_path / "cameras.log")
    probe = Probe("camera_info_probe")
    try:
        from amplify_ros.qos_matching import camera_qos

        for view in ("front", "corner"):
            probe.record(Image, f"/cameras/{view}/image_raw", qos=camera_qos("best_effort", 10))
            probe.record(CameraInfo, f"/cameras/{view}/camera_info", qos=camera_qos("best_effort", 10))
        probe.wait_for(lambda: len(probe.get("/cameras/corner/camera_info")) >= 5, 60, "camera_info messages")
        for view in ("front", "corner"):
            images = {(m.header.stamp.sec, m.header.stamp.nanosec): m for _, _, m in probe.get(f"/cameras/{view}/image_raw")}
            infos = [m for _, _, m in probe.get(f"/cameras/{view}/camera_info")]
            assert all(m.header.frame_id == f"{view}_camera_optical_frame" for m in [*images.values(), *infos])
            paired = [i for i in infos if (i.header.stamp.sec, i.header.stamp.nanosec) in images]
            assert len(paired) >= 3  # each frame's CameraInfo carries the frame's stamp
            info = infos[-1]
            assert (info.width, info.height) == (128, 128) and info.k[2] == info.k[5] == 63.5
    finally:
        probe.close()
        stop_process(proc)
