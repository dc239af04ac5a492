"""LIBERO: the demonstration-file reader and writer, the splits, the install checks (no LIBERO needed), and a
smoke test with the real LIBERO (skipped with the reason when the extra is not installed): a LIBERO-Object
expert demo that passes LIBERO's success check, read back through the reader, and a policy rollout through
amplify-evaluate that writes its result file."""

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from amplify_core.episodes import read_episode, tracks_path, write_episode
from amplify_core.libero import installation
from amplify_core.libero.demo_files import Demo, LiberoDataError, read_demo_file, write_demo_file
from training.libero_split import main as split_main
from training.libero_to_episodes import main as to_episodes


@dataclass
class FakeTask:  # what write_demo_file needs of a LiberoTask
    suite: str
    name: str
    text: str
    bddl_file: str


def synthetic_demo(steps=18, size=16, seed=0) -> Demo:
    """A demo whose images are rendered bottom row first (OpenGL): row r of the upright image holds value r."""
    rng = np.random.default_rng(seed)
    demo = Demo()
    upright = np.repeat(np.arange(size, dtype=np.uint8)[:, None, None], 3, axis=2).repeat(size, axis=1)
    for t in range(steps):
        raw = {"robot0_joint_pos": rng.normal(size=7), "robot0_gripper_qpos": rng.normal(size=2),
               "robot0_eef_pos": rng.normal(size=3), "robot0_eef_quat": np.array([0, 0, 0, 1.0]),
               "agentview_image": upright[::-1] + t, "robot0_eye_in_hand_image": upright[::-1]}
        demo.add(raw, rng.normal(size=5), rng.uniform(-1, 1, size=7),
                 {"agentview_rgb": "agentview", "eye_in_hand_rgb": "robot0_eye_in_hand"})
    return demo


@pytest.fixture
def demo_file(tmp_path):
    bddl = tmp_path / "task.bddl"
    bddl.write_text("(define (problem LIBERO_Tabletop_Manipulation))")
    task = FakeTask("libero_object", "pick_up_the_soup", "pick up the soup and place it in the basket", str(bddl))
    demos = [synthetic_demo(seed=i) for i in range(3)]
    return write_demo_file(tmp_path / "files" / "pick_up_the_soup_demo.hdf5", task, demos, {"camera_heights": 16}), demos


def test_reader_returns_upright_images_state_and_actions_of_every_demo(demo_file):
    path, demos = demo_file
    episodes = read_demo_file(path)
    assert len(episodes) == 3
    for episode, demo in zip(episodes, demos):
        assert episode.task == "pick up the soup and place it in the basket" and episode.fps == 20.0
        assert episode.views == ["agentview", "eye_in_hand"] and episode.num_frames == 18
        rows = episode.frames["eye_in_hand"][0, :, 0, 0]
        assert list(rows) == list(range(16))  # flipped back: row r holds r
        assert list(episode.frames["agentview"][5, :, 0, 0]) == [r + 5 for r in range(16)]
        np.testing.assert_allclose(episode.state, np.c_[np.stack(demo.obs["joint_states"]),
                                                        np.stack(demo.obs["gripper_states"])], rtol=1e-6)
        np.testing.assert_allclose(episode.actions, np.stack(demo.actions), rtol=1e-6)
    with h5py.File(path) as f:  # LIBERO's own layout, readable by LIBERO's tools
        g = f["data/demo_0"]
        assert g["obs/ee_states"].shape == (18, 6) and g["robot_states"].shape == (18, 9)
        assert g.attrs["num_samples"] == 18 and f["data"].attrs["num_demos"] == 3
        assert json.loads(f["data"].attrs["problem_info"])["language_instruction"].startswith("pick up")


def test_writer_never_overwrites(demo_file):
    path, demos = demo_file
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="not overwritten"):
        write_demo_file(path, FakeTask("s", "n", "t", "/x"), demos, {})
    assert path.read_bytes() == before


