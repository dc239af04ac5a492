"""amplify-import-lerobot: a LeRobotDataset v3.0 folder -> episodes (frames, task text, robot state and actions).

Example::

    amplify-import-lerobot datasets/so101_pick --out data/robot
    amplify-import-lerobot datasets/so101_pick --out data/robot --views front wrist --size 128 --fit pad
    amplify-import-lerobot datasets/aloha --out data/robot --shard 0 --num-shards 4
    amplify-import-lerobot datasets/hand_videos --out data/human --embodiment human

The folder is what LeRobot writes (training/lerobot_dataset.py): ``meta/info.json`` with codebase_version v3.x,
``meta/tasks.parquet``, ``meta/episodes/*/*.parquet``, ``data/*/*.parquet`` and ``videos/<key>/*/*.mp4``, e.g. a Hub
dataset fetched with ``huggingface-cli download --repo-type dataset <repo> --local-dir <folder>``. Each LeRobot
episode becomes one episode file ``<folder name>_ep<episode_index, 6 digits>.h5``:
  views          every ``video`` feature (decoded from its mp4 from the episode's from_timestamp, one frame per
                 frame time) and every ``image`` feature (PNG/JPEG bytes in the data parquet). A view is named after
                 the last dot-separated part of its key (observation.images.front -> front), or after the whole key
                 with '_' for '.' where two keys end alike. --views picks some, by key or by view name
  robot/state    observation.state (names from info.json when they are strings, else state_0 ..)
  robot/actions  action (names likewise, else action_0 ..)
  task           the text of the episode's first task_index in meta/tasks.parquet
  fps            info.json's fps; frames are taken one to one (no resampling), so actions stay aligned with frames
Other features (rewards, environment state, ...) are not imported. Frames keep the dataset's size unless --size
(the views of an episode share one size, so cameras of different sizes need --size); --fit says how a different
aspect ratio is fitted (training/video_frames.py).

A dataset that cannot be read (no info.json, not v3, no tasks or episodes metadata) stops the command with one line
(exit status 2). An episode whose data rows do not match info.json (a missing or undeclared column, a vector of the
wrong length, a row count other than the episode's length), whose mp4 is missing or shorter than the episode, or
whose task_index has no task is skipped with its reason in the report (``<out>/import_report.lerobot.shard<I>.json``);
the exit status is then 1. Running the command again imports only what is missing (an episode already there with
the same settings is kept as it is, never rewritten).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from amplify_core.episodes import EMBODIMENTS, EpisodeStream
from amplify_core.preprocessing import shard_of
from training.cli_common import positive_int
from training.importing import (ImportReport, SourceError, add_common, episode_name, finish, progress_bar,
                                parse_size, run_import, shard_args)
from training.lerobot_dataset import (ACTION_KEY, STATE_KEY, Info, LeRobotError, episode_table, episode_video_frames,
                                      feature_names, image_frames, read_episodes, read_info, read_tasks,
                                      scalar_column, vector_column)
from training.video_frames import FITS, fit_frame

PROG = "amplify-import-lerobot"
log = logging.getLogger(PROG)


@dataclass
class Dataset:
    info: Info
    tasks: dict[int, str]
    episodes: list[dict]
    views: dict[str, str]  # view name -> camera key
    size: tuple[int, int]  # (height, width) of the episodes
    vectors: dict[str, str]  # "state" / "actions" -> feature key

    @property
    def name(self) -> str:
        return self.info.root.resolve().name


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", type=Path, help="LeRobotDataset v3.0 folder (the one holding meta/info.json)")
    add_common(p)
    p.add_argument("--views", nargs="+", default=None, metavar="KEY|VIEW",
                   help="cameras to import, by feature key (observation.images.front) or view name (front); default: "
                        "every video and image feature")
    p.add_argument("--embodiment", choices=EMBODIMENTS, default="robot",
                   help="embodiment of every episode (default robot)")
    p.add_argument("--size", type=parse_size, default=None, metavar="N|WxH",
                   help="frame size of the episodes (default: the dataset's camera size, which must then be the same "
                        "for every imported camera)")
    p.add_argument("--fit", choices=FITS, default="crop",
                   help="when --size has another aspect ratio: crop the centre, then resize (default), or pad: whole "
                        "frame, black bars")
    p.add_argument("--threads", type=positive_int, default=1, help="video decoder threads per process (default 1)")
    return p


def view_names(keys: list[str]) -> dict[str, str]:
    """view name -> camera key: the key's last dot-separated part, or the key with '_' for '.' when that clashes."""
    last = [k.split(".")[-1] for k in keys]
    names = {}
    for key, short in zip(keys, last):
        name = short if last.count(short) == 1 else key.replace(".", "_")
        names[name] = key
    return names


