"""Video files as episode frames: probe, stream-decode with PyAV, resample in time, fit to the store's size.

Nothing here holds a whole video: ``probe_video`` reads only packet timestamps (no decoding), and
``resampled_frames`` decodes one frame at a time and yields the frames of the output clock as it passes them.

Time: output frame k is the source frame shown at t_k = k / fps after the first frame (sample and hold: the latest
frame whose presentation time is <= t_k), for every t_k up to the source's last frame's presentation time. A 30 fps
clip of 90 frames (3.0 s) gives 60 frames at 20 fps; a 10 fps clip gives each frame twice. A constant-rate source
is required by default (``probe_video`` reports a variable frame rate); with ``allow_variable_fps`` the same rule
resamples it on its own timestamps.

Space (``fit``): ``crop`` (default) cuts the centre of the frame to the target aspect ratio and resizes with
INTER_AREA, so nothing is stretched and the border of a wide video is lost; ``pad`` keeps the whole frame, resized
to fit, with black bars (the models then see bars that robot cameras never show).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mkv", ".mov")
FITS = ("crop", "pad")
# a frame interval further than this from the median (relative, beyond one tick of the time base) marks the
# video as variable-rate; 25 % keeps 33/34 ms rounding of 30 fps in a 1 ms time base constant-rate
VFR_TOLERANCE = 0.25


class VideoError(ValueError):
    """A video file that cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int
    height: int
    codec: str
    num_frames: int  # packets with a timestamp (frames)
    first_s: float  # presentation time of the first frame
    last_s: float  # presentation time of the last frame
    fps: float  # frames per second from the median interval
    min_interval_s: float
    max_interval_s: float
    variable: bool  # intervals differ from the median by more than VFR_TOLERANCE

    @property
    def duration_s(self) -> float:
        return self.last_s - self.first_s

    def resampled_count(self, fps: float) -> int:
        """Frames ``resampled_frames`` yields at ``fps``."""
        return int(math.floor(self.duration_s * fps + 1e-6)) + 1


def open_video(path: str | os.PathLike, threads: int = 1):
    """A PyAV container of ``path`` whose first video stream decodes with ``threads`` threads (1: one core per
    import shard); VideoError naming the file when it is missing, empty, unreadable or has no video stream."""
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"{path}: not a readable video ({exc})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: no video stream")
    stream = container.streams.video[0]
    stream.thread_count = max(1, int(threads))
    stream.thread_type = "AUTO" if threads > 1 else "SLICE"
    return container


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Size, codec, frame count and frame timing of ``path`` from its packets (fast: nothing is decoded)."""
    import av

    path = Path(path)
    container = open_video(path)
    try:
        stream = container.streams.video[0]
        base = float(stream.time_base)
        try:
            pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None and p.size > 0)
        except av.error.FFmpegError as exc:
            raise VideoError(f"{path}: unreadable video data ({exc})") from None
        width, height, codec = stream.codec_context.width, stream.codec_context.height, stream.codec_context.name
    finally:
        container.close()
    if not pts:
        raise VideoError(f"{path}: the video stream has no frames")
    if not width or not height:
        raise VideoError(f"{path}: the video stream has no frame size")
    times = np.asarray(pts, np.float64) * base
    if len(times) > 1:
        intervals = np.diff(times)
        median = float(np.median(intervals))
        if median <= 0:
            raise VideoError(f"{path}: frames share timestamps (median frame interval 0)")
        off = np.abs(intervals - median) > VFR_TOLERANCE * median + 1.5 * base
        lo, hi, variable, fps = float(intervals.min()), float(intervals.max()), bool(off.any()), 1.0 / median
    else:
        lo = hi = 0.0
        variable = False
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
    return VideoInfo(path, int(width), int(height), codec, len(times), float(times[0]), float(times[-1]), fps, lo, hi,
                     variable)


def fit_frame(rgb: np.ndarray, height: int, width: int, fit: str = "crop") -> np.ndarray:
    """``rgb`` (H, W, 3) uint8 -> (height, width, 3): centre crop to the aspect ratio, or pad with black bars."""
    h, w = rgb.shape[:2]
    if (h, w) == (height, width):
        return rgb
    if fit == "crop":
        if w * height > h * width:  # wider than the target: cut the sides
            cw = max(1, round(h * width / height))
            x0 = (w - cw) // 2
            rgb = rgb[:, x0:x0 + cw]
        else:
            ch = max(1, round(w * height / width))
            y0 = (h - ch) // 2
            rgb = rgb[y0:y0 + ch]
        return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    if fit == "pad":
        scale = min(width / w, height / h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        out = np.zeros((height, width, 3), np.uint8)
        y0, x0 = (height - nh) // 2, (width - nw) // 2
        out[y0:y0 + nh, x0:x0 + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
        return out
    raise ValueError(f"fit must be one of {FITS}, got {fit!r}")


def resampled_frames(path: str | os.PathLike, fps: float, height: int, width: int, fit: str = "crop",
                     threads: int = 1, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Stream the frames of ``path`` at ``fps`` (sample and hold on presentation times, module docstring), each
    fitted to ``height`` x ``width``. ``threads``: decoder threads (1: one core per import shard)."""
    import av

    path = Path(path)
    if not fps > 0 or not math.isfinite(fps):
        raise ValueError(f"fps must be a positive number, got {fps}")
    container = open_video(path, threads)
    try:
        stream = container.streams.video[0]
        start = None
        held = None  # the latest decoded frame at or before the next output time (converted only when used)
        fitted = None  # held, converted and fitted (a frame shown at several output times is converted once)
        k = 0
        try:
            for frame, t in _timed_frames(container, stream):
                if start is None:
                    start = t
                # every output time before this frame's shows the frame held so far
                while held is not None and start + k / fps < t - 1e-9:
                    if fitted is None:
                        fitted = fit_frame(held.to_ndarray(format="rgb24"), height, width, fit)
                    yield fitted
                    k += 1
                    if max_frames is not None and k >= max_frames:
                        return
                held, fitted = frame, None
        except av.error.FFmpegError as exc:
            raise VideoError(f"{path}: decoding failed after {k} output frames ({exc})") from None
    finally:
        container.close()


def _timed_frames(container, stream):
    """(frame, presentation time in s) in decoding order, then (None, just after the last frame's time), so that
    the output time equal to the last frame's time is emitted by the same rule as every other."""
    base = float(stream.time_base)
    last = None
    for frame in container.decode(stream):
        if frame.pts is not None:
            last = frame.pts * base
            yield frame, last
    if last is not None:
        yield None, last + 2e-6
