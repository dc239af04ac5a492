"""amplify-benchmark-driver end to end with a short duration: it must run and print plausible figures."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from fake_ur_process import fake_ur_ports_lock, ros_env

pytest.importorskip("rclpy")
ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_prints_rate_and_latency():
    with fake_ur_ports_lock():  # the benchmark starts its own fake controller on the fixed ports
        done = subprocess.run([sys.executable, "-m", "training.benchmark_driver", "--duration", "2"], cwd=ROOT,
                              env=ros_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    rate = float(re.search(r"streaming rate at the controller: ([\d.]+) Hz", done.stdout).group(1))
    median, p99 = map(float, re.search(r"latency: median ([\d.]+) ms, p99 ([\d.]+) ms", done.stdout).groups())
    assert 50 < rate < 200  # paced at 125 Hz; far below means the servo loop starved
    assert 0 < median <= p99 < 60  # above one command period (50 ms) would mean a command was missed
    assert re.search(r"target p99 <= 10 ms: (met|NOT met)", done.stdout)
