"""Training programs: exact resume, DDP with torchrun, the stage commands end to end, checkpoint checks."""

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from amplify_core.checkpoint import CheckpointError, load_model
from amplify_core.configs import ConfigError, load_config
from amplify_core.episodes import EpisodeError, write_episode
from amplify_core.policy import AmplifyPolicy, ObservationError
from amplify_core.preprocessing import preprocess_store
from amplify_core.tracking import LucasKanadeTracker
from training.stages import train_tokenizer

from conftest import make_episode

ROOT = Path(__file__).resolve().parents[1]

TEST_CONFIG = {
    "name": "test",
    "tokenizer": {"views": ["front", "side"], "hidden": 32, "layers": 1, "heads": 2, "decoder_layers": 1,
                  "dropout": 0.1},
    "forward": {"hidden": 32, "layers": 1, "heads": 2, "dropout": 0.1, "text_dim": 384,
                "vision": {"image_size": 48, "width": 8}},
    "inverse": {"hidden": 32, "layers": 1, "heads": 2, "dropout": 0.1, "vision": {"image_size": 48, "width": 8}},
    "train_tokenizer": {"steps": 6, "batch_size": 4, "lr": 1e-3, "warmup_steps": 2, "checkpoint_every": 2},
    "train_forward": {"steps": 3, "batch_size": 4, "lr": 1e-3, "warmup_steps": 1},
    "train_inverse": {"steps": 3, "batch_size": 4, "lr": 1e-3, "warmup_steps": 1},
}


@pytest.fixture(scope="module")
def robot_store(tmp_path_factory):
    store = tmp_path_factory.mktemp("robot")
    for i in range(2):
        write_episode(store / f"ep_{i}.h5", make_episode(num_frames=12, size=48, seed=i))
    assert not preprocess_store(store, LucasKanadeTracker()).failed
    return store


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "test.yaml"
    path.write_text(yaml.safe_dump(TEST_CONFIG))
    return path


def test_resume_reproduces_the_uninterrupted_losses(robot_store, config_file, tmp_path):
    config = load_config(config_file)
    straight = train_tokenizer(config, [robot_store], tmp_path / "a", progress=False)
    assert len(straight.losses) == 6 and (tmp_path / "a" / "tokenizer.pt").is_file()
    first = train_tokenizer(config, [robot_store], tmp_path / "b", stop_after=3, progress=False)
    assert len(first.losses) == 3 and not (tmp_path / "b" / "tokenizer.pt").exists()
    second = train_tokenizer(config, [robot_store], tmp_path / "b", progress=False)  # resumes at step 3
    assert second.step == 6
    np.testing.assert_allclose(first.losses + second.losses, straight.losses, rtol=1e-6)
    a = load_model(tmp_path / "a" / "tokenizer.pt")[0].state_dict()
    b = load_model(tmp_path / "b" / "tokenizer.pt")[0].state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert any((tmp_path / "a" / "tensorboard" / "tokenizer").iterdir())


def test_two_process_torchrun_ends_with_identical_weights(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                        "29533", str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path)],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    w0, w1 = (torch.load(tmp_path / f"rank{i}.pt") for i in range(2))
    for k in w0["state"]:
        assert torch.equal(w0["state"][k], w1["state"][k]), k
    assert len(w0["losses"]) == 4 and w0["losses"] != w1["losses"]  # each rank saw its own half of the data


