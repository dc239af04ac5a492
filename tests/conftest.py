import os

import numpy as np
import pytest

# One ROS domain for the whole test run (scripts/test.sh picks a fresh one per run), shared by every test
# process and every node it starts, with discovery kept on this machine.
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

from amplify_core.episodes import Episode, write_episode
from amplify_core.samples import MovingSquare


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test, excluded from the default run (-m slow)")


def make_episode(num_frames=20, size=64, views=("front", "side"), fps=20.0, actions=True, seed=0):
    frames = {v: MovingSquare(size=size, num_frames=num_frames, half_side=size / 4, seed=seed + i).video()
              for i, v in enumerate(views)}
    rng = np.random.default_rng(seed)
    return Episode(
        frames=frames, task="put the red block in the bowl", embodiment="robot" if actions else "human", fps=fps,
        state=rng.normal(size=(num_frames, 7)).astype(np.float32) if actions else None,
        actions=rng.normal(size=(num_frames, 7)).astype(np.float32) if actions else None,
        state_names=[f"q{i}" for i in range(7)] if actions else (),
        action_names=["x", "y", "z", "rx", "ry", "rz", "gripper"] if actions else (),
    )


@pytest.fixture
def episode_factory():
    return make_episode


@pytest.fixture
def store(tmp_path):
    """A directory with three small valid episodes."""
    for i in range(3):
        write_episode(tmp_path / f"ep_{i:03d}.h5", make_episode(num_frames=18, seed=i))
    return tmp_path


@pytest.fixture(scope="session")
def colcon_install(tmp_path_factory):
    """This package built by ``colcon build`` into a scratch workspace, as on the robot: its install prefix
    (``install/amplify_ros``). Skips where the real launch frontend is not installed (tests/ros_launch.py)."""
    from ros_launch import colcon_build, require_launch_frontend

    require_launch_frontend()
    return colcon_build(tmp_path_factory.mktemp("colcon_ws"))
