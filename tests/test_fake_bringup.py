"""The documented bring-up command (docs/ros_pipeline.md): ``amplify-fake-bringup`` builds the package with colcon,
brings amplify_fake.launch.xml up through the real launch frontend, enables the arm and prints the servo commands the
fake UR controller received; none may arrive before enable."""

import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from ros_launch import require_launch_frontend  # noqa: E402
from ros_processes import ROOT, ros_env  # noqa: E402


def test_fake_bringup_prints_commands_arriving_at_the_fake_arm_after_enable(tmp_path):
    require_launch_frontend()
    result = subprocess.run([sys.executable, "-m", "training.fake_bringup", "--workspace", str(tmp_path / "ws"),
                             "--seconds", "3"], env=ros_env(), cwd=ROOT, capture_output=True, text=True, timeout=400)
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-4000:]
    assert "before enable: 0 servo commands at the fake arm" in out, out
    assert "/ur5/enable true: motion enabled" in out, out
    per_interval = [int(n) for n in re.findall(r"^\[bringup\]\s+(\d+) servo[LJ] commands in the last 0.5 s", out, re.M)]
    assert len(per_interval) >= 4 and sum(per_interval) > 100, out  # the driver streams at 125 Hz
    total = int(re.search(r"(\d+) servo commands at the fake arm in 3 s after enable", out).group(1))
    assert total == sum(per_interval)
    assert "launch stopped (Ctrl-C), exit status 0" in out
    assert (tmp_path / "ws/install/amplify_ros/share/amplify_ros/launch/amplify_fake.launch.xml").is_file()


def test_fake_bringup_refuses_half_a_model_pair(tmp_path):
    result = subprocess.run([sys.executable, "-m", "training.fake_bringup", "--workspace", str(tmp_path),
                             "--forward", str(tmp_path / "f.pt")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "give both --forward and --inverse" in result.stderr
