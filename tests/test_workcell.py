"""Simulated UR5 workcell: description, env contract, tasks and experts, determinism, generation, GT tracks."""


import numpy as np
import pytest

from amplify_core.workcell.env import WorkcellEnv  # noqa: E402  (sets MUJOCO_GL before mujoco loads)

import mujoco  # noqa: E402

from amplify_core.episodes import EpisodeReader
from amplify_core.metrics import delta_auc
from amplify_core.tracks import grid_points, normalize
from amplify_core.ur5 import UR5Kinematics, description_dir, parse_urdf
from amplify_core.workcell.config import VIEWS
from amplify_core.workcell.experts import ScriptedExpert
from amplify_core.workcell.rollout import run_expert
from amplify_core.workcell.tasks import TASK_LIST, TASKS

TASK_TEXTS = [t.text for t in TASK_LIST]


def test_at_least_eight_tasks_of_every_kind():
    kinds = {t.kind for t in TASK_LIST}
    assert len(TASK_LIST) >= 8
    assert {"place_in", "stack", "push", "drawer"} <= kinds


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(ValueError) as exc:
        WorkcellEnv("juggle the blocks", render=False)
    assert "juggle the blocks" in str(exc.value)
    for text in TASK_TEXTS:
        assert text in str(exc.value)


def test_bad_actions_raise_or_clamp():
    env = WorkcellEnv(TASK_TEXTS[0], render=False)
    env.reset(0)
    good = np.array([-0.45, 0.0, 0.3, np.pi, 0.0, 0.0, 0.0])
    for bad in (np.r_[good[:6], np.nan], np.r_[np.inf, good[1:]], good[:6]):
        with pytest.raises(ValueError):
            env.step(bad)
    _, _, _, _, info = env.step(good)
    assert not info["clamped"] and info["clamp_count"] == 0
    far = good.copy()
    far[0], far[2], far[6] = -5.0, -1.0, 3.0
    _, _, _, _, info = env.step(far)
    assert info["clamped"] and info["clamp_count"] == 1
    for _ in range(30):
        env.step(far)
    low, high = env.config.workspace_low, env.config.workspace_high
    tool = env.tool0_pose()[:3]
    assert np.all(tool > low - 0.02) and np.all(tool < high + 0.02)  # held at the box, not at x = -5


def test_tool0_in_mujoco_equals_ur5_fk():
    env = WorkcellEnv(TASK_TEXTS[0], render=False)
    kin = UR5Kinematics()
    rng = np.random.default_rng(0)
    site = env.model.site("tool0").id
    for _ in range(10):
        q = rng.uniform(-np.pi, np.pi, 6)
        env.data.qpos[env._arm_qpos] = q
        mujoco.mj_kinematics(env.model, env.data)
        ref = kin.fk(q)
        np.testing.assert_allclose(env.data.site_xpos[site], ref[:3, 3], atol=1e-6)
        np.testing.assert_allclose(env.data.site_xmat[site].reshape(3, 3), ref[:3, :3], atol=1e-6)


def test_cameras_match_workcell_urdf():
    env = WorkcellEnv(TASK_TEXTS[0], render=False)
    mujoco.mj_forward(env.model, env.data)
    joints = {j.child: j for j in parse_urdf(description_dir() / "workcell.urdf")}
    for view in VIEWS:
        optical = joints[f"{view}_camera_optical_frame"].origin
        cam = env.model.camera(view).id
        np.testing.assert_allclose(env.data.cam_xpos[cam], optical[:3, 3], atol=1e-9)
        rot = env.data.cam_xmat[cam].reshape(3, 3)
        # MuJoCo looks along -z with y up; the optical frame looks along +z with y down
        np.testing.assert_allclose(rot[:, 0], optical[:3, 0], atol=1e-6)
        np.testing.assert_allclose(-rot[:, 1], optical[:3, 1], atol=1e-6)
        np.testing.assert_allclose(-rot[:, 2], optical[:3, 2], atol=1e-6)


def _expert_frames(seed, steps=12, image_size=64):
    env = WorkcellEnv("put the red block in the bowl", image_size=image_size)
    obs = env.reset(seed)
    frames = [obs["images"]]
    expert = ScriptedExpert(env.task)
    for _ in range(steps):
        obs, *_ = env.step(expert.act(env))
        frames.append(obs["images"])
    env.close()
    return frames


