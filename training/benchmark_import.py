"""amplify-benchmark-import: video import speed per CPU core, beside the tracker's on the frames it produces.

Prints, in one run on one core (so the ratio is not hurt by a noisy machine):
  * import: source frames decoded per second (PyAV, one decoder thread) and episode frames written per second
    (resampled to --fps, fitted to --size, stored), for an H.264 video of --source-size at 30 fps,
  * tracker: frames per second of the Lucas-Kanade track pipeline (amplify_core.tracking) on the imported episode,
  * the ratio import / tracker per episode frame. Target: > 1 (import is never the bottleneck of preprocessing).

Example::

    amplify-benchmark-import                               # 640x480 source, 10 s, -> 128x128 at 20 fps
    amplify-benchmark-import --source-size 1280x720 --seconds 5 --codec libvpx-vp9
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from amplify_core.episodes import EpisodeStream, read_episode
from amplify_core.samples import MovingSquare
from amplify_core.tracking import LucasKanadeTracker
from training.cli_common import add_cpu, pin_cpu
from training.importing import parse_size
from training.video_frames import probe_video, resampled_frames


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="amplify-benchmark-import", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source-size", type=parse_size, default=(480, 640), metavar="WxH",
                   help="size of the encoded test video (default 640x480)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the test video at 30 fps (default 10)")
    p.add_argument("--codec", default="libx264", help="encoder of the test video (default libx264; e.g. libvpx-vp9)")
    p.add_argument("--size", type=parse_size, default=(128, 128), metavar="N|WxH",
                   help="episode frame size (default 128)")
    p.add_argument("--fps", type=float, default=20.0, help="episode frame rate (default 20)")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each is printed (default 2)")
    add_cpu(p)
    return p


def make_video(path: Path, height: int, width: int, frames: int, codec: str, fps: int = 30) -> None:
    """A textured square moving over a textured background (rendered at 160 px, scaled up), encoded with PyAV."""
    import av

    side = 160
    scene = MovingSquare(size=side, num_frames=frames, velocity=(side / frames / 2, side / frames / 4),
                         angular_velocity=0.3, half_side=side / 8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for k in range(frames):
            rgb = cv2.resize(scene.render(k), (width, height), interpolation=cv2.INTER_LINEAR)
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def import_once(video: Path, out: Path, size: tuple[int, int], fps: float) -> tuple[float, int]:
    """CPU seconds and episode frames of one import of ``video`` (probe, decode, resample, fit, write)."""
    out.unlink(missing_ok=True)
    t0 = time.process_time()
    info = probe_video(video)
    with EpisodeStream(out, ["front"], *size, "benchmark", "human", fps) as stream:
        for frame in resampled_frames(video, fps, *size, threads=1, max_frames=info.resampled_count(fps)):
            stream.append({"front": frame})
        stream.finish()
    return time.process_time() - t0, stream.num_frames


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    pinned = pin_cpu(args.cpu)
    cv2.setNumThreads(1)
    h, w = args.source_size
    source_frames = max(2, int(round(args.seconds * 30)))
    with tempfile.TemporaryDirectory(prefix="amplify_import_bench_") as tmp:
        tmp = Path(tmp)
        video = tmp / "source.mp4"
        make_video(video, h, w, source_frames, args.codec)
        tracker = LucasKanadeTracker()
        imports, tracks = [], []
        for _ in range(args.rounds):
            cpu, n = import_once(video, tmp / "episode.h5", args.size, args.fps)
            imports.append(cpu)
            frames = read_episode(tmp / "episode.h5").frames["front"]
            t0 = time.process_time()
            tracker.track(frames)
            tracks.append(time.process_time() - t0)
    imp, trk = min(imports), min(tracks)
    print(f"source: {source_frames} frames of {w}x{h} at 30 fps ({args.codec}); episode: {n} frames of "
          f"{args.size[1]}x{args.size[0]} at {args.fps:g} fps; {pinned}; best of {args.rounds} rounds, CPU time")
    print(f"import  : {source_frames / imp:8.1f} source frames/s per core, {n / imp:8.1f} episode frames/s per core")
    print(f"tracker : {n / trk:8.1f} episode frames/s per core (Lucas-Kanade, 20x20 grid, horizon 16)")
    ratio = trk / imp
    print(f"ratio   : import is {ratio:.1f}x the tracker's speed per episode frame "
          f"(target > 1: {'MET' if ratio > 1 else 'NOT MET'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
