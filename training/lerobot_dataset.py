"""LeRobotDataset v3.0 on disk: read and write the folder layout with pyarrow and PyAV (no lerobot, no pandas).

Layout (``CODEBASE_VERSION`` v3.0)::

    meta/info.json                                   fps, features (dtype, shape, names), totals, path templates
    meta/stats.json                                  {feature: {min, max, mean, std, count, q01 .. q99}}
    meta/tasks.parquet                               task_index int64 + task string (the pandas index)
    meta/episodes/chunk-000/file-000.parquet         one row per episode: length, where its rows and videos are
    data/chunk-000/file-000.parquet                  one row per frame: every non-video feature
    videos/<video_key>/chunk-000/file-000.mp4        one stream per camera, episodes back to back

Readers find the parquet files by ``*/*.parquet`` under ``data/`` and ``meta/episodes/``, sorted by path, so the
files' order is the order of the global frame ``index`` and of ``episode_index``. A feature of shape [1] is a scalar
column, a vector of shape [D] a list column of D values; a ``video`` feature has shape [H, W, 3] and no column: frame
k of an episode is the frame of its mp4 shown at ``from_timestamp + k / fps``. An ``image`` feature keeps encoded
PNG/JPEG bytes in the data parquet.

Reading here is per episode and streamed: ``episode_table`` reads only the episode's rows of its data file and checks
them against info.json (``data_problems``), and ``episode_video_frames`` seeks to the episode in its mp4 and decodes
up to its last frame, picking for every frame time the decoded frame with the nearest presentation time (within
``TIMESTAMP_TOLERANCE_FRAMES`` of a frame interval: a missing or shorter video is an error, not a repeated frame).

Writing: ``RollingParquet`` and ``VideoFiles`` append episodes to the current file and start the next one when it
would pass the size limit (an episode is never split), ``write_info``/``write_tasks``/``write_stats``/
``episodes_tables`` write the metadata. Videos are H.264 (libx264, yuv420p) at a constant frame rate: frame k of a file
at pts k / fps, a key frame every ``GOP`` frames so that seeking into an episode decodes at most ``GOP`` frames.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from training.video_frames import VideoError, open_video

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000  # files per chunk folder
DATA_FILES_SIZE_MB = 100
VIDEO_FILES_SIZE_MB = 200
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"

STATE_KEY = "observation.state"
ACTION_KEY = "action"
IMAGES_PREFIX = "observation.images."
# the columns LeRobot adds to every dataset (shape [1]: scalar columns)
DEFAULT_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
CAMERA_DTYPES = ("video", "image")
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
STAT_NAMES = ("min", "max", "mean", "std", "count", *QUANTILES)

# video encoding (export)
VCODEC = "libx264"
VCODEC_NAME = "h264"  # the stream's canonical codec name, as info.json's video.codec records it
PIX_FMT = "yuv420p"
GOP = 2  # LeRobot's default: a key frame every 2 frames, cheap random access
PRESET = "medium"
# decoding (import): a frame time needs a decoded frame this close (in frame intervals). LeRobot's own reader allows
# 1e-4 s, which a file with a coarse time base (e.g. 1 ms at 30 fps) cannot meet; 0.4 interval still rejects a
# dropped frame or a video that ends early (the nearest frame would then be a whole interval away).
TIMESTAMP_TOLERANCE_FRAMES = 0.4

_PANDAS_VERSION = "2.2.3"  # what the hand-built pandas metadata says wrote it (pandas 2.x layout)
_MB = 1024 * 1024


class LeRobotError(ValueError):
    """A LeRobot dataset (or one episode of it) that cannot be used; the message names the file and the rule."""


# ---------------------------------------------------------------------------------------------------------------------
# paths


def chunk_file(position: int, chunks_size: int = CHUNKS_SIZE) -> tuple[int, int]:
    """(chunk_index, file_index) of the ``position``-th file of a sequence (file 0..chunks_size-1, then next chunk)."""
    return divmod(int(position), int(chunks_size))


def next_chunk_file(chunk_index: int, file_index: int, chunks_size: int = CHUNKS_SIZE) -> tuple[int, int]:
    """The file after (chunk_index, file_index)."""
    if file_index >= chunks_size - 1:
        return chunk_index + 1, 0
    return chunk_index, file_index + 1


# ---------------------------------------------------------------------------------------------------------------------
# reading


@dataclass
class Info:
    """meta/info.json of a dataset, checked (``read_info``)."""

    root: Path
    raw: dict

    @property
    def path(self) -> Path:
        return self.root / INFO_PATH

    @property
    def fps(self) -> float:
        return float(self.raw["fps"])

    @property
    def features(self) -> dict[str, dict]:
        return self.raw["features"]

    @property
    def camera_keys(self) -> list[str]:
        """Video and image features, in info.json order."""
        return [k for k, f in self.features.items() if f["dtype"] in CAMERA_DTYPES]

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f["dtype"] == "video"]

    @property
    def column_keys(self) -> list[str]:
        """Features stored as data parquet columns (all but video)."""
        return [k for k, f in self.features.items() if f["dtype"] != "video"]

    @property
    def data_path(self) -> str:
        return self.raw.get("data_path") or DATA_PATH

    @property
    def video_path(self) -> str:
        return self.raw.get("video_path") or VIDEO_PATH

    def data_file(self, chunk_index: int, file_index: int) -> Path:
        return self.root / self.data_path.format(chunk_index=int(chunk_index), file_index=int(file_index))

    def video_file(self, video_key: str, chunk_index: int, file_index: int) -> Path:
        return self.root / self.video_path.format(video_key=video_key, chunk_index=int(chunk_index),
                                                  file_index=int(file_index))

    def image_size(self, key: str) -> tuple[int, int]:
        """(height, width) of a camera feature: shape [H, W, C], or [C, H, W] when names say channels first."""
        feature = self.features[key]
        shape, names = list(feature["shape"]), feature.get("names")
        if isinstance(names, list) and names and str(names[0]).lower() in ("channel", "channels"):
            return int(shape[1]), int(shape[2])
        return int(shape[0]), int(shape[1])

    def vector_length(self, key: str) -> int:
        return int(self.features[key]["shape"][0])


def _shape_ok(shape) -> bool:
    return isinstance(shape, list) and len(shape) >= 1 and all(isinstance(s, int) and s > 0 for s in shape)


def read_info(root: str | os.PathLike) -> Info:
    """meta/info.json of the dataset at ``root``; LeRobotError (one line: file, key, value, rule) if it is missing,
    not v3 or malformed."""
    root = Path(root)
    path = root / INFO_PATH
    if not path.is_file():
        raise LeRobotError(f"{path}: no such file; {root} is not a LeRobot dataset folder")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise LeRobotError(f"{path}: unreadable ({exc})") from None
    except json.JSONDecodeError as exc:
        raise LeRobotError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(raw, dict):
        raise LeRobotError(f"{path}: must be a JSON object")
    version = raw.get("codebase_version")
    m = re.fullmatch(r"v(\d+)(\.\d+)*", str(version))
    if version is None:
        raise LeRobotError(f"{path}: no 'codebase_version'; this reader reads LeRobotDataset {CODEBASE_VERSION}")
    if m is None or int(m.group(1)) != 3:
        raise LeRobotError(f"{path}: codebase_version {version!r} is not v3; this reader reads LeRobotDataset "
                           f"{CODEBASE_VERSION} (convert older datasets with LeRobot's convert_dataset_v21_to_v30)")
    fps = raw.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise LeRobotError(f"{path}: 'fps' is {fps!r}; it must be a positive number")
    features = raw.get("features")
    if not isinstance(features, dict) or not features:
        raise LeRobotError(f"{path}: 'features' must be a non-empty object of {{name: {{dtype, shape, names}}}}")
    for key, feature in features.items():
        if not isinstance(feature, dict) or not isinstance(feature.get("dtype"), str):
            raise LeRobotError(f"{path}: feature {key!r} needs a string 'dtype'")
        if not _shape_ok(feature.get("shape")):
            raise LeRobotError(f"{path}: feature {key!r} has shape {feature.get('shape')!r}; it must be a list of "
                               "positive integers")
        if feature["dtype"] in CAMERA_DTYPES and len(feature["shape"]) != 3:
            raise LeRobotError(f"{path}: {feature['dtype']} feature {key!r} has shape {feature['shape']}; it must "
                               "be [height, width, channels]")
    for key in DEFAULT_FEATURES:
        if key not in features:
            raise LeRobotError(f"{path}: no feature {key!r} (every LeRobot dataset has {list(DEFAULT_FEATURES)})")
    return Info(root, raw)


def read_tasks(root: str | os.PathLike) -> dict[int, str]:
    """task_index -> task text from meta/tasks.parquet. The text is the ``task`` column (the pandas index LeRobot
    writes), or the dataset's one unnamed pandas index column (``__index_level_0__`` in converted datasets)."""
    path = Path(root) / TASKS_PATH
    if not path.is_file():
        raise LeRobotError(f"{path}: no such file (every LeRobot v3 dataset has its task texts there)")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise LeRobotError(f"{path}: not a readable parquet file ({exc})") from None
    names = table.column_names
    text = "task" if "task" in names else None
    if text is None:
        index_columns = (table.schema.pandas_metadata or {}).get("index_columns", [])
        text = next((c for c in index_columns if isinstance(c, str) and c in names), None)
    if text is None and "__index_level_0__" in names:
        text = "__index_level_0__"
    if text is None or "task_index" not in names:
        raise LeRobotError(f"{path}: needs a 'task_index' column and the task text as column 'task' (the pandas "
                           f"index); it has the columns {names}")
    if not pa.types.is_string(table.schema.field(text).type) and not pa.types.is_large_string(
            table.schema.field(text).type):
        raise LeRobotError(f"{path}: column {text!r} is {table.schema.field(text).type}, expected string")
    tasks: dict[int, str] = {}
    for index, task in zip(table.column("task_index").to_pylist(), table.column(text).to_pylist()):
        if index is None or task is None:
            raise LeRobotError(f"{path}: null task_index or task")
        if int(index) in tasks:
            raise LeRobotError(f"{path}: task_index {index} appears twice")
        tasks[int(index)] = str(task)
    return tasks


