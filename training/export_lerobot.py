"""amplify-export-lerobot: episode stores -> a LeRobotDataset v3.0 folder (LeRobot's training, tools and Hub).

Example::

    amplify-export-lerobot data/robot --out exports/ur5_pick
    amplify-export-lerobot data/robot data/robot_day2 --out exports/ur5_pick --embodiment robot --crf 23
    amplify-export-lerobot data/human --out exports/hand_videos --fps 30 --overwrite

Load the result with ``LeRobotDataset("local/ur5_pick", root="exports/ur5_pick")``. The episodes of the stores (in
the order given, each store's files sorted by name) become LeRobot episodes 0, 1, ..:
  observation.images.<view>  a ``video`` feature per view: H.264 (libx264, yuv420p, --crf, a key frame every 2
                             frames), one mp4 per camera holding the episodes back to back at a constant frame rate
  observation.state          robot/state (names from the episodes), if every exported episode has it
  action                     robot/actions, likewise
  task                       the episode's task text (meta/tasks.parquet, task_index in order of first use)
and the default columns timestamp (frame_index / fps), frame_index, episode_index, index (contiguous over the
dataset) and task_index; meta/stats.json and the per-episode stats in meta/episodes hold min, max, mean, std, count
and the 1/10/50/90/99 % quantiles of every feature (cameras: per channel in [0, 1], from sampled pixels). Frames are
written one to one, never resampled, so actions stay aligned with frames.

A LeRobot dataset has one set of features: every exported episode must have the same views, with one frame size
per view (even sides, for yuv420p), and robot/state and robot/actions in all of them or in none. Robot episodes with
actions and human videos without them cannot share a dataset: use --embodiment to export one kind. The episodes'
fps must agree and be a whole number, or --fps says what the dataset declares. Any of these problems, or an
unreadable episode, stops the command with one line (exit status 2) before anything is written.

The folder is written beside --out under a temporary name and renamed to --out when complete, so --out is either
the whole dataset or not there. An existing --out is refused unless --overwrite; it is then replaced only once
the new dataset is complete.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from amplify_core.episodes import EMBODIMENTS, EpisodeError, EpisodeReader, list_episodes
from training.lerobot_dataset import (ACTION_KEY, CHUNKS_SIZE, CODEBASE_VERSION, DATA_FILES_SIZE_MB, DATA_PATH,
                                      DEFAULT_FEATURES, GOP, IMAGES_PREFIX, PIX_FMT, PRESET, STATE_KEY, VCODEC_NAME,
                                      VIDEO_FILES_SIZE_MB, VIDEO_PATH, RollingParquet, VideoFiles, aggregate_stats,
                                      data_schema, data_table, image_stats, vector_stats, write_episodes, write_info,
                                      write_stats, write_tasks)

PROG = "amplify-export-lerobot"
log = logging.getLogger(PROG)
READ_FRAMES = 32  # frames read from an episode file at a time
STATS_FRAMES = 100  # frames per episode and camera sampled for the image stats
STATS_SIDE = 64  # pixels per side (about) of a sampled frame


class ExportError(ValueError):
    """The episodes cannot form one LeRobot dataset; the message says why and what to do."""


@dataclass
class Source:
    """What the export needs to know about an episode before writing anything."""

    path: Path
    task: str
    embodiment: str
    fps: float
    num_frames: int
    sizes: dict[str, tuple[int, int]]  # view -> (height, width), in the file's view order
    state_dim: int | None
    action_dim: int | None
    state_names: list[str]
    action_names: list[str]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stores", type=Path, nargs="+", metavar="STORE", help="episode store folder(s) to export")
    p.add_argument("--out", type=Path, required=True, help="the LeRobot dataset folder to write (must not exist "
                   "unless --overwrite)")
    p.add_argument("--embodiment", choices=[*EMBODIMENTS, "all"], default="all",
                   help="export only the robot or the human episodes (default all)")
    p.add_argument("--fps", type=int, default=None,
                   help="the dataset's frame rate (default: the episodes' fps, which must agree and be a whole "
                        "number); frames are kept one to one either way")
    p.add_argument("--crf", type=int, default=18,
                   help="H.264 constant rate factor, 0 (best) .. 51 (default 18: visually lossless; yuv420p "
                        "keeps colour at half resolution at any crf)")
    p.add_argument("--robot-type", default="ur5", help="info.json's robot_type (default ur5)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out once the new one is complete")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _names(path: Path, name: str) -> list[str]:
    with h5py.File(path, "r") as f:
        return [str(n) for n in f[f"robot/{name}"].attrs.get("names", [])]


def scan(path: Path) -> Source:
    with EpisodeReader(path) as reader:
        state, actions = reader.state(), reader.actions()
        source = Source(path, reader.task, reader.embodiment, reader.fps, reader.num_frames,
                        {view: reader.image_size(view) for view in reader.views},
                        None if state is None else state.shape[1], None if actions is None else actions.shape[1],
                        [], [])
    if source.state_dim is not None:
        source.state_names = _names(path, "state")
    if source.action_dim is not None:
        source.action_names = _names(path, "actions")
    return source


def _groups(sources: list[Source], key) -> dict:
    """value -> (count, first path)"""
    groups: dict = {}
    for s in sources:
        count, first = groups.get(key(s), (0, s.path))
        groups[key(s)] = (count + 1, first)
    return groups


def _describe(groups: dict, show) -> str:
    return ", ".join(f"{show(value)} in {count} (e.g. {first})" for value, (count, first) in groups.items())


def vector_names(names_of: list[list[str]], dim: int, prefix: str, what: str) -> list[str]:
    names = names_of[0]
    if len(names) != dim or not all(names) or len(set(names)) != dim:
        names = [f"{prefix}_{i}" for i in range(dim)]
    if any(n != names_of[0] for n in names_of[1:]):
        log.warning("%s names differ between episodes; using the first episode's %s", what, names)
    return names


@dataclass
class Plan:
    sources: list[Source]
    views: dict[str, tuple[int, int]]  # view -> (height, width)
    fps: int
    tasks: list[str]
    state: list[str] | None  # names, when exported
    actions: list[str] | None


def plan_export(sources: list[Source], fps: int | None) -> Plan:
    """Check that ``sources`` can form one dataset (ExportError says why not) and decide its features."""
    views = _groups(sources, lambda s: tuple(s.sizes))
    if len({frozenset(v) for v in views}) > 1:
        raise ExportError("the episodes have different views: " + _describe(views, list) + "; LeRobot needs the same "
                          "cameras in every episode (export each kind separately, e.g. with --embodiment)")
    order = list(sources[0].sizes)
    for view in order:
        sizes = _groups(sources, lambda s: s.sizes[view])
        if len(sizes) > 1:
            raise ExportError(f"view {view!r} has different frame sizes: "
                              + _describe(sizes, lambda hw: f"{hw[1]}x{hw[0]}")
                              + "; a LeRobot video feature has one shape")
        h, w = next(iter(sizes))
        if h % 2 or w % 2:
            raise ExportError(f"view {view!r} is {w}x{h}: H.264 {PIX_FMT} video needs even sides")
    if fps is None:
        rates = _groups(sources, lambda s: s.fps)
        if len(rates) > 1:
            raise ExportError("the episodes' fps differ: " + _describe(rates, lambda r: f"{r:g} fps")
                              + "; a LeRobot dataset has one fps (pass --fps to declare one; frames are not resampled)")
        rate = next(iter(rates))
        if abs(rate - round(rate)) > 1e-6 or round(rate) < 1:
            raise ExportError(f"the episodes are at {rate:g} fps; LeRobot's fps is a whole number: pass --fps "
                              f"{max(1, round(rate))} to declare it (frames are kept one to one)")
        fps = int(round(rate))
    else:
        off = [s for s in sources if abs(s.fps - fps) > 1e-6]
        if off:
            log.warning("%d episode(s) are not at %d fps (e.g. %s at %g fps); their frames are kept one to one and "
                        "the dataset says %d fps", len(off), fps, off[0].path, off[0].fps, fps)
    vectors = {}
    for what, dim_of, names_of, prefix in (("state", lambda s: s.state_dim, lambda s: s.state_names, "state"),
                                           ("actions", lambda s: s.action_dim, lambda s: s.action_names, "action")):
        dims = _groups(sources, dim_of)
        have = sum(count for dim, (count, _) in dims.items() if dim is not None)
        if 0 < have < len(sources):
            lacking = next(s.path for s in sources if dim_of(s) is None)
            raise ExportError(f"{have} of the {len(sources)} episodes have robot/{what} and {len(sources) - have} "
                              f"do not (e.g. {lacking}); LeRobot needs the same features in every episode: pass "
                              "--embodiment robot to export only the robot episodes")
        if len(dims) > 1:
            raise ExportError(f"robot/{what} has different sizes: " + _describe(dims, lambda d: f"{d} values")
                              + "; a LeRobot feature has one shape")
        dim = next(iter(dims))
        vectors[what] = None if dim is None else vector_names([names_of(s) for s in sources], dim, prefix,
                                                              f"robot/{what}")
    tasks = list(dict.fromkeys(s.task for s in sources))
    return Plan(sources, {v: sources[0].sizes[v] for v in order}, fps, tasks, vectors["state"], vectors["actions"])


def features_of(plan: Plan, crf: int) -> dict[str, dict]:
    features = {}
    for view, (h, w) in plan.views.items():
        features[IMAGES_PREFIX + view] = {
            "dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
            "info": {"video.height": h, "video.width": w, "video.codec": VCODEC_NAME, "video.pix_fmt": PIX_FMT,
                     "video.is_depth_map": False, "video.fps": plan.fps, "video.channels": 3, "video.g": GOP,
                     "video.crf": crf, "video.preset": PRESET, "has_audio": False, "is_depth_map": False},
        }
    for key, names in ((STATE_KEY, plan.state), (ACTION_KEY, plan.actions)):
        if names is not None:
            features[key] = {"dtype": "float32", "shape": [len(names)], "names": list(names)}
    features.update({key: dict(f) for key, f in DEFAULT_FEATURES.items()})
    return features


class PixelSampler:
    """Passes frames through, keeping a spatially strided copy of about STATS_FRAMES of them for the image stats."""

    def __init__(self, num_frames: int, height: int, width: int):
        self.keep = set(np.linspace(0, num_frames - 1, min(num_frames, STATS_FRAMES)).round().astype(int).tolist())
        self.stride = max(1, round(min(height, width) / STATS_SIDE))
        self.samples: list[np.ndarray] = []

    def watch(self, frames):
        for k, frame in enumerate(frames):
            if k in self.keep:
                self.samples.append(frame[::self.stride, ::self.stride].reshape(-1, 3))
            yield frame

    def stats(self) -> dict[str, np.ndarray]:
        return image_stats(np.concatenate(self.samples), len(self.samples))


def episode_frames(reader: EpisodeReader, view: str):
    for start in range(0, reader.num_frames, READ_FRAMES):
        yield from reader.frames(view, start, start + READ_FRAMES)


def write_dataset(root: Path, plan: Plan, args, progress) -> int:
    """The whole dataset into the (empty) folder ``root``; the number of frames."""
    features = features_of(plan, args.crf)
    vector_keys = {k: f["shape"][0] for k, f in features.items() if f["dtype"] == "float32" and k not in
                   DEFAULT_FEATURES}
    schema = data_schema(vector_keys)
    task_ids = {task: i for i, task in enumerate(plan.tasks)}
    videos = {view: VideoFiles(root, VIDEO_PATH, IMAGES_PREFIX + view, h, w, plan.fps, args.crf,
                               VIDEO_FILES_SIZE_MB)
              for view, (h, w) in plan.views.items()}
    data = RollingParquet(root, DATA_PATH, schema, DATA_FILES_SIZE_MB)
    rows, columns, camera_stats = [], {k: [] for k in schema.names}, {view: [] for view in plan.views}
    index = 0
    try:
        for i, source in enumerate(progress(plan.sources)):
            with EpisodeReader(source.path) as reader:
                n = reader.num_frames
                vectors = {}
                if plan.state is not None:
                    vectors[STATE_KEY] = reader.state()
                if plan.actions is not None:
                    vectors[ACTION_KEY] = reader.actions()
                table = data_table(schema, vectors, n, i, index, task_ids[reader.task], plan.fps)
                chunk_index, file_index = data.write(table)
                row = {"episode_index": i, "tasks": [reader.task], "length": n, "data/chunk_index": chunk_index,
                       "data/file_index": file_index, "dataset_from_index": index, "dataset_to_index": index + n}
                stats = {}
                for view, (h, w) in plan.views.items():
                    key, sampler = IMAGES_PREFIX + view, PixelSampler(n, h, w)
                    c, f, t0, t1, count = videos[view].add_episode(sampler.watch(episode_frames(reader, view)))
                    if count != n:
                        raise EpisodeError(f"{source.path}: view {view!r} has {count} frames, the episode {n}")
                    row.update({f"videos/{key}/chunk_index": c, f"videos/{key}/file_index": f,
                                f"videos/{key}/from_timestamp": t0, f"videos/{key}/to_timestamp": t1})
                    stats[key] = sampler.stats()
                    camera_stats[view].append(stats[key])
                for key in schema.names:
                    values = vectors[key] if key in vectors else table.column(key).to_numpy()[:, None]
                    stats[key] = vector_stats(values)
                    columns[key].append(values)
                row["stats"] = stats
                rows.append(row)
                index += n
        for files in videos.values():
            files.close()
        data.close()
    except BaseException:
        for files in videos.values():
            files.discard()
        data.close()
        raise
    write_episodes(root, rows, features, DATA_FILES_SIZE_MB)
    write_tasks(root, plan.tasks)
    stats = {}
    for key in features:
        if key.startswith(IMAGES_PREFIX) and key[len(IMAGES_PREFIX):] in camera_stats:
            stats[key] = aggregate_stats(camera_stats[key[len(IMAGES_PREFIX):]])
        elif key in columns:
            stats[key] = vector_stats(np.concatenate(columns[key]))
    write_stats(root, stats)
    n = len(rows)
    write_info(root, {
        "codebase_version": CODEBASE_VERSION, "robot_type": args.robot_type, "total_episodes": n,
        "total_frames": index, "total_tasks": len(plan.tasks), "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILES_SIZE_MB, "video_files_size_in_mb": VIDEO_FILES_SIZE_MB, "fps": plan.fps,
        "splits": {"train": f"0:{n}"}, "data_path": DATA_PATH, "video_path": VIDEO_PATH, "features": features,
    })
    return index


def _folder_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


def swap_in(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the complete folder ``tmp`` to ``out``; an existing ``out`` is replaced only with ``overwrite``."""
    if not os.path.lexists(out):
        os.rename(tmp, out)
        return
    if not overwrite:
        raise FileExistsError(f"{out}: already exists (written meanwhile?); pass --overwrite to replace it")
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rename(out, old / "previous")
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old / "previous", out)
        raise
    shutil.rmtree(old)


def fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not 0 <= args.crf <= 51:
        return fail(f"--crf {args.crf}: must be in [0, 51]")
    if args.fps is not None and not 0 < args.fps < 1000:
        return fail(f"--fps {args.fps}: must be a whole frame rate in [1, 999]")
    out = args.out
    if os.path.lexists(out) and not args.overwrite:
        return fail(f"--out {out}: already exists; pass --overwrite to replace it (once the new dataset is complete)")
    if out.resolve() in [s.resolve() for s in args.stores]:
        return fail(f"--out {out}: is one of the stores to export")
    paths = []
    try:
        for store in args.stores:
            files = list_episodes(store)
            if not files:
                return fail(f"{store}: no episode files (*.h5)")
            paths += files
        found = [scan(p) for p in paths]
    except EpisodeError as exc:
        return fail(str(exc))
    sources = [s for s in found if args.embodiment in ("all", s.embodiment)]
    if not sources:
        kinds = Counter(s.embodiment for s in found)
        return fail(f"no {args.embodiment} episodes in {', '.join(map(str, args.stores))} (found "
                    + ", ".join(f"{c} {k}" for k, c in kinds.items()) + ")")
    try:
        plan = plan_export(sources, args.fps)
    except ExportError as exc:
        return fail(str(exc))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        os.chmod(tmp, _folder_mode())
        from tqdm import tqdm

        frames = write_dataset(tmp, plan, args,
                               lambda it: tqdm(it, desc="episodes", unit="episode", disable=args.quiet))
        swap_in(tmp, out, args.overwrite)
    except (EpisodeError, FileExistsError, ValueError) as exc:
        return fail(str(exc))
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    robot = [name for name, names in (("observation.state", plan.state), ("action", plan.actions)) if names]
    print(f"wrote {len(plan.sources)} episodes ({frames} frames at {plan.fps} fps, {len(plan.tasks)} tasks, views "
          f"{', '.join(plan.views)}{''.join(', ' + r for r in robot)}) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
