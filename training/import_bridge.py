"""amplify-import-bridge: BridgeData V2 raw trajectories -> robot episodes (frames, state, actions, task text).

Example::

    amplify-import-bridge bridge/raw --out data/bridge                         # camera images0 as view front
    amplify-import-bridge bridge/raw --out data/bridge --cameras images0 images1 --views front side
    amplify-import-bridge bridge/raw --out data/bridge --keep-unlabeled --shard 1 --num-shards 2

Layout read (the raw download, not the TFDS/RLDS one): any folder under the root that holds ``images0/`` is a
trajectory (``.../<date>/raw/traj_group<K>/traj<N>/``), with
  images<i>/im_<t>.jpg   RGB frames of camera i, t = 0..T-1 (numbered without padding; sorted numerically)
  obs_dict.pkl           a dict of arrays over T steps; ``full_state`` (T, 7) = x y z roll pitch yaw gripper
  policy_out.pkl         T-1 steps: dicts with ``actions`` (7: dx dy dz droll dpitch dyaw, absolute gripper) or arrays
  lang.txt               the instruction on its first line (lines containing "confidence" are annotations)
Alignment: frame t is stored with the action taken from it, so an episode keeps the first T-1 frames and states
with the T-1 actions (the last frame has no action; it is dropped rather than paired with an invented one).
Trajectories recorded before 2021-07-23 (the date folder) lag by one camera frame, as the dataset's own
converters correct: their first observation and last action are dropped first. Frames stay at the recording rate
(``--fps``, default 5 Hz, Bridge's control rate): resampling would break the action alignment, and the track
pipeline resamples tracks to its own rate anyway. ``--size`` fits frames (centre crop by default).

Skipped with their reason in the report (``<out>/import_report.bridge.shard<I>.json``; exit status 1): no or empty
lang.txt (unless ``--keep-unlabeled``: task text ""), a missing camera, a missing or unreadable pkl, counts that do
not line up, an unreadable image. Running the command again imports only what is missing.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import re
import sys
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from amplify_core.episodes import EpisodeStream
from amplify_core.preprocessing import shard_of
from training.importing import (ImportReport, SourceError, add_common, episode_name, finish, progress_bar,
                                parse_size, run_import, shard_args)
from training.video_frames import FITS, fit_frame

log = logging.getLogger("amplify-import-bridge")
STATE_NAMES = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")
ACTION_NAMES = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")
LATENCY_FIX_BEFORE = datetime(2021, 7, 23)
DATE_FORMAT = "%Y-%m-%d_%H-%M-%S"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="amplify-import-bridge", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path, help="folder holding BridgeData V2 raw trajectories (searched recursively)")
    add_common(p)
    p.add_argument("--cameras", nargs="+", default=["images0"],
                   help="camera folders to import (default images0, the fixed over-the-shoulder camera)")
    p.add_argument("--views", nargs="+", default=None,
                   help="view names for --cameras, in the same order (default: front for one camera, else the "
                        "folder names)")
    p.add_argument("--size", type=parse_size, default=None, metavar="N|WxH",
                   help="fit frames to this size (default: keep 640x480)")
    p.add_argument("--fit", choices=FITS, default="crop", help="crop (default) or pad when --size changes the aspect")
    p.add_argument("--fps", type=float, default=5.0, help="the recording rate stored with the episodes (default 5)")
    p.add_argument("--keep-unlabeled", action="store_true",
                   help="import trajectories without an instruction too (task text \"\": play data for the inverse "
                        "model); default: skipped")
    p.add_argument("--no-latency-fix", action="store_true",
                   help="do not drop the first frame and last action of trajectories recorded before 2021-07-23")
    return p


def find_trajectories(root: Path) -> list[Path]:
    return sorted({p.parent for p in root.rglob("images0") if p.is_dir()})


def numbered_images(folder: Path) -> list[Path]:
    files = [p for p in folder.glob("im_*.jpg")]
    try:
        return sorted(files, key=lambda p: int(p.stem.split("_", 1)[1]))
    except ValueError:
        bad = next(p for p in files if not re.fullmatch(r"im_\d+", p.stem))
        raise SourceError(f"{bad}: image name is not im_<number>.jpg") from None


def read_language(traj: Path) -> str:
    path = traj / "lang.txt"
    if not path.is_file():
        return ""
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
    return next((line for line in lines if line and "confidence" not in line.lower()), "")


def read_pickle(path: Path):
    if not path.is_file():
        raise SourceError(f"{path}: missing")
    try:
        with open(path, "rb") as f:
            return pickle.load(f)  # noqa: S301 - the user's own dataset files
    except Exception as exc:  # a truncated or foreign pickle raises many kinds of error
        raise SourceError(f"{path}: unreadable pickle ({type(exc).__name__}: {exc})") from None


def recorded_before_fix(traj: Path) -> bool:
    for part in reversed(traj.parts):
        try:
            return datetime.strptime(part, DATE_FORMAT) < LATENCY_FIX_BEFORE
        except ValueError:
            continue
    return False


def load_trajectory(traj: Path, cameras: list[str], latency_fix: bool) -> dict:
    """Images per camera, state and actions of one trajectory, aligned (module docstring)."""
    images = {}
    for cam in cameras:
        folder = traj / cam
        if not folder.is_dir():
            raise SourceError(f"{traj}: no camera folder {cam}/")
        images[cam] = numbered_images(folder)
        if not images[cam]:
            raise SourceError(f"{folder}: no im_<t>.jpg images")
    counts = {cam: len(files) for cam, files in images.items()}
    if len(set(counts.values())) != 1:
        raise SourceError(f"{traj}: cameras have different frame counts {counts}")
    obs = read_pickle(traj / "obs_dict.pkl")
    if not isinstance(obs, dict) or "full_state" not in obs:
        found = sorted(obs)[:12] if isinstance(obs, dict) else type(obs).__name__
        raise SourceError(f"{traj / 'obs_dict.pkl'}: no 'full_state' (keys: {found})")
    state = np.asarray(obs["full_state"], np.float32)
    policy = read_pickle(traj / "policy_out.pkl")
    if not isinstance(policy, (list, tuple)) or not policy:
        raise SourceError(f"{traj / 'policy_out.pkl'}: expected a non-empty list of steps")
    try:
        actions = np.asarray([step["actions"] if isinstance(step, dict) else step for step in policy], np.float32)
    except (KeyError, ValueError, TypeError) as exc:
        raise SourceError(f"{traj / 'policy_out.pkl'}: steps are not 'actions' vectors of one length ({exc})") from None
    t = counts[cameras[0]]
    if state.ndim != 2 or actions.ndim != 2:
        raise SourceError(f"{traj}: full_state {state.shape} and actions {actions.shape} must be 2-D")
    start = 0
    if latency_fix and recorded_before_fix(traj):
        start, actions = 1, actions[:-1]
    n = len(actions)
    if len(state) < start + n or t < start + n:
        raise SourceError(f"{traj}: {t} frames, {len(state)} states and {len(policy)} actions do not line up "
                          f"(expected T frames, T states, T-1 actions)")
    if n < 1:
        raise SourceError(f"{traj}: no action steps")
    return {"images": {cam: files[start:start + n] for cam, files in images.items()},
            "state": state[start:start + n], "actions": actions, "latency_fix": start == 1}


def write_trajectory(traj: Path, path: Path, attrs: dict, args, views: list[str], task: str) -> int:
    data = load_trajectory(traj, args.cameras, not args.no_latency_fix)
    first = cv2.imread(str(data["images"][args.cameras[0]][0]), cv2.IMREAD_COLOR)
    if first is None:
        raise SourceError(f"{data['images'][args.cameras[0]][0]}: unreadable image")
    h, w = args.size or first.shape[:2]
    n = len(data["actions"])
    state_names = STATE_NAMES if data["state"].shape[1] == len(STATE_NAMES) else ()
    action_names = ACTION_NAMES if data["actions"].shape[1] == len(ACTION_NAMES) else ()
    with EpisodeStream(path, views, h, w, task, "robot", args.fps, overwrite=args.overwrite,
                       extra_attrs=attrs) as stream:
        for k in range(n):
            frames = {}
            for cam, view in zip(args.cameras, views):
                bgr = cv2.imread(str(data["images"][cam][k]), cv2.IMREAD_COLOR)
                if bgr is None:
                    raise SourceError(f"{data['images'][cam][k]}: unreadable image")
                frames[view] = fit_frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), h, w, args.fit)
            stream.append(frames)
        stream.finish(state=data["state"], actions=data["actions"], state_names=state_names,
                      action_names=action_names)
    return n


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    prog = "amplify-import-bridge"
    if not args.root.is_dir():
        print(f"{prog}: {args.root}: not a directory", file=sys.stderr)
        return 2
    views = args.views or (["front"] if len(args.cameras) == 1 else list(args.cameras))
    if len(views) != len(args.cameras) or len(set(views)) != len(views):
        print(f"{prog}: --views {views}: needs one distinct name per camera of --cameras {args.cameras}",
              file=sys.stderr)
        return 2
    if not 0 < args.fps < 1000:
        print(f"{prog}: --fps {args.fps}: must be a frame rate in (0, 1000) Hz", file=sys.stderr)
        return 2
    shard, num_shards = shard_args(args)
    settings = {"cameras": args.cameras, "views": views, "size": None if args.size is None else
                f"{args.size[1]}x{args.size[0]}", "fit": args.fit, "fps": args.fps,
                "latency_fix": not args.no_latency_fix}
    report = ImportReport(prog, settings)
    trajectories = find_trajectories(args.root)
    if not trajectories:
        print(f"{prog}: {args.root}: no trajectory folders (none holds images0/)", file=sys.stderr)
        return 2
    items = []
    for traj in shard_of(trajectories, shard, num_shards):
        task = read_language(traj)
        if not task and not args.keep_unlabeled:
            report.skipped[str(traj)] = "no instruction (lang.txt missing or empty); --keep-unlabeled imports it " \
                                        "with task text \"\""
            continue
        items.append((traj, task))
    run_import(items, args.out, report, name_of=lambda it: episode_name(str(it[0].relative_to(args.root))),
               source_of=lambda it: str(it[0]),
               write=lambda it, path, attrs: write_trajectory(it[0], path, attrs, args, views, it[1]),
               overwrite=args.overwrite, progress=progress_bar(args.quiet, f"bridge shard {shard}/{num_shards}"))
    return finish(report, args, "bridge", shard)


if __name__ == "__main__":
    sys.exit(main())
