"""amplify_ros: one ament_python package holding amplify_core (the method), amplify_ros (ROS 2 nodes)
and training (the offline commands). Works with `colcon build` in a ROS 2 workspace and with
`pip install -e .` in a plain virtual environment (scripts/setup_env.sh).
"""

from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = "amplify_ros"


def share_files(folder):
    """(destination, files) pairs that mirror ``folder`` under share/amplify_ros/."""
    out = []
    for root, _, files in os.walk(folder):
        files = [os.path.join(root, f) for f in files if not f.startswith(".")]
        if files:
            out.append((os.path.join("share", PACKAGE, root), files))
    return out


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["amplify_core", "amplify_core.*", "amplify_ros", "amplify_ros.*",
                                    "training", "training.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *share_files("launch"),
        *share_files("config"),
        *share_files("urdf"),
    ],
    # Python dependencies are deliberately NOT listed here: on the robot they come from rosdep
    # (package.xml), in the project's venv from requirements/*.txt (pinned, torch CPU-safe).
    install_requires=["setuptools"],
    extras_require={},
    zip_safe=False,
    python_requires=">=3.10",
    maintainer="amplify_ros maintainers",
    maintainer_email="amplify-ros@example.com",
    description="AMPLIFY actionless motion priors for a UR5 with three cameras on ROS 2",
    license="MIT",
    entry_points={
        "console_scripts": [
            "amplify-preprocess = training.preprocess_tracks:main",
            "amplify-benchmark-tracking = training.benchmark_tracking:main",
            "amplify-demo-tracks = training.demo_tracks:main",
            # models (issue 3)
            "amplify-train-tokenizer = training.train_tokenizer:main",
            "amplify-train-forward = training.train_forward:main",
            "amplify-train-inverse = training.train_inverse:main",
            "amplify-train-all = training.train_all:main",
            "amplify-export-onnx = training.export_onnx:main",
            "amplify-benchmark-policy = training.benchmark_policy:main",
            # workcell simulation (issue 4)
            "amplify-workcell-generate = training.generate_workcell:main",
            "amplify-benchmark-workcell = training.benchmark_workcell:main",
            "amplify-workcell-track-accuracy = training.workcell_track_accuracy:main",
            "amplify-evaluate = training.evaluate:main",
            "amplify-main = training.main_job:main",
            # LIBERO (issue 9; scripts/setup_libero.sh installs the extra)
            "amplify-libero-generate = training.libero_generate:main",
            "amplify-libero-to-episodes = training.libero_to_episodes:main",
            "amplify-libero-split = training.libero_split:main",
            # UR5 driver and fake controller (issue 5)
            "amplify-benchmark-driver = training.benchmark_driver:main",
            "ur5_driver = amplify_ros.ur5_driver_node:main",
            "amplify-fake-ur = amplify_ros.fake_ur.server:main",
            # model pipeline (issue 6)
            "forward_dynamics_node = amplify_ros.forward_dynamics_node:main",
            "inverse_dynamics_node = amplify_ros.inverse_dynamics_node:main",
            "fake_cameras_node = amplify_ros.fake_cameras_node:main",
            "amplify-benchmark-pipeline = training.benchmark_pipeline:main",
            "amplify-fake-bringup = training.fake_bringup:main",
            # data collection (issue 7)
            "teleop_node = amplify_ros.teleop_node:main",
            "workcell_sim_node = amplify_ros.workcell_sim_node:main",
            "recorder_node = amplify_ros.recorder_node:main",
            "amplify-bags-to-episodes = training.bags_to_episodes:main",
            # importing videos and datasets (issue 19)
            "amplify-import-videos = training.import_videos:main",
            "amplify-import-bridge = training.import_bridge:main",
            "amplify-import-lerobot = training.import_lerobot:main",
            "amplify-export-lerobot = training.export_lerobot:main",
            "amplify-benchmark-import = training.benchmark_import:main",
        ],
    },
)