def run(module, *args):
    r = subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                       timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def trained(robot_store, config_file, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    run("training.train_all", "--videos", robot_store, "--robot", robot_store, "--run-dir", run_dir,
        "--config", config_file, "--quiet", "--finetune-steps", "2")
    run("training.train_inverse", "--store", robot_store, "--run-dir", run_dir, "--config", config_file,
        "--no-codes", "--quiet")
    return run_dir


def observation(size=48, views=("front", "side")):
    rng = np.random.default_rng(0)
    return {v: rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for v in views}


def test_stage_commands_produce_a_working_policy(trained):
    for name in ("tokenizer", "forward", "inverse", "inverse_finetuned", "bc"):
        assert (trained / f"{name}.pt").is_file(), name
    policy = AmplifyPolicy(trained / "inverse_finetuned.pt", trained / "forward.pt", trained / "tokenizer.pt",
                           text_cache=trained / "text_embeddings.npz")
    chunk = policy.predict_chunk(observation(), np.zeros(7), "put the red block in the bowl")
    assert chunk.shape == (16, 7) and np.all(np.isfinite(chunk))
    assert policy.last_codes.shape == (1, 15)
    assert policy.predicted_tracks("side").shape == (16, 400, 2)
    action = policy.act(observation(), np.zeros(7), "put the red block in the bowl")
    assert action.shape == (7,)
    bc = AmplifyPolicy(trained / "bc.pt")
    assert bc.predict_chunk(observation(), np.zeros(7)).shape == (16, 7)


def test_policy_refuses_observations_it_was_not_trained_for(trained):
    policy = AmplifyPolicy(trained / "inverse.pt", trained / "forward.pt", text_cache=trained / "text_embeddings.npz")
    task = "put the red block in the bowl"
    with pytest.raises(ObservationError, match=r"missing camera views \['side'\]"):
        policy.predict_chunk(observation(views=("front",)), np.zeros(7), task)
    with pytest.raises(ObservationError, match=r"view 'front': expected uint8 image \(48, 48, 3\)"):
        policy.predict_chunk(observation(size=64), np.zeros(7), task)
    with pytest.raises(ObservationError, match="7 finite numbers"):
        policy.predict_chunk(observation(), np.full(7, np.nan), task)
    with pytest.raises(ObservationError, match="task instruction"):
        policy.predict_chunk(observation(), np.zeros(7), "")


def test_checkpoint_mismatches_are_clear_errors(trained, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_model(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="is a 'forward' checkpoint, expected 'inverse'"):
        load_model(trained / "forward.pt", "inverse")
    with pytest.raises(CheckpointError, match="a forward checkpoint is needed"):
        AmplifyPolicy(trained / "inverse.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="unreadable"):
        load_model(garbage)
    # weights that do not fit the stored config
    payload = torch.load(trained / "tokenizer.pt", weights_only=False)
    payload["config"]["hidden"] = 64
    payload["config"]["heads"] = 2
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="do not match the stored config"):
        load_model(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="not an amplify_ros checkpoint"):
        torch.save({"weights": 1}, tmp_path / "other.pt")
        load_model(tmp_path / "other.pt")


def test_store_without_tracks_and_bad_configs_are_clear_errors(tmp_path, config_file):
    write_episode(tmp_path / "ep.h5", make_episode(num_frames=12, size=48))
    with pytest.raises(EpisodeError, match="no tracks .*run `amplify-preprocess`"):
        from amplify_core.datasets import load_episodes
        load_episodes([tmp_path], ["front"], images=False, tracks=True, skip_bad=False)
    with pytest.raises(ConfigError, match="unknown config preset 'huge'"):
        load_config("huge")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"tokenizer": {"hiden": 3}}))
    with pytest.raises(ConfigError, match=r"unknown keys \['hiden'\]"):
        load_config(bad)
    bad.write_text(yaml.safe_dump({"forward": {"hidden": 30, "heads": 4}}))
    with pytest.raises(ConfigError, match="multiple of forward.heads"):
        load_config(bad)


def test_shipped_presets_build_models_of_the_documented_size():
    from amplify_core.checkpoint import build_model
    import dataclasses
    paper = load_config("paper")
    sizes = {}
    for kind, cfg in (("tokenizer", paper.tokenizer), ("forward", paper.forward), ("inverse", paper.inverse)):
        args = {} if kind == "tokenizer" else {"num_views": 3, "codebook_size": 1920, "code_length": 15}
        model = build_model(kind, dataclasses.asdict(cfg), args)
        sizes[kind] = sum(p.numel() for p in model.parameters()) / 1e6
    # Table 10: 31M / 70M / 57M; ours differ in details (shared ResNet-18 of 11M in forward and inverse)
    assert 15 < sizes["tokenizer"] < 45, sizes
    assert 50 < sizes["forward"] < 90, sizes
    assert 30 < sizes["inverse"] < 70, sizes
    assert load_config("tiny").tokenizer.hidden == 128


