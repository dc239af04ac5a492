"""Two model stacks side by side in the namespaces /arm1 and /arm2 (as for two arms): every topic and service name of
the nodes is relative, so each stack talks only to itself. Per namespace: fake cameras, forward node (tiny
checkpoint fitted so that each task has its own code), inverse node, and this test's probe publishing the arm's
joint states; the params files apply in any namespace (their keys are /**/<node>)."""

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from ros_processes import (HOME_Q, ROOT, TASKS, Probe, call_service, node_argv, start_process,  # noqa: E402
                           stop_process, tiny_checkpoints, use_ros_env_here)

pytest.importorskip("rclpy")
use_ros_env_here()
from sensor_msgs.msg import JointState  # noqa: E402
from std_srvs.srv import SetBool  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from amplify_core.ur5 import JOINT_NAMES  # noqa: E402
from ros_launch import node_names  # noqa: E402

STACKS = {"/arm1": (TASKS[0], 100.0), "/arm2": (TASKS[1], 200.0)}  # namespace -> (task, its code)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return tiny_checkpoints(tmp_path_factory.mktemp("ns_tiny"), task_codes={t: int(c) for t, c in STACKS.values()})


def in_namespace(argv: list[str], ns: str) -> list[str]:
    return [*argv, "-r", f"__ns:={ns}"]


def test_two_namespaced_stacks_run_side_by_side(checkpoints, tmp_path):
    procs = {}
    for ns, (task, _) in STACKS.items():
        name = ns.strip("/")
        procs[f"{name}_cameras"] = start_process(in_namespace(node_argv(
            "amplify_ros.fake_cameras_node", ROOT / "config/fake_cameras.yaml", num_frames=1), ns),
            tmp_path / f"{name}_cameras.log")
        procs[f"{name}_forward"] = start_process(in_namespace(node_argv(
            "amplify_ros.forward_dynamics_node", ROOT / "config/forward_dynamics.yaml",
            checkpoint=str(checkpoints["forward"]), task=task, text_cache=str(checkpoints["text_cache"])), ns),
            tmp_path / f"{name}_forward.log")
        procs[f"{name}_inverse"] = start_process(in_namespace(node_argv(
            "amplify_ros.inverse_dynamics_node", ROOT / "config/inverse_dynamics.yaml",
            checkpoint=str(checkpoints["inverse"])), ns), tmp_path / f"{name}_inverse.log")
    probe = Probe("namespaces_probe")
    try:
        pubs = {ns: probe.node.create_publisher(JointState, f"{ns}/joint_states", 10) for ns in STACKS}

        def publish_joints():
            for pub in pubs.values():
                msg = JointState(name=list(JOINT_NAMES), position=[float(q) for q in HOME_Q])
                msg.header.stamp = probe.node.get_clock().now().to_msg()
                pub.publish(msg)

        probe.node.create_timer(0.02, publish_joints)
        for topic in ["/amplify/codes", "/policy/action_chunk", *(f"{ns}/{t}" for ns in STACKS
                                                                 for t in ("amplify/codes", "policy/action_chunk"))]:
            probe.record(JointTrajectory, topic)
        probe.wait_for(lambda: all(len(probe.get(f"{ns}/policy/action_chunk")) >= 5 for ns in STACKS), 90,
                       "action chunks in both namespaces")
        for ns, (_, code) in STACKS.items():
            codes = {tuple(m.points[0].positions) for _, _, m in probe.get(f"{ns}/amplify/codes")}
            assert codes == {(code,) * 15}, (ns, codes)  # its own task: the other stack's cameras never mix in
        assert probe.get("/amplify/codes") == [] and probe.get("/policy/action_chunk") == []
        names = node_names(probe.node)
        for ns in STACKS:
            for node in ("fake_cameras", "forward_dynamics", "inverse_dynamics"):
                assert names.count(f"{ns}/{node}") == 1, names
        # the namespaced camera services: stopping /arm1's side camera stops /arm1 only
        assert call_service(probe.node.create_client(SetBool, "/arm1/cameras/side/enable"),
                            SetBool.Request(data=False)).success
        time.sleep(1.0)
        t_stopped = time.monotonic()
        time.sleep(1.0)
        assert not [t for t, _, _ in probe.get("/arm1/policy/action_chunk") if t > t_stopped]
        assert len([t for t, _, _ in probe.get("/arm2/policy/action_chunk") if t > t_stopped]) >= 5
        # the params file applied in the namespace (its max_observation_age, 0.3 s, is not the default 0.2 s)
        from rcl_interfaces.srv import GetParameters

        for ns in STACKS:
            reply = probe.call(GetParameters, f"{ns}/inverse_dynamics/get_parameters",
                               GetParameters.Request(names=["max_observation_age"]))
            assert reply.values[0].double_value == 0.3, ns
        log = (tmp_path / "arm1_forward.log").read_text()
        assert "/arm1/cameras/front/image_raw: subscribed reliable" in log, log[-2000:]  # resolved in the namespace
    finally:
        probe.close()
        for proc in procs.values():
            stop_process(proc)
