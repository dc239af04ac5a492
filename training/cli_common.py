"""Arguments shared by the training commands."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from pathlib import Path


def parser(prog: str, doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0], epilog=doc.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="tiny",
                   help="model/training preset (tiny, paper) or a YAML file like config/models/tiny.yaml "
                        "(default tiny)")
    p.add_argument("--run-dir", type=Path, required=True,
                   help="where checkpoints, TensorBoard logs and caches go; re-running resumes there")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="override the config's number of optimizer steps (a positive count)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse turns the ValueError into a one-line usage error)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive count")
    return value


def add_stores(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--store", type=Path, nargs="+", required=True,
                   help=f"episode store directories ({what}); tracks must be preprocessed")


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def add_cpu(p: argparse.ArgumentParser) -> None:
    """``--cpu``: the core a one-core benchmark pins itself to (its figures are per core)."""
    p.add_argument("--cpu", type=int, default=0,
                   help="pin this process to that CPU core so the figure is a one-core figure (default 0); "
                        "-1 = do not pin")


def pin_cpu(cpu: int) -> str:
    """Pin the process (and threads started later) to ``cpu``; returns a description for the printout."""
    if cpu < 0:
        return f"not pinned ({os.cpu_count()} cores)"
    if cpu not in os.sched_getaffinity(0):
        raise SystemExit(f"--cpu {cpu}: this process may only run on cores {sorted(os.sched_getaffinity(0))}")
    os.sched_setaffinity(0, {cpu})
    return f"pinned to core {cpu}"


def input_errors_as_one_line(prog: str):
    """Decorator for a command's ``main``: bad input (a config value, an episode store, a checkpoint, a missing
    file) ends it with one line on stderr and exit status 2; anything else is a bug and keeps its traceback."""
    from amplify_core.checkpoint import CheckpointError
    from amplify_core.configs import ConfigError
    from amplify_core.episodes import EpisodeError

    def wrap(main):
        @functools.wraps(main)
        def run(argv=None) -> int:
            try:
                return main(argv)
            except (ConfigError, EpisodeError, CheckpointError, FileNotFoundError) as exc:
                print(f"{prog}: {exc}", file=sys.stderr)
                return 2
        return run
    return wrap
