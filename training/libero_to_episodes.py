"""amplify-libero-to-episodes: LIBERO HDF5 demonstration files (official datasets or amplify-libero-generate's)
-> the project's episode store, one episode file per demonstration.

Images are flipped upright, the robot state is ``joint_states`` + ``gripper_states`` (9 values), the actions
LIBERO's 7-d OSC deltas, 20 Hz. A file that cannot be read or is not LIBERO v1 is skipped with its reason and
the others are converted; an episode that exists in OUT is left as it is (re-running resumes). Then run
``amplify-preprocess OUT`` for the tracks.

Example::

    amplify-libero-to-episodes ~/LIBERO/datasets/libero_object --out data/episodes/libero_object
    amplify-libero-to-episodes data/libero_object/*_demo.hdf5 --out data/episodes/lo --videos-only
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="amplify-libero-to-episodes", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", type=Path, help="LIBERO .hdf5 files or folders holding them")
    p.add_argument("--out", type=Path, required=True, help="episode store folder")
    p.add_argument("--videos-only", action="store_true",
                   help="drop actions and robot state (action-free videos for the forward model)")
    return p


def find_files(inputs: list[Path]) -> list[Path]:
    files = []
    for item in inputs:
        files += sorted(item.glob("*.hdf5")) if item.is_dir() else [item]
    return files


def convert(files: list[Path], out: Path, videos_only: bool = False) -> dict:
    """Returns ``{"written": [...], "existing": [...], "skipped": {file: reason}}``."""
    from tqdm import tqdm

    from amplify_core.episodes import write_episode
    from amplify_core.libero.demo_files import LiberoDataError, read_demo_file

    report = {"written": [], "existing": [], "skipped": {}}
    out.mkdir(parents=True, exist_ok=True)
    for path in tqdm(files, desc="LIBERO files", unit="file"):
        try:
            episodes = read_demo_file(path)
        except LiberoDataError as exc:
            report["skipped"][str(path)] = str(exc)
            continue
        stem = path.stem.removesuffix("_demo")
        for i, episode in enumerate(episodes):
            target = out / f"{stem}_demo{i:03d}.h5"
            if target.exists():
                report["existing"].append(str(target))
                continue
            if videos_only:
                episode.state = episode.actions = None
                episode.state_names = episode.action_names = ()
            report["written"].append(str(write_episode(target, episode)))
    return report


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    missing = [str(p) for p in args.inputs if not p.exists()]
    if missing:
        print(f"error: no such file or folder: {missing}", file=sys.stderr)
        return 2
    files = find_files(args.inputs)
    if not files:
        print(f"error: no .hdf5 files in {[str(p) for p in args.inputs]}", file=sys.stderr)
        return 2
    report = convert(files, args.out, args.videos_only)
    print(f"{len(report['written'])} episodes written to {args.out}, {len(report['existing'])} already there, "
          f"{len(report['skipped'])} file(s) skipped")
    for path, reason in report["skipped"].items():
        print(f"  skipped {reason}")
    return 1 if report["skipped"] and not report["written"] and not report["existing"] else 0


if __name__ == "__main__":
    sys.exit(main())
