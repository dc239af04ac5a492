"""amplify-bags-to-episodes: convert a directory of ROS 2 bags (one bag per episode) into an episode store.

Example::

    amplify-bags-to-episodes data/bags data/episodes                 # every bag, settings of the bags
    amplify-bags-to-episodes data/bags data/episodes --task "put the red block in the bowl" --embodiment robot
    amplify-bags-to-episodes data/human_bags data/episodes --embodiment human --views front side
    amplify-bags-to-episodes data/bags data/episodes --action-source measured --image-size 128
    amplify-bags-to-episodes data/bags data/episodes --config config/bag_conversion.yaml

Each bag (a rosbag2 directory with metadata.yaml and an .mcap or .db3 file, a directory with one bare
.mcap/.db3, or a bare .mcap/.db3 file) becomes <out>/<bag name>.h5, resampled onto the control clock
(--fps, default 20 Hz). Task and embodiment come from episode.json in the bag directory, else from the
amplify.* custom_data of metadata.yaml, else (task) the last /task message, else --task / --embodiment.
Existing episode files are never replaced unless --overwrite. Bad bags are skipped with a reason and the
others converted; a table is printed and <out>/conversion_report.json written. Exit code 1 if any bag was
skipped because of an error (existing and failed episodes do not count), 2 for bad arguments.
Rules (alignment, metadata, what is skipped): docs/data_collection.md, section "Bags -> episodes".
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from training.bag_conversion import REPORT_NAME, BagError, SettingsError, convert_directory, load_settings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="amplify-bags-to-episodes",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bags", type=Path, help="directory of bags (one bag per episode), or a single bag directory")
    p.add_argument("out", type=Path, help="episode store directory to write <bag name>.h5 into (created if needed)")
    p.add_argument("--config", type=Path, default=None,
                   help="YAML file with conversion settings (see config/bag_conversion.yaml); flags win")
    p.add_argument("--views", nargs="+", default=None,
                   help="camera views to convert, names of topics.cameras (default: front side corner)")
    p.add_argument("--action-source", choices=["command", "measured"], default=None,
                   help="robot actions: the commanded TCP pose+gripper on /ur5/command (default) or the measured "
                        "TCP pose of the next tick on /ur5/tcp_pose")
    p.add_argument("--fps", type=float, default=None, help="control rate of the episodes (default 20)")
    p.add_argument("--image-size", type=int, default=None,
                   help="resize frames to N x N (default: keep the recorded size)")
    p.add_argument("--min-frames", type=int, default=None,
                   help="shortest episode kept, in control ticks (default 16: one track horizon)")
    p.add_argument("--task", default=None, help="task text for bags that do not carry one")
    p.add_argument("--embodiment", choices=["robot", "human"], default=None,
                   help="embodiment for bags that do not carry one")
    p.add_argument("--skip-failed", action=argparse.BooleanOptionalAction, default=True,
                   help="skip episodes whose metadata says success: false (default: skip)")
    p.add_argument("--overwrite", action="store_true", help="replace episode files that already exist")
    p.add_argument("--report", type=Path, default=None, help=f"JSON report path (default: <out>/{REPORT_NAME})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        settings = load_settings(args.config, {
            "views": args.views, "action_source": args.action_source, "fps": args.fps,
            "image_size": args.image_size, "min_frames": args.min_frames,
        })
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.bags.is_dir():
        print(f"error: bags directory {args.bags} is not a directory", file=sys.stderr)
        return 2
    try:
        report = convert_directory(
            args.bags, args.out, settings, default_task=args.task, default_embodiment=args.embodiment,
            overwrite=args.overwrite, skip_failed=args.skip_failed,
            progress=lambda it: tqdm(list(it), desc="bags", unit="bag", disable=args.quiet),
        )
    except BagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.table())
    report_path = args.report or args.out / REPORT_NAME
    report_path.write_text(json.dumps(report.to_json(
        bags=str(args.bags), out=str(args.out), settings=settings,
        defaults={"task": args.task, "embodiment": args.embodiment}, skip_failed=args.skip_failed,
        overwrite=args.overwrite), indent=2))
    print(f"report: {report_path}")
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
