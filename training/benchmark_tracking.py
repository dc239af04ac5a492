"""amplify-benchmark-tracking: speed of the keypoint-track pipeline on one CPU core.

Prints, in one run on the same video (so that the ratio is not hurt by a noisy machine):
  * frames/s per view of the one-pass Lucas-Kanade tracker (every frame starts a 16-step window of a
    20x20 grid; all windows alive at a frame advance in one tracker call),
  * frames/s of the naive per-window loop (15 tracker calls per frame), and the ratio,
  * seconds to preprocess a 3-view, 300-frame episode end to end (read, track, label, write).
Targets (issue "Foundation"): >= 150 frames/s per view at 128x128; the 3x300 episode in <= 10 s.

Example::

    amplify-benchmark-tracking                 # defaults: 128 px, 120-frame video, 3 alternating rounds
    amplify-benchmark-tracking --size 224 --frames 60 --rounds 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from amplify_core.episodes import write_episode
from amplify_core.preprocessing import preprocess_episode
from amplify_core.samples import MovingSquare, sample_episode
from amplify_core.tracking import LucasKanadeTracker
from training.cli_common import add_cpu, pin_cpu


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="amplify-benchmark-tracking", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    p.add_argument("--frames", type=int, default=120, help="frames in the tracker-speed video (default 120)")
    p.add_argument("--rounds", type=int, default=3,
                   help="alternating rounds of one-pass and naive; the best of each is reported (default 3)")
    p.add_argument("--episode-frames", type=int, default=300,
                   help="frames per view of the end-to-end episode (default 300; 0 skips it)")
    p.add_argument("--threads", type=int, default=1, help="OpenCV threads (default 1 = one core)")
    add_cpu(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    pinned = pin_cpu(args.cpu)
    cv2.setNumThreads(args.threads)
    video = MovingSquare(size=args.size, num_frames=args.frames, velocity=(1.1, 0.6), angular_velocity=0.4).video()
    tracker = LucasKanadeTracker()
    one_pass, naive = [], []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        a = tracker.track(video)
        one_pass.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b = tracker.track_naive(video)
        naive.append(time.perf_counter() - t0)
    diff = float(np.abs(a.points - b.points).max())
    fps_one, fps_naive = args.frames / min(one_pass), args.frames / min(naive)
    print(f"video: {args.frames} frames of {args.size}x{args.size}, grid 20x20, horizon 16, "
          f"{args.threads} OpenCV thread(s), {pinned}, best of {args.rounds} rounds")
    print(f"one-pass tracker : {fps_one:8.1f} frames/s per view")
    print(f"per-window loop  : {fps_naive:8.1f} frames/s per view")
    print(f"ratio            : {fps_one / fps_naive:8.2f}x   (max track difference {diff:.2e} px)")
    print(f"target >= 150 frames/s per view: {'MET' if fps_one >= 150 else 'NOT MET'}")
    if args.episode_frames > 0:
        with tempfile.TemporaryDirectory() as tmp:
            path = write_episode(Path(tmp) / "episode.h5", sample_episode(args.episode_frames, args.size))
            t0 = time.perf_counter()
            preprocess_episode(path, tracker)
            dt = time.perf_counter() - t0
        print(f"end to end       : 3 views x {args.episode_frames} frames read+track+label+write in {dt:.2f} s "
              f"(target <= 10 s: {'MET' if dt <= 10 else 'NOT MET'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
