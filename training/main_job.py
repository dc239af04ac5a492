"""amplify-main: AMPLIFY against its BC baseline, end to end on the embedded workcell, with a report.

Stages, each reused when the command is run again (resumable; markers in RUN_DIR/stages/):
  data        scripted robot demos for the training tasks, action-free "human" videos for every task, and
              held-out videos of both embodiments (track prediction is scored on them)
  tracks      keypoint tracks of every episode (Lucas-Kanade); the few-shot demo subsets
  tokenizer   motion tokenizer on the tracks of all videos (robot and human)
  forward     forward dynamics on all videos with their task texts
  forward_robot   the same on the robot videos only (the cross-embodiment ablation)
  regressor   direct track regression on all videos (the paper's MSE baseline for track prediction)
  amplify_K / bc_K   inverse dynamics with codes (AMPLIFY) and without (BC, the paper's "inverse only"
              baseline), same network, demos and seeds, for K = the few-shot sizes and all demos
  evaluate    closed-loop success on held-out seeds, the same seeds for every policy
  tracks_eval track prediction on the held-out videos: forward decoded by the tokenizer vs regression
  report      RUN_DIR/report.md with the tables, plots, GIFs and the command to reproduce it

Experiments: (1) few-shot: AMPLIFY and BC with K demos per training task; (2) zero-shot: the video-only tasks,
whose actions no inverse model ever sees; (3) cross-embodiment: AMPLIFY with the forward model trained with and
without the human videos. ``--quick`` shrinks every number so the whole job runs in about a minute (a check that
every stage and report section works, not a measurement).

Example::

    amplify-main                                  # the full job into runs/main_job
    amplify-main --quick --run-dir runs/quick     # about a minute: every stage, tiny numbers
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger("amplify-main")

REPORT_SECTIONS = ["## Setup", "## Stages", "## Few-shot", "## Zero-shot", "## Cross-embodiment",
                   "## Track prediction", "## Rollouts", "## Training curves", "## Reproduce"]


@dataclass
class JobSettings:
    train_tasks: list[str] = field(default_factory=lambda: ["open the drawer", "put the red block in the bowl",
                                                            "push the blue block to the left"])
    zero_shot_tasks: list[str] = field(default_factory=lambda: ["close the drawer"])
    demos_per_task: int = 10
    few_shot: list[int] = field(default_factory=lambda: [2, 5])  # demos per task of the few-shot settings
    videos_per_task: int = 10
    held_out_per_task: int = 2
    config: str = "tiny_64"
    tokenizer_steps: int | None = None  # None: the config's
    forward_steps: int | None = None
    inverse_steps: int | None = None  # with all demos; a few-shot model gets its share, at least min_inverse_share
    min_inverse_share: float = 0.4
    # demos per task at which a language-conditioned BC (the BC network plus the task-text token) is trained too:
    # the inverse-only BC cannot tell the tasks apart in one scene, this one can (None: every demo count)
    text_bc_demos: list[int] | None = None
    eval_episodes: int = 20
    eval_max_steps: int | None = 120  # about twice the longest expert demo (65 steps)
    eval_seed_start: int = 100_000
    eval_batch: int = 10
    workers: int = 2

    @classmethod
    def quick(cls) -> "JobSettings":
        return cls(train_tasks=["open the drawer"], zero_shot_tasks=["close the drawer"], demos_per_task=2,
                   few_shot=[1], videos_per_task=2, held_out_per_task=1, tokenizer_steps=4, forward_steps=4,
                   inverse_steps=4, eval_episodes=2, eval_max_steps=10, eval_batch=2, text_bc_demos=[2])

    @property
    def demo_counts(self) -> list[int]:
        return [*self.few_shot, self.demos_per_task]

    @property
    def text_bc_counts(self) -> list[int]:
        return self.demo_counts if self.text_bc_demos is None else self.text_bc_demos

    def inverse_models(self) -> list[str]:
        names = []
        for k in self.demo_counts:
            names += [f"amplify_{k}", f"bc_{k}"] + ([f"bctext_{k}"] if k in self.text_bc_counts else [])
        return names

    def inverse_steps_for(self, k: int, full: int) -> int:
        """Optimizer steps of an inverse model on k demos per task: in proportion to its data (about the same
        number of epochs as with all demos), but never below ``min_inverse_share`` of ``full``."""
        return max(1, round(full * max(self.min_inverse_share, k / self.demos_per_task)))

    def evaluations(self) -> dict[str, dict]:
        """Every closed-loop evaluation: name -> inverse and forward model names, tasks, experiment."""
        out = {}
        for k in self.demo_counts:
            tasks = self.train_tasks + (self.zero_shot_tasks if k == self.demos_per_task else [])
            out[f"AMPLIFY_{k}"] = {"inverse": f"amplify_{k}", "forward": "forward", "tasks": tasks, "demos": k}
            out[f"BC_{k}"] = {"inverse": f"bc_{k}", "forward": None, "tasks": tasks, "demos": k}
            if k in self.text_bc_counts:
                out[f"BCtext_{k}"] = {"inverse": f"bctext_{k}", "forward": None, "tasks": tasks, "demos": k}
        out["AMPLIFY_robot_videos_only"] = {"inverse": f"amplify_{self.demos_per_task}", "forward": "forward_robot",
                                            "tasks": self.train_tasks + self.zero_shot_tasks,
                                            "demos": self.demos_per_task}
        return out


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
        self.t0 = time.perf_counter()

    def stage(self, name: str, fn, position: str = "") -> dict:
        marker = self.stages_dir / f"{name}.json"
        if marker.exists():
            log.info("stage %s %s: done before, reused", position, name)
            return json.loads(marker.read_text())
        log.info("stage %s %s ... (%.0f min since the start)", position, name, (time.perf_counter() - self.t0) / 60)
        started = time.perf_counter()
        info = fn() or {}
        info["seconds"] = round(time.perf_counter() - started, 1)
        marker.write_text(json.dumps(info, indent=2))
        log.info("stage %s %s: %.1f s", position, name, info["seconds"])
        return info

    # -- stages ---------------------------------------------------------------------------------------
    def _generate(self, out: Path, tasks: list[str], n: int, embodiment: str, seed_base: int) -> None:
        from training.generate_workcell import main as generate

        if generate([str(out), "--tasks", *tasks, "--episodes-per-task", str(n), "--embodiment", embodiment,
                     "--seed-base", str(seed_base), "--workers", str(self.s.workers)]) != 0:
            raise RuntimeError(f"{embodiment} episode generation into {out} failed (see the log above)")

    def data(self) -> dict:
        from amplify_core.episodes import list_episodes

        s, d = self.s, self.run / "data"
        every = [*s.train_tasks, *s.zero_shot_tasks]
        self._generate(self.robot, s.train_tasks, s.demos_per_task, "robot", 0)
        self._generate(self.human, every, s.videos_per_task, "human", 50_000)
        self._generate(d / "held_out", s.train_tasks, s.held_out_per_task, "robot", 70_000)
        self._generate(d / "held_out", every, s.held_out_per_task, "human", 70_000)
        return {name: len(list_episodes(d / name)) for name in ("robot", "human", "held_out")}

    def tracks(self) -> dict:
        from amplify_core.preprocessing import preprocess_store
        from amplify_core.tracking import LucasKanadeTracker

        for store in (self.robot, self.human, self.run / "data" / "held_out"):
            preprocess_store(store, LucasKanadeTracker())
        for k in self.s.few_shot:  # the first k demos of every training task, as links (no copies)
            subset = self.demos(k)
            subset.mkdir(parents=True, exist_ok=True)
            for path in sorted(self.robot.glob("robot_*.h5")):
                index = int(path.name.split(".")[0].rsplit("_", 1)[1])
                if index < k and not (subset / path.name).exists():
                    os.symlink(path.resolve(), subset / path.name)
        return {"tracked": len(list(self.run.glob("data/*/*.tracks.h5")))}

    def demos(self, k: int) -> Path:
        return self.robot if k == self.s.demos_per_task else self.run / "data" / f"robot_{k}_demos"

    def train(self, what: str) -> dict:
        from amplify_core.configs import load_config
        from training.stages import train_forward, train_inverse, train_regressor, train_tokenizer

        config, s, m = load_config(self.s.config), self.s, self.models
        videos = [self.robot, self.human]
        if what == "tokenizer":
            r = train_tokenizer(config, videos, m, s.tokenizer_steps, self.device)
        elif what in ("forward", "forward_robot"):
            stores = videos if what == "forward" else [self.robot]
            r = train_forward(config, stores, m, m / "tokenizer.pt", s.forward_steps, self.device, name=what)
        elif what == "regressor":
            r = train_regressor(config, videos, m, s.forward_steps, self.device)
        else:
            kind, k = what.split("_")
            codes = kind == "amplify"
            steps = s.inverse_steps_for(int(k), s.inverse_steps or config.train_inverse.steps)
            r = train_inverse(config, [self.demos(int(k))], m, m / "tokenizer.pt" if codes else None, None,
                              steps, use_codes=codes, device=self.device, name=what, task_text=kind == "bctext")
        return {"checkpoint": str(r.checkpoint), "final_loss": r.losses[-1] if r.losses else None,
                "losses": r.losses}

    def evaluate(self) -> dict:
        from training.evaluate import main as evaluate

        s, out, m = self.s, self.run / "eval", self.models
        results = {}
        for name, e in s.evaluations().items():
            path = out / f"{name}.json"
            if not path.exists():  # finished evaluations survive an interruption of this stage
                args = ["--controller", "policy", "--inverse", str(m / f"{e['inverse']}.pt"), "--tasks", *e["tasks"],
                        "--episodes", str(s.eval_episodes), "--workers", str(s.workers), "--batch", str(s.eval_batch),
                        "--seed-start", str(s.eval_seed_start), "--json", str(path.with_suffix(".partial.json"))]
                if e["forward"]:
                    args += ["--forward", str(m / f"{e['forward']}.pt")]
                args += ["--text-cache", str(m / "text_embeddings.npz")]
                if s.eval_max_steps:
                    args += ["--max-steps", str(s.eval_max_steps)]
                if e["demos"] == s.demos_per_task:
                    args += ["--gif-dir", str(out / f"gifs_{name}")]
                log.info("evaluating %s on %d task(s)", name, len(e["tasks"]))
                if evaluate(args) != 0:
                    raise RuntimeError(f"evaluation of {name} failed (see the log above)")
                path.with_suffix(".partial.json").rename(path)
            results[name] = str(path)
        return {"results": results}

    def tracks_eval(self) -> dict:
        from amplify_core.episodes import list_episodes
        from training.track_prediction import Predictors, figure, score

        m, held_out = self.models, self.run / "data" / "held_out"
        models = Predictors(m / "tokenizer.pt", m / "forward.pt", m / "regressor.pt", m / "text_embeddings.npz")
        scores = score(models, [held_out])
        episode = next(p for p in list_episodes(held_out) if p.name.startswith("robot_"))
        picture = figure(models, episode, frame=8, view="front", out=self.run / "tracks_figure.png")
        return {"scores": scores, "figure": str(picture), "figure_episode": episode.name}

    def report(self) -> dict:
        from training.main_job_report import write_report

        path = write_report(self, REPORT_SECTIONS)
        return {"report": str(path)}

    def run_all(self) -> Path:
        models = ["tokenizer", "forward", "forward_robot", "regressor", *self.s.inverse_models()]
        plan = [("data", self.data), ("tracks", self.tracks)]
        plan += [(what, lambda w=what: self.train(w)) for what in models]
        plan += [("evaluate", self.evaluate), ("tracks_eval", self.tracks_eval), ("report", self.report)]
        (self.stages_dir / "report.json").unlink(missing_ok=True)  # the report is always rewritten
        info = {}
        for i, (name, fn) in enumerate(plan, 1):
            info = self.stage(name, fn, f"{i}/{len(plan)}")
        return Path(info["report"])


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
