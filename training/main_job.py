"""amplify-main: AMPLIFY against its BC baseline, end to end on the embedded workcell, with a report.

Stages, each reused when the command is run again (resumable; markers in RUN_DIR/stages/):
  data       scripted robot demos for the training tasks, action-free "human" videos for every task
  tracks     keypoint tracks of every episode (Lucas-Kanade)
  tokenizer  motion tokenizer on the tracks of all videos (robot and human)
  forward    forward dynamics on all videos with their task texts
  amplify    inverse dynamics with motion codes, on the robot demos only
  bc         the paper's baseline: the same inverse network without codes, same demos, same seeds
  evaluate   closed-loop success of AMPLIFY and BC on held-out seeds, training tasks and video-only tasks
  report     RUN_DIR/report.md: setup, timing, success per task and setting with 95 % intervals, a bar plot,
             rollout GIFs, training curves, and the command to reproduce it

The video-only tasks are the zero-shot setting: their actions are never seen by either inverse model, only the
forward model has seen their videos. ``--quick`` shrinks every number so the whole job runs in a few minutes
(a check that every stage and report section works, not a measurement).

Example::

    amplify-main                                  # the full job into runs/main_job
    amplify-main --quick --run-dir runs/quick     # minutes: every stage, tiny numbers
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger("amplify-main")

REPORT_SECTIONS = ["## Setup", "## Stages", "## Closed-loop success", "## Rollouts", "## Training curves",
                   "## Reproduce"]


@dataclass
class JobSettings:
    train_tasks: list[str] = field(default_factory=lambda: ["open the drawer", "put the red block in the bowl",
                                                            "push the blue block to the left"])
    zero_shot_tasks: list[str] = field(default_factory=lambda: ["close the drawer"])
    demos_per_task: int = 10
    videos_per_task: int = 10
    config: str = "tiny"
    tokenizer_steps: int | None = None  # None: the config's
    forward_steps: int | None = None
    inverse_steps: int | None = None
    eval_episodes: int = 20
    eval_max_steps: int | None = None
    eval_seed_start: int = 100_000
    workers: int = 2

    @classmethod
    def quick(cls) -> "JobSettings":
        return cls(train_tasks=["open the drawer"], zero_shot_tasks=["close the drawer"], demos_per_task=2,
                   videos_per_task=2, tokenizer_steps=4, forward_steps=4, inverse_steps=4, eval_episodes=2,
                   eval_max_steps=10)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="amplify-main", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, default=Path("runs/main_job"),
                   help="every artefact goes here; re-running reuses finished stages (default runs/main_job)")
    p.add_argument("--quick", action="store_true", help="tiny numbers: checks the whole job in minutes")
    p.add_argument("--workers", type=int, default=None, help="processes for data generation and evaluation (default 2)")
    p.add_argument("--device", default=None, help="torch device for training (default cuda if available, else cpu)")
    return p


class Job:
    def __init__(self, run_dir: Path, settings: JobSettings, device: str | None, argv: list[str]):
        self.run, self.s, self.device, self.argv = run_dir, settings, device, argv
        self.stages_dir = run_dir / "stages"
        self.stages_dir.mkdir(parents=True, exist_ok=True)
        settings_path = run_dir / "settings.json"
        if settings_path.exists() and json.loads(settings_path.read_text()) != asdict(settings):
            raise SystemExit(f"{run_dir} was started with other settings ({settings_path}); use another --run-dir")
        settings_path.write_text(json.dumps(asdict(settings), indent=2))
        self.robot, self.human = run_dir / "data" / "robot", run_dir / "data" / "human"
        self.models = run_dir / "models"

    def stage(self, name: str, fn) -> dict:
        marker = self.stages_dir / f"{name}.json"
        if marker.exists():
            log.info("stage %s: done before, reused", name)
            return json.loads(marker.read_text())
        log.info("stage %s ...", name)
        started = time.perf_counter()
        info = fn() or {}
        info["seconds"] = round(time.perf_counter() - started, 1)
        marker.write_text(json.dumps(info, indent=2))
        log.info("stage %s: %.1f s", name, info["seconds"])
        return info

    # -- stages ---------------------------------------------------------------------------------------
    def data(self) -> dict:
        from training.generate_workcell import main as generate

        s = self.s
        common = ["--workers", str(s.workers)]
        if generate([str(self.robot), "--tasks", *s.train_tasks, "--episodes-per-task", str(s.demos_per_task),
                     "--embodiment", "robot", *common]) != 0:
            raise RuntimeError("robot demo generation failed (see the log above)")
        if generate([str(self.human), "--tasks", *s.train_tasks, *s.zero_shot_tasks, "--episodes-per-task",
                     str(s.videos_per_task), "--embodiment", "human", "--seed-base", "50000", *common]) != 0:
            raise RuntimeError("human video generation failed (see the log above)")
        return {"robot_episodes": len(list(self.robot.glob("*.h5"))), "human_episodes": len(list(self.human.glob("*.h5")))}

    def tracks(self) -> dict:
        from amplify_core.preprocessing import preprocess_store
        from amplify_core.tracking import LucasKanadeTracker

        for store in (self.robot, self.human):
            preprocess_store(store, LucasKanadeTracker())
        return {"tracked": len(list(self.run.glob("data/*/*.tracks.h5")))}

    def train(self, what: str) -> dict:
        from amplify_core.configs import load_config
        from training.stages import train_forward, train_inverse, train_tokenizer

        config, s, m = load_config(self.s.config), self.s, self.models
        if what == "tokenizer":
            r = train_tokenizer(config, [self.robot, self.human], m, s.tokenizer_steps, self.device)
        elif what == "forward":
            r = train_forward(config, [self.robot, self.human], m, m / "tokenizer.pt", s.forward_steps, self.device)
        elif what == "amplify":
            r = train_inverse(config, [self.robot], m, m / "tokenizer.pt", m / "forward.pt", s.inverse_steps,
                              use_codes=True, device=self.device, name="inverse")
        else:
            r = train_inverse(config, [self.robot], m, None, None, s.inverse_steps, use_codes=False,
                              device=self.device, name="bc")
        return {"checkpoint": str(r.checkpoint), "final_loss": r.losses[-1] if r.losses else None,
                "losses": r.losses}

    def evaluate(self) -> dict:
        from training.evaluate import main as evaluate

        s, out = self.s, self.run / "eval"
        tasks = [*s.train_tasks, *s.zero_shot_tasks]
        common = ["--tasks", *tasks, "--episodes", str(s.eval_episodes), "--workers", str(s.workers),
                  "--seed-start", str(s.eval_seed_start)] + (["--max-steps", str(s.eval_max_steps)]
                                                              if s.eval_max_steps else [])
        m = self.models
        runs = {"AMPLIFY": ["--inverse", str(m / "inverse.pt"), "--forward", str(m / "forward.pt"),
                            "--text-cache", str(m / "text_embeddings.npz")],
                "BC": ["--inverse", str(m / "bc.pt")]}
        for name, args in runs.items():
            if evaluate(["--controller", "policy", *args, *common, "--json", str(out / f"{name}.json"),
                         "--gif-dir", str(out / f"gifs_{name}")]) != 0:
                raise RuntimeError(f"evaluation of {name} failed (see the log above)")
        return {"results": {name: str(out / f"{name}.json") for name in runs}}

    def report(self) -> dict:
        from training.main_job_report import write_report

        path = write_report(self, REPORT_SECTIONS)
        return {"report": str(path)}

    def run_all(self) -> Path:
        self.stage("data", self.data)
        self.stage("tracks", self.tracks)
        for what in ("tokenizer", "forward", "amplify", "bc"):
            self.stage(what, lambda w=what: self.train(w))
        self.stage("evaluate", self.evaluate)
        (self.stages_dir / "report.json").unlink(missing_ok=True)  # the report is always rewritten
        return Path(self.stage("report", self.report)["report"])


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = JobSettings.quick() if args.quick else JobSettings()
    if args.workers:
        settings.workers = args.workers
    started = time.perf_counter()
    try:
        report = Job(args.run_dir, settings, args.device, argv).run_all()
    except RuntimeError as exc:
        print(f"amplify-main: {exc}", file=sys.stderr)
        return 1
    print(f"done in {time.perf_counter() - started:.0f} s: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
