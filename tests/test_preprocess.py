import json
import os
import subprocess
import sys

import numpy as np
import pytest

from amplify_core.episodes import EpisodeError, tracks_path, write_episode
from amplify_core.preprocessing import compute_view_tracks, preprocess_episode, preprocess_store, shard_of
from amplify_core.tracking import LucasKanadeTracker
from amplify_core.tracks import NUM_CLASSES, class_to_velocity, tracks_to_labels
from amplify_core.tracks_store import read_tracks, tracks_metadata

from conftest import make_episode


def test_episode_sidecar_holds_normalised_tracks_labels_and_metadata(store):
    path = store / "ep_000.h5"
    out = preprocess_episode(path, LucasKanadeTracker())
    assert out == tracks_path(path)
    tracks = read_tracks(out)
    assert sorted(tracks) == ["front", "side"]
    vt = tracks["front"]
    assert vt.tracks.shape == (18, 16, 400, 2) and vt.tracks.dtype == np.float32
    assert np.abs(vt.tracks).max() <= 1.0
    assert vt.labels.shape == (18, 15, 400) and vt.labels.max() < NUM_CLASSES
    np.testing.assert_array_equal(vt.labels, tracks_to_labels(vt.tracks))
    # the square moves (1.3, 0.7) px/frame at 64 px = (2.6, 1.4) px in 128-px label units: summed over
    # the 15 labels of a track the move is (39, 21) px, within rounding
    total = class_to_velocity(vt.labels[0]).sum(axis=0) * 64
    assert (np.all(np.abs(total - [39, 21]) <= 1, axis=-1)).mean() > 0.1
    meta = tracks_metadata(out)
    assert meta["tracker"] == "lucas_kanade" and meta["tracker_params"]["win_size"] == 9
    assert meta["num_frames"] == 18 and meta["source_fps"] == 20.0


def test_thirty_hz_source_is_tracked_over_the_same_time_and_resampled(tmp_path):
    path = write_episode(tmp_path / "fast.h5", make_episode(num_frames=40, fps=30.0, views=("front",)))
    vt = read_tracks(preprocess_episode(path, LucasKanadeTracker()))["front"]
    assert vt.tracks.shape == (40, 16, 400, 2)
    # 24 source frames (0.8 s) resampled to 16 steps: total displacement = 23 source frames of motion
    total = (vt.tracks[0, -1] - vt.tracks[0, 0]) * 64 / 2
    fraction_moving_23_frames = np.mean(np.all(np.abs(total - np.array([1.3, 0.7]) * 23) < 0.5, axis=-1))
    assert fraction_moving_23_frames > 0.1


def test_bad_episodes_are_reported_and_the_good_ones_processed(store, episode_factory):
    good = (store / "ep_001.h5").read_bytes()
    (store / "ep_900_truncated.h5").write_bytes(good[: len(good) // 3])
    (store / "ep_901_text.h5").write_text("not an episode")
    write_episode(store / "ep_902_short.h5", make_episode(num_frames=5))
    existing = tracks_path(store / "ep_002.h5")
    existing.write_bytes(b"someone's half-written file")  # must not be destroyed
    report = preprocess_store(store, LucasKanadeTracker())
    assert sorted(report.done) == ["ep_000.h5", "ep_001.h5", "ep_902_short.h5"]
    assert set(report.failed) == {"ep_002.h5", "ep_900_truncated.h5", "ep_901_text.h5"}
    assert "ep_900_truncated.h5" in report.failed["ep_900_truncated.h5"]
    assert "not a readable HDF5" in report.failed["ep_901_text.h5"]
    assert "already exist" in report.failed["ep_002.h5"]
    assert existing.read_bytes() == b"someone's half-written file"
    short = read_tracks(tracks_path(store / "ep_902_short.h5"))["front"]
    assert short.tracks.shape == (5, 16, 400, 2)  # padded by repeating the last frame


def test_unknown_view_is_an_error_naming_file_and_views(store):
    with pytest.raises(EpisodeError, match=r"ep_000.h5: no view 'wrist'"):
        preprocess_episode(store / "ep_000.h5", LucasKanadeTracker(), views=["wrist"])
    report = preprocess_store(store, LucasKanadeTracker(), views=["front", "wrist"])
    assert len(report.failed) == 3 and "'wrist'" in report.failed["ep_000.h5"]
    assert not any(p.name.endswith(".tracks.h5") for p in store.iterdir())


def test_wrong_frames_are_refused_by_the_view_pipeline():
    with pytest.raises(EpisodeError, match="cam: frames must have 3 colour channels"):
        compute_view_tracks(np.zeros((4, 32, 32, 1), np.uint8), 20.0, LucasKanadeTracker(), where="cam")
    with pytest.raises(EpisodeError, match="uint8"):
        compute_view_tracks(np.zeros((4, 32, 32, 3), np.float64), 20.0, LucasKanadeTracker())


def test_resume_skips_finished_episodes_without_touching_them(store):
    first = preprocess_store(store, LucasKanadeTracker())
    assert len(first.done) == 3
    stamps = {p: p.stat().st_mtime_ns for p in store.glob("*.tracks.h5")}
    second = preprocess_store(store, LucasKanadeTracker())
    assert second.done == [] and len(second.skipped) == 3
    assert {p: p.stat().st_mtime_ns for p in store.glob("*.tracks.h5")} == stamps


def test_shards_are_disjoint_and_cover_the_store(store):
    items = list(range(10))
    parts = [shard_of(items, i, 3) for i in range(3)]
    assert sorted(sum(parts, [])) == items and all(parts)
    with pytest.raises(ValueError, match="shard"):
        shard_of(items, 3, 3)
    done = [preprocess_store(store, LucasKanadeTracker(), shard=i, num_shards=2).done for i in range(2)]
    assert sorted(done[0] + done[1]) == ["ep_000.h5", "ep_001.h5", "ep_002.h5"] and not set(done[0]) & set(done[1])


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "training.preprocess_tracks", *map(str, args)],
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300)


