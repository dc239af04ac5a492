"""Ground-truth keypoint tracks from the simulator, in the layout of ``amplify_core`` tracks.

For frame t of a view: the 20x20 query grid (``amplify_core.tracks.grid_points``, OpenCV pixel
conventions) is unprojected with the rendered depth to the 3-D surface point under each grid point, and
the segmentation says which body it lies on. The point is expressed in that body's frame at t, moved
with the body through frames t .. t+15 (the last frame repeats past the end, as the trackers pad) and
projected back. A point is visible at a step when it is inside the image and no other surface is in
front of it (depth test against that frame's depth map, tolerance ``DEPTH_TOLERANCE``); points whose
pixel shows no geometry are invisible throughout. Output: tracks (num_frames, 16, 400, 2) normalised to
[-1, 1] and visibility (num_frames, 16, 400), as ``compute_view_tracks`` produces from a tracker.

Camera model: pinhole with f = (H / 2) / tan(fovy / 2), principal point at the image centre; a camera
point (X, Y, Z) in MuJoCo's camera frame (x right, y up, looking along -z) lands on pixel
x = f X / -Z + W / 2 - 0.5, y = -f Y / -Z + H / 2 - 0.5.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from ..tracks import GRID_SIZE, HORIZON, grid_points, normalize
from .env import WorkcellEnv
from .episode_io import SimRecord

DEPTH_TOLERANCE = 0.01  # m (a surface more than 1 cm in front hides the point)


def camera_model(env: WorkcellEnv, view: str) -> tuple[np.ndarray, np.ndarray, float]:
    """(position (3,), rotation (3, 3) camera->world, focal length in pixels) of a MuJoCo camera."""
    cam = env.model.camera(view).id
    env_data = env.data
    size = env.config.image_size
    fovy = np.deg2rad(env.model.cam_fovy[cam])
    return env_data.cam_xpos[cam].copy(), env_data.cam_xmat[cam].reshape(3, 3).copy(), (size / 2) / np.tan(fovy / 2)


def project(points: np.ndarray, pos: np.ndarray, rot: np.ndarray, focal: float, size: int):
    """World points (..., 3) -> pixel (x, y) (..., 2) and depth along the optical axis (...)."""
    cam = (points - pos) @ rot  # world -> camera frame (rot is camera->world)
    depth = -cam[..., 2]
    safe = np.where(depth > 1e-6, depth, 1e-6)
    x = focal * cam[..., 0] / safe + size / 2 - 0.5
    y = -focal * cam[..., 1] / safe + size / 2 - 0.5
    return np.stack([x, y], axis=-1), depth


def unproject(pixels: np.ndarray, depth: np.ndarray, pos: np.ndarray, rot: np.ndarray, focal: float, size: int):
    """Pixels (N, 2) with depths (N,) -> world points (N, 3)."""
    u = (pixels[:, 0] + 0.5 - size / 2) / focal
    v = (pixels[:, 1] + 0.5 - size / 2) / focal
    cam = np.stack([u * depth, -v * depth, -depth], axis=-1)
    return cam @ rot.T + pos


def ground_truth_tracks(env: WorkcellEnv, sim: SimRecord, view: str, horizon: int = HORIZON,
                        grid_size: int = GRID_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """GT tracks (num_frames, horizon, N, 2) in [-1, 1] and visibility of one view of a recorded episode.

    ``env`` must be built for the episode's task, embodiment and image size; it is reset with the
    episode's seed (to restore the layout of static bodies) and then driven through the saved states.
    """
    if env.renderer is None:
        env.render()  # creates the renderer
    env.reset(sim.seed)
    size = env.config.image_size
    n = len(sim.qpos)
    depths, bodies = [], []
    for t in range(n):
        env.set_sim_state(sim.qpos[t], sim.mocap_pos[t], sim.mocap_quat[t])
        depth, body = env.renderer.depth_and_segmentation(env.data, view)
        depths.append(depth)
        bodies.append(body)
    pos, rot, focal = camera_model(env, view)  # static camera
    grid = grid_points(size, size, grid_size)
    cols = np.clip(np.rint(grid[:, 0]).astype(int), 0, size - 1)
    rows = np.clip(np.rint(grid[:, 1]).astype(int), 0, size - 1)
    rot_all = Rotation.from_quat(sim.body_quat[..., [1, 2, 3, 0]].reshape(-1, 4)).as_matrix().reshape(n, -1, 3, 3)
    tracks = np.empty((n, horizon, len(grid), 2), np.float32)
    visible = np.zeros((n, horizon, len(grid)), bool)
    for t in range(n):
        body = bodies[t][rows, cols]
        hit = body >= 0
        world = unproject(grid, depths[t][rows, cols], pos, rot, focal, size)
        b = np.where(hit, body, 0)
        local = np.einsum("nji,nj->ni", rot_all[t, b], world - sim.body_pos[t, b])
        for k in range(horizon):
            s = min(t + k, n - 1)
            moved = np.einsum("nij,nj->ni", rot_all[s, b], local) + sim.body_pos[s, b]
            px, z = project(moved, pos, rot, focal, size)
            px = np.where(hit[:, None], px, grid)
            inside = np.all((px >= -0.5) & (px <= size - 0.5), axis=1) & (z > 0)
            c = np.clip(np.rint(px[:, 0]).astype(int), 0, size - 1)
            r = np.clip(np.rint(px[:, 1]).astype(int), 0, size - 1)
            unoccluded = depths[s][r, c] >= z - DEPTH_TOLERANCE
            tracks[t, k] = px
            visible[t, k] = hit & inside & unoccluded
    return np.clip(normalize(tracks, size, size), -1.0, 1.0), visible


SOURCE_NAME = "simulator_ground_truth"  # the sidecar's ``tracker`` attribute


def ground_truth_view_tracks(env: WorkcellEnv, sim: SimRecord, view: str):
    """GT tracks of one view in the sidecar layout (``ViewTracks``: tracks, visibility, labels), as
    ``amplify_core.preprocessing.compute_view_tracks`` gives them for a tracker: steps past the last frame are not
    visible and the labels are the local-window classes of the tracks."""
    from ..tracks import LABEL_IMAGE_SIZE, observed_steps, tracks_to_labels
    from ..tracks_store import ViewTracks

    tracks, visible = ground_truth_tracks(env, sim, view)
    visible &= observed_steps(len(tracks), tracks.shape[1])[:, :, None]
    labels = tracks_to_labels(tracks, LABEL_IMAGE_SIZE).astype(np.uint8)
    size = env.config.image_size
    return ViewTracks(tracks=tracks, visible=visible, labels=labels, image_size=(size, size))


def preprocess_store_ground_truth(directory, views=None, overwrite: bool = False, progress=lambda x: x,
                                  shard: int = 0, num_shards: int = 1):
    """Write the track sidecar of every workcell episode of ``directory`` from the simulator instead of a tracker
    (``amplify-preprocess --tracker ground_truth``): to tell tracker errors from model errors. Episodes without a
    ``/sim`` group (not made by the workcell generator) are reported as failed; complete sidecars are kept."""
    from pathlib import Path

    from ..episodes import EpisodeReader, list_episodes, tracks_path
    from ..preprocessing import StoreReport, shard_of
    from ..tracks import TARGET_FPS
    from ..tracks_store import changed_settings, tracks_complete, write_tracks
    from .episode_io import read_sim

    report = StoreReport()
    envs: dict = {}
    try:
        for path in progress(shard_of(list_episodes(directory), shard, num_shards)):
            path = Path(path)
            try:
                with EpisodeReader(path) as episode:
                    chosen, n, fps = views or episode.views, episode.num_frames, episode.fps
                settings = {"horizon": HORIZON, "grid_size": GRID_SIZE, "target_fps": float(TARGET_FPS),
                            "tracker": SOURCE_NAME, "tracker_params": {}}
                if not overwrite and tracks_complete(tracks_path(path), chosen, n):
                    changed = changed_settings(tracks_path(path), settings)
                    if changed:
                        raise ValueError(f"{tracks_path(path)}: made with other settings ({'; '.join(changed)}); "
                                         "pass --overwrite to recompute it")
                    report.skipped.append(path.name)
                    continue
                if fps != TARGET_FPS:
                    raise ValueError(f"{path}: ground-truth tracks need episodes at {TARGET_FPS:g} fps, got {fps:g}")
                sim = read_sim(path)
                key = (sim.task, sim.embodiment, sim.image_size)
                if key not in envs:
                    envs[key] = WorkcellEnv(sim.task, embodiment=sim.embodiment, image_size=sim.image_size)
                out = {view: ground_truth_view_tracks(envs[key], sim, view) for view in chosen}
                meta = {"episode": path.name, "num_frames": n, "source_fps": fps, **settings}
                write_tracks(tracks_path(path), out, meta, overwrite=overwrite)
                report.done.append(path.name)
            except (ValueError, OSError, KeyError) as exc:
                report.failed[path.name] = str(exc)
    finally:
        for env in envs.values():
            env.close()
    return report
