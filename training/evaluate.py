"""amplify-evaluate: closed-loop success rate of a controller in the workcell or a LIBERO suite, per task.

Controllers: ``policy`` (a trained inverse model; with ``--forward`` it is AMPLIFY, an inverse model trained
without codes is the BC baseline), ``expert`` (the scripted expert: the upper reference) and ``hold`` (does
nothing: the lower reference). Episodes run in ``--workers`` processes; each task gets ``--episodes`` seeds from
``--seed-start`` on, the same seeds for every controller. Workcell: a seed draws a scene (keep them away from
the seeds the training demos were generated with). LIBERO (``--suite``): episode ``seed`` starts from the
task's fixed initial state ``seed mod 50`` (default seeds 0..49: each of the 50 states once), 500 steps at most,
success by LIBERO's own check. The simulator renders only the views the policy uses (none for expert/hold
unless a GIF is asked for). Prints a table with a 95 % Wilson interval per task and for all tasks together,
writes the numbers as JSON (``--json``) and as a Markdown report with a bar chart (``--report``).

Example::

    amplify-evaluate --controller expert --episodes 20
    amplify-evaluate --controller policy --inverse runs/tiny/inverse/final.pt --forward runs/tiny/forward/final.pt \\
        --tasks "open the drawer" "put the red block in the bowl" --episodes 20 --json runs/tiny/eval.json
    amplify-evaluate --controller policy --inverse runs/bc/inverse/final.pt --gif-dir runs/bc/gifs
    amplify-evaluate --suite libero_object --controller policy --inverse runs/libero/inverse.pt \
        --forward runs/libero/forward.pt --episodes 50 --json runs/libero/eval.json --report runs/libero/eval.md
    amplify-evaluate --suite libero_object --tasks 0 3 --controller expert --episodes 5
    amplify-evaluate --suite libero_object --tasks 0 1 --controller policy --random-policy libero_tiny \
        --episodes 4 --batch 4 --max-steps 100 --workers 2      # throughput with a policy in the loop
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger("amplify-evaluate")

_worker: dict = {}


LIBERO_SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90")  # suites.SUITES


def build_parser() -> argparse.ArgumentParser:
    from amplify_core.workcell.tasks import TASKS

    p = argparse.ArgumentParser(prog="amplify-evaluate", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--controller", choices=("policy", "expert", "hold"), default="policy",
                   help="what acts (default policy)")
    p.add_argument("--inverse", type=Path, help="inverse-dynamics checkpoint (.pt) of the policy")
    p.add_argument("--forward", type=Path, help="forward-dynamics checkpoint; needed when the inverse model uses codes")
    p.add_argument("--text-cache", type=Path, help="task-embedding cache (npz) for the forward model or a language-conditioned BC")
    p.add_argument("--random-policy", metavar="CONFIG", default=None,
                   help="instead of --inverse/--forward: an untrained AMPLIFY policy of this model config (tiny, "
                        "libero_tiny, paper or a YAML file), for throughput figures that anyone can reproduce "
                        "(a step costs the same whatever the weights; its success rate means nothing)")
    p.add_argument("--suite", choices=LIBERO_SUITES, default=None,
                   help="evaluate in this LIBERO suite instead of the workcell (needs scripts/setup_libero.sh)")
    p.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                   help=f"workcell tasks (default all {len(TASKS)}); with --suite: LIBERO task indices, names or "
                        f"instructions (default the whole suite)")
    p.add_argument("--episodes", type=int, default=None, help="episodes per task (default 20; LIBERO 50)")
    p.add_argument("--seed-start", type=int, default=None,
                   help="first evaluation seed (default 100000, far from the generator's seeds; LIBERO 0, the "
                        "first fixed initial state)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="episode step limit (default: the workcell config; LIBERO 500)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="evaluation processes (default min(2, CPUs))")
    p.add_argument("--batch", type=int, default=10,
                   help="episodes a worker runs in lockstep with one batched policy call per step (default 10)")
    p.add_argument("--device", default=None, help="torch device of the policy (default cuda if available, else cpu)")
    p.add_argument("--json", type=Path, help="write the per-task results here")
    p.add_argument("--report", type=Path, help="write a Markdown report (table + success bars) here")
    p.add_argument("--gif-dir", type=Path, help="save the first episode of every task as an animated GIF here")
    return p


class PolicyLoadError(RuntimeError):
    """The policy could not be built in a worker (a bad checkpoint, a missing forward model, ...)."""


def _init_worker(spec: dict) -> None:
    import torch

    torch.set_num_threads(1)  # one process per core: threads inside would only fight
    _worker.update(spec=spec, envs={})
    if spec["controller"] == "policy":
        from amplify_core.policy import AmplifyPolicy

        try:
            _worker["policy"] = AmplifyPolicy(spec["inverse"], spec["forward"], device=spec["device"],
                                              text_cache=spec["text_cache"])
        except Exception as exc:
            # an initializer that raises makes multiprocessing.Pool start a new worker, forever: keep the error
            # and let the first job carry it to the parent, which stops
            _worker["error"] = f"{type(exc).__name__}: {exc}"
            return
        _worker["image_size"] = _worker["policy"].image_shape[1]
    else:
        if spec["suite"]:
            from amplify_core.libero.evaluation import ExpertController, HoldController
        else:
            from amplify_core.workcell.evaluation import ExpertController, HoldController

        _worker["controller"] = ExpertController() if spec["controller"] == "expert" else HoldController()
        _worker["image_size"] = None


def _env(task: str, slot: int, render: bool):
    """The worker's environment for one batch slot (built once: compiling the scene costs more than a reset).
    A policy's environments render only the views it uses. LIBERO scenes are large: a worker keeps those of one
    task at a time."""
    spec = _worker["spec"]
    key = (task, slot, render)
    if key not in _worker["envs"]:
        views = _worker["policy"].views if "policy" in _worker else None
        if spec["suite"]:
            from amplify_core.libero.env import LiberoEnv

            for old in [k for k in _worker["envs"] if k[0] != task]:
                _worker["envs"].pop(old).close()
            _worker["envs"][key] = LiberoEnv(spec["suite"], task, image_size=_worker["image_size"] or 128,
                                             render=render, views=views, max_steps=spec["max_steps"])
        else:
            from amplify_core.workcell.env import WorkcellEnv

            _worker["envs"][key] = WorkcellEnv(task, "robot", image_size=_worker["image_size"], render=render,
                                               max_steps=spec["max_steps"], views=views)
    return _worker["envs"][key]


def _run(job: tuple) -> list[dict]:
    """A group of episodes of one task: a batched policy runs them in lockstep, other controllers one by one."""
    from amplify_core.closed_loop import run_episode, run_policy_episodes

    task, seeds, record = job  # record: the first seed of the group is saved as a GIF
    spec = _worker["spec"]
    if "error" in _worker:
        raise PolicyLoadError(f"the policy (--inverse {spec['inverse']}, --forward {spec['forward']}) does not "
                              f"load: {_worker['error']}")
    if spec["controller"] == "policy":
        envs = [_env(task, slot, True) for slot in range(len(seeds))]
        results = run_policy_episodes(envs, _worker["policy"], seeds, [record and k == 0 for k in range(len(seeds))])
    else:
        results = [run_episode(_env(task, 0, record and k == 0), _worker["controller"], seed, record=record and k == 0)
                   for k, seed in enumerate(seeds)]
    out = []
    for result in results:
        row = {"task": task, "seed": result.seed, "success": result.success, "steps": result.steps}
        if result.frames and spec["gif_dir"]:
            row["gif"] = str(write_gif(Path(spec["gif_dir"]), task, result.seed, result.frames))
        out.append(row)
    return out


def write_gif(directory: Path, task: str, seed: int, frames: list) -> Path:
    """The episode's views side by side, 20 frames per second."""
    from PIL import Image

    from amplify_core.visualize import side_by_side

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{task.replace(' ', '_')}_seed{seed}.gif"
    images = [Image.fromarray(side_by_side([f[v] for v in sorted(f)])) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=50, loop=0)
    return path


