"""amplify-import-videos: a folder of video files with a labels file -> episodes (task text, no actions).

Example::

    amplify-import-videos clips/ --labels clips/tasks.csv --out data/human          # CSV with columns file,task
    amplify-import-videos clips/ --labels clips/tasks.jsonl --out data/human        # {"file": ..., "task": ...}
    amplify-import-videos ssv2/videos --labels ssv2/labels/train.json --out data/ssv2 --shard 0 --num-shards 2
    amplify-import-videos takes/ --labels takes.csv --views front side --out data/human   # take01_front.mp4 ...

Videos: every .mp4 .webm .avi .mkv .mov under the folder (any size, any frame rate). Labels:
  *.csv    a header with the columns ``file`` and ``task`` (optional ``embodiment``); ``file`` is the video's path
           relative to the folder, with or without its extension
  *.jsonl  one object per line with the same keys
  *.json   the Something-Something v2 layout: a list of {"id", "label", "template", "placeholders"}; video
           ``<id>.webm``, task = ``label`` (the template with its placeholders filled in)
Views: by default each file is one episode with one view (``--view-name``, default front). With ``--views A B``
the files ``<moment>_A.<ext>`` and ``<moment>_B.<ext>`` (``--view-separator``) are one episode with views A and
B; the labels name the moment (or any of its files); a moment missing a view is skipped.

Every frame is fitted to ``--size`` (centre crop to the aspect ratio by default, ``--fit pad`` for black bars;
training/video_frames.py) and resampled to ``--fps`` (default 20 Hz, the rate the track horizon is defined at) by
sample and hold on the presentation timestamps, streamed: a video is never held in memory. Variable-frame-rate
videos are skipped unless ``--allow-variable-fps``. Skipped items (unreadable or empty video, a video without a
label, a label without a video, too short, conflicting labels) are listed with their reason in the report
(``<out>/import_report.videos.shard<I>.json``); the exit status is then 1. Running the command again imports only
what is missing (episodes already there with the same settings are kept as they are).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from amplify_core.episodes import EMBODIMENTS, EpisodeStream, list_episodes, read_episode
from amplify_core.preprocessing import shard_of
from amplify_core.tracks import TARGET_FPS
from training.cli_common import positive_int
from training.importing import (ImportReport, SourceError, add_common, episode_name, finish, progress_bar,
                                parse_size, run_import, shard_args)
from training.video_frames import FITS, VIDEO_SUFFIXES, VideoError, probe_video, resampled_frames

log = logging.getLogger("amplify-import-videos")
DEFAULT_SIZE = 128  # config/workcell.yaml's image_size; the models resize to their own input size


@dataclass
class Moment:
    """One episode to import: its views' files, its label."""

    key: str  # path relative to the folder, without extension (and without the view suffix)
    files: dict[str, Path] = field(default_factory=dict)  # view -> file
    task: str | None = None
    embodiment: str | None = None
    label_where: str = ""


@dataclass
class Label:
    key: str
    task: str
    embodiment: str | None
    where: str  # "labels.csv line 4"


def positive_fps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1000:
        raise argparse.ArgumentTypeError(f"{text}: must be a frame rate in (0, 1000) Hz")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="amplify-import-videos", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("videos", type=Path, help="folder of video files (searched recursively)")
    p.add_argument("--labels", type=Path, required=True,
                   help="task texts: .csv (file,task), .jsonl ({file, task}) or .json (Something-Something v2)")
    p.add_argument("--labels-format", choices=["auto", "csv", "jsonl", "ssv2"], default="auto",
                   help="how to read --labels (default auto: by its extension)")
    add_common(p)
    p.add_argument("--size", type=parse_size, default=None, metavar="N|WxH",
                   help=f"frame size of the episodes (default: the size of the episodes already in --out, else "
                        f"{DEFAULT_SIZE}x{DEFAULT_SIZE})")
    p.add_argument("--fit", choices=FITS, default="crop",
                   help="crop: centre crop to the aspect ratio, then resize (default); pad: whole frame, black bars")
    p.add_argument("--fps", type=positive_fps, default=TARGET_FPS,
                   help=f"frame rate of the episodes (default {TARGET_FPS:g}: the track horizon's rate)")
    p.add_argument("--embodiment", choices=EMBODIMENTS, default="human",
                   help="embodiment of every episode unless the labels give one (default human)")
    p.add_argument("--view-name", default="front", help="the view's name for single-view videos (default front)")
    p.add_argument("--views", nargs="+", default=None,
                   help="multi-view: the view names; <moment><sep><view>.<ext> files of one moment are one episode")
    p.add_argument("--view-separator", default="_", help="between moment and view in file names (default _)")
    p.add_argument("--allow-variable-fps", action="store_true",
                   help="import variable-frame-rate videos too (resampled on their timestamps); default: skipped")
    p.add_argument("--min-frames", type=positive_int, default=16,
                   help="skip videos shorter than this many frames after resampling (default 16: one track "
                        "horizon)")
    p.add_argument("--threads", type=positive_int, default=1, help="decoder threads per process (default 1)")
    return p