def episode_columns(info: Info) -> list[str]:
    """The episodes-parquet columns the importer needs."""
    cols = ["episode_index", "length", "data/chunk_index", "data/file_index"]
    for key in info.video_keys:
        cols += [f"videos/{key}/chunk_index", f"videos/{key}/file_index", f"videos/{key}/from_timestamp"]
    return cols


def read_episodes(info: Info) -> list[dict]:
    """One dict per episode (the meta/episodes rows without their stats/* columns), sorted by episode_index."""
    folder = info.root / EPISODES_DIR
    files = sorted(folder.glob("*/*.parquet"))
    if not files:
        raise LeRobotError(f"{folder}: no */*.parquet files (the per-episode metadata of a LeRobot v3 dataset)")
    rows: list[dict] = []
    needed = episode_columns(info)
    for path in files:
        try:
            names = pq.read_schema(path).names
            missing = [c for c in needed if c not in names]
            if missing:
                raise LeRobotError(f"{path}: missing column(s) {missing}")
            rows += pq.read_table(path, columns=[c for c in names if not c.startswith("stats/")]).to_pylist()
        except (OSError, pa.ArrowException) as exc:
            raise LeRobotError(f"{path}: not a readable parquet file ({exc})") from None
    seen = set()
    for row in rows:
        for c in needed:
            if row.get(c) is None:
                raise LeRobotError(f"{folder}: episode {row.get('episode_index')}: column {c!r} is null")
        if row["episode_index"] in seen:
            raise LeRobotError(f"{folder}: episode_index {row['episode_index']} appears twice")
        seen.add(row["episode_index"])
    return sorted(rows, key=lambda r: r["episode_index"])


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def data_problems(table: pa.Table, info: Info, length: int | None = None) -> list[str]:
    """What is wrong with ``table`` (one episode's rows of a data parquet, or a whole file) against info.json's
    features; empty when it matches: every non-video feature is a column and nothing else; shape [1] is a scalar
    (or a list of 1); shape [D] is a list of D numbers in every row; image features are {bytes, path} structs; no
    nulls; ``length`` rows with frame_index 0..length-1 in order."""
    problems = []
    names = set(table.column_names)
    expected = info.column_keys
    missing = [k for k in expected if k not in names]
    extra = sorted(names - set(expected))
    if missing:
        problems.append(f"missing column(s) {missing} declared in info.json features")
    if extra:
        problems.append(f"column(s) {extra} not declared in info.json features")
    for key in expected:
        if key not in names:
            continue
        feature, column = info.features[key], table.column(key)
        kind, shape = feature["dtype"], feature["shape"]
        if column.null_count:
            problems.append(f"column {key!r} has {column.null_count} null value(s)")
            continue
        if kind == "image":
            if not pa.types.is_struct(column.type) or "bytes" not in [f.name for f in column.type]:
                problems.append(f"image column {key!r} is {column.type}, expected struct<bytes, path>")
            continue
        if len(shape) > 1:
            continue  # n-d arrays: not used by this importer
        d = int(shape[0])
        if _is_list(column.type):
            lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
            bad = np.flatnonzero(lengths != d)
            if len(bad):
                problems.append(f"column {key!r}: row {int(bad[0])} has {int(lengths[bad[0]])} values, info.json "
                                f"shape is [{d}]" + (f" ({len(bad)} rows differ)" if len(bad) > 1 else ""))
            elif not (pa.types.is_integer(column.type.value_type) or pa.types.is_floating(column.type.value_type)):
                problems.append(f"column {key!r} holds {column.type.value_type}, expected numbers ({feature['dtype']})")
        elif d != 1:
            problems.append(f"column {key!r} is a scalar {column.type}, info.json shape is [{d}]")
        elif not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
                  or pa.types.is_boolean(column.type)):
            problems.append(f"column {key!r} is {column.type}, expected a number ({feature['dtype']})")
    if length is not None and table.num_rows != length:
        problems.append(f"{table.num_rows} rows, but the episode's length is {length} (meta/episodes)")
    elif length is not None and "frame_index" in names and not problems:
        frame_index = scalar_column(table, "frame_index")
        if not np.array_equal(frame_index, np.arange(len(frame_index))):
            problems.append("frame_index is not 0, 1, .., length-1 in row order")
    return problems