def summarise(results: list[dict]) -> dict:
    from amplify_core.metrics import success_interval

    tasks = {}
    for r in results:
        tasks.setdefault(r["task"], []).append(r)
    summary = {}
    for task, rows in tasks.items():
        k, n = sum(r["success"] for r in rows), len(rows)
        lo, hi = success_interval(k, n)
        summary[task] = {"successes": k, "episodes": n, "success_rate": k / n, "ci95": [lo, hi],
                         "mean_steps": sum(r["steps"] for r in rows) / n,
                         "seeds": sorted(r["seed"] for r in rows)}
    k = sum(s["successes"] for s in summary.values())
    n = sum(s["episodes"] for s in summary.values())
    summary["all"] = {"successes": k, "episodes": n, "success_rate": k / n, "ci95": list(success_interval(k, n))}
    return summary


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        tasks = _resolve_tasks(args)
    except ValueError as exc:  # unknown task or suite, LIBERO not installed
        print(f"--tasks/--suite: {exc}", file=sys.stderr)
        return 2
    if not args.random_policy:
        return _evaluate(args, tasks, argv)
    if args.controller != "policy" or args.inverse or args.forward or args.text_cache:
        print("--random-policy: only with --controller policy and without --inverse/--forward/--text-cache",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="amplify-random-policy-") as scratch:  # removed after the evaluation
        try:
            paths = untrained_policy(Path(scratch), args.random_policy, tasks, libero=bool(args.suite))
        except (OSError, ValueError) as exc:  # an unknown config name, a YAML file that does not fit
            print(f"--random-policy: {exc}", file=sys.stderr)
            return 2
        args.inverse, args.forward, args.text_cache = paths["inverse"], paths["forward"], paths["text_cache"]
        return _evaluate(args, tasks, argv)