def test_same_seed_gives_identical_frames_and_images_have_the_right_shape():
    a, b, c = _expert_frames(3), _expert_frames(3), _expert_frames(4)
    for fa, fb in zip(a, b):
        for view in VIEWS:
            assert fa[view].shape == (64, 64, 3) and fa[view].dtype == np.uint8
            np.testing.assert_array_equal(fa[view], fb[view])
    assert any(not np.array_equal(a[0][v], c[0][v]) for v in VIEWS)  # another seed, another layout
    assert not np.array_equal(a[0]["front"], a[-1]["front"])  # the arm moved


@pytest.mark.parametrize("embodiment", ["robot", "human"])
@pytest.mark.parametrize("task", TASK_TEXTS)
def test_predicate_false_at_reset_and_true_after_the_expert(task, embodiment):
    env = WorkcellEnv(task, embodiment=embodiment, render=False)
    for seed in (0, 1) if embodiment == "robot" else (0,):
        env.reset(seed)
        assert not env.success(), f"{task}: predicate already true at reset (seed {seed})"
        result = run_expert(env, seed, record=False)
        assert result.success, f"{task} ({embodiment}): expert failed with seed {seed}"
        assert env.success()


@pytest.mark.slow
@pytest.mark.parametrize("embodiment", ["robot", "human"])
@pytest.mark.parametrize("task", TASK_TEXTS)
def test_expert_success_rate_over_20_seeds(task, embodiment):
    env = WorkcellEnv(task, embodiment=embodiment, render=False)
    successes = sum(run_expert(env, seed, record=False).success for seed in range(20))
    assert successes >= 18, f"{task} ({embodiment}): {successes}/20"


def test_human_embodiment_has_no_arm():
    env = WorkcellEnv(TASK_TEXTS[0], embodiment="human", render=False)
    names = {env.model.joint(i).name for i in range(env.model.njnt)}
    assert "shoulder_pan_joint" not in names and env.model.nu == 0
    assert env.model.nmocap == 1
    with pytest.raises(ValueError):
        WorkcellEnv(TASK_TEXTS[0], embodiment="alien", render=False)


def test_generation_writes_resumable_deterministic_episodes(tmp_path):
    from training.generate_workcell import episode_name, main

    args = [str(tmp_path), "--tasks", "pick up the blue block", "--episodes-per-task", "1",
            "--embodiment", "both", "--image-size", "48"]
    assert main(args) == 0
    robot = tmp_path / episode_name("robot", "pick up the blue block", 0)
    human = tmp_path / episode_name("human", "pick up the blue block", 0)
    with EpisodeReader(robot) as ep:
        assert ep.views == list(VIEWS) and ep.embodiment == "robot" and ep.fps == 20.0
        assert ep.task == "pick up the blue block" and ep.image_size("front") == (48, 48)
        assert ep.actions().shape == (ep.num_frames, 7) and ep.state().shape == (ep.num_frames, 7)
    with EpisodeReader(human) as ep:
        assert ep.embodiment == "human" and ep.actions() is None
    mtime = robot.stat().st_mtime_ns
    assert main(args) == 0  # resumed: nothing to do, files untouched
    assert robot.stat().st_mtime_ns == mtime


def test_ground_truth_tracks_follow_the_scene(tmp_path):
    from amplify_core.preprocessing import compute_view_tracks
    from amplify_core.tracking import LucasKanadeTracker
    from amplify_core.workcell.episode_io import read_sim, write_rollout
    from amplify_core.workcell.ground_truth import ground_truth_tracks

    task = "pick up the blue block"
    env = WorkcellEnv(task)
    rollout = run_expert(env, 0)
    path = write_rollout(tmp_path / "ep.h5", rollout, task, "robot", 0, 128, 20.0)
    sim = read_sim(path)
    gt, visible = ground_truth_tracks(env, sim, "front")
    n = rollout.state.shape[0]
    assert gt.shape == (n, 16, 400, 2) and visible.shape == (n, 16, 400)
    np.testing.assert_allclose(gt[:, 0], np.broadcast_to(normalize(grid_points(128, 128), 128, 128), gt[:, 0].shape), atol=1e-5)
    moved = np.linalg.norm(gt[:, -1] - gt[:, 0], axis=-1) * 64 > 1.0
    assert moved.any() and not moved.all()  # the arm and block move, the table does not
    lk = compute_view_tracks(rollout.frames["front"], 20.0, LucasKanadeTracker())
    mask = visible[:, 1:] & lk.visible[:, 1:]
    moving = mask & (np.linalg.norm(gt[:, 1:] - gt[:, :1], axis=-1) * 64 > 1.0)
    # an independent tracker agrees with the simulator on the moving points (a wrong projection would not, nor an
    # arm without texture: LK then left its points behind, Delta_AUC 0.73); and keeps most of them
    assert delta_auc(lk.tracks[:, 1:][moving][:, None], gt[:, 1:][moving][:, None]) > 0.9
    from amplify_core.tracks import observed_steps

    observed = visible & observed_steps(n, 16)[:, :, None]  # past the video's end nothing was observed
    gt_moving = observed[:, 1:] & (np.linalg.norm(gt[:, 1:] - gt[:, :1], axis=-1) * 64 > 1.0)
    assert moving.sum() > 0.7 * gt_moving.sum()
    env.close()


