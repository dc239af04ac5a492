"""amplify-preprocess: compute keypoint tracks for every episode of an episode store.

Example::

    amplify-preprocess data/episodes                       # all episodes, all views
    amplify-preprocess data/episodes --views front side    # a subset of views
    amplify-preprocess data/episodes --shard 0 --num-shards 4
    torchrun --nproc-per-node 2 -m training.preprocess_tracks data/episodes   # shards = ranks

Writes ``<episode>.tracks.h5`` beside each ``<episode>.h5`` (the episode file is never modified).
Finished episodes are skipped, so an interrupted run is resumed by running the same command again.
A bad episode is reported and the others are processed; the exit code is 1 if any episode failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from pathlib import Path

import cv2
import yaml
from tqdm import tqdm

from amplify_core.preprocessing import preprocess_store
from amplify_core.tracking import make_tracker
from amplify_core.tracks import HORIZON, TARGET_FPS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="amplify-preprocess",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("store", type=Path, help="directory of episode files (*.h5)")
    p.add_argument("--views", nargs="+", default=None, help="views to track (default: every view of each episode)")
    p.add_argument("--config", type=Path, default=None,
                   help="YAML file with tracker settings (see config/tracks.yaml); command-line flags win")
    p.add_argument("--tracker", choices=["lucas_kanade", "cotracker", "ground_truth"], default=None,
                   help="point tracker: OpenCV Lucas-Kanade (default, fast on CPU), CoTracker (optional) or "
                        "ground_truth (workcell episodes only: the simulator's own tracks, to tell tracker errors "
                        "from model errors)")
    p.add_argument("--cotracker-checkpoint", type=Path, default=None,
                   help="local CoTracker checkpoint (.pth); required with --tracker cotracker")
    p.add_argument("--horizon", type=int, default=None, help=f"track length in steps at 20 Hz (default {HORIZON})")
    p.add_argument("--target-fps", type=float, default=None,
                   help=f"rate the horizon is defined at; other sources are resampled (default {TARGET_FPS:g})")
    p.add_argument("--shard", type=int, default=None, help="this worker's shard index (default: $RANK or 0)")
    p.add_argument("--num-shards", type=int, default=None, help="number of shards (default: $WORLD_SIZE or 1)")
    p.add_argument("--overwrite", action="store_true", help="recompute tracks that already exist")
    p.add_argument("--threads", type=int, default=1,
                   help="OpenCV threads per process (default 1: run more shards for more cores)")
    p.add_argument("--report", type=Path, default=None,
                   help="write a JSON report here (default: <store>/tracks_report.shard<I>.json)")
    return p


def load_settings(args: argparse.Namespace) -> dict:
    settings = {"tracker": "lucas_kanade", "horizon": HORIZON, "target_fps": TARGET_FPS, "lucas_kanade": {}}
    if args.config is not None:
        if not args.config.is_file():
            raise SystemExit(f"--config {args.config}: no such file")
        loaded = yaml.safe_load(args.config.read_text()) or {}
        if not isinstance(loaded, dict):
            raise SystemExit(f"--config {args.config}: expected a mapping at the top level")
        unknown = set(loaded) - set(settings)
        if unknown:
            raise SystemExit(f"--config {args.config}: unknown keys {sorted(unknown)}; known: {sorted(settings)}")
        settings.update(loaded)
    for key in ("tracker", "horizon", "target_fps"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    where = f"--config {args.config}" if args.config is not None else "settings"
    fps, horizon = settings["target_fps"], settings["horizon"]
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps < math.inf:
        raise SystemExit(f"{where}: target_fps = {fps!r}: must be a positive finite number (Hz)")
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 2:
        raise SystemExit(f"{where}: horizon = {horizon!r}: must be an integer >= 2 (steps per track)")
    if settings["tracker"] not in ("lucas_kanade", "cotracker", "ground_truth"):
        raise SystemExit(f"{where}: tracker = {settings['tracker']!r}: must be lucas_kanade, cotracker or "
                         f"ground_truth")
    if not isinstance(settings["lucas_kanade"], dict):
        raise SystemExit(f"{where}: lucas_kanade = {settings['lucas_kanade']!r}: must be a mapping")
    return settings


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    settings = load_settings(args)
    cv2.setNumThreads(args.threads)
    shard = args.shard if args.shard is not None else int(os.environ.get("RANK", 0))
    num_shards = args.num_shards if args.num_shards is not None else int(os.environ.get("WORLD_SIZE", 1))
    if not args.store.is_dir():
        print(f"error: episode store {args.store} is not a directory", file=sys.stderr)
        return 2
    if settings["tracker"] == "cotracker":
        if args.cotracker_checkpoint is None:
            print("error: --tracker cotracker needs --cotracker-checkpoint PATH", file=sys.stderr)
            return 2
        tracker = make_tracker("cotracker", checkpoint=str(args.cotracker_checkpoint))
    elif settings["tracker"] == "ground_truth":
        tracker = None
    else:
        tracker = make_tracker("lucas_kanade", **settings["lucas_kanade"])
    progress = lambda it: tqdm(it, desc=f"tracks shard {shard}/{num_shards}", unit="episode")  # noqa: E731
    if tracker is None:
        from amplify_core.workcell.ground_truth import preprocess_store_ground_truth

        report = preprocess_store_ground_truth(args.store, views=args.views, overwrite=args.overwrite,
                                               progress=progress, shard=shard, num_shards=num_shards)
    else:
        report = preprocess_store(
            args.store, tracker, views=args.views, shard=shard, num_shards=num_shards,
            overwrite=args.overwrite, horizon=int(settings["horizon"]), target_fps=float(settings["target_fps"]),
            progress=progress,
        )
    print(report.summary())
    report_path = args.report or args.store / f"tracks_report.shard{shard}.json"
    report_path.write_text(json.dumps(
        {"done": report.done, "already_done": report.skipped, "failed": report.failed, "settings": settings,
         "shard": shard, "num_shards": num_shards}, indent=2))
    print(f"report: {report_path}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
