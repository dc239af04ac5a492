"""The cameras' published geometry is the rendered one: a point projected with the CameraInfo intrinsics from the
optical frame of urdf/workcell.urdf lands on the pixel where MuJoCo renders it (the ground-truth projection)."""

import numpy as np
import pytest

pytest.importorskip("mujoco")
pytest.importorskip("sensor_msgs")

from amplify_core.workcell.env import WorkcellEnv  # noqa: E402
from amplify_core.workcell.ground_truth import camera_model, project  # noqa: E402
from amplify_ros.camera_info import info_topic, optical_frame, pinhole_camera_info  # noqa: E402


def test_camera_info_and_optical_frame_reproduce_the_rendered_projection():
    env = WorkcellEnv("open the drawer", "robot", image_size=96, render=False)
    try:
        env.reset(seed=0)
        points = np.array([[-0.5, 0.1, 0.05], [-0.4, -0.2, 0.2], [-0.6, 0.25, 0.0]])  # on the table, base frame
        for view, spec in env.config.cameras.items():
            pos, rot, focal = camera_model(env, view)
            rendered, _ = project(points, pos, rot, focal, 96)
            info = pinhole_camera_info(96, 96, spec.fovy_deg, optical_frame(view))
            assert info.header.frame_id == f"{view}_camera_optical_frame"
            in_camera = (points - spec.pose[:3, 3]) @ spec.pose[:3, :3]  # base -> the URDF's optical frame
            assert np.all(in_camera[:, 2] > 0), "points behind the camera"
            uvw = in_camera @ np.array(info.k).reshape(3, 3).T
            np.testing.assert_allclose(uvw[:, :2] / uvw[:, 2:], rendered, atol=1e-4)
            p = np.array(info.p).reshape(3, 4)
            np.testing.assert_array_equal(p[:, :3], np.array(info.k).reshape(3, 3))
    finally:
        env.close()


def test_camera_info_topic_sits_beside_the_image():
    assert info_topic("/cameras/front/image_raw") == "/cameras/front/camera_info"
    assert info_topic("cameras/front/image_raw") == "cameras/front/camera_info"