def strip_suffix(rel: str) -> str:
    p = Path(rel)
    return str(p.with_suffix("")) if p.suffix.lower() in VIDEO_SUFFIXES else rel


def read_labels(path: Path, fmt: str) -> list[Label]:
    """The labels file as (video key, task) rows; a malformed file is one error naming it and the line."""
    if not path.is_file():
        raise SystemExit(f"--labels {path}: no such file")
    if fmt == "auto":
        fmt = {".csv": "csv", ".jsonl": "jsonl", ".json": "ssv2"}.get(path.suffix.lower())
        if fmt is None:
            raise SystemExit(f"--labels {path}: cannot tell the format from the extension {path.suffix!r}; "
                             "use .csv, .jsonl or .json (Something-Something v2), or --labels-format")
    labels = []
    if fmt == "csv":
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"file", "task"} <= set(reader.fieldnames):
                raise SystemExit(f"--labels {path}: the first line must be a header with the columns file,task "
                                 f"(got {reader.fieldnames})")
            for i, row in enumerate(reader, start=2):
                labels.append(Label(strip_suffix(row["file"] or ""), (row["task"] or "").strip(),
                                    (row.get("embodiment") or "").strip() or None, f"{path.name} line {i}"))
    elif fmt == "jsonl":
        for i, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SystemExit(f"--labels {path}: line {i} is not JSON ({exc.msg})") from None
            if not isinstance(row, dict) or "file" not in row or "task" not in row:
                raise SystemExit(f"--labels {path}: line {i} needs the keys file and task")
            labels.append(Label(strip_suffix(str(row["file"])), str(row["task"]).strip(), row.get("embodiment"),
                                f"{path.name} line {i}"))
    elif fmt == "ssv2":
        try:
            rows = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise SystemExit(f"--labels {path}: not JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(rows, list):
            raise SystemExit(f"--labels {path}: a Something-Something v2 labels file is a JSON list of objects")
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or "id" not in row or "label" not in row:
                raise SystemExit(f"--labels {path}: entry {i} needs the keys id and label")
            labels.append(Label(str(row["id"]), str(row["label"]).strip(), None, f"{path.name} entry {i}"))
    return labels


def find_moments(folder: Path, labels: list[Label], views: list[str] | None, view_name: str, sep: str,
                 report: ImportReport) -> list[Moment]:
    """Group the folder's video files into moments and attach their labels; what cannot be paired is reported."""
    moments: dict[str, Moment] = {}
    file_keys: dict[str, str] = {}  # a file's key (no extension) -> its moment
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES):
        key = str(path.relative_to(folder).with_suffix("").as_posix())
        if views is None:
            moment, view = key, view_name
        else:
            view = next((v for v in views if key.endswith(sep + v)), None)
            if view is None:
                report.skipped[str(path)] = f"file name does not end in {sep}<view> for a view of --views {views}"
                continue
            moment = key[: -len(sep + view)]
        m = moments.setdefault(moment, Moment(moment))
        if view in m.files:
            report.skipped[str(path)] = f"a second {view!r} file for {moment!r} (first: {m.files[view]})"
            continue
        m.files[view] = path
        file_keys[key] = moment
    for label in labels:
        moment = file_keys.get(label.key, label.key if label.key in moments else None)
        if moment is None:
            report.skipped[f"{label.where}"] = f"no video {label.key!r} in {folder}"
            continue
        m = moments[moment]
        if not label.task:
            report.skipped[label.where] = f"empty task text for {label.key!r}"
            continue
        if m.task is not None and m.task != label.task:
            m.task = ""  # conflicting labels: reported below
            m.label_where += f", {label.where}"
            continue
        m.task, m.embodiment, m.label_where = label.task, label.embodiment, label.where
    out = []
    for m in moments.values():
        where = ", ".join(str(f) for f in m.files.values())
        if m.task is None:
            report.skipped[where] = "no label in the labels file"
        elif m.task == "":
            report.skipped[where] = f"conflicting labels ({m.label_where.lstrip(', ')})"
        elif views is not None and set(m.files) != set(views):
            report.skipped[where] = f"missing view(s) {sorted(set(views) - set(m.files))} of {m.key!r}"
        elif m.embodiment is not None and m.embodiment not in EMBODIMENTS:
            report.skipped[where] = f"{m.label_where}: embodiment {m.embodiment!r} is not one of {EMBODIMENTS}"
        else:
            out.append(m)
    return out


