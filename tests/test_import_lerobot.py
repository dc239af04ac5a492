"""LeRobotDataset v3.0 import (amplify-import-lerobot) and export (amplify-export-lerobot).

The sample datasets here are written by the test itself with pyarrow and PyAV, following the v3.0 layout
(meta/info.json, meta/tasks.parquet with the pandas index "task", meta/episodes/chunk-000/file-000.parquet,
data/chunk-000/file-000.parquet, videos/<key>/chunk-000/file-000.mp4), not with the code under test, so that a
misreading of the format on one side is not cancelled by the same misreading on the other.
"""

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from amplify_core.episodes import list_episodes, read_episode, write_episode
from training import export_lerobot, import_lerobot

ROOT = Path(__file__).resolve().parents[1]
FPS = 10
H, W = 48, 64
SIDE = 8  # the bright square's side
CAMERAS = ("observation.images.front", "observation.images.wrist")
TASKS = ("pick up the cube", "push the cube left")
STATE_NAMES = ["j0", "j1", "j2", "j3", "j4", "gripper"]


def square_corner(global_frame: int, camera: int) -> tuple[int, int]:
    """(y, x) of the square's top-left corner in frame ``global_frame`` of the camera's stream: it moves 2 px per
    frame over the whole stream, so each episode's frames (and an off-by-one frame) are told apart."""
    return 6 + 22 * camera, 2 + 2 * global_frame


def square_frame(global_frame: int, camera: int) -> np.ndarray:
    frame = np.full((H, W, 3), 30, np.uint8)
    y, x = square_corner(global_frame, camera)
    frame[y:y + SIDE, x:x + SIDE] = (250, 240, 230)
    return frame


def known_state(episode: int, n: int) -> np.ndarray:
    return (np.arange(n * 6, dtype=np.float32).reshape(n, 6) * 0.25 + 100 * episode).astype(np.float32)


def known_action(episode: int, n: int) -> np.ndarray:
    return np.sin(np.arange(n * 7, dtype=np.float32).reshape(n, 7) + episode).astype(np.float32)