def test_ground_truth_sidecars_stand_in_for_a_tracker(tmp_path):
    from amplify_core.episodes import tracks_path
    from amplify_core.tracks_store import read_tracks
    from amplify_core.workcell.episode_io import write_rollout
    from amplify_core.workcell.ground_truth import SOURCE_NAME, preprocess_store_ground_truth

    task = "open the drawer"
    with WorkcellEnv(task) as env:
        rollout = run_expert(env, 1)
    path = write_rollout(tmp_path / "ep.h5", rollout, task, "robot", 1, 128, 20.0)
    report = preprocess_store_ground_truth(tmp_path, views=["side"])
    assert report.done == ["ep.h5"] and not report.failed
    side = read_tracks(tracks_path(path), ["side"])["side"]
    n = len(rollout.state)
    assert side.tracks.shape == (n, 16, 400, 2) and side.labels.shape == (n, 15, 400)
    assert not side.visible[-1, 1:].any()  # the last frame's window lies past the end of the video
    import h5py

    with h5py.File(tracks_path(path)) as f:
        assert f.attrs["tracker"] == SOURCE_NAME
    assert preprocess_store_ground_truth(tmp_path, views=["side"]).skipped == ["ep.h5"]  # resumable
    (tmp_path / "other.h5").write_bytes(path.read_bytes())
    import h5py

    with h5py.File(tmp_path / "other.h5", "a") as f:
        del f["sim"]
    failed = preprocess_store_ground_truth(tmp_path, views=["side"]).failed
    assert "no /sim group" in failed["other.h5"]


def test_layouts_are_jittered_around_the_task_nominal_layout():
    from amplify_core.workcell.tasks import get_task, nominal_layout

    env = WorkcellEnv("put the red block in the bowl", render=False)
    jitter = env.config.layout_jitter
    assert jitter == pytest.approx(0.03)
    nominal = nominal_layout(get_task("put the red block in the bowl")).xy
    seen = []
    for seed in range(12):
        env.reset(seed)
        xy = {name: env.body_position(name)[:2] for name in nominal}
        for name, p in xy.items():
            assert np.all(np.abs(p - nominal[name]) <= jitter + 1e-9), (seed, name)
        seen.append(xy["red_block"])
    assert np.std(np.array(seen), axis=0).min() > jitter / 4  # it does move
    env.reset(3)
    again = env.body_position("red_block")
    env.reset(3)
    np.testing.assert_array_equal(env.body_position("red_block"), again)  # seeded
    env.close()


def test_episodes_start_from_a_seeded_pose_around_home():
    from amplify_core.workcell.env import HOME_POSE

    env = WorkcellEnv("open the drawer", render=False)
    starts = []
    for seed in range(10):
        env.reset(seed)
        starts.append(env.tool0_pose()[:3])
    starts = np.array(starts)
    assert np.all(np.abs(starts - HOME_POSE[:3]) <= env.config.start_jitter + 1e-3)
    assert np.all(starts.std(axis=0) > env.config.start_jitter / 5)
    env.reset(4)
    np.testing.assert_allclose(env.tool0_pose()[:3], starts[4], atol=1e-9)
    env.close()


def test_commands_have_help_with_examples(capsys):
    from training import benchmark_workcell, generate_workcell, workcell_track_accuracy

    for module in (generate_workcell, benchmark_workcell, workcell_track_accuracy):
        with pytest.raises(SystemExit):
            module.main(["--help"])
        assert "Example" in capsys.readouterr().out


def test_benchmark_prints_the_one_core_rate_and_the_target():
    import subprocess
    import sys

    # its own process: the benchmark pins itself to one core
    out = subprocess.run([sys.executable, "-m", "training.benchmark_workcell", "--steps", "20"],
                         capture_output=True, text=True, check=True).stdout
    assert "env steps/s" in out and "3 cameras at 128x128" in out and "pinned to core 0" in out, out
    assert "target >= 100 steps/s with 3 cameras at 128 px on one core: " in out, out