def test_inverse_samples_repeat_the_demos_up_to_their_share_beside_play():
    from amplify_core.datasets import InverseSamples, LoadedEpisode
    from amplify_core.normalization import Normalizer

    def episode(task, n):
        return LoadedEpisode(Path(f"{task or 'play'}.h5"), task, "robot", np.zeros((n, 1, 3, 8, 8), np.uint8), None,
                             None, None, np.zeros((n, 7), np.float32), np.zeros((n, 7), np.float32))

    episodes = [episode("open the drawer", 10), episode("", 90)]  # demos 10 % of the frames
    norm = Normalizer.fit(np.random.default_rng(0).normal(size=(20, 7)))
    uniform = InverseSamples(episodes, None, norm, norm, 4)
    assert len(uniform) == 100 and uniform.demo_fraction == pytest.approx(0.1)
    balanced = InverseSamples(episodes, None, norm, norm, 4, demo_share=0.5)
    assert balanced.demo_repeats == 9 and len(balanced) == 180 and balanced.demo_fraction == pytest.approx(0.5)
    counts = Counter(balanced.index)
    assert all(counts[(0, t)] == 9 for t in range(10)) and all(counts[(1, t)] == 1 for t in range(90))
    assert balanced[150]["actions"].shape == (4, 7)  # a repeated demo frame is a normal sample
    # demos already above the share: nothing repeated; no play: nothing to balance
    assert InverseSamples(episodes[::-1][:1] + episodes[:1], None, norm, norm, 4, demo_share=0.05).demo_repeats == 1
    assert InverseSamples(episodes[:1], None, norm, norm, 4, demo_share=0.5).demo_repeats == 1
    with pytest.raises(ValueError, match="demo_share must be in"):
        InverseSamples(episodes, None, norm, norm, 4, demo_share=1.0)


@pytest.mark.parametrize("section,key,value,rule", [
    ("train_inverse", "grad_clip", -1.0, "must be > 0"),  # used to train with flipped gradients, silently
    ("inverse", "hidden", "128", "must be an integer"),
    ("train_forward", "lr", "1e-3", "must be a number (YAML reads 1e-3 as text"),
    ("inverse", "dropout", -0.1, "must be in [0, 1)"),
    ("tokenizer", "fsq_levels", [8, 1, 5], "every level must be >= 2"),
    ("inverse", "chunk", 0, "must be >= 1"),
    ("train_tokenizer", "weight_decay", -0.5, "must be >= 0"),
    ("train_tokenizer", "amp", "yes", "must be true or false"),
    ("tokenizer", "views", "front", "must be a list of str"),
    ("train_forward", "lr", float("inf"), "must be finite"),
])
def test_every_config_value_is_type_and_range_checked_naming_file_key_value_and_rule(tmp_path, section, key, value,
                                                                                       rule):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({section: {key: value}}))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: {section}.{key} = {value!r}: {rule}"), str(caught.value)


def test_nested_and_cross_field_config_errors_name_the_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("forward:\n  vision: {image_size: '96'}\n")
    with pytest.raises(ConfigError, match=rf"^{path}: forward.vision.image_size = '96': must be an integer$"):
        load_config(path)
    path.write_text("inverse:\n  hidden: 30\n  heads: 4\n")
    with pytest.raises(ConfigError, match=rf"^{path}: inverse.hidden \(30\) must be a positive multiple"):
        load_config(path)
    path.write_text("train_inverse:\n  lr: 2\n  grad_clip: 3\n")  # integers where numbers are asked: fine
    assert load_config(path).train_inverse.lr == 2.0


