"""amplify-workcell-track-accuracy: Lucas-Kanade tracks vs the simulator's ground-truth tracks.

Example::

    amplify-workcell-generate data/workcell --episodes-per-task 2
    amplify-workcell-track-accuracy data/workcell                 # every episode, every view
    amplify-workcell-track-accuracy data/workcell --max-episodes 4 --views front

For each workcell episode (one written by amplify-workcell-generate, which keeps the simulator state),
tracks the 20x20 grid of every frame with ``compute_view_tracks`` and ``LucasKanadeTracker`` and
re-renders the episode for ground truth (``amplify_core.workcell.ground_truth``). Prints Delta_AUC, MSE
and pixel accuracy (``amplify_core.metrics``, 128 px label scale) over steps 1..15 of the points visible
in both, per view, overall ('all') and on the points that move by more than 1 px ('moving'), and the coverage:
the fraction of the ground truth's visible point-steps that the tracker keeps (a tracker that drops what it
cannot follow scores higher on what it keeps; the coverage says what that costs).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger("amplify-workcell-track-accuracy")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="amplify-workcell-track-accuracy",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("store", type=Path, help="directory of workcell episodes (*.h5 with a /sim group)")
    p.add_argument("--views", nargs="+", default=None, help="views to score (default: front side corner)")
    p.add_argument("--max-episodes", type=int, default=None, help="score only the first N episodes (sorted by name)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from amplify_core.episodes import EpisodeReader, list_episodes
    from amplify_core.metrics import track_metrics
    from amplify_core.preprocessing import compute_view_tracks
    from amplify_core.tracking import LucasKanadeTracker
    from amplify_core.tracks import moving_points
    from amplify_core.workcell.config import VIEWS
    from amplify_core.workcell.env import WorkcellEnv
    from amplify_core.workcell.episode_io import read_sim
    from amplify_core.workcell.ground_truth import ground_truth_view_tracks

    views = args.views or list(VIEWS)
    for view in views:
        if view not in VIEWS:
            raise SystemExit(f"--views: unknown view {view!r}; choose from {list(VIEWS)}")
    paths = list_episodes(args.store)[: args.max_episodes]
    if not paths:
        raise SystemExit(f"{args.store}: no episodes")
    tracker = LucasKanadeTracker()
    pred = {v: [] for v in views + ["moving"]}
    ref = {v: [] for v in views + ["moving"]}
    seen = {v: [0, 0] for v in views + ["moving"]}  # [ground-truth visible, tracker keeps too]
    for path in paths:
        sim = read_sim(path)
        with EpisodeReader(path) as episode, WorkcellEnv(sim.task, embodiment=sim.embodiment,
                                                         image_size=sim.image_size) as env:
            for view in views:
                lk = compute_view_tracks(episode.frames(view), episode.fps, tracker)
                truth = ground_truth_view_tracks(env, sim, view)  # steps past the video's end not visible
                gt, gt_visible = truth.tracks, truth.visible
                mask = gt_visible[:, 1:] & lk.visible[:, 1:]
                # points that really move (> 1 px at 128 px from where they started, amplify_core.tracks.
                # moving_points): the static table dominates the grid and is trivially tracked
                moved = np.broadcast_to(moving_points(gt, gt_visible)[:, None, :], mask.shape)
                pred[view].append(lk.tracks[:, 1:][mask])
                ref[view].append(gt[:, 1:][mask])
                pred["moving"].append(lk.tracks[:, 1:][mask & moved])
                ref["moving"].append(gt[:, 1:][mask & moved])
                for key, m in ((view, gt_visible[:, 1:]), ("moving", gt_visible[:, 1:] & moved)):
                    seen[key][0] += int(m.sum())
                    seen[key][1] += int((m & lk.visible[:, 1:]).sum())
        log.info("%s: scored", path.name)
    results = {}
    for view in views + ["all", "moving"]:
        p = np.concatenate([x for v in (views if view == "all" else [view]) for x in pred[v]])
        r = np.concatenate([x for v in (views if view == "all" else [view]) for x in ref[v]])
        if len(p) == 0:
            continue
        keys = views if view == "all" else [view]
        visible, kept = sum(seen[k][0] for k in keys), sum(seen[k][1] for k in keys)
        results[view] = {**track_metrics(p[:, None], r[:, None]), "points": int(len(p)),
                         "coverage": kept / visible if visible else float("nan")}
    print(f"{'view':8s} {'delta_auc':>9s} {'mse':>10s} {'pixel_acc':>9s} {'points':>9s} {'coverage':>8s}   "
          f"({len(paths)} episodes)")
    for view, m in results.items():
        print(f"{view:8s} {m['delta_auc']:9.4f} {m['mse']:10.6f} {m['pixel_accuracy']:9.4f} {m['points']:9d} "
              f"{m['coverage']:8.3f}")
    if args.json:
        args.json.write_text(json.dumps({"episodes": len(paths), "views": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
