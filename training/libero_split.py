"""amplify-libero-split: materialise one of the paper's LIBERO splits as two episode stores of links.

A split (``config/libero/<name>.yaml``: in_distribution, few_shot_2 / 5 / 10, zero_shot) names which suites
the forward model sees as videos, which suites' actions the inverse model gets and how many demos per task,
and the suite that is evaluated (``SUITE`` = ``--suite``). Given one converted, tracked episode store per suite
(``--store SUITE=DIR``), this writes ``OUT/forward/`` and ``OUT/inverse/`` (symbolic links to the episodes and
their track files, no copies; the first K demos per task by file name) and ``OUT/split.json`` with the counts
and the evaluation command. Existing links are kept, so re-running is safe.

Example::

    amplify-libero-split few_shot_2 --suite libero_object --store libero_object=data/episodes/libero_object \\
        --out runs/libero/few_shot_2
    amplify-libero-split zero_shot --suite libero_object --store libero_object=data/episodes/libero_object \\
        --store libero_90=data/episodes/libero_90 --out runs/libero/zero_shot
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

SPLIT_DIR = Path(__file__).resolve().parent.parent / "config" / "libero"


def load_split(name_or_path: str, suite: str) -> dict:
    path = Path(name_or_path)
    if not path.suffix:
        path = SPLIT_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ValueError(f"no split {name_or_path!r}: {path} does not exist; splits: "
                         f"{sorted(p.stem for p in SPLIT_DIR.glob('*.yaml'))}")
    text = path.read_text().replace("SUITE", suite)
    split = yaml.safe_load(text)
    for key in ("forward", "inverse", "evaluate"):
        if key not in split:
            raise ValueError(f"{path}: the split has no {key!r} section")
    return split


def episodes_by_task(store: Path, with_actions: bool) -> dict[str, list[Path]]:
    from amplify_core.episodes import EpisodeReader, list_episodes

    out: dict[str, list[Path]] = {}
    for path in list_episodes(store):
        with EpisodeReader(path) as r:
            if with_actions and not r.has_actions:
                continue
            out.setdefault(r.task, []).append(path)
    return out


def link(episode: Path, folder: Path) -> None:
    from amplify_core.episodes import tracks_path

    folder.mkdir(parents=True, exist_ok=True)
    for source in (episode, tracks_path(episode)):
        target = folder / source.name
        if source.exists() and not (target.exists() or target.is_symlink()):
            target.symlink_to(source.resolve())


def materialise(split: dict, stores: dict[str, Path], out: Path) -> dict:
    counts = {}
    for role in ("forward", "inverse"):
        spec = split[role]
        k = spec.get("demos_per_task", "all")
        missing = [s for s in spec["suites"] if s not in stores]
        if missing:
            raise ValueError(f"the split's {role} model needs the episode store of {missing}: give --store SUITE=DIR")
        counts[role] = {}
        for suite in spec["suites"]:
            for task, paths in episodes_by_task(stores[suite], with_actions=role == "inverse").items():
                chosen = paths if k == "all" else paths[:int(k)]
                if k != "all" and len(chosen) < int(k):
                    raise ValueError(f"{stores[suite]}: task {task!r} has {len(chosen)} demos with actions, "
                                     f"the split asks for {k}")
                for path in chosen:
                    link(path, out / role)
                counts[role][task] = len(chosen)
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="amplify-libero-split", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("split", help="a split of config/libero (in_distribution, few_shot_2, ..., zero_shot) or a YAML path")
    p.add_argument("--suite", required=True, help="the evaluated suite (SUITE in the split), e.g. libero_object")
    p.add_argument("--store", action="append", default=[], metavar="SUITE=DIR",
                   help="a converted, tracked episode store of one suite (repeat per suite)")
    p.add_argument("--out", type=Path, required=True, help="output folder (forward/, inverse/, split.json)")
    args = p.parse_args(argv)
    try:
        stores = {}
        for item in args.store:
            suite, sep, folder = item.partition("=")
            if not sep or not Path(folder).is_dir():
                raise ValueError(f"--store {item!r}: expected SUITE=DIR with an existing folder")
            stores[suite] = Path(folder)
        split = load_split(args.split, args.suite)
        counts = materialise(split, stores, args.out)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    evaluate = split["evaluate"]
    command = (f"amplify-evaluate --suite {evaluate['suite']} --episodes {evaluate.get('episodes_per_task', 50)} "
               f"--controller policy --inverse INVERSE.pt --forward FORWARD.pt --json {args.out}/eval.json "
               f"--report {args.out}/eval.md")
    (args.out / "split.json").write_text(json.dumps({"split": split, "stores": {k: str(v) for k, v in stores.items()},
                                                     "episodes": counts, "evaluate": command}, indent=2))
    for role, per_task in counts.items():
        print(f"{role}: {sum(per_task.values())} episodes of {len(per_task)} tasks -> {args.out / role}")
    print(f"then train on them and evaluate with:\n  {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
