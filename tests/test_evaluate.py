"""Closed-loop evaluation: Wilson intervals, the reference controllers, a real (tiny) policy in the workcell."""

import json

import pytest

from amplify_core.metrics import success_interval
from training.evaluate import main as evaluate

TASKS = ["open the drawer", "put the red block in the bowl"]


def test_wilson_interval_known_values_and_bad_counts():
    assert success_interval(0, 20) == pytest.approx((0.0, 0.1611), abs=1e-4)
    assert success_interval(20, 20) == pytest.approx((0.8389, 1.0), abs=1e-4)
    assert success_interval(10, 20) == pytest.approx((0.2993, 0.7007), abs=1e-4)
    with pytest.raises(ValueError, match="episodes"):
        success_interval(0, 0)
    with pytest.raises(ValueError, match="successes"):
        success_interval(3, 2)


def test_expert_succeeds_and_holding_still_never_does_on_the_same_seeds(tmp_path):
    assert evaluate(["--controller", "expert", "--tasks", *TASKS, "--episodes", "3", "--workers", "2",
                     "--json", str(tmp_path / "expert.json")]) == 0
    assert evaluate(["--controller", "hold", "--tasks", *TASKS, "--episodes", "3", "--workers", "1",
                     "--max-steps", "30", "--json", str(tmp_path / "hold.json")]) == 0
    expert = json.loads((tmp_path / "expert.json").read_text())
    hold = json.loads((tmp_path / "hold.json").read_text())
    assert expert["summary"]["all"]["successes"] >= 5 and expert["summary"]["all"]["episodes"] == 6
    assert hold["summary"]["all"]["successes"] == 0
    for task in TASKS:  # identical episodes for both controllers
        assert expert["summary"][task]["seeds"] == hold["summary"][task]["seeds"] == [100000, 100001, 100002]
    lo, hi = hold["summary"]["all"]["ci95"]
    assert lo == 0.0 and 0.3 < hi < 0.5  # 0 of 6: the interval says how little that proves


def test_a_trained_policy_runs_closed_loop_and_its_episode_is_saved_as_a_gif(tmp_path):
    from training.benchmark_pipeline import tiny_checkpoints

    ckpt = tiny_checkpoints(tmp_path / "tiny", tasks=TASKS)  # random weights: this checks the loop, not skill
    out = tmp_path / "policy.json"
    assert evaluate(["--controller", "policy", "--inverse", str(ckpt["inverse"]), "--forward", str(ckpt["forward"]),
                     "--text-cache", str(ckpt["text_cache"]), "--tasks", TASKS[0], "--episodes", "2",
                     "--workers", "1", "--max-steps", "6", "--json", str(out), "--gif-dir", str(tmp_path / "gifs")]) == 0
    result = json.loads(out.read_text())
    assert [e["steps"] for e in result["episodes"]] == [6, 6]  # ran to the step limit
    (gif,) = [e["gif"] for e in result["episodes"] if "gif" in e]
    from PIL import Image

    with Image.open(gif) as im:
        assert im.n_frames == 7  # the first observation and one per step


def test_bad_arguments_name_the_problem(capsys):
    assert evaluate(["--controller", "expert", "--tasks", "fold the laundry"]) == 2
    assert "fold the laundry" in capsys.readouterr().err
    assert evaluate(["--controller", "policy", "--inverse", "/nonexistent/inverse.pt"]) == 2
    assert "/nonexistent/inverse.pt" in capsys.readouterr().err


def test_lockstep_batched_episodes_equal_one_at_a_time_and_render_only_the_policy_views(tmp_path):
    import numpy as np

    from amplify_core.policy import AmplifyPolicy
    from amplify_core.workcell.env import WorkcellEnv
    from amplify_core.closed_loop import PolicyController, run_episode, run_policy_episodes
    from training.benchmark_pipeline import tiny_checkpoints

    ckpt = tiny_checkpoints(tmp_path / "tiny", tasks=TASKS)
    policy = AmplifyPolicy(ckpt["inverse"], ckpt["forward"], text_cache=ckpt["text_cache"])
    size = policy.image_shape[1]
    seeds = [7, 8, 9]
    make = lambda task: WorkcellEnv(task, image_size=size, max_steps=8, views=policy.views)  # noqa: E731
    batched_envs = [make(TASKS[0]), make(TASKS[1]), make(TASKS[0])]
    batched = run_policy_episodes(batched_envs, policy, seeds, record=[True, False, False])
    finals = [env.tool0_pose() for env in batched_envs]
    for k, (env_task, seed) in enumerate(zip([TASKS[0], TASKS[1], TASKS[0]], seeds)):
        env = make(env_task)
        single = run_episode(env, PolicyController(policy), seed)
        assert (single.success, single.steps) == (batched[k].success, batched[k].steps) == (False, 8)
        np.testing.assert_allclose(env.tool0_pose(), finals[k], atol=1e-4)  # the same motion, batch or not
    assert len(batched[0].frames) == 9 and batched[1].frames == []
    assert sorted(batched[0].frames[0]) == sorted(policy.views)


@pytest.mark.parametrize("case", ["truncated", "wrong_kind", "no_forward"])
def test_an_unloadable_policy_ends_the_evaluation_with_one_line_naming_it(tmp_path, case):
    """Used to hang: the pool's initializer raised and multiprocessing restarted the workers forever."""
    import subprocess
    import sys

    from training.benchmark_pipeline import tiny_checkpoints

    ckpt = tiny_checkpoints(tmp_path / "tiny", tasks=TASKS)
    inverse, forward = ckpt["inverse"], ckpt["forward"]
    if case == "truncated":
        inverse = tmp_path / "truncated.pt"
        data = ckpt["inverse"].read_bytes()
        inverse.write_bytes(data[:len(data) // 2])
    elif case == "wrong_kind":
        inverse = ckpt["tokenizer"]
    args = ["--controller", "policy", "--inverse", str(inverse), "--text-cache", str(ckpt["text_cache"]),
            "--tasks", TASKS[0], "--episodes", "2", "--workers", "2", "--max-steps", "3"]
    if case != "no_forward":
        args += ["--forward", str(forward)]
    run = subprocess.run([sys.executable, "-m", "training.evaluate", *args], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2, run.stderr[-2000:]
    (line,) = [ln for ln in run.stderr.splitlines() if ln.startswith("amplify-evaluate:")]
    assert str(inverse) in line and ("forward checkpoint is needed" in line if case == "no_forward" else True)
    assert "Traceback" not in run.stderr
