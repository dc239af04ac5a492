"""The launch-file reader: the package's launch files parse into the intended processes and command lines;
anything outside the supported subset is refused by name."""

import sys
from pathlib import Path

import pytest

from amplify_ros.launch_xml import LaunchError, command_line, console_scripts, read_launch

ROOT = Path(__file__).resolve().parents[1]
CKPT = {"forward_checkpoint": "/m/forward.pt", "inverse_checkpoint": "/m/inverse.pt"}


def test_real_robot_launch_file():
    procs = read_launch(ROOT / "launch/amplify.launch.xml", {"robot_ip": "192.168.1.10", **CKPT, "task": "open the drawer"})
    assert [(p.kind, p.executable, p.name) for p in procs] == [
        ("node", "forward_dynamics_node", "forward_dynamics"), ("node", "inverse_dynamics_node", "inverse_dynamics"),
        ("node", "ur5_driver", "ur5_driver")]
    fwd, inv, driver = procs
    assert fwd.params[0] == ("file", str(ROOT / "config/forward_dynamics.yaml"))
    assert ("value", "task", "open the drawer") in fwd.params and ("value", "checkpoint", "/m/forward.pt") in fwd.params
    assert ("value", "robot_ip", "192.168.1.10") in driver.params
    assert ("value", "dry_run", "true") in driver.params  # safe default on the real robot
    args = fwd.ros_arguments()
    assert args[:3] == ["--ros-args", "-r", "__node:=forward_dynamics"]
    assert "-p" in args and "task:=open the drawer" in args and "onnx_dir:=''" in args  # empty string survives
    for p in procs:  # every parameter file the launch files name exists and is keyed by the node name
        for entry in p.params:
            if entry[0] == "file":
                assert Path(entry[1]).is_file()
                assert Path(entry[1]).read_text().count(f"\n{p.name}:\n") == 1


def test_required_and_unknown_arguments_are_refused():
    with pytest.raises(LaunchError, match="launch argument 'robot_ip' is required"):
        read_launch(ROOT / "launch/amplify.launch.xml", CKPT)
    with pytest.raises(LaunchError, match=r"unknown launch argument\(s\) \['robt_ip'\]"):
        read_launch(ROOT / "launch/amplify.launch.xml", {"robot_ip": "x", "robt_ip": "y", **CKPT})


def test_fake_launch_file_maps_to_venv_commands(tmp_path):
    procs = read_launch(ROOT / "launch/amplify_fake.launch.xml", {**CKPT, "camera_width": "640"})
    assert [p.executable for p in procs] == ["amplify-fake-ur", "fake_cameras_node", "forward_dynamics_node",
                                             "inverse_dynamics_node", "ur5_driver"]
    entry_points = console_scripts(ROOT / "setup.py")
    assert entry_points["forward_dynamics_node"] == "amplify_ros.forward_dynamics_node:main"
    assert entry_points["amplify-benchmark-pipeline"] == "training.benchmark_pipeline:main"
    fake, cams = procs[0], procs[1]
    assert ("value", "dry_run", "false") in procs[-1].params  # the fake arm moves by default ...
    dry = read_launch(ROOT / "launch/amplify_fake.launch.xml", {**CKPT, "dry_run": "true"})[-1]
    assert ("value", "dry_run", "true") in dry.params and ("value", "dry_run", "false") not in dry.params  # ... or not
    assert fake.kind == "executable" and fake.ros_arguments() == []
    # no installed script in an empty bin dir -> python -m <module> from setup.py
    argv = command_line(cams, tmp_path, entry_points, sys.executable)
    assert argv[:3] == [sys.executable, "-m", "amplify_ros.fake_cameras_node"]
    assert "width:=640" in argv and "height:=128" in argv
    assert command_line(fake, tmp_path, entry_points, sys.executable) == [sys.executable, "-m", "amplify_ros.fake_ur.server"]
    (tmp_path / "amplify-fake-ur").write_text("#!/bin/sh\n")  # an installed script wins
    assert command_line(fake, tmp_path, entry_points, sys.executable) == [str(tmp_path / "amplify-fake-ur")]