def _evaluate(args, tasks: list[str], argv) -> int:
    if args.controller == "policy" and (args.inverse is None or not args.inverse.is_file()):
        print(f"--inverse: a policy needs an inverse checkpoint file (got {args.inverse})", file=sys.stderr)
        return 2
    args.episodes = args.episodes or (50 if args.suite else 20)
    args.seed_start = args.seed_start if args.seed_start is not None else (0 if args.suite else 100_000)
    args.max_steps = args.max_steps or (500 if args.suite else None)
    if args.episodes < 1 or args.workers < 1 or args.batch < 1:
        print("--episodes, --workers and --batch must be >= 1", file=sys.stderr)
        return 2
    spec = {"controller": args.controller, "inverse": str(args.inverse) if args.inverse else None,
            "forward": str(args.forward) if args.forward else None,
            "text_cache": str(args.text_cache) if args.text_cache else None, "device": args.device,
            "max_steps": args.max_steps, "gif_dir": str(args.gif_dir) if args.gif_dir else None,
            "suite": args.suite, "random_policy": args.random_policy}
    seeds = [args.seed_start + i for i in range(args.episodes)]
    jobs = [(task, seeds[i:i + args.batch], bool(args.gif_dir) and i == 0)
            for task in tasks for i in range(0, args.episodes, args.batch)]
    from tqdm import tqdm

    started = time.perf_counter()
    ctx = mp.get_context("spawn")  # fresh interpreters: no forked torch / OpenGL state
    results = []
    try:
        with ctx.Pool(args.workers, initializer=_init_worker, initargs=(spec,)) as pool:
            with tqdm(total=len(tasks) * args.episodes, desc="episodes", unit="ep") as bar:
                for rows in pool.imap_unordered(_run, jobs):
                    results.extend(rows)
                    bar.update(len(rows))
    except PolicyLoadError as exc:
        print(f"amplify-evaluate: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a policy that refuses the observation, ...
        print(f"evaluation failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    summary = summarise(results)
    elapsed = time.perf_counter() - started
    print(f"{'task':36} {'success':>9} {'rate':>6}  95% interval   mean steps")
    for task, s in summary.items():
        steps = f"{s['mean_steps']:8.1f}" if "mean_steps" in s else ""
        print(f"{task:36} {s['successes']:>4}/{s['episodes']:<4} {s['success_rate']:6.2f}  "
              f"[{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]  {steps}")
    steps = sum(r["steps"] for r in results)
    print(f"{len(results)} episodes in {elapsed:.0f} s with {args.workers} worker(s); controller {args.controller}; "
          f"{steps} env steps, {steps / elapsed:.1f} steps/s (environment creation included)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": ["amplify-evaluate", *(argv if argv is not None else sys.argv[1:])],
                                         "controller": spec, "seed_start": args.seed_start, "summary": summary,
                                         "episodes": sorted(results, key=lambda r: (r["task"], r["seed"])),
                                         "suite": args.suite or "workcell", "env_steps": steps,
                                         "seconds": round(elapsed, 1)}, indent=2))
    if args.report:
        write_report(args.report, summary, args.suite or "workcell", spec, elapsed, steps)
    return 0


