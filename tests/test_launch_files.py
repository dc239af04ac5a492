"""Every launch file of the package, brought up as ``ros2 launch amplify_ros <file>`` does it: the real Jazzy launch
frontend (tests/ros_launch.py) on a colcon-built install, with no venv ``bin/`` on PATH. Each must start every
process, give each node the name and parameters it declares, hold no node name twice, and stop cleanly on Ctrl-C.
No hardware: the drivers point at 127.0.0.1, where nothing (or the rehearsal's own fake controller) answers."""

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from ros_launch import installed_env, node_names, start_launch, stop_launch  # noqa: E402
from ros_processes import Probe, fake_ur_ports_lock, use_ros_env_here, wait_for_free_ports  # noqa: E402

pytest.importorskip("rclpy")
use_ros_env_here()


def parameters(probe, node: str, names: list[str]) -> dict:
    """The node's parameter values, asked through its parameter service (``ros2 param get``)."""
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    reply = probe.call(GetParameters, f"{node}/get_parameters", GetParameters.Request(names=names), timeout=60)
    return dict(zip(names, (parameter_value_to_python(v) for v in reply.values)))


def set_parameters(probe, node: str, values: dict) -> dict:
    """{name: (successful, reason)} of setting each value through the node's service (``ros2 param set``)."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
    reply = probe.call(SetParameters, f"{node}/set_parameters", request, timeout=60)
    return {k: (r.successful, r.reason) for k, r in zip(values, reply.results)}


# Parameters read only at start-up are read-only: a run-time change is refused (and the value stays); those a node
# applies while running are accepted. Checked on every node of these names that a launch file brings up.
READ_ONLY = {"/ur5_driver": {"max_linear_speed": 0.9, "workspace_min": [-1.0, -1.0, -1.0], "dry_run": False},
             "/inverse_dynamics": {"max_observation_age": 5.0}, "/recorder": {"camera_topics": ["/elsewhere"]}}
AT_RUN_TIME = {"/forward_dynamics": {"task": "close the drawer"}, "/recorder": {"operator_note": "changed"}}

# /diagnostics of a launch whose hardware and models are absent: every node says so at level ERROR
ERROR_DIAGNOSTICS = {"amplify.launch.xml": {"/ur5_driver": "not connected to the robot",
                                            "/forward_dynamics": "model not loaded: FileNotFoundError",
                                            "/inverse_dynamics": "model not loaded: FileNotFoundError"}}

LAUNCHES = {  # file -> (arguments, {node: {parameter: the value the launch file must give it}})
    "record.launch.xml": ({"task": "open the drawer", "embodiment": "human"},
                          {"/recorder": {"task": "open the drawer", "embodiment": "human", "storage": "mcap"}}),
    "teleop.launch.xml": ({"task": "open the drawer"},
                          {"/ur5_driver": {"robot_ip": "127.0.0.1", "dry_run": True},
                           "/recorder": {"embodiment": "robot", "task": "open the drawer"}}),
    "rehearsal.launch.xml": ({"task": "open the drawer", "seed": "3"},
                             {"/workcell_sim": {"task": "open the drawer", "seed": 3},
                              "/ur5_driver": {"robot_ip": "127.0.0.1", "dry_run": False},
                              "/recorder": {"task": "open the drawer", "embodiment": "robot"}}),
    "amplify.launch.xml": ({"robot_ip": "127.0.0.1", "forward_checkpoint": "/nowhere/forward.pt",
                            "inverse_checkpoint": "/nowhere/inverse.pt", "task": "open the drawer"},
                           {"/forward_dynamics": {"checkpoint": "/nowhere/forward.pt", "task": "open the drawer",
                                                  "onnx_dir": ""},
                            "/inverse_dynamics": {"checkpoint": "/nowhere/inverse.pt"},
                            "/ur5_driver": {"robot_ip": "127.0.0.1", "dry_run": True}}),  # safe default on the robot
}


@pytest.mark.parametrize("launch_file", sorted(LAUNCHES))
def test_launch_file_brings_up_uniquely_named_nodes_with_their_parameters(launch_file, colcon_install, tmp_path):
    arguments, expected = LAUNCHES[launch_file]
    arguments = {"output_dir": str(tmp_path / "bags"), **arguments} if "output_dir" in open(
        colcon_install / "share/amplify_ros/launch" / launch_file).read() else arguments
    log = tmp_path / "launch.log"
    with fake_ur_ports_lock():
        wait_for_free_ports()
        proc = start_launch(colcon_install, launch_file, arguments, log)
        probe = Probe(f"launch_probe_{launch_file.split('.')[0]}")
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

        probe.record(DiagnosticArray, "/diagnostics")
        try:
            probe.wait_for(lambda: set(expected) <= set(node_names(probe.node)), 90,
                           f"the nodes of {launch_file}: {sorted(expected)}")
            time.sleep(1.0)  # late duplicates have time to show up
            names = [n for n in node_names(probe.node) if "probe" not in n]
            assert len(names) == len(set(names)), f"a node name is held twice: {names}"
            for node, want in expected.items():
                assert parameters(probe, node, list(want)) == want, node
                refused = READ_ONLY.get(node, {})
                before = parameters(probe, node, list(refused))
                for name, (ok, reason) in set_parameters(probe, node, refused).items():
                    assert not ok and "read-only" in reason, (node, name, reason)
                assert parameters(probe, node, list(refused)) == before, node
                for name, (ok, reason) in set_parameters(probe, node, AT_RUN_TIME.get(node, {})).items():
                    assert ok, (node, name, reason)
            for node, message in ERROR_DIAGNOSTICS.get(launch_file, {}).items():
                got = probe.wait_for(lambda n=node: [s for _, _, m in probe.get("/diagnostics") for s in m.status
                                                     if s.name == n], 20, f"{node} on /diagnostics")[-1]
                assert got.level == DiagnosticStatus.ERROR and got.message.startswith(message), (node, got.message)
            assert proc.poll() is None, log.read_text()[-3000:]
            # every process gets the package's Fast DDS profile from the install (the launch file's <set_env>)
            profile = str(colcon_install / "share/amplify_ros/config/fastdds.xml")
            pids = [int(p) for p in re.findall(r"process started with pid \[(\d+)\]", log.read_text())]
            assert len(pids) == len(expected)  # one process per node
            for pid in pids:
                env = dict(kv.split("=", 1) for kv in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in kv)
                assert env["FASTRTPS_DEFAULT_PROFILES_FILE"] == profile, pid
        except BaseException:
            print(log.read_text()[-6000:])
            raise
        finally:
            probe.close()
            rc = stop_launch(proc)
    text = log.read_text()
    assert rc == 0, text[-3000:]
    for sign in ("Caught exception in launch", "process has died", "Traceback"):  # launch or a node failed
        assert sign not in text, text[-3000:]
    assert text.count("process has finished cleanly") == text.count("process started with pid"), text[-3000:]


def test_a_missing_required_argument_is_refused_by_name(colcon_install, tmp_path):
    log = tmp_path / "launch.log"
    proc = start_launch(colcon_install, "amplify.launch.xml", {"forward_checkpoint": "/f.pt",
                                                               "inverse_checkpoint": "/i.pt"}, log)
    assert proc.wait(60) != 0
    text = log.read_text()
    assert "robot_ip" in text and "process started" not in text, text[-2000:]


def test_presets_load_from_the_installed_package(colcon_install, tmp_path):
    """config/ lands in share/amplify_ros/ of a colcon install, not next to the installed sources."""
    code = ("import amplify_core, amplify_core.configs as c; "
            "print(amplify_core.__file__); print(c.load_config('tiny').name, c.load_config('paper').name)")
    result = subprocess.run([sys.executable, "-c", code], env=installed_env(colcon_install), cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    where, names = result.stdout.split("\n")[:2]
    assert Path(where).is_relative_to(colcon_install), where  # the installed copy, not the source tree
    assert names == "tiny paper"