def encode_mp4(path: Path, frames: list[np.ndarray]) -> None:
    """A constant-rate H.264 stream, frame k at pts k / FPS."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"crf": "10", "g": "2"}
        for k, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def write_sample(root: Path, lengths=(12, 9), shared_video=True, bad_action_episode=None, short_video=None,
                 image_camera=False, codebase_version="v3.0", tasks_index="task") -> Path:
    """A LeRobot v3.0 dataset: episode i has lengths[i] frames, task TASKS[i % 2], known state (6) and action (7),
    two cameras with a moving bright square. ``shared_video``: one mp4 per camera holding all episodes (episode i from
    its first global frame / FPS), else one mp4 per episode (file_index i, from 0). ``bad_action_episode``: that
    episode's action rows have 6 values (a list column). ``short_video`` (episode, camera, frames): that episode's
    own mp4 of that camera has only so many frames. ``image_camera``: the second camera is an ``image`` feature (PNG
    in the data parquet) instead of a video."""
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(int)
    total = int(starts[-1])
    video_cameras = CAMERAS[:1] if image_camera else CAMERAS
    # videos
    for c, key in enumerate(video_cameras):
        if shared_video:
            encode_mp4(root / f"videos/{key}/chunk-000/file-000.mp4", [square_frame(g, c) for g in range(total)])
        else:
            for e, n in enumerate(lengths):
                count = short_video[2] if short_video and short_video[:2] == (e, c) else n
                encode_mp4(root / f"videos/{key}/chunk-000/file-{e:03d}.mp4",
                           [square_frame(starts[e] + k, c) for k in range(count)])
    # data: one row group per episode
    vector = pa.list_(pa.float32()) if bad_action_episode is not None else pa.list_(pa.float32(), 7)
    fields = [("observation.state", pa.list_(pa.float32(), 6)), ("action", vector), ("timestamp", pa.float32()),
              ("frame_index", pa.int64()), ("episode_index", pa.int64()), ("index", pa.int64()),
              ("task_index", pa.int64())]
    if image_camera:
        fields.insert(0, (CAMERAS[1], pa.struct([("bytes", pa.binary()), ("path", pa.string())])))
    schema = pa.schema(fields)
    (root / "data/chunk-000").mkdir(parents=True)
    with pq.ParquetWriter(root / "data/chunk-000/file-000.parquet", schema) as writer:
        for e, n in enumerate(lengths):
            action = known_action(e, n)
            cols = {"observation.state": known_state(e, n).tolist(),
                    "action": (action[:, :6] if e == bad_action_episode else action).tolist(),
                    "timestamp": (np.arange(n) / FPS).astype(np.float32), "frame_index": np.arange(n),
                    "episode_index": np.full(n, e), "index": starts[e] + np.arange(n), "task_index": np.full(n, e % 2)}
            if image_camera:
                cols[CAMERAS[1]] = [{"bytes": cv2.imencode(".png", square_frame(starts[e] + k, 1)[..., ::-1])[1]
                                     .tobytes(), "path": None} for k in range(n)]
            writer.write_table(pa.table(cols, schema=schema))
    # tasks: what pandas' to_parquet writes for a DataFrame(task_index) indexed by "task"
    pandas_meta = {"index_columns": [tasks_index], "column_indexes": [],
                   "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                                "numpy_type": "int64", "metadata": None},
                               {"name": None if tasks_index != "task" else "task", "field_name": tasks_index,
                                "pandas_type": "unicode", "numpy_type": "object", "metadata": None}]}
    (root / "meta").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"task_index": pa.array([0, 1], pa.int64()), tasks_index: pa.array(TASKS)})
                   .replace_schema_metadata({"pandas": json.dumps(pandas_meta)}), root / "meta/tasks.parquet")
    # episodes
    rows = []
    for e, n in enumerate(lengths):
        row = {"episode_index": e, "tasks": [TASKS[e % 2]], "length": n, "data/chunk_index": 0, "data/file_index": 0,
               "dataset_from_index": int(starts[e]), "dataset_to_index": int(starts[e + 1])}
        for key in video_cameras:
            t0 = starts[e] / FPS if shared_video else 0.0
            row.update({f"videos/{key}/chunk_index": 0, f"videos/{key}/file_index": 0 if shared_video else e,
                        f"videos/{key}/from_timestamp": float(t0), f"videos/{key}/to_timestamp": float(t0 + n / FPS)})
        row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
        rows.append(row)
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "meta/episodes/chunk-000/file-000.parquet")
    camera = {"shape": [H, W, 3], "names": ["height", "width", "channels"]}
    features = {key: {"dtype": "video", **camera, "info": {"video.fps": FPS, "video.codec": "h264"}}
                for key in video_cameras}
    if image_camera:
        features[CAMERAS[1]] = {"dtype": "image", **camera}
    features.update({
        "observation.state": {"dtype": "float32", "shape": [6], "names": STATE_NAMES},
        "action": {"dtype": "float32", "shape": [7], "names": None},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        **{k: {"dtype": "int64", "shape": [1], "names": None}
           for k in ("frame_index", "episode_index", "index", "task_index")}})
    info = {"codebase_version": codebase_version, "robot_type": "so101_follower", "total_episodes": len(lengths),
            "total_frames": total, "total_tasks": 2, "chunks_size": 1000, "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 200, "fps": FPS, "splits": {"train": f"0:{len(lengths)}"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "features": features}
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    return root


def bright_corner(frame: np.ndarray) -> tuple[float, float]:
    """(y, x) of the top-left corner of the bright square, from its centroid (sub-pixel)."""
    ys, xs = np.nonzero(frame.mean(axis=2) > 140)
    assert len(ys) > 0.7 * SIDE * SIDE, "no bright square in the frame"
    return ys.mean() - (SIDE - 1) / 2, xs.mean() - (SIDE - 1) / 2


def import_args(dataset: Path, out: Path, *extra) -> list[str]:
    return [str(dataset), "--out", str(out), "--quiet", *extra]


def report_of(out: Path) -> dict:
    return json.loads((out / "import_report.lerobot.shard0.json").read_text())


# ---------------------------------------------------------------------------------------------------------------------
# (a) a LeRobot v3 sample with a shared mp4 per camera


def test_import_sample_frames_tasks_state_actions(tmp_path):
    dataset = write_sample(tmp_path / "sample", lengths=(12, 9))
    out = tmp_path / "store"
    assert import_lerobot.main(import_args(dataset, out)) == 0
    files = list_episodes(out)
    assert [f.name for f in files] == ["sample_ep000000.h5", "sample_ep000001.h5"]
    starts = (0, 12)
    for e, (path, n) in enumerate(zip(files, (12, 9))):
        ep = read_episode(path)
        assert ep.views == ["front", "wrist"]
        assert ep.num_frames == n and ep.fps == FPS and ep.embodiment == "robot"
        assert ep.task == TASKS[e]
        assert ep.state.dtype == np.float32 and np.array_equal(ep.state, known_state(e, n))
        assert np.array_equal(ep.actions, known_action(e, n))
        assert list(ep.state_names) == STATE_NAMES  # from info.json
        assert list(ep.action_names) == [f"action_{i}" for i in range(7)]  # info.json names: null
        for c, view in enumerate(ep.views):
            assert ep.frames[view].shape == (n, H, W, 3)
            for k in range(n):
                # episode 1 starts at its from_timestamp (frame 12 of the shared file): the square is where frame
                # starts[e] + k drew it; one frame off would be 2 px away
                got = bright_corner(ep.frames[view][k])
                assert np.allclose(got, square_corner(starts[e] + k, c), atol=0.5), (e, view, k, got)


def test_reimport_imports_nothing_and_leaves_files_untouched(tmp_path):
    dataset = write_sample(tmp_path / "sample", lengths=(6, 5))
    out = tmp_path / "store"
    assert import_lerobot.main(import_args(dataset, out)) == 0
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in list_episodes(out)}
    assert len(before) == 2
    assert import_lerobot.main(import_args(dataset, out)) == 0
    report = report_of(out)
    assert report["imported"] == {} and len(report["already_imported"]) == 2 and report["skipped"] == {}
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in list_episodes(out)} == before
    # other settings: not rewritten either, but reported as skipped (exit 1)
    assert import_lerobot.main(import_args(dataset, out, "--size", "32")) == 1
    assert all("other settings" in why for why in report_of(out)["skipped"].values())
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in list_episodes(out)} == before


def test_import_image_feature_and_unnamed_task_index(tmp_path):
    # the second camera stored as PNG bytes in the data parquet; tasks.parquet from a converted dataset whose index
    # was unnamed (__index_level_0__)
    dataset = write_sample(tmp_path / "sample", lengths=(5, 4), image_camera=True, tasks_index="__index_level_0__")
    out = tmp_path / "store"
    assert import_lerobot.main(import_args(dataset, out, "--views", "wrist", "observation.images.front")) == 0
    ep = read_episode(out / "sample_ep000001.h5")
    assert ep.task == TASKS[1]
    assert ep.views == ["wrist", "front"]
    for k in range(4):  # PNG is lossless: the very frames
        assert np.array_equal(ep.frames["wrist"][k], square_frame(5 + k, 1))


# ---------------------------------------------------------------------------------------------------------------------
# (b) store -> LeRobot -> store


def test_round_trip_through_lerobot(tmp_path, episode_factory):
    store = tmp_path / "store"
    store.mkdir()
    episodes = []
    for i, (n, task) in enumerate([(12, "pick"), (15, "place"), (10, "pick")]):
        ep = episode_factory(num_frames=n, size=64, views=("front", "side"), seed=i)
        ep.task = task
        write_episode(store / f"ep_{i:03d}.h5", ep)
        episodes.append(ep)
    dataset = tmp_path / "lerobot" / "ur5_pick"
    assert export_lerobot.main([str(store), "--out", str(dataset), "--crf", "18", "--quiet"]) == 0
    assert [p.name for p in dataset.parent.iterdir()] == ["ur5_pick"]  # no temporary folder left
    lengths = [e.num_frames for e in episodes]
    total, starts = sum(lengths), np.concatenate([[0], np.cumsum(lengths)])

    # --- the folder against the v3.0 spec, read with pyarrow only
    info = json.loads((dataset / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 20 and isinstance(info["fps"], int)
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, total, 2)
    assert info["splits"] == {"train": "0:3"} and info["robot_type"] == "ur5"
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    features = info["features"]
    for view in ("front", "side"):
        f = features[f"observation.images.{view}"]
        assert (f["dtype"], f["shape"], f["names"]) == ("video", [64, 64, 3], ["height", "width", "channels"])
    assert features["observation.state"] == {"dtype": "float32", "shape": [7], "names": [f"q{i}" for i in range(7)]}
    assert features["action"]["shape"] == [7] and features["action"]["names"] == ["x", "y", "z", "rx", "ry", "rz",
                                                                                  "gripper"]
    for key, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                       ("index", "int64"), ("task_index", "int64")):
        assert features[key]["dtype"] == dtype and features[key]["shape"] == [1]

    data_files = sorted((dataset / "data").glob("*/*.parquet"))
    assert [str(p.relative_to(dataset)) for p in data_files] == ["data/chunk-000/file-000.parquet"]
    data = pq.read_table(data_files[0])
    assert dict(zip(data.schema.names, map(str, data.schema.types))) == {
        "observation.state": "fixed_size_list<element: float>[7]", "action": "fixed_size_list<element: float>[7]",
        "timestamp": "float", "frame_index": "int64", "episode_index": "int64", "index": "int64",
        "task_index": "int64"}
    assert set(data.schema.names) == {k for k, f in features.items() if f["dtype"] != "video"}
    assert np.array_equal(data.column("index").to_numpy(), np.arange(total))
    frame_index = np.concatenate([np.arange(n) for n in lengths])
    assert np.array_equal(data.column("frame_index").to_numpy(), frame_index)
    assert np.array_equal(data.column("episode_index").to_numpy(), np.repeat([0, 1, 2], lengths))
    assert np.array_equal(data.column("task_index").to_numpy(), np.repeat([0, 1, 0], lengths))
    assert np.array_equal(data.column("timestamp").to_numpy(), (frame_index / 20).astype(np.float32))
    flat = data.column("action").combine_chunks().flatten().to_numpy().reshape(total, 7)
    assert np.array_equal(flat, np.concatenate([e.actions for e in episodes]))

    tasks = pq.read_table(dataset / "meta/tasks.parquet")
    assert tasks.schema.field("task_index").type == pa.int64() and tasks.schema.field("task").type == pa.string()
    assert tasks.to_pylist() == [{"task_index": 0, "task": "pick"}, {"task_index": 1, "task": "place"}]
    pandas_meta = tasks.schema.pandas_metadata
    assert pandas_meta["index_columns"] == ["task"]
    assert {c["field_name"]: (c["name"], c["pandas_type"]) for c in pandas_meta["columns"]} == {
        "task_index": ("task_index", "int64"), "task": ("task", "unicode")}

    episode_files = sorted((dataset / "meta/episodes").glob("*/*.parquet"))
    assert [str(p.relative_to(dataset)) for p in episode_files] == ["meta/episodes/chunk-000/file-000.parquet"]
    meta = pq.read_table(episode_files[0])
    types = dict(zip(meta.schema.names, meta.schema.types))
    for column in ("episode_index", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
                   "dataset_to_index", "meta/episodes/chunk_index", "meta/episodes/file_index",
                   *(f"videos/observation.images.{v}/{p}" for v in ("front", "side")
                     for p in ("chunk_index", "file_index"))):
        assert types[column] == pa.int64(), column
    for v in ("front", "side"):
        for p in ("from_timestamp", "to_timestamp"):
            assert types[f"videos/observation.images.{v}/{p}"] == pa.float64()
    assert types["tasks"] == pa.list_(pa.string())
    assert types["stats/action/mean"] == pa.list_(pa.float64()) and types["stats/action/count"] == pa.list_(pa.int64())
    rows = meta.to_pylist()
    assert [r["episode_index"] for r in rows] == [0, 1, 2] and [r["length"] for r in rows] == lengths
    assert [r["tasks"] for r in rows] == [["pick"], ["place"], ["pick"]]
    assert [(r["dataset_from_index"], r["dataset_to_index"]) for r in rows] == list(zip(starts[:-1], starts[1:]))
    for r, n, s in zip(rows, lengths, starts):
        assert r["videos/observation.images.front/from_timestamp"] == pytest.approx(s / 20)
        assert r["videos/observation.images.front/to_timestamp"] == pytest.approx((s + n) / 20)
        assert np.allclose(r["stats/action/mean"], episodes[r["episode_index"]].actions.mean(0), atol=1e-6)
        assert r["stats/index/min"] == [s] and r["stats/index/count"] == [n]
    # every frame of the mp4 at pts k / fps (LeRobot's decoders allow 1e-4 s)
    for v in ("front", "side"):
        mp4 = dataset / f"videos/observation.images.{v}/chunk-000/file-000.mp4"
        with av.open(str(mp4)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
            times = [float(f.pts * stream.time_base) for f in container.decode(stream)]
        assert np.allclose(times, np.arange(total) / 20, atol=1e-4, rtol=0)
    stats = json.loads((dataset / "meta/stats.json").read_text())
    for key in ("observation.state", "action", "timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert set(stats[key]) == {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}, key
    all_actions = np.concatenate([e.actions for e in episodes]).astype(np.float64)
    assert np.allclose(stats["action"]["mean"], all_actions.mean(0)) and stats["action"]["count"] == [total]
    assert np.allclose(stats["action"]["q50"], np.quantile(all_actions, 0.5, axis=0))
    assert stats["index"]["max"] == [total - 1]

    # --- an existing --out is refused, and replaced with --overwrite
    mtime = (dataset / "meta/info.json").stat().st_mtime_ns
    assert export_lerobot.main([str(store), "--out", str(dataset), "--quiet"]) == 2
    assert (dataset / "meta/info.json").stat().st_mtime_ns == mtime
    assert export_lerobot.main([str(store), "--out", str(dataset), "--quiet", "--overwrite"]) == 0
    assert sorted(p.name for p in dataset.parent.iterdir()) == ["ur5_pick"]

    # --- back into a store
    back = tmp_path / "back"
    assert import_lerobot.main(import_args(dataset, back)) == 0
    files = list_episodes(back)
    assert [f.name for f in files] == ["ur5_pick_ep000000.h5", "ur5_pick_ep000001.h5", "ur5_pick_ep000002.h5"]
    for original, path in zip(episodes, files):
        ep = read_episode(path)
        assert ep.task == original.task and ep.fps == original.fps and ep.views == ["front", "side"]
        assert np.array_equal(ep.state, original.state) and np.array_equal(ep.actions, original.actions)
        assert list(ep.state_names) == list(original.state_names)
        assert list(ep.action_names) == list(original.action_names)
        for view in ep.views:
            a, b = original.frames[view].astype(np.int16), ep.frames[view].astype(np.int16)
            assert a.shape == b.shape
            # measured at crf 18 on this 64 px textured square: mean |error| 4.6-5.2 grey levels, of which about 4.0
            # is yuv420p's chroma subsampling of the fine colour texture alone (measured at crf 0)
            error = np.abs(a - b).mean()
            assert error < 6.0, (path, view, error)
            # and each frame is the matching one: the previous original differs more (6.4-7.9 levels)
            for k in range(1, len(a)):
                assert np.abs(a[k] - b[k]).mean() < np.abs(a[k - 1] - b[k]).mean() - 0.5, (view, k)


# ---------------------------------------------------------------------------------------------------------------------
# (c) bad input


def test_action_of_wrong_length_skips_that_episode(tmp_path):
    dataset = write_sample(tmp_path / "sample", lengths=(6, 5), bad_action_episode=1)
    out = tmp_path / "store"
    assert import_lerobot.main(import_args(dataset, out)) == 1
    assert [p.name for p in list_episodes(out)] == ["sample_ep000000.h5"]
    assert np.array_equal(read_episode(out / "sample_ep000000.h5").actions, known_action(0, 6))
    skipped = report_of(out)["skipped"]
    assert list(skipped) == [f"{dataset} episode 1"]
    assert "'action'" in skipped[f"{dataset} episode 1"] and "[7]" in skipped[f"{dataset} episode 1"]


def test_missing_or_short_video_skips_that_episode(tmp_path):
    dataset = write_sample(tmp_path / "sample", lengths=(5, 6, 7), shared_video=False, short_video=(2, 0, 4))
    (dataset / "videos/observation.images.wrist/chunk-000/file-000.mp4").unlink()
    out = tmp_path / "store"
    assert import_lerobot.main(import_args(dataset, out)) == 1
    assert [p.name for p in list_episodes(out)] == ["sample_ep000001.h5"]
    ep = read_episode(out / "sample_ep000001.h5")
    assert ep.num_frames == 6 and np.allclose(bright_corner(ep.frames["wrist"][0]), square_corner(5, 1), atol=0.5)
    skipped = report_of(out)["skipped"]
    assert set(skipped) == {f"{dataset} episode 0", f"{dataset} episode 2"}
    assert "observation.images.wrist/chunk-000/file-000.mp4: no such file" in skipped[f"{dataset} episode 0"]
    assert "shorter than the episode" in skipped[f"{dataset} episode 2"]
    assert not list(out.glob(".*partial"))  # the aborted episode left nothing behind


def test_not_v3_is_one_line_exit_2(tmp_path, capsys):
    dataset = write_sample(tmp_path / "old", lengths=(3,), codebase_version="v2.1")
    out = tmp_path / "store"
    assert import_lerobot.main(import_args(dataset, out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'v2.1'" in err and "meta/info.json" in err
    assert not out.exists()
    assert import_lerobot.main(import_args(tmp_path, out)) == 2  # no info.json at all
    assert "no such file" in capsys.readouterr().err


def test_export_of_robot_and_human_episodes_is_refused(tmp_path, capsys, episode_factory):
    store = tmp_path / "store"
    store.mkdir()
    write_episode(store / "robot.h5", episode_factory(num_frames=6, actions=True))
    write_episode(store / "human.h5", episode_factory(num_frames=6, actions=False))
    out = tmp_path / "exported"
    assert export_lerobot.main([str(store), "--out", str(out), "--embodiment", "all", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "1 of the 2 episodes have robot/" in err and "--embodiment robot" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # nothing written, not even a temporary folder
    # each kind alone exports
    assert export_lerobot.main([str(store), "--out", str(out), "--embodiment", "human", "--quiet"]) == 0
    info = json.loads((out / "meta/info.json").read_text())
    assert info["total_episodes"] == 1 and "action" not in info["features"]


def test_help():
    result = subprocess.run([sys.executable, "-m", "training.import_lerobot", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for option in ("--out", "--views", "--embodiment", "--size", "--fit", "--shard", "--overwrite", "Example"):
        assert option in result.stdout


def test_export_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        export_lerobot.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--out", "--embodiment", "--fps", "--crf", "--robot-type", "--overwrite", "Example"):
        assert option in out


def test_export_rolls_over_to_new_files_and_imports_back(tmp_path, episode_factory, monkeypatch):
    # size limits so small that every episode starts a new data, video and episodes-metadata file
    monkeypatch.setattr(export_lerobot, "DATA_FILES_SIZE_MB", 1e-6)
    monkeypatch.setattr(export_lerobot, "VIDEO_FILES_SIZE_MB", 1e-6)
    store = tmp_path / "store"
    store.mkdir()
    episodes = [episode_factory(num_frames=n, size=32, views=("front",), seed=i) for i, n in enumerate((4, 6, 5))]
    for i, ep in enumerate(episodes):
        write_episode(store / f"ep_{i}.h5", ep)
    dataset = tmp_path / "ds"
    assert export_lerobot.main([str(store), "--out", str(dataset), "--quiet"]) == 0
    names = [f"chunk-000/file-{i:03d}" for i in range(3)]
    assert [str(p.relative_to(dataset / "data"))[:-8] for p in sorted((dataset / "data").glob("*/*.parquet"))] == names
    assert [str(p.relative_to(dataset / "videos/observation.images.front"))[:-4]
            for p in sorted((dataset / "videos/observation.images.front").glob("*/*.mp4"))] == names
    rows = [r for p in sorted((dataset / "meta/episodes").glob("*/*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert [(r["data/file_index"], r["videos/observation.images.front/file_index"], r["meta/episodes/file_index"],
             r["videos/observation.images.front/from_timestamp"]) for r in rows] == [(i, i, i, 0.0) for i in range(3)]
    assert import_lerobot.main(import_args(dataset, tmp_path / "back")) == 0
    for original, path in zip(episodes, list_episodes(tmp_path / "back")):
        ep = read_episode(path)
        assert ep.num_frames == original.num_frames and np.array_equal(ep.actions, original.actions)
        # measured: mean |error| 5.1-6.2 grey levels for this finer 32 px texture (mostly yuv420p chroma loss)
        assert np.abs(ep.frames["front"].astype(np.int16) - original.frames["front"]).mean() < 8.0