def untrained_policy(out_dir: Path, config: str, tasks: list[str], libero: bool) -> dict:
    """Tokenizer, forward and inverse checkpoints of ``config`` with random weights and a task-embedding cache
    for ``tasks`` (no text encoder is loaded). LIBERO's normalisation: its OSC deltas near zero (std 0.1, i.e.
    small moves) and its 9 proprio values as they are; the workcell's default is near the UR5's start pose."""
    import numpy as np

    from amplify_core.normalization import Normalizer
    from training.benchmark_pipeline import tiny_checkpoints

    norms = {}
    if libero:
        norms = {"action_norm": Normalizer(np.zeros(7), np.full(7, 0.1)).to_dict(),
                 "proprio_norm": Normalizer(np.zeros(9), np.ones(9)).to_dict()}
    return tiny_checkpoints(out_dir, tasks=tasks, config=config, **norms)


def _resolve_tasks(args) -> list[str]:
    """The tasks' instructions (the key of every result); raises ValueError naming what is unknown."""
    if args.suite:
        from amplify_core.libero.installation import LiberoInstallError
        from amplify_core.libero.suites import find_task, suite_tasks

        try:
            if args.tasks is None:
                return [t.text for t in suite_tasks(args.suite)]
            return [find_task(args.suite, t).text for t in args.tasks]
        except LiberoInstallError as exc:
            raise ValueError(str(exc)) from None
    from amplify_core.workcell.tasks import TASKS

    tasks = args.tasks or list(TASKS)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown workcell task(s) {unknown}; known: {list(TASKS)}")
    return tasks


def write_report(path: Path, summary: dict, benchmark: str, spec: dict, seconds: float, steps: int) -> Path:
    """Markdown in the main job's format (k/n = rate [95 % interval] per task and for all) and a bar chart."""
    from training.main_job_report import bars, cell

    path.parent.mkdir(parents=True, exist_ok=True)
    figure = path.with_suffix(".png")
    tasks = {t: s for t, s in summary.items() if t != "all"}
    bars({t: {spec["controller"]: s} for t, s in tasks.items()}, figure, f"{benchmark}: success per task")
    lines = [f"# Evaluation: {benchmark}", "",
             (f"Controller `{spec['controller']}`, an untrained `{spec['random_policy']}` policy; "
              if spec.get("random_policy") else
              f"Controller `{spec['controller']}`, inverse `{spec['inverse']}`, forward `{spec['forward']}`; ") +
             f"{summary['all']['episodes']} episodes, {steps} env steps in {seconds:.0f} s "
             f"({steps / seconds:.1f} steps/s with the controller in the loop).", "",
             "| task | success |", "|---|---|"]
    lines += [f"| {t} | {cell(s)} |" for t, s in tasks.items()]
    lines += [f"| **all** | {cell(summary['all'])} |", "", f"![success per task]({figure.name})", ""]
    path.write_text("\n".join(lines))
    return path


if __name__ == "__main__":
    sys.exit(main())