def test_files_of_another_format_or_version_are_refused_with_the_reason(demo_file, tmp_path):
    path, _ = demo_file
    other = tmp_path / "other_version.hdf5"
    other.write_bytes(path.read_bytes())
    with h5py.File(other, "a") as f:
        f["data"].attrs["tag"] = "libero-v2"
    with pytest.raises(LiberoDataError, match=r"other_version.hdf5.*'libero-v2'"):
        read_demo_file(other)
    raw = tmp_path / "robomimic_raw.hdf5"  # raw robosuite demo keys instead of LIBERO's
    with h5py.File(raw, "w") as f:
        f.create_group("data").attrs["problem_info"] = json.dumps({"language_instruction": "x"})
        f.create_dataset("data/demo_0/actions", data=np.zeros((3, 7)))
        f.create_dataset("data/demo_0/obs/agentview_image", data=np.zeros((3, 8, 8, 3), np.uint8))
    with pytest.raises(LiberoDataError, match=r"robomimic_raw.hdf5: demo_0 lacks .*obs/agentview_rgb.*found"):
        read_demo_file(raw)
    truncated = tmp_path / "truncated.hdf5"
    truncated.write_bytes(path.read_bytes()[: 4000])
    with pytest.raises(LiberoDataError, match="truncated.hdf5: not a readable HDF5"):
        read_demo_file(truncated)


