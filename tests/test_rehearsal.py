"""Rehearsal without hardware: the workcell simulation node (cameras + fake UR) driven by the real UR5 driver."""

import signal
import time

import numpy as np
import pytest

from fake_ur_process import fake_ur_ports_lock, start_driver, stop_process, wait_for_free_ports
from ros_processes import ROOT, Probe, node_argv, start_process

pytest.importorskip("rclpy")
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_srvs.srv import SetBool  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402


def frame(msg):
    return np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3)


def test_workcell_cameras_and_arm_follow_the_driver(tmp_path):
    from amplify_core.ur5 import JOINT_NAMES, default_kinematics

    procs = {}
    with fake_ur_ports_lock():
        wait_for_free_ports()
        probe = Probe("rehearsal_probe")
        try:
            for view in ("front", "side", "corner"):
                probe.record(Image, f"/cameras/{view}/image_raw", keep=50)
            probe.record(JointState, "/joint_states")
            procs["sim"] = start_process(node_argv("amplify_ros.workcell_sim_node", ROOT / "config/workcell_sim.yaml"),
                                         tmp_path / "sim.log")
            probe.wait_for(lambda: all(len(probe.get(f"/cameras/{v}/image_raw")) >= 5
                                       for v in ("front", "side", "corner")), 60, "the three camera streams")
            first = probe.get("/cameras/front/image_raw")[-1][2]
            assert (first.encoding, first.width, first.height) == ("rgb8", 128, 128) and frame(first).std() > 10
            procs["driver"] = start_driver(tmp_path)
            js = probe.wait_for(lambda: probe.get("/joint_states"), 30, "joint states from the driver")[-1][2]
            q0 = np.array([js.position[list(js.name).index(n)] for n in JOINT_NAMES])
            start = default_kinematics().fk_pose(q0)
            assert probe.call(SetBool, "/ur5/enable", SetBool.Request(data=True)).success
            pub = probe.node.create_publisher(JointTrajectory, "/ur5/command", 10)
            before = frame(probe.get("/cameras/front/image_raw")[-1][2]).astype(int)
            for k in range(40):  # 2 s toward +5 cm in y
                target = start + np.array([0, 0.05 * min(1.0, (k + 1) / 20), 0, 0, 0, 0])
                msg = JointTrajectory(joint_names=["x", "y", "z", "rx", "ry", "rz", "gripper"])
                msg.points = [JointTrajectoryPoint(positions=[float(v) for v in target] + [0.0])]
                pub.publish(msg)
                time.sleep(0.05)
            js = probe.get("/joint_states")[-1][2]
            q1 = np.array([js.position[list(js.name).index(n)] for n in JOINT_NAMES])
            assert default_kinematics().fk_pose(q1)[1] - start[1] == pytest.approx(0.05, abs=0.01)
            after = frame(probe.get("/cameras/front/image_raw")[-1][2]).astype(int)
            assert np.abs(after - before).mean() > 0.5, "the rendered arm did not move"
        finally:
            probe.close()
            for name in ("driver", "sim"):
                if name in procs:
                    stop_process(procs[name], sig=signal.SIGINT)
            for name in ("sim", "driver"):
                log = tmp_path / f"{name}.log"
                print(log.read_text()[-2000:] if log.exists() else "")