@pytest.mark.parametrize("module", ["train_tokenizer", "train_forward", "train_inverse", "train_all"])
def test_training_commands_answer_bad_input_with_one_line_and_exit_2(tmp_path, module):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train_inverse: {grad_clip: -1.0}\ntrain_forward: {grad_clip: -1.0}\n"
                   "train_tokenizer: {grad_clip: -1.0}\n")
    store = tmp_path / "empty_store"
    store.mkdir()
    stores = ["--videos", str(store), "--robot", str(store)] if module == "train_all" else ["--store", str(store)]
    missing = f"{tmp_path / 'tok.pt'}: no such file" if module == "train_forward" else f"{store}: no episode files"
    for config, expected in ((str(bad), f"{bad}: train_"), ("tiny", missing)):
        extra = {"train_forward": ["--tokenizer", str(tmp_path / "tok.pt")], "train_inverse": ["--no-codes"]}.get(
            module, [])
        run = subprocess.run([sys.executable, "-m", f"training.{module}", "--config", config, "--run-dir",
                              str(tmp_path / "run"), *stores, *extra], capture_output=True, text=True, timeout=120)
        assert run.returncode == 2, run.stderr[-1500:]
        assert "Traceback" not in run.stderr
        (line,) = [ln for ln in run.stderr.splitlines() if ln.startswith("amplify-")]
        assert expected in line, line


def test_resuming_a_training_state_of_another_kind_or_config_names_the_file_and_the_change(robot_store,
                                                                                           config_file, tmp_path):
    config = load_config(config_file)
    run_dir = tmp_path / "run"
    train_tokenizer(config, [robot_store], run_dir, stop_after=2, progress=False)
    state = run_dir / "checkpoints" / "tokenizer_last.pt"
    changed = TEST_CONFIG | {"tokenizer": TEST_CONFIG["tokenizer"] | {"hidden": 48}}
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(changed))
    with pytest.raises(CheckpointError) as err:
        train_tokenizer(load_config(other), [robot_store], run_dir, progress=False)
    message = str(err.value)
    assert str(state) in message and "config.hidden: 32 -> 48" in message and "another --run-dir" in message
    assert len(message) < 400  # not a raw state-dict dump
    # a training state of another kind under this name
    from training.stages import train_inverse
    train_inverse(config, [robot_store], tmp_path / "bc", use_codes=False, name="bc", stop_after=1, progress=False)
    state.write_bytes((tmp_path / "bc" / "checkpoints" / "bc_last.pt").read_bytes())
    with pytest.raises(CheckpointError, match="training state of a 'inverse' model, this run trains a 'tokenizer'"):
        train_tokenizer(config, [robot_store], run_dir, progress=False)


def test_steps_zero_is_refused_not_read_as_the_configs_count(robot_store, config_file, tmp_path):
    with pytest.raises(ConfigError, match="--steps 0: must be a positive number"):
        train_tokenizer(load_config(config_file), [robot_store], tmp_path / "run", steps=0, progress=False)
    assert not (tmp_path / "run").exists()
    r = subprocess.run([sys.executable, "-m", "training.train_tokenizer", "--store", str(robot_store), "--run-dir",
                        str(tmp_path / "run"), "--config", str(config_file), "--steps", "0"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--steps: 0 is not a positive count" in r.stderr, r.stderr[-800:]
    assert not (tmp_path / "run").exists()


def test_finetuning_inputs_are_checked_before_the_inverse_training_runs(trained, robot_store, config_file, tmp_path):
    from training.stages import train_inverse
    config = load_config(config_file)
    run_dir = tmp_path / "run"
    tokenizer = trained / "tokenizer.pt"
    with pytest.raises(CheckpointError, match="is a 'tokenizer' checkpoint, expected 'forward'"):
        train_inverse(config, [robot_store], run_dir, tokenizer, forward_path=tokenizer, finetune_steps=2,
                      progress=False)
    with pytest.raises(ConfigError, match="--finetune-steps 2 needs --forward"):
        train_inverse(config, [robot_store], run_dir, tokenizer, finetune_steps=2, progress=False)
    with pytest.raises(FileNotFoundError, match="no such file"):
        train_inverse(config, [robot_store], run_dir, tokenizer, forward_path=tmp_path / "nope.pt", finetune_steps=2,
                      progress=False)
    assert not (run_dir / "checkpoints").exists()  # no step was trained before the refusal