def episode_table(info: Info, episode: Mapping) -> pa.Table:
    """The data rows of ``episode`` (a read_episodes row), checked; LeRobotError with the reason otherwise."""
    index, length = int(episode["episode_index"]), int(episode["length"])
    path = info.data_file(episode["data/chunk_index"], episode["data/file_index"])
    if not path.is_file():
        raise LeRobotError(f"{path}: no such file (data of episode {index})")
    try:
        schema = pq.read_schema(path)
        if "episode_index" not in schema.names:
            raise LeRobotError(f"{path}: no column 'episode_index'; "
                               + "; ".join(data_problems(schema.empty_table(), info)))
        table = pq.read_table(path, filters=[("episode_index", "==", index)])
    except (OSError, pa.ArrowException) as exc:
        raise LeRobotError(f"{path}: not a readable parquet file ({exc})") from None
    problems = data_problems(table, info, length)
    if problems:
        raise LeRobotError(f"{path} episode {index}: does not match {INFO_PATH}: {'; '.join(problems)}")
    return table


def scalar_column(table: pa.Table, key: str) -> np.ndarray:
    column = table.column(key).combine_chunks()
    if _is_list(column.type):
        column = pc.list_flatten(column)
    return column.to_numpy(zero_copy_only=False)


def vector_column(table: pa.Table, key: str, dtype=np.float32) -> np.ndarray:
    """A list column as (rows, D) ``dtype`` (float32 values come out bit for bit)."""
    column = table.column(key).combine_chunks()
    values = pc.list_flatten(column).to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype).reshape(len(column), -1)


