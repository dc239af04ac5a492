"""Every ``ros2 launch amplify_ros ...`` and ``ros2 run amplify_ros ...`` line of the docs (README.md, docs/*.md, the
comments of launch/*.xml) works in a colcon workspace: each launch line is brought up through the real launch
frontend from the colcon install, with fake hardware in place of what it names (robot_ip -> 127.0.0.1, where nothing
or the rehearsal's own fake controller answers; checkpoints -> tiny random ones; output_dir -> a scratch folder),
and must start every node of its launch file once and stop cleanly on Ctrl-C; each run line's executable and
installed files must exist where ``ros2 run`` and ``ros2 pkg prefix`` find them."""

import re
import shlex
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from ros_launch import node_names, start_launch, stop_launch  # noqa: E402
from ros_processes import ROOT, Probe, fake_ur_ports_lock, tiny_checkpoints, use_ros_env_here  # noqa: E402
from ros_processes import wait_for_free_ports  # noqa: E402

pytest.importorskip("rclpy")
use_ros_env_here()

DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "launch").glob("*.xml"))]


FAKED = ("robot_ip", "forward_checkpoint", "inverse_checkpoint", "output_dir")  # replaced by fake hardware


def documented(kind: str) -> list[tuple[str, str]]:
    """(file, command) of every ``ros2 <kind> amplify_ros ...`` line, backslash continuations joined; a command
    that differs from an earlier one only in the values the test replaces is run once."""
    found, seen = [], set()
    for path in DOC_FILES:
        text = re.sub(r"\\\n\s*", " ", path.read_text())
        for line in text.splitlines():
            m = re.search(rf"ros2 {kind} amplify_ros \S+.*", line)
            if m:
                command = m.group(0).split("#")[0].split("`")[0].strip()
                key = re.sub(rf"\b({'|'.join(FAKED)}):=\S+", r"\1:=*", re.sub(r"\s+", " ", command))
                if "<" not in command and key not in seen:  # `ros2 run amplify_ros <command>` is a pattern
                    seen.add(key)
                    found.append((str(path.relative_to(ROOT)), command))
    return found


LAUNCH_LINES = documented("launch")
RUN_LINES = documented("run")


def test_the_docs_have_launch_and_run_lines():
    files = {f for f, _ in LAUNCH_LINES}
    assert {"docs/ros_pipeline.md", "docs/data_collection.md"} <= files, files
    assert {c.split()[3] for _, c in LAUNCH_LINES} >= {"amplify.launch.xml", "amplify_fake.launch.xml",
                                                        "record.launch.xml", "teleop.launch.xml", "rehearsal.launch.xml"}
    assert RUN_LINES


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_checkpoints(tmp_path_factory.mktemp("documented_tiny"))


def with_fake_hardware(arguments: list[str], tiny: dict, scratch: Path) -> dict[str, str]:
    out = {}
    for argument in arguments:
        key, _, value = argument.partition(":=")
        if key == "robot_ip":
            value = "127.0.0.1"
        elif key in ("forward_checkpoint", "inverse_checkpoint"):
            value = str(tiny[key.split("_")[0]])
        elif key == "output_dir":
            value = str(scratch / "bags")
        out[key] = value
    return out


def launch_nodes(prefix: Path, launch_file: str) -> set[str]:
    tree = ET.parse(prefix / "share/amplify_ros/launch" / launch_file)
    return {f"/{n.get('name')}" for n in tree.iter("node")}


@pytest.mark.parametrize("where,command", LAUNCH_LINES, ids=[f"{i}-{c.split()[3]}" for i, (_, c) in enumerate(LAUNCH_LINES)])
def test_documented_launch_line_runs(where, command, tiny, colcon_install, tmp_path):
    words = shlex.split(command)
    launch_file, arguments = words[3], with_fake_hardware(words[4:], tiny, tmp_path)
    for key in ("forward_checkpoint", "inverse_checkpoint"):  # a "..." placeholder
        if arguments.get(key) == "...":
            arguments[key] = str(tiny[key.split("_")[0]])
    expected = launch_nodes(colcon_install, launch_file)
    log = tmp_path / "launch.log"
    with fake_ur_ports_lock():
        wait_for_free_ports()
        proc = start_launch(colcon_install, launch_file, arguments, log)
        probe = Probe("documented_probe")
        try:
            probe.wait_for(lambda: expected <= set(node_names(probe.node)) or proc.poll() is not None, 90,
                           f"the nodes {sorted(expected)} of `{command}` ({where})")
            time.sleep(1.0)
            names = [n for n in node_names(probe.node) if "probe" not in n]
            assert proc.poll() is None, f"`{command}` ({where}) exited:\n{log.read_text()[-3000:]}"
            assert all(names.count(n) == 1 for n in expected), names
        finally:
            probe.close()
            rc = stop_launch(proc)
    text = log.read_text()
    assert rc == 0 and "process has died" not in text and "Traceback" not in text, text[-3000:]


@pytest.mark.parametrize("where,command", RUN_LINES, ids=[f"{i}-{c.split()[3]}" for i, (_, c) in enumerate(RUN_LINES)])
def test_documented_run_line_resolves_in_the_install(where, command, colcon_install):
    words = command.split()
    executable = colcon_install / "lib/amplify_ros" / words[3]
    assert executable.is_file() and executable.stat().st_mode & 0o111, f"`{command}` ({where}): no {executable}"
    for params_file in re.findall(r'--params-file\s+("[^"]*"|\S+)', command):  # not a path into the source tree
        assert params_file.strip('"').startswith("$(ros2 pkg prefix --share amplify_ros)/"), f"`{command}` ({where})"
    for rel in re.findall(r'\$\(ros2 pkg prefix --share amplify_ros\)/(\S+?)"?(?:\s|$)', command):
        assert (colcon_install / "share/amplify_ros" / rel).is_file(), f"`{command}` ({where}): no share/amplify_ros/{rel}"