def store_size(out: Path) -> tuple[int, int] | None:
    for path in list_episodes(out) if out.is_dir() else []:
        try:
            frames = next(iter(read_episode(path).frames.values()))
        except Exception:  # an unreadable episode says nothing about the store's size
            continue
        return frames.shape[1], frames.shape[2]
    return None


def write_moment(m: Moment, path: Path, attrs: dict, args, size: tuple[int, int]) -> int:
    infos = {}
    for view, file in m.files.items():
        try:
            info = probe_video(file)
        except VideoError as exc:
            raise SourceError(str(exc)) from None
        if info.variable and not args.allow_variable_fps:
            raise SourceError(f"{file}: variable frame rate (frame intervals {1000 * info.min_interval_s:.1f}-"
                              f"{1000 * info.max_interval_s:.1f} ms, median {1000 / info.fps:.1f} ms); pass "
                              "--allow-variable-fps to resample it on its timestamps")
        infos[view] = info
    counts = {view: info.resampled_count(args.fps) for view, info in infos.items()}
    n = min(counts.values())
    if n < args.min_frames:
        shortest = min(counts, key=counts.get)
        raise SourceError(f"{m.files[shortest]}: {n} frames at {args.fps:g} fps ({infos[shortest].duration_s:.2f} s), "
                          f"fewer than --min-frames {args.min_frames}")
    if max(counts.values()) - n > 1:
        log.info("%s: views differ in length %s; keeping the first %d frames of each", m.key, counts, n)
    h, w = size
    streams = {view: resampled_frames(file, args.fps, h, w, args.fit, args.threads, max_frames=n)
               for view, file in m.files.items()}
    embodiment = m.embodiment or args.embodiment
    with EpisodeStream(path, list(m.files), h, w, m.task, embodiment, args.fps, overwrite=args.overwrite,
                       extra_attrs=attrs) as stream:
        try:
            for _ in range(n):
                stream.append({view: next(it) for view, it in streams.items()})
        except StopIteration:
            raise SourceError(f"{m.key}: a view ended after {stream.num_frames} of {n} frames") from None
        except VideoError as exc:
            raise SourceError(str(exc)) from None
        stream.finish()
    return n


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not args.videos.is_dir():
        print(f"amplify-import-videos: {args.videos}: not a directory", file=sys.stderr)
        return 2
    shard, num_shards = shard_args(args)
    size = args.size or store_size(args.out) or (DEFAULT_SIZE, DEFAULT_SIZE)
    settings = {"size": f"{size[1]}x{size[0]}", "fit": args.fit, "fps": args.fps, "embodiment": args.embodiment,
                "views": args.views or [args.view_name]}
    report = ImportReport("amplify-import-videos", settings)
    try:
        labels = read_labels(args.labels, args.labels_format)
    except SystemExit as exc:
        print(f"amplify-import-videos: {exc}", file=sys.stderr)
        return 2
    pairing = ImportReport(report.command, settings)
    moments = find_moments(args.videos, labels, args.views, args.view_name, args.view_separator, pairing)
    if shard == 0:  # files and labels that could not be paired are reported once, by the first shard
        report.skipped.update(pairing.skipped)
    items = shard_of(moments, shard, num_shards)
    run_import(items, args.out, report, name_of=lambda m: episode_name(m.key),
               source_of=lambda m: ", ".join(str(f) for f in m.files.values()),
               write=lambda m, path, attrs: write_moment(m, path, attrs, args, size), overwrite=args.overwrite,
               progress=progress_bar(args.quiet, f"videos shard {shard}/{num_shards}"))
    return finish(report, args, "videos", shard)


if __name__ == "__main__":
    sys.exit(main())
