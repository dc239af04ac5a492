"""amplify-import-videos and amplify-import-bridge on small samples made here (PyAV-encoded videos with a known
moving square, Bridge trajectory folders with known state and actions)."""

from __future__ import annotations

import csv
import json
import pickle
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

av = pytest.importorskip("av")

from amplify_core.episodes import read_episode  # noqa: E402
from training import import_bridge, import_videos  # noqa: E402
from training.video_frames import fit_frame, probe_video  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
W, H, SQUARE, Y0 = 160, 120, 16, 50


def square_x(k: int) -> int:
    return 30 + 3 * k  # left edge of the bright square in source frame k


def encode(path: Path, codec: str, frames: int, fps: float, times_s=None, width: int = W, height: int = H) -> Path:
    """A dark frame with a bright SQUARE x SQUARE square moving 3 px right per source frame."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if times_s is not None:
            stream.time_base = Fraction(1, 1000)
        for k in range(frames):
            img = np.full((height, width, 3), 40, np.uint8)
            img[Y0:Y0 + SQUARE, square_x(k):square_x(k) + SQUARE] = 250
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if times_s is not None:
                frame.pts, frame.time_base = int(round(1000 * times_s[k])), stream.time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def centroid(frame: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(frame[..., 0] > 150)
    assert len(xs), "no bright square in the frame"
    return float(xs.mean()), float(ys.mean())


def run_videos(*args) -> int:
    return import_videos.main([str(a) for a in args] + ["--quiet"])


def report_of(out: Path, command: str = "videos") -> dict:
    return json.loads((out / f"import_report.{command}.shard0.json").read_text())


def test_csv_import_resamples_in_time_and_crops_in_space(tmp_path):
    clips = tmp_path / "clips"
    (clips / "kitchen").mkdir(parents=True)
    encode(clips / "kitchen" / "a.mp4", "libx264", 45, 30)  # 1.5 s at 30 fps
    encode(clips / "b.webm", "libvpx-vp9", 18, 12)  # Something-Something's rate
    encode(clips / "c.avi", "mpeg4", 20, 10)
    encode(clips / "d.mkv", "ffv1", 25, 25)
    labels = tmp_path / "tasks.csv"
    with open(labels, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "task"])
        writer.writerows([["kitchen/a.mp4", "push the cup right"], ["b", "open the drawer"],
                          ["c.avi", "wipe the table"], ["d.mkv", "close the drawer"]])
    out = tmp_path / "store"
    assert run_videos(clips, "--labels", labels, "--out", out, "--size", "64", "--min-frames", "4") == 0
    eps = {p.name: read_episode(p) for p in sorted(out.glob("*.h5"))}
    assert sorted(eps) == ["b.h5", "c.h5", "d.h5", "kitchen__a.h5"]
    a = eps["kitchen__a.h5"]
    assert (a.task, a.embodiment, a.fps, a.views) == ("push the cup right", "human", 20.0, ["front"])
    # 45 frames at 30 fps span 44/30 s: output times k/20 <= 1.4667 s -> 30 frames; 12 fps, 18 frames -> 17/12 s
    # -> 29 frames; 10 fps, 20 frames -> 39 frames (each source frame shown twice); 25 fps, 25 frames -> 20
    assert {n: e.num_frames for n, e in eps.items()} == {"kitchen__a.h5": 30, "b.h5": 29, "c.h5": 39, "d.h5": 20}
    frames = a.frames["front"]
    assert frames.shape == (30, 64, 64, 3) and frames.dtype == np.uint8
    # sample and hold: output k shows source frame floor(1.5 k); centre crop keeps x in [20, 140) of the 160 px
    scale = 64 / 120
    for k in (0, 1, 2, 7, 20):
        j = int(np.floor(1.5 * k + 1e-9))
        x, y = centroid(frames[k])
        assert x == pytest.approx((square_x(j) + SQUARE / 2 - 20) * scale - 0.5, abs=0.6), (k, j, x)
        assert y == pytest.approx((Y0 + SQUARE / 2) * scale - 0.5, abs=0.6), (k, y)
    # the 10 fps clip: output frames 2k and 2k+1 are both source frame k
    c = eps["c.h5"].frames["front"]
    assert centroid(c[6]) == pytest.approx(centroid(c[7]), abs=0.3)
    assert centroid(c[8])[0] - centroid(c[6])[0] == pytest.approx(3 * scale, abs=0.6)
    report = report_of(out)
    assert len(report["imported"]) == 4 and report["skipped"] == {} and report["settings"]["size"] == "64x64"


def test_pad_keeps_the_whole_frame_with_black_bars():
    img = np.full((H, W, 3), 200, np.uint8)
    padded = fit_frame(img, 64, 64, "pad")
    assert padded.shape == (64, 64, 3)
    assert padded[:8].max() == 0 and padded[-8:].max() == 0  # 160x120 -> 64x48 in the middle: 8 rows of bars
    assert padded[8:56].min() == 200
    cropped = fit_frame(img, 64, 64, "crop")
    assert cropped.min() == 200


def test_jsonl_and_something_something_labels(tmp_path):
    clips = tmp_path / "ssv2"
    clips.mkdir()
    encode(clips / "207125.webm", "libvpx-vp9", 24, 12)
    encode(clips / "3.webm", "libvpx-vp9", 24, 12)
    labels = tmp_path / "train.json"
    labels.write_text(json.dumps([
        {"id": "207125", "label": "putting a cup onto a box", "template": "Putting [something] onto [something]",
         "placeholders": ["a cup", "a box"]},
        {"id": "99", "label": "pushing a pen", "template": "Pushing [something]", "placeholders": ["a pen"]},
    ]))
    out = tmp_path / "store"
    assert run_videos(clips, "--labels", labels, "--out", out, "--min-frames", "4") == 1  # 3.webm unlabelled, id 99
    ep = read_episode(out / "207125.h5")
    assert ep.task == "putting a cup onto a box" and ep.num_frames == 39
    assert ep.frames["front"].shape[1:] == (128, 128, 3)  # the default size of an empty store
    skipped = report_of(out)["skipped"]
    assert skipped == {"train.json entry 1": f"no video '99' in {clips}",
                       str(clips / "3.webm"): "no label in the labels file"}
    jsonl = tmp_path / "labels.jsonl"
    jsonl.write_text(json.dumps({"file": "3.webm", "task": "spinning a top", "embodiment": "robot"}) + "\n")
    out2 = tmp_path / "store2"
    assert run_videos(clips, "--labels", jsonl, "--out", out2, "--min-frames", "4", "--size", "32") == 1
    ep = read_episode(out2 / "3.h5")
    assert (ep.task, ep.embodiment, ep.frames["front"].shape[1:3]) == ("spinning a top", "robot", (32, 32))
    # a further import into that store takes the store's size
    assert run_videos(clips, "--labels", labels, "--out", out2, "--min-frames", "4") == 1
    assert read_episode(out2 / "207125.h5").frames["front"].shape[1:3] == (32, 32)


def test_views_of_one_moment_become_one_episode(tmp_path):
    clips = tmp_path / "takes"
    clips.mkdir()
    encode(clips / "take01_front.mp4", "libx264", 30, 30)
    encode(clips / "take01_side.mp4", "libx264", 33, 30, width=120, height=160)  # longer, portrait
    encode(clips / "take02_front.mp4", "libx264", 30, 30)
    labels = tmp_path / "takes.csv"
    labels.write_text("file,task\ntake01,stack the blocks\ntake02_front.mp4,stack the blocks\n")
    out = tmp_path / "store"
    assert run_videos(clips, "--labels", labels, "--out", out, "--views", "front", "side", "--size", "64",
                      "--min-frames", "4") == 1
    ep = read_episode(out / "take01.h5")
    assert ep.views == ["front", "side"] and ep.task == "stack the blocks"
    assert ep.num_frames == 20  # 30 frames at 30 fps -> 20 at 20 fps; the longer side view is cut to match
    x_front, _ = centroid(ep.frames["front"][5])
    _, y_side = centroid(ep.frames["side"][5])
    assert x_front > 0 and y_side > 0
    assert not (out / "take02.h5").exists()
    assert report_of(out)["skipped"] == {str(clips / "take02_front.mp4"): "missing view(s) ['side'] of 'take02'"}


def test_bad_inputs_are_skipped_with_their_reason_and_nothing_is_rewritten(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    encode(clips / "good.mp4", "libx264", 30, 30)
    (clips / "garbage.mp4").write_bytes(b"not a video at all" * 100)
    (clips / "empty.avi").write_bytes(b"")
    times = np.cumsum([0.0] + [1 / 30] * 9 + [0.2] + [1 / 30] * 19)
    encode(clips / "vfr.mp4", "libx264", 30, 30, times_s=times)
    encode(clips / "short.mp4", "libx264", 5, 30)
    labels = tmp_path / "tasks.csv"
    labels.write_text("file,task\ngood.mp4,open the drawer\ngarbage.mp4,x\nempty.avi,y\nvfr.mp4,z\nshort.mp4,s\n"
                      "missing.mp4,nothing here\n")
    out = tmp_path / "store"
    assert run_videos(clips, "--labels", labels, "--out", out) == 1
    assert sorted(p.name for p in out.glob("*.h5")) == ["good.h5"]
    skipped = report_of(out)["skipped"]
    assert "not a readable video" in skipped[str(clips / "garbage.mp4")]
    assert "empty file (0 bytes)" in skipped[str(clips / "empty.avi")]
    assert "variable frame rate (frame intervals 33.3-200.0 ms" in skipped[str(clips / "vfr.mp4")]
    # 5 frames at 30 fps span 4/30 s: 3 frames at 20 fps
    assert skipped[str(clips / "short.mp4")] == f"{clips / 'short.mp4'}: 3 frames at 20 fps (0.13 s), fewer than " \
        "--min-frames 16"
    assert skipped["tasks.csv line 7"] == f"no video 'missing' in {clips}"
    assert list(out.glob(".*partial*")) == []  # nothing half-written left behind
    # the same command again: nothing new, nothing rewritten
    good = out / "good.h5"
    before = (good.stat().st_ino, good.stat().st_mtime_ns, good.read_bytes())
    assert run_videos(clips, "--labels", labels, "--out", out) == 1
    assert report_of(out)["already_imported"] == {"good.h5": str(clips / "good.mp4")}
    assert (good.stat().st_ino, good.stat().st_mtime_ns, good.read_bytes()) == before
    # other settings: reported, not rewritten, not called done
    assert run_videos(clips, "--labels", labels, "--out", out, "--fps", "10") == 1
    reason = report_of(out)["skipped"][str(clips / "good.mp4")]
    assert "made from other settings (fps: 20.0 -> 10.0)" in reason and "--overwrite" in reason
    assert (good.stat().st_ino, good.stat().st_mtime_ns) == before[:2]
    # a variable-rate video on request: resampled on its timestamps (the 0.2 s gap holds frame 9 for 4 ticks)
    assert run_videos(clips, "--labels", labels, "--out", out, "--allow-variable-fps") == 1
    vfr = read_episode(out / "vfr.h5").frames["front"]
    assert len(vfr) == probe_video(clips / "vfr.mp4").resampled_count(20) == 23  # last frame at 0.5 + 19/30 s
    xs = [centroid(f)[0] for f in vfr]
    assert xs[6] == pytest.approx(xs[9], abs=0.3)  # t = 0.30-0.45 s all show source frame 9 (t = 0.30 s)
    assert xs[10] > xs[9] + 1  # t = 0.5 s: source frame 10 (t = 0.5 s)


def test_bad_labels_file_is_one_line_and_exit_2(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    bad = tmp_path / "tasks.csv"
    bad.write_text("video,text\na.mp4,x\n")
    result = subprocess.run([sys.executable, "-m", "training.import_videos", str(clips), "--labels", str(bad),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"amplify-import-videos: --labels {bad}: the first line must be a header with the columns file,task "
        "(got ['video', 'text'])"]
    help_text = subprocess.run([sys.executable, "-m", "training.import_videos", "--help"], capture_output=True,
                               text=True, cwd=ROOT).stdout
    assert "Something-Something v2" in help_text and "--allow-variable-fps" in help_text


def make_bridge_trajectory(folder: Path, frames: int, lang: str | None, seed: int, policy: bool = True,
                           cameras=("images0",)) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    images = []
    for cam in cameras:
        (folder / cam).mkdir(parents=True)
    for t in range(frames):
        img = np.full((48, 64, 3), (30, 60, 90), np.uint8)
        img[10:20, 2 + 4 * t:12 + 4 * t] = (255, 255, 255)
        images.append(img)
        for cam in cameras:
            cv2.imwrite(str(folder / cam / f"im_{t}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 100])
    state = rng.normal(size=(frames, 7)).astype(np.float32)
    actions = rng.normal(size=(frames - 1, 7)).astype(np.float32)
    with open(folder / "obs_dict.pkl", "wb") as f:
        pickle.dump({"full_state": state, "qpos": rng.normal(size=(frames, 6)), "time_stamp": np.arange(frames) / 5},
                    f)
    if policy:
        with open(folder / "policy_out.pkl", "wb") as f:
            pickle.dump([{"actions": a, "policy_type": "VRTeleopPolicy"} for a in actions], f)
    if lang is not None:
        (folder / "lang.txt").write_text(lang)
    return state, actions, images


def test_bridge_trajectories_become_robot_episodes(tmp_path):
    root = tmp_path / "bridge"
    new = root / "toykitchen1" / "put_pot_in_sink" / "00" / "2022-03-01_10-00-00" / "raw" / "traj_group0"
    old = root / "toykitchen1" / "put_pot_in_sink" / "00" / "2021-06-01_10-00-00" / "raw" / "traj_group0"
    state, actions, images = make_bridge_trajectory(new / "traj0", 12, "put the pot in the sink\nconfidence: 1\n", 0)
    old_state, old_actions, old_images = make_bridge_trajectory(old / "traj3", 10, "wipe the stove\n", 1)
    make_bridge_trajectory(new / "traj1", 6, None, 2)
    make_bridge_trajectory(new / "traj2", 6, "lift the lid", 3, policy=False)
    out = tmp_path / "store"
    assert import_bridge.main([str(root), "--out", str(out), "--quiet"]) == 1
    rel = "toykitchen1__put_pot_in_sink__00__2022-03-01_10-00-00__raw__traj_group0__traj0.h5"
    ep = read_episode(out / rel)
    assert (ep.task, ep.embodiment, ep.fps, ep.views) == ("put the pot in the sink", "robot", 5.0, ["front"])
    # 12 frames, 12 states, 11 actions: frame t with the action taken from it; the last frame dropped
    assert ep.num_frames == 11 and np.array_equal(ep.actions, actions) and np.array_equal(ep.state, state[:11])
    assert list(ep.action_names) == ["dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"]
    # im_10, im_11 sort after im_9 (numeric order): frame 10 is the square at x = 42..52
    assert np.abs(ep.frames["front"].astype(int) - np.stack(images[:11]).astype(int)).mean() < 3
    assert np.abs(ep.frames["front"][10].astype(int) - images[10].astype(int)).mean() < 3
    # recorded before 2021-07-23: one frame of camera lag, so the first frame and the last action go
    old_ep = read_episode(out / rel.replace("2022-03-01", "2021-06-01").replace("traj0", "traj3"))
    assert old_ep.num_frames == 8
    assert np.array_equal(old_ep.actions, old_actions[:-1]) and np.array_equal(old_ep.state, old_state[1:9])
    assert np.abs(old_ep.frames["front"][0].astype(int) - old_images[1].astype(int)).mean() < 3
    skipped = report_of(out, "bridge")["skipped"]
    assert "no instruction (lang.txt missing or empty)" in skipped[str(new / "traj1")]
    assert skipped[str(new / "traj2")] == f"{new / 'traj2' / 'policy_out.pkl'}: missing"
    # unlabeled trajectories on request (play data: task text ""), into another store at another size
    out2 = tmp_path / "play"
    assert import_bridge.main([str(root), "--out", str(out2), "--keep-unlabeled", "--size", "32", "--quiet"]) == 1
    play = read_episode(next(out2.glob("*traj1.h5")))
    assert play.task == "" and play.frames["front"].shape == (5, 32, 32, 3)


def test_import_benchmark_prints_the_ratio(tmp_path):
    result = subprocess.run([sys.executable, "-m", "training.benchmark_import", "--seconds", "1", "--rounds", "1",
                             "--source-size", "320x240"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    assert "source frames/s per core" in lines["import  "] and "episode frames/s per core" in lines["tracker "]
    assert "the tracker's speed per episode frame" in lines["ratio   "]


def documented_block(heading: str) -> list[str]:
    """The command lines of the first bash block after ``heading`` in docs/importing.md."""
    text = (ROOT / "docs" / "importing.md").read_text()
    block = text.split(heading, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]


def test_documented_videos_to_forward_model(tmp_path):
    """docs/importing.md's "From a folder of videos to a forward model", line by line (2 training steps)."""
    import re
    import shlex

    lines = documented_block("### From a folder of videos to a forward model")
    assert [line.split()[0] for line in lines] == ["amplify-import-videos", "amplify-preprocess",
                                                   "amplify-train-tokenizer", "amplify-train-forward"]
    text = (ROOT / "docs" / "importing.md").read_text()
    csv_text = text.split("`clips/tasks.csv`:\n```\n", 1)[1].split("```", 1)[0]
    (tmp_path / "clips" / "kitchen").mkdir(parents=True)
    (tmp_path / "clips" / "tasks.csv").write_text(csv_text)
    for row in list(csv.DictReader(csv_text.splitlines())):
        encode(tmp_path / "clips" / row["file"], "libx264", 40, 30)
    bin_dir = Path(sys.executable).parent
    for line in lines:
        argv = shlex.split(re.sub(r"--steps \d+", "--steps 2", line))
        result = subprocess.run([str(bin_dir / argv[0]), *argv[1:], *(["--quiet"] if "train" in argv[0] else [])],
                                cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, (line, result.stdout[-2000:], result.stderr[-3000:])
    eps = sorted((tmp_path / "data" / "human").glob("*.h5"))
    assert [p.name for p in eps if not p.name.endswith(".tracks.h5")] == ["kitchen__take01.h5", "kitchen__take02.h5"]
    assert (tmp_path / "data" / "human" / "kitchen__take01.tracks.h5").is_file()
    assert (tmp_path / "runs" / "human" / "forward.pt").is_file()


def test_shards_split_the_videos_and_report_pairing_once(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("a", "b", "c", "d", "e"):
        encode(clips / f"{name}.mp4", "libx264", 24, 30)
    (clips / "tasks.csv").write_text("file,task\n" + "".join(f"{n},task {n}\n" for n in "abcde") + "zz,none\n")
    out = tmp_path / "store"
    codes = [run_videos(clips, "--labels", clips / "tasks.csv", "--out", out, "--shard", str(i), "--num-shards", "2",
                        "--min-frames", "4") for i in (0, 1)]
    assert codes == [1, 0]  # the label without a video is reported by shard 0 only
    shard0, shard1 = (json.loads((out / f"import_report.videos.shard{i}.json").read_text()) for i in (0, 1))
    assert set(shard0["imported"]) | set(shard1["imported"]) == {f"{n}.h5" for n in "abcde"}
    assert not set(shard0["imported"]) & set(shard1["imported"]) and len(shard0["imported"]) == 3
    assert list(shard0["skipped"]) == ["tasks.csv line 7"] and shard1["skipped"] == {}
    assert sorted(p.name for p in out.glob("*.h5")) == [f"{n}.h5" for n in "abcde"]