def open_dataset(args) -> Dataset:
    """Read and check the dataset's metadata; LeRobotError (-> exit 2) for anything that stops the whole import."""
    info = read_info(args.dataset)
    tasks = read_tasks(args.dataset)
    episodes = read_episodes(info)
    cameras = view_names(info.camera_keys)
    if not cameras:
        raise LeRobotError(f"{info.path}: no camera feature (dtype video or image); an episode needs at least one view")
    if args.views:
        by_key = {key: view for view, key in cameras.items()}
        chosen = {}
        for wanted in args.views:
            view = wanted if wanted in cameras else by_key.get(wanted)
            if view is None:
                raise LeRobotError(f"--views {wanted}: not a camera of {info.path} (cameras: "
                                   + ", ".join(f"{v} = {k}" for v, k in cameras.items()) + ")")
            chosen[view] = cameras[view]
        cameras = chosen
    sizes = {view: info.image_size(key) for view, key in cameras.items()}
    if args.size is not None:
        size = args.size
    elif len(set(sizes.values())) == 1:
        size = next(iter(sizes.values()))
    else:
        raise LeRobotError(f"{info.path}: the cameras have different sizes ("
                           + ", ".join(f"{v} {w}x{h}" for v, (h, w) in sizes.items())
                           + "); the views of an episode share one size: pass --size (or --views)")
    vectors = {}
    for name, key in (("state", STATE_KEY), ("actions", ACTION_KEY)):
        feature = info.features.get(key)
        if feature is None:
            continue
        if len(feature["shape"]) != 1 or feature["dtype"] in ("video", "image", "string"):
            log.warning("%s: feature %s has dtype %s shape %s, not a vector; not imported", info.path, key,
                        feature["dtype"], feature["shape"])
            continue
        vectors[name] = key
    return Dataset(info, tasks, episodes, cameras, size, vectors)


def write_lerobot_episode(episode: dict, path: Path, attrs: dict, ds: Dataset, args) -> int:
    """One LeRobot episode -> ``path`` (streamed frame by frame); the number of frames written."""
    info, index, n = ds.info, int(episode["episode_index"]), int(episode["length"])
    table = episode_table(info, episode)
    task_index = int(scalar_column(table, "task_index")[0])
    if task_index not in ds.tasks:
        raise SourceError(f"episode {index}: task_index {task_index} is not in meta/tasks.parquet "
                          f"(task_index {min(ds.tasks)}..{max(ds.tasks)})" if ds.tasks else
                          f"episode {index}: meta/tasks.parquet has no tasks")
    sources = {}
    for view, key in ds.views.items():
        if info.features[key]["dtype"] == "video":
            file = info.video_file(key, episode[f"videos/{key}/chunk_index"], episode[f"videos/{key}/file_index"])
            if not file.is_file():
                raise SourceError(f"{file}: no such file (video {key} of episode {index})")
            sources[view] = episode_video_frames(file, float(episode[f"videos/{key}/from_timestamp"]), info.fps, n,
                                                 args.threads)
        else:
            sources[view] = image_frames(table, key, info.root)
    robot = {name: vector_column(table, key) for name, key in ds.vectors.items()}
    names = {name: feature_names(info.features[key], "state" if name == "state" else "action")
             for name, key in ds.vectors.items()}
    h, w = ds.size
    attrs = {**attrs, "lerobot_episode_index": index}
    try:
        with EpisodeStream(path, list(ds.views), h, w, ds.tasks[task_index], args.embodiment, info.fps,
                           overwrite=args.overwrite, extra_attrs=attrs) as stream:
            try:
                for _ in range(n):
                    stream.append({view: fit_frame(next(it), h, w, args.fit) for view, it in sources.items()})
            except StopIteration:
                raise SourceError(f"episode {index}: a camera ended after {stream.num_frames} of {n} frames") from None
            stream.finish(state=robot.get("state"), actions=robot.get("actions"),
                          state_names=names.get("state", ()), action_names=names.get("actions", ()))
    finally:
        for it in sources.values():
            it.close()
    return n


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not args.dataset.is_dir():
        print(f"{PROG}: {args.dataset}: not a directory", file=sys.stderr)
        return 2
    shard, num_shards = shard_args(args)
    try:
        ds = open_dataset(args)
    except LeRobotError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    h, w = ds.size
    settings = {"size": f"{w}x{h}", "fit": args.fit, "embodiment": args.embodiment, "views": ds.views}
    report = ImportReport(PROG, settings)
    items = shard_of(ds.episodes, shard, num_shards)
    run_import(items, args.out, report, name_of=lambda ep: episode_name(f"{ds.name}_ep{int(ep['episode_index']):06d}"),
               source_of=lambda ep: f"{ds.info.root} episode {int(ep['episode_index'])}",
               write=lambda ep, path, attrs: write_lerobot_episode(ep, path, attrs, ds, args),
               overwrite=args.overwrite, progress=progress_bar(args.quiet, f"lerobot shard {shard}/{num_shards}"))
    return finish(report, args, "lerobot", shard)


if __name__ == "__main__":
    sys.exit(main())
