"""The model nodes from an ONNX export in processes where ``import torch`` fails (tests/no_torch.py): the robot
computer's deployment path needs onnxruntime and numpy only. Fake cameras, the forward and inverse nodes, and this
test's probe publishing the arm's joint states in place of the driver."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from ros_processes import (HOME_Q, ROOT, TASKS, Probe, node_argv, start_process, stop_process,  # noqa: E402
                           tiny_checkpoints, use_ros_env_here)

pytest.importorskip("rclpy")
pytest.importorskip("onnxruntime")
use_ros_env_here()
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from amplify_core.ur5 import JOINT_NAMES  # noqa: E402

NO_TORCH = str(Path(__file__).parent / "no_torch.py")


def without_torch(argv: list[str]) -> list[str]:
    """``python -m module ...`` -> ``python tests/no_torch.py module ...``."""
    assert argv[1] == "-m", argv
    return [argv[0], NO_TORCH, *argv[2:]]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    from amplify_core.export import export_policy

    d = tmp_path_factory.mktemp("onnx_nodes")
    paths = tiny_checkpoints(d / "pt")
    export_policy(paths["inverse"], paths["forward"], d / "onnx")
    return {**paths, "onnx": d / "onnx"}


def test_model_nodes_run_from_onnx_without_torch(export, tmp_path):
    forward = node_argv("amplify_ros.forward_dynamics_node", ROOT / "config/forward_dynamics.yaml",
                        onnx_dir=str(export["onnx"]), task=TASKS[0], text_cache=str(export["text_cache"]))
    inverse = node_argv("amplify_ros.inverse_dynamics_node", ROOT / "config/inverse_dynamics.yaml",
                        onnx_dir=str(export["onnx"]))
    # the same node from a .pt checkpoint: needs torch, so here it must say so and publish nothing
    from_pt = node_argv("amplify_ros.forward_dynamics_node", ROOT / "config/forward_dynamics.yaml",
                        checkpoint=str(export["forward"]), task=TASKS[0], text_cache=str(export["text_cache"]),
                        codes_topic="/pt/codes")
    logs = {name: tmp_path / f"{name}.log" for name in ("cameras", "forward", "inverse", "from_pt")}
    procs = {
        "cameras": start_process(node_argv("amplify_ros.fake_cameras_node", ROOT / "config/fake_cameras.yaml"),
                                 logs["cameras"]),
        "forward": start_process(without_torch(forward), logs["forward"]),
        "inverse": start_process(without_torch(inverse), logs["inverse"]),
        "from_pt": start_process(without_torch(from_pt + ["-r", "__node:=forward_from_pt"]), logs["from_pt"]),
    }
    probe = Probe("onnx_probe")
    try:
        for topic, kind in [("/amplify/codes", JointTrajectory), ("/policy/action_chunk", JointTrajectory),
                            ("/pt/codes", JointTrajectory), ("/amplify/status", String)]:
            probe.record(kind, topic)
        joints = probe.node.create_publisher(JointState, "/joint_states", 10)

        def publish_joints():
            msg = JointState(name=list(JOINT_NAMES), position=[float(q) for q in HOME_Q])
            msg.header.stamp = probe.node.get_clock().now().to_msg()
            joints.publish(msg)

        probe.node.create_timer(0.02, publish_joints)
        probe.wait_for(lambda: len(probe.get("/policy/action_chunk")) >= 5, 90, "action chunks from the ONNX nodes")
        # the probe's own /amplify/codes reader may match later than the inverse node's (CI, a loaded machine)
        probe.wait_for(lambda: probe.get("/amplify/codes"), 30, "codes from the ONNX forward node")
        codes = [m for _, _, m in probe.get("/amplify/codes")]
        assert codes and all(len(m.points[0].positions) == 15 for m in codes)
        chunks = [m for _, _, m in probe.get("/policy/action_chunk")]
        assert all(len(m.points) == 16 and len(m.points[0].positions) == 7 for m in chunks)
        for name in ("forward", "inverse"):
            text = logs[name].read_text()
            assert f"model loaded from {export['onnx']}" in text, text[-2000:]
            assert procs[name].poll() is None, f"{name} exited: {text[-2000:]}"
        # torch really is absent in these processes: the .pt node reports it, stays up and publishes nothing
        probe.wait_for(lambda: "No module named 'torch'" in logs["from_pt"].read_text(), 30,
                       "the .pt forward node's load error")
        assert "forward model not loaded, publishing nothing" in logs["from_pt"].read_text()
        assert procs["from_pt"].poll() is None and probe.get("/pt/codes") == []
    finally:
        probe.close()
        for proc in procs.values():
            stop_process(proc)
