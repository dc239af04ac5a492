"""What every import command shares: episode names, sharding, resume, the report of what was skipped and why.

An import writes one episode file per source item (a video, a group of views, a trajectory folder, a LeRobot
episode) into an episode store, never rewrites a file that is there (resume: the same command again imports only
what is missing), and records where each episode came from and with which settings as root attributes
(``import_source``, ``import_settings``), so a later run with other settings reports the difference instead of
calling the old file done. Sources that cannot be used are skipped with their reason; the exit status is 1 when
anything was skipped for a reason other than "already imported".
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import h5py

from amplify_core.atomic_files import atomic_output
from amplify_core.episodes import EPISODE_SUFFIX, EpisodeError

log = logging.getLogger(__name__)


class SourceError(ValueError):
    """One source item cannot be imported; the message is the reason (the report names the item)."""


@dataclass
class ImportReport:
    command: str
    settings: dict
    imported: dict[str, str] = field(default_factory=dict)  # episode file name -> source
    already: dict[str, str] = field(default_factory=dict)  # same settings, already in the store
    skipped: dict[str, str] = field(default_factory=dict)  # source -> reason
    frames: int = 0  # frames written

    def summary(self) -> str:
        lines = [f"imported {len(self.imported)} episodes ({self.frames} frames), already imported "
                 f"{len(self.already)}, skipped {len(self.skipped)}"]
        lines += [f"  SKIPPED {source}: {why}" for source, why in self.skipped.items()]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"command": self.command, "settings": self.settings, "imported": self.imported,
                "already_imported": self.already, "skipped": self.skipped, "frames": self.frames}

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(self.to_json(), indent=2))


def episode_name(source_id: str) -> str:
    """A file name for the episode of ``source_id`` (a relative path or id): separators become '__', anything
    outside [A-Za-z0-9._-] becomes '_'."""
    name = re.sub(r"[\\/]+", "__", source_id.strip("/\\"))
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return (name or "episode") + EPISODE_SUFFIX


def stored_settings(path: Path) -> tuple[str | None, dict | None]:
    """The ``import_source`` and ``import_settings`` of an episode file (None where it has none)."""
    try:
        with h5py.File(path, "r") as f:
            source = f.attrs.get("import_source")
            settings = f.attrs.get("import_settings")
    except OSError as exc:
        raise EpisodeError(f"{path}: not a readable HDF5 file ({exc})") from None
    return (None if source is None else str(source)), (None if settings is None else json.loads(settings))


def changed(old: dict | None, new: dict) -> list[str]:
    if old is None:
        return ["no import settings recorded"]
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def import_attrs(source: str, settings: dict) -> dict:
    return {"import_source": source, "import_settings": json.dumps(settings, sort_keys=True)}


def run_import(items: list, out: Path, report: ImportReport, name_of: Callable, source_of: Callable,
               write: Callable, overwrite: bool, progress: Callable[[Iterable], Iterable] = lambda x: x) -> None:
    """For each item: its episode exists with the same settings -> already; with other settings -> skipped with the
    difference; else ``write(item, path, attrs)`` -> number of frames written. A SourceError, EpisodeError or
    ValueError skips the item with its message; anything else is a bug: logged with its traceback, item skipped."""
    out.mkdir(parents=True, exist_ok=True)
    for item in progress(items):
        source = source_of(item)
        path = out / name_of(item)
        try:
            if path.exists() and not overwrite:
                old_source, old_settings = stored_settings(path)
                diff = changed(old_settings, report.settings)
                if old_source not in (None, source):
                    diff.insert(0, f"source {old_source!r} -> {source!r}")
                if diff:
                    raise SourceError(f"{path.name} exists, made from other settings ({'; '.join(diff)}); not "
                                      "rewritten (pass --overwrite to replace it, or use another --out)")
                report.already[path.name] = source
                continue
            report.frames += write(item, path, import_attrs(source, report.settings))
            report.imported[path.name] = source
        except (SourceError, EpisodeError, FileExistsError, ValueError) as exc:
            report.skipped[source] = str(exc)
            log.warning("skipped %s: %s", source, exc)
        except Exception as exc:  # a bug: say so, keep going with the rest
            report.skipped[source] = f"{type(exc).__name__}: {exc}"
            log.error("%s: unexpected error\n%s", source, traceback.format_exc())


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="episode store to write (created if missing)")
    p.add_argument("--shard", type=int, default=None, help="this worker's shard index (default: $RANK or 0)")
    p.add_argument("--num-shards", type=int, default=None, help="number of shards (default: $WORLD_SIZE or 1)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace episodes that exist (default: keep them; same settings = already imported)")
    p.add_argument("--report", type=Path, default=None,
                   help="JSON report (default: <out>/import_report.<command>.shard<I>.json)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_size(text: str) -> tuple[int, int]:
    """'128' -> (128, 128); '160x120' -> (height 120, width 160)."""
    try:
        if "x" in text:
            w, h = (int(v) for v in text.lower().split("x"))
        else:
            w = h = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not N or WIDTHxHEIGHT") from None
    if not (8 <= w <= 4096 and 8 <= h <= 4096) or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(f"{text}: sides must be even numbers of pixels in [8, 4096]")
    return h, w


def shard_args(args) -> tuple[int, int]:
    shard = args.shard if args.shard is not None else int(os.environ.get("RANK", 0))
    num = args.num_shards if args.num_shards is not None else int(os.environ.get("WORLD_SIZE", 1))
    if num < 1 or not 0 <= shard < num:
        raise SystemExit(f"--shard {shard} --num-shards {num}: the shard must be in [0, num_shards)")
    return shard, num


def finish(report: ImportReport, args, command: str, shard: int) -> int:
    path = args.report or args.out / f"import_report.{command}.shard{shard}.json"
    report.write(path)
    print(report.summary())
    print(f"report: {path}")
    return 1 if report.skipped else 0


def progress_bar(quiet: bool, desc: str):
    from tqdm import tqdm

    return lambda it: tqdm(it, desc=desc, unit="episode", disable=quiet)