def feature_names(feature: Mapping, prefix: str) -> list[str]:
    """The feature's names when they are D strings (or a dict holding one such list), else prefix_0 .. prefix_{D-1}."""
    d = int(feature["shape"][0])
    names = feature.get("names")
    if isinstance(names, dict) and len(names) == 1:
        names = next(iter(names.values()))
    if isinstance(names, list) and len(names) == d and all(isinstance(n, str) and n for n in names):
        return list(names)
    return [f"{prefix}_{i}" for i in range(d)]


def image_frames(table: pa.Table, key: str, root: Path) -> Iterator[np.ndarray]:
    """RGB frames of an ``image`` feature (PNG/JPEG bytes, or a path relative to the dataset, per row)."""
    import cv2

    for k, cell in enumerate(table.column(key).to_pylist()):
        data = cell.get("bytes") if isinstance(cell, dict) else None
        where = f"{key} row {k}"
        if not data and isinstance(cell, dict) and cell.get("path"):
            file = Path(cell["path"])
            file = file if file.is_absolute() else root / file
            where = f"{key} row {k} ({file})"
            try:
                data = file.read_bytes()
            except OSError as exc:
                raise LeRobotError(f"{where}: image file unreadable ({exc})") from None
        if not data:
            raise LeRobotError(f"{where}: no image bytes")
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise LeRobotError(f"{where}: not a decodable PNG/JPEG image")
        yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def episode_video_frames(path: Path, from_timestamp: float, fps: float, num_frames: int,
                         threads: int = 1) -> Iterator[np.ndarray]:
    """RGB frames of one episode in a (possibly shared) mp4, streamed: frame k is the decoded frame whose
    presentation time is nearest to ``from_timestamp + k / fps``. LeRobotError when a frame time has no frame
    within ``TIMESTAMP_TOLERANCE_FRAMES`` intervals (the video is shorter than the episode, or has gaps)."""
    import av

    path = Path(path)
    tolerance = TIMESTAMP_TOLERANCE_FRAMES / fps
    try:
        container = open_video(path, threads)
    except VideoError as exc:
        raise LeRobotError(str(exc)) from None
    try:
        stream = container.streams.video[0]
        base = stream.time_base
        if from_timestamp > 0:  # to the key frame at or before the episode's first frame
            container.seek(max(0, int(math.floor((from_timestamp - tolerance) / base))), stream=stream,
                           backward=True, any_frame=False)
        k, held, held_t = 0, None, None

        def pick(target: float, ended: bool = False):
            if held is None or abs(held_t - target) > tolerance:
                if ended and held is not None and held_t < target:
                    raise LeRobotError(f"{path}: the video ends at {held_t:.3f} s, but episode frame {k} of "
                                       f"{num_frames} is at {target:.3f} s (episode from {from_timestamp:.3f} s at "
                                       f"{fps:g} fps): the video is shorter than the episode")
                near = "no frame" if held is None else f"the nearest frame is at {held_t:.4f} s"
                raise LeRobotError(f"{path}: no frame within {1000 * tolerance:.1f} ms of {target:.4f} s (episode "
                                   f"frame {k} of {num_frames}); {near}")
            return held.to_ndarray(format="rgb24")

        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = float(frame.pts * base)
                # the held frame is the nearest to every target at least as close to it as to this later frame
                while k < num_frames and held is not None and abs(from_timestamp + k / fps - held_t) <= abs(
                        t - (from_timestamp + k / fps)):
                    yield pick(from_timestamp + k / fps)
                    k += 1
                if k >= num_frames:
                    return
                held, held_t = frame, t
        except av.error.FFmpegError as exc:
            raise LeRobotError(f"{path}: decoding failed at episode frame {k} of {num_frames} ({exc})") from None
        while k < num_frames:  # the stream ended: the last frame is the nearest to what is left
            yield pick(from_timestamp + k / fps, ended=True)
            k += 1
    finally:
        container.close()