def test_remaps_namespace_and_unsupported_pieces(tmp_path):
    f = tmp_path / "x.launch.xml"
    f.write_text('<launch><arg name="cam" default="/usb/image"/>'
                 '<node pkg="amplify_ros" exec="forward_dynamics_node" namespace="robot1">'
                 '<remap from="/cameras/front/image_raw" to="$(var cam)"/></node></launch>')
    (proc,) = read_launch(f)
    assert proc.remaps == [("/cameras/front/image_raw", "/usb/image")]
    assert proc.ros_arguments() == ["--ros-args", "-r", "__ns:=/robot1", "-r", "/cameras/front/image_raw:=/usb/image"]
    for body, message in [('<group/>', "<group> is not supported"),
                          ('<node pkg="a" exec="b"><env name="X" value="1"/></node>', "not supported inside <node>"),
                          ('<node pkg="a" exec="$(env HOME)"/>', r"substitution \$\(env ...\) is not supported"),
                          ('<node pkg="a" exec="b" respawn="true"/>', r"attribute\(s\) \['respawn'\] not supported"),
                          ('<node pkg="a" exec="$(var nope)"/>', "not a declared launch argument")]:
        f.write_text(f"<launch>{body}</launch>")
        with pytest.raises(LaunchError, match=message):
            read_launch(f)


def test_set_env_reaches_the_processes_after_it_and_both_launch_files_set_the_dds_profile(tmp_path):
    f = tmp_path / "env.launch.xml"
    f.write_text('<launch><arg name="v" default="1"/><executable cmd="first"/>'
                 '<set_env name="X" value="$(var v)"/><executable cmd="second"/></launch>')
    first, second = read_launch(f, {"v": "7"})
    assert first.env == {} and second.env == {"X": "7"}
    profile = ROOT / "config" / "fastdds.xml"
    for launch, args in [("amplify.launch.xml", {"robot_ip": "192.168.1.10", **CKPT}),
                         ("amplify_fake.launch.xml", CKPT)]:
        procs = read_launch(ROOT / "launch" / launch, args)
        assert procs and all(p.env["FASTRTPS_DEFAULT_PROFILES_FILE"] == str(profile) for p in procs), launch
    assert "<segment_size>" in profile.read_text()
    custom = read_launch(ROOT / "launch/amplify_fake.launch.xml", {**CKPT, "dds_profile": "/etc/my_dds.xml"})
    assert {p.env["FASTRTPS_DEFAULT_PROFILES_FILE"] for p in custom} == {"/etc/my_dds.xml"}


def test_data_collection_launch_files():
    record = read_launch(ROOT / "launch/record.launch.xml", {"output_dir": "/data/bags", "task": "open the drawer"})
    assert [(p.executable, p.name) for p in record] == [("recorder_node", "recorder")]
    assert ("value", "output_dir", "/data/bags") in record[0].params and ("value", "embodiment", "robot") in record[0].params
    teleop = read_launch(ROOT / "launch/teleop.launch.xml", {"robot_ip": "192.168.1.10"})
    assert [p.executable for p in teleop] == ["ur5_driver", "recorder_node"]
    assert ("value", "dry_run", "true") in teleop[0].params  # safe default on the robot
    rehearsal = read_launch(ROOT / "launch/rehearsal.launch.xml", {"task": "stack the blocks"})
    assert [p.executable for p in rehearsal] == ["workcell_sim_node", "ur5_driver", "recorder_node"]
    assert ("value", "robot_ip", "127.0.0.1") in rehearsal[1].params
    for procs in (record, teleop, rehearsal):
        for p in procs:
            assert p.env["FASTRTPS_DEFAULT_PROFILES_FILE"].endswith("config/fastdds.xml")
            for entry in p.params:  # every parameter file exists and is keyed by the node's name
                if entry[0] == "file":
                    assert Path(entry[1]).read_text().count(f"\n{p.name}:\n") + \
                        Path(entry[1]).read_text().startswith(f"{p.name}:\n") == 1, (entry[1], p.name)