def test_command_line_shards_from_torchrun_environment_and_reports(store):
    (store / "broken.h5").write_text("x")
    r = run_cli(store, env={"RANK": "1", "WORLD_SIZE": "2"})
    assert r.returncode == 0, r.stderr  # the broken file is in the other shard
    report = json.loads((store / "tracks_report.shard1.json").read_text())
    assert report["shard"] == 1 and report["num_shards"] == 2
    # sorted: broken, ep_000, ep_001, ep_002 -> shard 1 gets ep_000 and ep_002
    assert report["done"] == ["ep_000.h5", "ep_002.h5"] and report["failed"] == {}
    r0 = run_cli(store, "--shard", "0", "--num-shards", "2")
    assert r0.returncode == 1 and "FAILED broken.h5" in r0.stdout  # failure -> exit 1, others done
    assert json.loads((store / "tracks_report.shard0.json").read_text())["done"] == ["ep_001.h5"]


def test_command_line_config_and_argument_errors(store, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trackr: lucas_kanade\n")
    r = run_cli(store, "--config", bad)
    assert r.returncode != 0 and "unknown keys ['trackr']" in r.stderr
    r = run_cli(tmp_path / "nowhere")
    assert r.returncode == 2 and "not a directory" in r.stderr
    r = run_cli(store, "--tracker", "cotracker")
    assert r.returncode == 2 and "--cotracker-checkpoint" in r.stderr


def test_torchrun_ranks_split_the_store(store):
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                        "29531", "-m", "training.preprocess_tracks", str(store)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    shard0 = json.loads((store / "tracks_report.shard0.json").read_text())
    shard1 = json.loads((store / "tracks_report.shard1.json").read_text())
    assert shard0["num_shards"] == shard1["num_shards"] == 2
    assert sorted(shard0["done"] + shard1["done"]) == ["ep_000.h5", "ep_001.h5", "ep_002.h5"]
    assert len(list(store.glob("*.tracks.h5"))) == 3


@pytest.mark.parametrize("text,message", [
    ("target_fps: -20\n", "target_fps = -20: must be a positive finite number"),
    ("target_fps: .inf\n", "target_fps = inf: must be a positive finite number"),
    ("horizon: '16'\n", "horizon = '16': must be an integer >= 2"),
    ("tracker: cotraker\n", "tracker = 'cotraker': must be lucas_kanade"),
])
def test_impossible_preprocessing_settings_are_refused_before_any_track_is_written(store, tmp_path, text, message):
    config = tmp_path / "tracks.yaml"
    config.write_text(text)
    run = subprocess.run([sys.executable, "-m", "training.preprocess_tracks", str(store), "--config", str(config)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert run.stderr.strip().startswith(f"--config {config}: {message}"), run.stderr
    assert not list(store.glob("*.tracks.h5"))


def test_sidecars_made_with_other_settings_are_not_counted_as_done(store):
    first = preprocess_store(store, LucasKanadeTracker(), horizon=8)
    assert len(first.done) == 3
    stamps = {p: p.stat().st_mtime_ns for p in store.glob("*.tracks.h5")}
    # another horizon, another tracker setting: neither skipped as done nor silently replaced
    for kwargs, tracker, expected in (({"horizon": 16}, LucasKanadeTracker(), "horizon: 8 -> 16"),
                                      ({"horizon": 8}, LucasKanadeTracker(grid_size=8), "grid_size")):
        again = preprocess_store(store, tracker, **kwargs)
        assert again.skipped == [] and again.done == [] and len(again.failed) == 3, again.summary()
        assert all(expected in why and "pass --overwrite" in why for why in again.failed.values()), again.failed
        assert {p: p.stat().st_mtime_ns for p in store.glob("*.tracks.h5")} == stamps
    # the same settings: done; --overwrite recomputes with the new ones
    assert len(preprocess_store(store, LucasKanadeTracker(), horizon=8).skipped) == 3
    redone = preprocess_store(store, LucasKanadeTracker(), horizon=16, overwrite=True)
    assert len(redone.done) == 3 and tracks_metadata(tracks_path(store / "ep_000.h5"))["horizon"] == 16
    assert len(preprocess_store(store, LucasKanadeTracker(), horizon=16).skipped) == 3