# ---------------------------------------------------------------------------------------------------------------------
# writing


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=4) + "\n")


def write_info(root: Path, info: dict) -> None:
    write_json(root / INFO_PATH, info)


def write_stats(root: Path, stats: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    write_json(root / STATS_PATH, {key: {name: np.asarray(v).tolist() for name, v in s.items()}
                                   for key, s in stats.items()})


def tasks_pandas_metadata() -> bytes:
    """The ``pandas`` schema metadata of a DataFrame with column task_index (int64) and an index named "task"
    (strings), as ``df.to_parquet`` writes it: with it, pandas reads the task text back as the index, which is what
    LeRobot's ``tasks.iloc[task_index].name`` looks up."""
    return json.dumps({
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object",
             "metadata": None},
        ],
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": _PANDAS_VERSION,
    }).encode("utf8")


def write_tasks(root: Path, tasks: Sequence[str]) -> None:
    """meta/tasks.parquet: row i is task_index i with task text ``tasks[i]``."""
    schema = pa.schema([("task_index", pa.int64()), ("task", pa.string())],
                       metadata={b"pandas": tasks_pandas_metadata()})
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()),
                      "task": pa.array(list(tasks), pa.string())}, schema=schema)
    path = root / TASKS_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def data_schema(vector_lengths: Mapping[str, int]) -> pa.Schema:
    """Data parquet columns: each vector feature as fixed_size_list<float32>[D], then the default scalar columns."""
    fields = [pa.field(key, pa.list_(pa.float32(), int(d))) for key, d in vector_lengths.items()]
    fields += [pa.field(key, pa.float32() if f["dtype"] == "float32" else pa.int64())
               for key, f in DEFAULT_FEATURES.items()]
    return pa.schema(fields)


