"""amplify-workcell-generate: scripted-expert episodes of the simulated UR5 workcell into an episode store.

Example::

    amplify-workcell-generate data/workcell --episodes-per-task 20 --workers 2
    amplify-workcell-generate data/workcell --tasks "open the drawer" --embodiment human --episodes-per-task 5
    amplify-workcell-generate data/workcell --image-size 224 --seed-base 1000
    amplify-workcell-generate data/play --play --episodes-per-task 100   # play data: actions, no task text

Writes ``<OUT>/<embodiment>_<task slug>_<i:04d>.h5`` per episode (views front/side/corner at 20 fps;
robot episodes carry 7-d actions and state, human episodes none; ``--play``: ``<embodiment>_play_<i:04d>.h5``,
random reaches, pushes, grasps and drops and drawer moves with an empty task text) plus a ``/sim`` group used for
ground-truth tracks. Episode i of a task uses seed ``seed_base + i``, so file names and contents are
deterministic. Existing files are skipped: re-run the same command to resume. Episodes whose expert
fails are not written and are counted in the summary (exit code 1 if any failed).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import re
import sys
from pathlib import Path

from tqdm import tqdm

log = logging.getLogger("amplify-workcell-generate")


def build_parser() -> argparse.ArgumentParser:
    from amplify_core.workcell.tasks import TASKS

    p = argparse.ArgumentParser(
        prog="amplify-workcell-generate",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1] + "\nTasks:\n  " + "\n  ".join(TASKS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out", type=Path, help="episode store directory (created if missing)")
    p.add_argument("--tasks", nargs="+", default=None, help="task texts to generate (default: all, listed below)")
    p.add_argument("--episodes-per-task", type=int, default=10, help="episodes per task and embodiment (default 10)")
    p.add_argument("--embodiment", choices=["robot", "human", "both"], default="robot",
                   help="robot (UR5, with actions), human (floating hand, no actions) or both (default robot)")
    p.add_argument("--seed-base", type=int, default=0, help="episode i uses seed SEED_BASE + i (default 0)")
    p.add_argument("--image-size", type=int, default=None, help="square image size (default: config/workcell.yaml, 128)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument("--video-only", action="store_true",
                   help="robot episodes without state and actions: action-free robot videos (for the forward model)")
    p.add_argument("--play", action="store_true",
                   help="play data instead of task demos (amplify_core/workcell/play.py): --episodes-per-task "
                        "episodes of undirected interaction, recorded with actions and no task text")
    p.add_argument("--retries", type=int, default=0,
                   help="when the expert fails on an episode's seed, try up to this many other seeds for it "
                        "(seed + 100003 k; the seed used is kept in the file's /sim group). Default 0: report it")
    p.add_argument("--tail-steps", type=int, default=10, help="steps recorded after the task succeeds (default 10; the expert heads back to its start pose meanwhile)")
    return p


RETRY_STRIDE = 100003  # --retries: the k-th other seed of an episode is seed + k * RETRY_STRIDE


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def episode_name(embodiment: str, task: str, index: int) -> str:
    """File name of episode ``index`` of ``task`` (the empty text of play: ``play``)."""
    return f"{embodiment}_{slug(task) or 'play'}_{index:04d}.h5"


def _generate_one(job: tuple) -> tuple[str, str]:
    """Worker: run one expert episode and write it; returns (file name, 'written' | 'failed: ...')."""
    out, task, embodiment, index, seed, image_size, tail, video_only, retries = job
    from amplify_core.workcell.env import WorkcellEnv
    from amplify_core.workcell.episode_io import write_rollout
    from amplify_core.workcell.rollout import run_expert

    path = Path(out) / episode_name(embodiment, task, index)
    with WorkcellEnv(task, embodiment=embodiment, image_size=image_size) as env:
        for attempt in range(retries + 1):
            used = seed + RETRY_STRIDE * attempt
            rollout = run_expert(env, used, tail_steps=tail)
            if rollout.success:
                break
        else:
            return path.name, f"failed: expert did not succeed (seed {seed}, {rollout.steps} steps" + (
                f"; {retries} other seeds too)" if retries else ")")
        write_rollout(path, rollout, task, embodiment, used, env.config.image_size, env.config.control_hz,
                      with_actions=not video_only)
    return path.name, "written" if used == seed else f"written with seed {used} (the expert failed on {seed})"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from amplify_core.workcell.tasks import TASKS, get_task

    if args.episodes_per_task < 1:
        raise SystemExit("--episodes-per-task must be >= 1")
    if args.workers < 1:
        raise SystemExit("--workers must be >= 1")
    if args.retries < 0:
        raise SystemExit(f"--retries must be >= 0, got {args.retries}")
    if args.play and args.tasks:
        raise SystemExit("--play records play (no task text); it cannot be combined with --tasks")
    tasks = [""] if args.play else (args.tasks or list(TASKS))
    for task in tasks:
        try:
            get_task(task)
        except ValueError as exc:
            raise SystemExit(str(exc)) from exc
    embodiments = ["robot", "human"] if args.embodiment == "both" else [args.embodiment]
    args.out.mkdir(parents=True, exist_ok=True)
    jobs, skipped = [], 0
    for embodiment in embodiments:
        for task in tasks:
            for i in range(args.episodes_per_task):
                if (args.out / episode_name(embodiment, task, i)).exists():
                    skipped += 1
                    continue
                jobs.append((str(args.out), task, embodiment, i, args.seed_base + i, args.image_size, args.tail_steps,
                             args.video_only, args.retries))
    log.info("%d episodes to generate, %d already present", len(jobs), skipped)
    written, failed = 0, []
    if args.workers == 1:
        results = map(_generate_one, jobs)
        pool = None
    else:
        # spawn: each worker opens its own EGL context; forking a process with a live GL context is unsafe
        pool = mp.get_context("spawn").Pool(args.workers)
        results = pool.imap_unordered(_generate_one, jobs)
    try:
        for name, status in tqdm(results, total=len(jobs), desc="episodes", unit="ep"):
            if status.startswith("written"):
                written += 1
                if status != "written":
                    log.info("%s: %s", name, status)
            else:
                failed.append(name)
                log.warning("%s: %s", name, status)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    log.info("written %d, skipped %d (already present), failed %d", written, skipped, len(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
