"""Play data (amplify_core/workcell/play.py): undirected interaction with actions and no task text."""

import numpy as np
import pytest

from amplify_core.workcell.env import WorkcellEnv  # noqa: E402  (sets MUJOCO_GL before mujoco loads)

from amplify_core.episodes import EpisodeReader
from amplify_core.workcell import rollout as rollout_module
from amplify_core.workcell.experts import down_rotvec, push_yaw
from amplify_core.workcell.play import PRIMITIVES, YAW_RATE, PlayExpert
from amplify_core.workcell.rollout import run_expert
from amplify_core.workcell.tasks import PLAY, TASKS, get_task


def _play(env, seed):
    expert = PlayExpert(np.random.default_rng([seed, 1]))
    env.reset(seed)
    actions, openings = [], [env.drawer_opening()]
    while not expert.done and env.steps < env.max_steps:
        actions.append(expert.act(env))
        env.step(actions[-1])
        openings.append(env.drawer_opening())
    return expert, np.array(actions), np.array(openings)


def test_play_is_the_empty_task_and_never_succeeds():
    assert get_task("") is PLAY and "" not in TASKS  # not one of the tasks a policy is evaluated on
    env = WorkcellEnv("", render=False)
    env.reset(0)
    assert not env.success()
    assert PLAY.drawer_range[0] < 0.02 and PLAY.drawer_range[1] > 0.1  # starts anywhere from shut to open


def test_play_episodes_draw_every_primitive_move_the_drawer_both_ways_and_objects():
    env = WorkcellEnv("", render=False)
    seen, drawer_moves, moved_blocks = set(), set(), 0
    for seed in range(8):
        expert, actions, openings = _play(env, seed)
        assert expert.done, f"seed {seed}: play did not finish in {env.max_steps} steps"
        assert len(expert.history) == 3
        seen |= {h["primitive"] for h in expert.history}
        for h in expert.history:
            if h["primitive"] == "drawer":
                drawer_moves.add(h["direction"])
        moved_blocks += sum(np.linalg.norm(env.body_position(b)[:2] - p[:2]) > 0.03
                            for b, p in env.initial_positions.items())
        # bounded motion: no step of the commanded grasp centre beyond the fast speed, yaw turns at its rate
        assert np.max(np.linalg.norm(np.diff(actions[:, :3], axis=0), axis=1)) < 0.036
        assert np.all(np.isfinite(actions)) and set(np.unique(actions[:, 6])) <= {0.0, 1.0}
    assert seen == set(PRIMITIVES)
    assert drawer_moves == {"open", "close"}
    assert moved_blocks >= 4  # pushes and drops displace blocks


def test_yaw_turns_at_a_bounded_rate():
    yaws = np.linspace(-np.pi / 2, np.pi / 2, 5)
    for a, b in zip(yaws[:-1], yaws[1:]):
        assert np.linalg.norm(down_rotvec(a) - down_rotvec(b)) < np.pi  # continuous on [-pi/2, pi/2]
    env = WorkcellEnv("", render=False)
    _, actions, _ = _play(env, 3)
    yaw = 2 * np.arctan2(actions[:, 4], actions[:, 3])  # inverse of down_rotvec
    assert np.max(np.abs(np.diff(yaw))) <= YAW_RATE + 1e-6


def test_robot_pushes_keep_the_gripper_within_a_quarter_turn():
    # the parallel gripper is the same turned by half a turn: a push away (-x) needs no wrist turn at all
    assert push_yaw(np.array([-1.0, 0.0]), "robot") == pytest.approx(0.0)
    assert push_yaw(np.array([0.0, -1.0]), "robot") == pytest.approx(-np.pi / 2)  # push left: as before
    for angle in np.linspace(-np.pi, np.pi, 17):
        yaw = push_yaw(np.array([np.cos(angle), np.sin(angle)]), "robot")
        assert -np.pi / 2 - 1e-9 <= yaw <= np.pi / 2 + 1e-9
        assert abs(np.sin(yaw - angle)) < 1e-9  # still along the push direction
    assert push_yaw(np.array([-1.0, 0.0]), "human") == pytest.approx(np.arctan2(-1.0, 0.0))  # hand unchanged


def test_run_expert_records_play_as_a_successful_rollout_of_its_script():
    env = WorkcellEnv("", render=False)
    r = run_expert(env, 5, record=True)
    assert r.success and r.steps < env.max_steps
    assert r.actions.shape == (r.steps + 1, 7) and r.state.shape == (r.steps + 1, 7)
    again = run_expert(env, 5, record=True)  # seeded: the same primitives and actions
    np.testing.assert_array_equal(r.actions, again.actions)
    assert rollout_module.PlayExpert is PlayExpert


def test_generate_play_writes_episodes_with_actions_and_no_task_text(tmp_path):
    from training.generate_workcell import episode_name, main

    assert main([str(tmp_path), "--play", "--episodes-per-task", "1", "--image-size", "48"]) == 0
    path = tmp_path / episode_name("robot", "", 0)
    assert path.name == "robot_play_0000.h5"
    with EpisodeReader(path) as ep:
        assert ep.task == "" and ep.embodiment == "robot"
        assert ep.actions().shape == (ep.num_frames, 7) and ep.num_frames > 40
    with pytest.raises(SystemExit, match="--play .* cannot be combined with --tasks"):
        main([str(tmp_path), "--play", "--tasks", "open the drawer"])