def data_table(schema: pa.Schema, vectors: Mapping[str, np.ndarray], n: int, episode_index: int, first_index: int,
               task_index: int, fps: float) -> pa.Table:
    """One episode's ``n`` data rows: ``vectors`` (n, D) per vector feature; timestamp = frame_index / fps, index =
    first_index + frame_index."""
    frame_index = np.arange(n, dtype=np.int64)
    columns = {}
    for key, values in vectors.items():
        values = np.ascontiguousarray(values, np.float32)
        d = schema.field(key).type.list_size
        if values.shape != (n, d):
            raise ValueError(f"{key}: values of shape {values.shape}, expected ({n}, {d})")
        columns[key] = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), pa.float32()), d)
    columns["timestamp"] = pa.array((frame_index / fps).astype(np.float32), pa.float32())
    columns["frame_index"] = pa.array(frame_index, pa.int64())
    columns["episode_index"] = pa.array(np.full(n, episode_index, np.int64), pa.int64())
    columns["index"] = pa.array(first_index + frame_index, pa.int64())
    columns["task_index"] = pa.array(np.full(n, task_index, np.int64), pa.int64())
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


class RollingParquet:
    """Tables appended to ``template`` files (one row group each), the next file started when the current one would
    reach ``limit_mb``: the sorted file names follow the order of the rows."""

    def __init__(self, root: Path, template: str, schema: pa.Schema, limit_mb: float,
                 chunks_size: int = CHUNKS_SIZE):
        self.root, self.template, self.schema = root, template, schema
        self.limit, self.chunks_size = limit_mb * _MB, chunks_size
        self.chunk_index, self.file_index = 0, 0
        self._writer: pq.ParquetWriter | None = None
        self._bytes = 0

    def location(self, nbytes: int) -> tuple[int, int]:
        """(chunk_index, file_index) the next table of about ``nbytes`` goes to (starts a new file if needed)."""
        if self._writer is not None and self._bytes + nbytes >= self.limit:
            self._writer.close()
            self._writer, self._bytes = None, 0
            self.chunk_index, self.file_index = next_chunk_file(self.chunk_index, self.file_index, self.chunks_size)
        return self.chunk_index, self.file_index

    def write(self, table: pa.Table) -> tuple[int, int]:
        where = self.location(table.nbytes)
        if self._writer is None:
            path = self.root / self.template.format(chunk_index=self.chunk_index, file_index=self.file_index)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(path, self.schema, compression="snappy")
        self._writer.write_table(table.cast(self.schema))
        self._bytes += table.nbytes
        return where

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class VideoFiles:
    """The mp4 files of one camera: episodes encoded back to back into one constant-rate stream (frame k of a file at
    pts k / fps), the next file started when the current one would reach ``limit_mb``."""

    def __init__(self, root: Path, template: str, video_key: str, height: int, width: int, fps: int, crf: int,
                 limit_mb: float = VIDEO_FILES_SIZE_MB, chunks_size: int = CHUNKS_SIZE):
        if height % 2 or width % 2:
            raise ValueError(f"{video_key}: {width}x{height} frames; {VCODEC} {PIX_FMT} needs even sides")
        self.root, self.template, self.key = root, template, video_key
        self.height, self.width, self.fps, self.crf = int(height), int(width), int(fps), int(crf)
        self.limit, self.chunks_size = limit_mb * _MB, chunks_size
        self.chunk_index, self.file_index = 0, 0
        self._container = self._stream = None
        self._bytes = 0
        self._frames = 0  # frames in the current file
        self._last_episode_bytes = 0

    def _open(self) -> None:
        import av

        path = self.root / self.template.format(video_key=self.key, chunk_index=self.chunk_index,
                                                file_index=self.file_index)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(path), "w", options={"movflags": "faststart"})
        stream = self._container.add_stream(VCODEC, rate=self.fps)
        stream.width, stream.height, stream.pix_fmt = self.width, self.height, PIX_FMT
        stream.codec_context.time_base = Fraction(1, self.fps)
        # no B-frames: presentation order = decode order, pts k/fps from frame 0 with no edit-list shift
        stream.options = {"crf": str(self.crf), "g": str(GOP), "bf": "0", "preset": PRESET}
        self._stream, self._bytes, self._frames = stream, 0, 0

    def _mux(self, packets) -> None:
        for packet in packets:
            self._bytes += packet.size
            self._container.mux(packet)

    def add_episode(self, frames: Iterable[np.ndarray]) -> tuple[int, int, float, float, int]:
        """Encode one episode's RGB frames; (chunk_index, file_index, from_timestamp, to_timestamp, num_frames)."""
        import av

        if self._container is not None and self._bytes + self._last_episode_bytes >= self.limit:
            self.close()
            self.chunk_index, self.file_index = next_chunk_file(self.chunk_index, self.file_index, self.chunks_size)
        if self._container is None:
            self._open()
        start, before = self._frames, self._bytes
        for rgb in frames:
            if rgb.shape != (self.height, self.width, 3):
                raise ValueError(f"{self.key}: frame of shape {rgb.shape}, expected ({self.height}, {self.width}, 3)")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts, frame.time_base = self._frames, Fraction(1, self.fps)
            self._mux(self._stream.encode(frame))
            self._frames += 1
        self._last_episode_bytes = self._bytes - before
        return (self.chunk_index, self.file_index, start / self.fps, self._frames / self.fps, self._frames - start)

    def close(self) -> None:
        if self._container is not None:
            self._mux(self._stream.encode(None))
            self._container.close()
            self._container = self._stream = None

    def discard(self) -> None:
        """Close without flushing (after an error; the folder is thrown away)."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - the output is discarded anyway
                pass
            self._container = self._stream = None


# ---------------------------------------------------------------------------------------------------------------------
# statistics


def vector_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """min, max, mean, std, count and the QUANTILES of (rows, D) values, per dimension."""
    x = np.asarray(values, np.float64).reshape(len(values), -1)
    out = {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0),
           "count": np.array([len(x)], np.int64)}
    for name, q in QUANTILES.items():
        out[name] = np.quantile(x, q, axis=0)
    return out


def image_stats(pixels: np.ndarray, num_frames: int) -> dict[str, np.ndarray]:
    """Per-channel stats of (P, 3) uint8 pixel samples, in [0, 1], shaped [3, 1, 1] like LeRobot's image stats;
    count = frames sampled."""
    stats = vector_stats(np.asarray(pixels, np.float64) / 255.0)
    return {name: (np.array([num_frames], np.int64) if name == "count" else v.reshape(3, 1, 1))
            for name, v in stats.items()}


def aggregate_stats(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stats of several episodes from theirs (as LeRobot aggregates them): min of mins, max of maxes, count-weighted
    mean, pooled std, count-weighted quantiles (an approximation)."""
    counts = np.array([float(p["count"][0]) for p in parts])
    w = counts / counts.sum()
    shape = (-1,) + (1,) * (np.ndim(parts[0]["mean"]))
    ww = w.reshape(shape)
    means = np.stack([np.asarray(p["mean"], np.float64) for p in parts])
    mean = (ww * means).sum(0)
    var = (ww * (np.stack([np.asarray(p["std"], np.float64) for p in parts]) ** 2 + (means - mean) ** 2)).sum(0)
    out = {"min": np.min([p["min"] for p in parts], 0), "max": np.max([p["max"] for p in parts], 0), "mean": mean,
           "std": np.sqrt(var), "count": np.array([int(counts.sum())], np.int64)}
    for name in QUANTILES:
        out[name] = (ww * np.stack([np.asarray(p[name], np.float64) for p in parts])).sum(0)
    return out