def test_converter_skips_bad_files_converts_the_rest_and_keeps_existing_episodes(demo_file, tmp_path, capsys):
    path, _ = demo_file
    (path.parent / "broken_demo.hdf5").write_bytes(b"not hdf5")
    out = tmp_path / "episodes"
    assert to_episodes([str(path.parent), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3 episodes written" in printed and "broken_demo.hdf5: not a readable HDF5" in printed
    episodes = sorted(out.glob("*.h5"))
    assert [p.name for p in episodes] == [f"pick_up_the_soup_demo{i:03d}.h5" for i in range(3)]
    first = read_episode(episodes[0])
    assert first.state.shape == (18, 9) and first.actions.shape == (18, 7)
    stamp = episodes[0].stat().st_mtime_ns
    assert to_episodes([str(path), "--out", str(out)]) == 0
    assert "0 episodes written" in capsys.readouterr().out and episodes[0].stat().st_mtime_ns == stamp
    assert to_episodes([str(tmp_path / "nope.hdf5"), "--out", str(out)]) == 2
    assert "nope.hdf5" in capsys.readouterr().err


def test_splits_link_k_demos_per_task_and_name_missing_stores(tmp_path, episode_factory, capsys):
    store = tmp_path / "libero_object"
    store.mkdir()
    for task in ("pick up the soup", "pick up the milk"):
        for i in range(4):
            episode = episode_factory(num_frames=16, seed=i)
            episode.task = task
            write_episode(store / f"{task.replace(' ', '_')}_demo{i:03d}.h5", episode)
    out = tmp_path / "few2"
    assert split_main(["few_shot_2", "--suite", "libero_object", "--store", f"libero_object={store}",
                       "--out", str(out)]) == 0
    assert len(list((out / "forward").glob("*.h5"))) == 8
    linked = sorted(p.name for p in (out / "inverse").glob("*.h5"))
    assert linked == sorted(f"{t}_demo{i:03d}.h5" for t in ("pick_up_the_soup", "pick_up_the_milk") for i in (0, 1))
    assert all((out / "inverse" / name).is_symlink() for name in linked)
    info = json.loads((out / "split.json").read_text())
    assert info["episodes"]["inverse"] == {"pick up the soup": 2, "pick up the milk": 2}
    assert "--suite libero_object" in info["evaluate"]
    assert split_main(["zero_shot", "--suite", "libero_object", "--store", f"libero_object={store}",
                       "--out", str(tmp_path / "zs")]) == 2
    assert "libero_90" in capsys.readouterr().err
    assert split_main(["few_shot_3", "--suite", "libero_object", "--out", str(tmp_path / "x")]) == 2
    assert "few_shot_2" in capsys.readouterr().err  # the known splits are listed


def test_zero_shot_split_gives_the_inverse_model_only_libero_90_actions(tmp_path, episode_factory):
    """Forward: every video of LIBERO-90 and of the suite (an action-free one too); inverse: LIBERO-90's demos
    with actions only, none of the evaluated suite."""
    stores = {"libero_90": tmp_path / "libero_90", "libero_object": tmp_path / "libero_object"}
    names = {"libero_90": [], "libero_object": []}
    suite_tasks = {"libero_90": ("open the drawer", "turn on the stove"), "libero_object": ("pick up the soup",)}
    for suite, tasks in suite_tasks.items():
        stores[suite].mkdir()
        for task in tasks:
            for i in range(3):
                episode = episode_factory(num_frames=16, seed=i, actions=not (suite == "libero_90" and i == 2))
                episode.task = task
                path = stores[suite] / f"{task.replace(' ', '_')}_demo{i:03d}.h5"
                write_episode(path, episode)
                names[suite].append(path.name)
    tracked = stores["libero_object"] / "pick_up_the_soup_demo000.h5"
    tracks_path(tracked).write_bytes(b"")  # a track sidecar travels with its episode
    out = tmp_path / "zs"
    assert split_main(["zero_shot", "--suite", "libero_object", "--out", str(out),
                       *[f"--store={suite}={folder}" for suite, folder in stores.items()]]) == 0
    forward = sorted(p.name for p in (out / "forward").glob("*_demo???.h5"))
    inverse = sorted(p.name for p in (out / "inverse").glob("*.h5"))
    assert forward == sorted(names["libero_90"] + names["libero_object"])  # 6 + 3 videos
    assert inverse == sorted(n for n in names["libero_90"] if not n.endswith("002.h5"))  # 2 tasks x 2 with actions
    assert (out / "forward" / tracks_path(tracked).name).is_symlink()
    info = json.loads((out / "split.json").read_text())
    assert info["episodes"]["forward"] == {"open the drawer": 3, "turn on the stove": 3, "pick up the soup": 3}
    assert info["episodes"]["inverse"] == {"open the drawer": 2, "turn on the stove": 2}


def test_install_checks_name_the_missing_asset_and_the_bad_config(tmp_path, monkeypatch):
    fake = tmp_path / "site" / "libero" / "libero"
    fake.mkdir(parents=True)
    monkeypatch.setattr(installation, "package_dir", lambda: fake)
    with pytest.raises(installation.LiberoInstallError, match=f"{fake / 'assets'} does not exist"):
        installation.check_assets()
    (fake / "assets" / "scenes").mkdir(parents=True)
    with pytest.raises(installation.LiberoInstallError, match="incomplete.*textures"):
        installation.check_assets()
    monkeypatch.setenv("LIBERO_CONFIG_PATH", str(tmp_path / "cfg"))
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.yaml").write_text("assets: /x\n")
    with pytest.raises(installation.LiberoInstallError, match=r"cfg/config.yaml: LIBERO's config lacks"):
        installation.check_config()
    assert installation.write_config() == tmp_path / "cfg" / "config.yaml"  # a user's file is never replaced
    assert (tmp_path / "cfg" / "config.yaml").read_text() == "assets: /x\n"


@pytest.mark.parametrize("command", ["amplify-evaluate", "amplify-libero-generate"])
@pytest.mark.parametrize("problem", ["assets missing", "assets incomplete", "another LIBERO version"])
def test_libero_commands_stop_on_a_bad_install_with_one_line_naming_it(problem, command, tmp_path, monkeypatch,
                                                                       capsys):
    from amplify_core.libero import suites
    from training.evaluate import main as evaluate
    from training.libero_generate import main as generate

    if problem == "another LIBERO version":
        _libero_or_skip()  # the version is read from the installed package's metadata
        monkeypatch.setattr(installation, "metadata", SimpleNamespace(version=lambda name: "0.2.0"))
        expected = "LIBERO 0.2.0 is installed, this project supports 0.1.1"
    else:
        fake = tmp_path / "site" / "libero" / "libero"  # the check looks here instead of the real package
        fake.mkdir(parents=True)
        monkeypatch.setattr(installation, "package_dir", lambda: fake)
        if problem == "assets missing":
            expected = f"LIBERO's scene assets are missing: {fake / 'assets'} does not exist"
        else:
            for folder in ("scenes", "textures"):
                (fake / "assets" / folder).mkdir(parents=True)
            expected = "has no ['stable_scanned_objects', 'turbosquid_objects', 'articulated_objects']"
    suites.suite_tasks.cache_clear()  # a suite listed by an earlier test must not skip the checks
    if command == "amplify-evaluate":
        code = evaluate(["--suite", "libero_object", "--controller", "expert", "--episodes", "1"])
    else:
        code = generate(["--out", str(tmp_path / "demos"), "--tasks", "0", "--demos", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err and "scripts/setup_libero.sh" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "demos").exists()


# ---- with the real LIBERO ----------------------------------------------------------------------------------

def _libero_or_skip():
    try:
        installation.package_dir()
        installation.check_assets()
    except installation.LiberoInstallError as exc:
        pytest.skip(f"LIBERO extra not installed ({exc})")


@pytest.fixture(scope="module")
def libero_demo(tmp_path_factory):
    """One expert demo of LIBERO-Object task 0 through amplify-libero-generate (~1 min)."""
    _libero_or_skip()
    from training.libero_generate import main as generate

    out = tmp_path_factory.mktemp("libero")
    assert generate(["--out", str(out), "--tasks", "0", "--demos", "1", "--max-attempts", "3", "--workers", "1"]) == 0
    (path,) = out.glob("*_demo.hdf5")
    return path


def test_libero_expert_demo_passes_libero_check_and_reads_back(libero_demo):
    from amplify_core.libero.env import LiberoEnv

    episodes = read_demo_file(libero_demo)
    assert len(episodes) == 1
    episode = episodes[0]
    assert episode.task == "pick up the alphabet soup and place it in the basket"
    assert episode.frames["agentview"].shape[1:] == (128, 128, 3) and episode.num_frames == len(episode.actions)
    env = LiberoEnv("libero_object", 0, render=False)
    try:
        with h5py.File(libero_demo) as f:
            states = f["data/demo_0/states"][()]
        env.reset(0)
        assert not env.env.check_success()  # the initial state is not a success
        env.env.set_init_state(states[-1])  # the recorded last state, judged by LIBERO's own predicate
        assert env.env.check_success()
    finally:
        env.close()


@pytest.mark.parametrize("task, seed", [(1, 1), (2, 0)])
def test_libero_expert_grasps_the_flat_box_beside_a_can_and_the_tall_bottle(task, seed):
    """Initial states where a grasp at the object's middle failed: the palm hit the tomato-sauce can beside the
    cream cheese (task 1), or the salad dressing's cap before the fingers reached the bottle's middle (task 2)."""
    _libero_or_skip()
    from amplify_core.libero.env import LiberoEnv
    from amplify_core.libero.experts import object_and_container, plan_grasp, run_expert

    env = LiberoEnv("libero_object", task, render=False, max_steps=300)
    try:
        env.reset(seed)
        obj, _ = object_and_container(env)
        middle, grasp = env.raw_obs[f"{obj}_pos"], plan_grasp(env, obj)
        if task == 1:  # slid along the box, away from the can on its +x side
            assert grasp[0] < middle[0] - 0.01
        else:  # held near the top: the palm stays above the 14.6 cm bottle
            assert grasp[2] > middle[2] + 0.03
        ok, demo = run_expert(env, seed)
        assert ok and env.env.check_success() and len(demo.actions) < 300
    finally:
        env.close()


def test_libero_env_follows_the_fixed_initial_states_and_counts_steps_per_episode():
    _libero_or_skip()
    from amplify_core.libero.env import LiberoEnv

    env = LiberoEnv("libero_object", 0, render=False, max_steps=3, settle_steps=0)
    try:
        init = env.task.init_states()
        assert len(init) == env.num_init_states == 50
        env.reset(7)
        np.testing.assert_allclose(env.sim_state()[1:], init[7][1:], atol=1e-9)  # [0] is the sim time
        env.reset(57)  # episode 57 starts from state 7 again
        np.testing.assert_allclose(env.sim_state()[1:], init[7][1:], atol=1e-9)
        flags = [env.step(np.zeros(7))[3] for _ in range(3)]
        assert flags == [False, False, True] and env.steps == 3
        env.reset(1)
        assert env.steps == 0
        with pytest.raises(ValueError, match="7 finite numbers"):
            env.step([0, 0, np.nan, 0, 0, 0, 0])
    finally:
        env.close()


def test_policy_rollout_through_the_harness_writes_results_and_report(tmp_path):
    """The throughput command of docs/libero.md, small: an untrained libero_tiny policy (--random-policy) in the
    loop; its checkpoints live in a temporary folder that is gone afterwards."""
    _libero_or_skip()
    from training.evaluate import main as evaluate

    task = "pick up the alphabet soup and place it in the basket"
    out = tmp_path / "eval.json"
    assert evaluate(["--suite", "libero_object", "--tasks", "0", "--controller", "policy",
                     "--random-policy", "libero_tiny", "--episodes", "2", "--max-steps", "4",
                     "--workers", "1", "--json", str(out), "--report", str(tmp_path / "eval.md")]) == 0
    result = json.loads(out.read_text())
    assert result["suite"] == "libero_object" and result["controller"]["random_policy"] == "libero_tiny"
    assert [(e["seed"], e["steps"]) for e in result["episodes"]] == [(0, 4), (1, 4)]
    assert result["summary"][task]["episodes"] == 2 and result["summary"]["all"]["episodes"] == 2
    assert result["env_steps"] == 8 and not Path(result["controller"]["inverse"]).exists()
    report = (tmp_path / "eval.md").read_text()
    assert "| **all** |" in report and "untrained `libero_tiny`" in report
    assert (tmp_path / "eval.png").stat().st_size > 0


def test_random_policy_arguments_are_checked(capsys):
    from training.evaluate import main as evaluate

    workcell = ["--tasks", "open the drawer", "--episodes", "1"]
    assert evaluate(["--controller", "expert", "--random-policy", "tiny", *workcell]) == 2
    assert "only with --controller policy" in capsys.readouterr().err
    assert evaluate(["--controller", "policy", "--random-policy", "tiny", "--inverse", "x.pt", *workcell]) == 2
    assert "without --inverse" in capsys.readouterr().err
    assert evaluate(["--controller", "policy", "--random-policy", "huge", *workcell]) == 2
    assert "--random-policy: unknown config preset 'huge'" in capsys.readouterr().err


def test_libero_rollout_with_two_workers_writes_the_first_episode_as_a_gif(tmp_path):
    _libero_or_skip()
    from PIL import Image

    from training.evaluate import main as evaluate

    gifs, out = tmp_path / "gifs", tmp_path / "eval.json"
    assert evaluate(["--suite", "libero_object", "--tasks", "0", "--controller", "expert", "--episodes", "2",
                     "--batch", "1", "--max-steps", "3", "--workers", "2", "--gif-dir", str(gifs),
                     "--json", str(out)]) == 0
    episodes = json.loads(out.read_text())["episodes"]
    assert [(e["seed"], e["steps"]) for e in episodes] == [(0, 3), (1, 3)]
    (gif,) = gifs.glob("*.gif")  # the first episode of the task only
    assert gif.name == "pick_up_the_alphabet_soup_and_place_it_in_the_basket_seed0.gif"
    assert episodes[0]["gif"] == str(gif) and "gif" not in episodes[1]
    with Image.open(gif) as image:
        assert image.n_frames == 4  # the observation after the reset and after each of the 3 steps
        assert image.size == (2 * 128 + 4, 128)  # agentview | eye_in_hand, 128 px, a 4 px gap


def test_unknown_suite_or_task_is_a_clear_error(capsys):
    from training.evaluate import main as evaluate

    with pytest.raises(SystemExit):
        evaluate(["--suite", "libero_101", "--controller", "hold"])
    assert "libero_101" in capsys.readouterr().err
    _libero_or_skip()
    assert evaluate(["--suite", "libero_object", "--tasks", "fold the laundry", "--controller", "hold"]) == 2
    assert "no task 'fold the laundry' in LIBERO suite 'libero_object'" in capsys.readouterr().err
