"""amplify-libero-generate: scripted LIBERO-Object demonstrations in LIBERO's own HDF5 format, no download.

For every task, the expert (:mod:`amplify_core.libero.experts`) runs from the task's fixed initial states
0, 1, 2, ... until ``--demos`` episodes succeed by LIBERO's check (failed ones are dropped and counted) and
the task's file ``OUT/<task name>_demo.hdf5`` is written, the layout of the official datasets. Tasks run in
``--workers`` processes; a task whose file exists is skipped (resume by re-running; nothing is overwritten).
Convert the files with ``amplify-libero-to-episodes`` like official ones.

Example::

    amplify-libero-generate --out data/libero_object --demos 10
    amplify-libero-generate --out /tmp/lo --tasks 0 --demos 1 --workers 1
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="amplify-libero-generate", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder for the <task>_demo.hdf5 files")
    p.add_argument("--suite", default="libero_object", choices=["libero_object"],
                   help="suite (the scripted experts know LIBERO-Object's pick-and-place tasks)")
    p.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                   help="task indices, names or instructions (default: every task of the suite)")
    p.add_argument("--demos", type=int, default=10, help="successful demonstrations per task (default 10)")
    p.add_argument("--max-attempts", type=int, default=None,
                   help="initial states tried per task before giving up (default 2 x --demos, at most 50)")
    p.add_argument("--image-size", type=int, default=128, help="rendered image side (default 128, as LIBERO's data)")
    p.add_argument("--max-steps", type=int, default=300, help="expert episode step limit (default 300)")
    p.add_argument("--workers", type=int, default=2, help="processes, one task each at a time (default 2)")
    return p


def generate_task(job: dict) -> dict:
    """One task's file; returns a row for the report."""
    from amplify_core.libero.demo_files import write_demo_file
    from amplify_core.libero.env import LiberoEnv
    from amplify_core.libero.experts import run_expert

    started = time.perf_counter()
    env = LiberoEnv(job["suite"], job["task"], image_size=job["image_size"], max_steps=job["max_steps"])
    demos, failed = [], []
    try:
        for seed in range(job["max_attempts"]):
            ok, demo = run_expert(env, seed)
            (demos if ok else failed).append(demo if ok else seed)
            if len(demos) == job["demos"]:
                break
    finally:
        env.close()
    row = {"task": env.task.text, "demos": len(demos), "failed_init_states": failed,
           "steps": sum(len(d.actions) for d in demos), "seconds": round(time.perf_counter() - started, 1)}
    if len(demos) < job["demos"]:
        row["error"] = f"only {len(demos)} of {job['demos']} demos succeeded in {job['max_attempts']} attempts"
        return row
    env_kwargs = {"camera_heights": job["image_size"], "camera_widths": job["image_size"],
                  "camera_names": ["agentview", "robot0_eye_in_hand"], "control_freq": 20}
    row["file"] = str(write_demo_file(job["path"], env.task, demos, env_kwargs))
    return row


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from amplify_core.libero.installation import LiberoInstallError
    from amplify_core.libero.suites import LiberoTaskError, find_task, suite_tasks

    try:
        tasks = list(suite_tasks(args.suite)) if args.tasks is None else [find_task(args.suite, t) for t in args.tasks]
    except (LiberoInstallError, LiberoTaskError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.demos < 1 or args.workers < 1:
        print("--demos and --workers must be >= 1", file=sys.stderr)
        return 2
    attempts = args.max_attempts or min(50, 2 * args.demos)
    jobs, skipped = [], []
    for t in tasks:
        path = args.out / f"{t.name}_demo.hdf5"
        if path.exists():
            skipped.append(path)
        else:
            jobs.append({"suite": args.suite, "task": t.text, "path": str(path), "demos": args.demos,
                         "max_attempts": attempts, "image_size": args.image_size, "max_steps": args.max_steps})
    for path in skipped:
        print(f"exists, skipped: {path}")
    from tqdm import tqdm

    rows = []
    with mp.get_context("spawn").Pool(min(args.workers, max(1, len(jobs)))) as pool:
        for row in tqdm(pool.imap_unordered(generate_task, jobs), total=len(jobs), desc="tasks", unit="task"):
            rows.append(row)
            print(f"{row['task']}: {row['demos']} demos, {row['steps']} steps, failed initial states "
                  f"{row['failed_init_states']}, {row['seconds']} s -> {row.get('file', row.get('error'))}", flush=True)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