def _stats_type(key: str, stat: str, features: Mapping[str, dict]) -> pa.DataType:
    if stat == "count":
        return pa.list_(pa.int64())
    if features[key]["dtype"] in CAMERA_DTYPES:
        return pa.list_(pa.list_(pa.list_(pa.float64())))
    return pa.list_(pa.float64())


def episodes_tables(rows: Sequence[dict], features: Mapping[str, dict], limit_mb: float = DATA_FILES_SIZE_MB,
                    chunks_size: int = CHUNKS_SIZE) -> list[tuple[tuple[int, int], pa.Table]]:
    """The meta/episodes parquet tables for ``rows`` (one dict per episode, in order: episode_index, tasks, length,
    data/*, dataset_*_index, videos/<key>/*, and ``stats`` {feature: {stat: array}}), split into files of about
    ``limit_mb``; each row records its own file in meta/episodes/chunk_index and file_index."""
    video_keys = [k for k, f in features.items() if f["dtype"] == "video"]
    stat_keys = [k for k in features if k in rows[0]["stats"]] if rows else []
    fields = [("episode_index", pa.int64()), ("tasks", pa.list_(pa.string())), ("length", pa.int64()),
              ("data/chunk_index", pa.int64()), ("data/file_index", pa.int64()),
              ("dataset_from_index", pa.int64()), ("dataset_to_index", pa.int64())]
    for key in video_keys:
        fields += [(f"videos/{key}/chunk_index", pa.int64()), (f"videos/{key}/file_index", pa.int64()),
                   (f"videos/{key}/from_timestamp", pa.float64()), (f"videos/{key}/to_timestamp", pa.float64())]
    fields += [(f"stats/{key}/{stat}", _stats_type(key, stat, features)) for key in stat_keys for stat in STAT_NAMES]
    fields += [("meta/episodes/chunk_index", pa.int64()), ("meta/episodes/file_index", pa.int64())]
    schema = pa.schema(fields)

    def flat(row: dict) -> dict:
        out = {name: row[name] for name, _ in fields[:7]}
        for key in video_keys:
            for part in ("chunk_index", "file_index", "from_timestamp", "to_timestamp"):
                out[f"videos/{key}/{part}"] = row[f"videos/{key}/{part}"]
        for key in stat_keys:
            for stat in STAT_NAMES:
                out[f"stats/{key}/{stat}"] = np.asarray(row["stats"][key][stat]).tolist()
        return out

    flats = [flat(r) for r in rows]
    if not flats:
        return []
    probe = pa.Table.from_pylist([{**flats[0], "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}],
                                 schema=schema)
    per_file = max(1, int(limit_mb * _MB // max(1, probe.nbytes)))
    out = []
    for position, start in enumerate(range(0, len(flats), per_file)):
        chunk_index, file_index = chunk_file(position, chunks_size)
        part = [{**f, "meta/episodes/chunk_index": chunk_index, "meta/episodes/file_index": file_index}
                for f in flats[start:start + per_file]]
        out.append(((chunk_index, file_index), pa.Table.from_pylist(part, schema=schema)))
    return out


def write_episodes(root: Path, rows: Sequence[dict], features: Mapping[str, dict],
                   limit_mb: float = DATA_FILES_SIZE_MB) -> None:
    for (chunk_index, file_index), table in episodes_tables(rows, features, limit_mb):
        path = root / EPISODES_PATH.format(chunk_index=chunk_index, file_index=file_index)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, compression="snappy")
