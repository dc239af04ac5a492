"""amplify-main: AMPLIFY against its BC baselines, end to end on the embedded workcell, with a report.

Stages, each reused when the command is run again (resumable; markers in RUN_DIR/stages/):
  data          scripted robot demos of the training tasks; action-free robot videos of every task (many more than
                the demos); play data (actions, no task text); action-free "human" videos of every task; held-out
                demos and videos of every task (scores)
  tracks        keypoint tracks of every episode (Lucas-Kanade, or the simulator's ground truth); the few-shot
                demo subsets
  tracks_health label statistics of every store; Lucas-Kanade against the simulator's ground truth
  tokenizer     motion tokenizer on the tracks of every video (robot, play and human)
  forward       forward dynamics on every video with its task text
  forward_robot the same on the robot videos only (the cross-embodiment ablation)
  regressor     direct track regression on every video (the paper's MSE baseline for track prediction)
  amplify_K / bc_K / bctext_K   inverse dynamics on K demos per training task and the play data: with codes
                (AMPLIFY: trained on the tokenizer's codes, then fine-tuned on the codes the frozen forward model
                predicts, as at test time), without (BC, the paper's "inverse only"), and without codes but with
                the task text (BC+text)
  bcnoplay_K    BC on the K demos alone (what play data does for BC)
  models_health tokenizer reconstruction and code use, forward code agreement per task, every inverse model's
                open-loop error per action dimension on held-out demos
  evaluate      closed-loop success on held-out seeds, the same seeds for every policy
  tracks_eval   track prediction on held-out videos: forward decoded by the tokenizer vs regression
  report        RUN_DIR/report.md with tables, plots and GIFs; RUN_DIR/results.json with every figure

Experiments (the paper's Table 1): (1) all demos and (2) few-shot: AMPLIFY, BC and BC+text with K demos per
training task (and the play data), while the forward model sees every video; (3) zero-shot: tasks with action-free
robot videos only, whose actions no inverse model sees (play holds no demo of them either: it has no goal);
(4) cross-embodiment: the few-shot AMPLIFY inverse model with the forward model trained with and without the human
videos. ``--quick`` shrinks every number so the whole job runs in a few minutes (a check that
every stage and report section works, not a measurement); it writes to its own run folder.

Example::

    amplify-main                                  # the full job into runs/main_job
    amplify-main --quick                          # a few minutes: every stage, tiny numbers (runs/main_job_quick)
    amplify-main --tracks ground_truth --run-dir runs/gt   # simulator tracks instead of Lucas-Kanade
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

REPORT_SECTIONS = ["## Setup", "## Stages", "## Health", "## All demos", "## Few-shot", "## Zero-shot",
                   "## Cross-embodiment", "## Track prediction", "## Rollouts", "## Training curves", "## Reproduce"]
DEFAULT_RUN_DIR = Path("runs/main_job")
QUICK_RUN_DIR = Path("runs/main_job_quick")


@dataclass
class JobSettings:
    train_tasks: list[str] = field(default_factory=lambda: [
        "open the drawer", "put the red block in the bowl", "push the blue block to the left",
        "put the green block on the plate"])
    zero_shot_tasks: list[str] = field(default_factory=lambda: ["close the drawer", "pick up the blue block"])
    demos_per_task: int = 10  # robot demos with actions per training task ("all demos")
    few_shot: list[int] = field(default_factory=lambda: [2])  # demos per task of the few-shot settings
    robot_videos_per_task: int = 20  # robot videos of every task: the demos' and action-free ones up to this many
    play_episodes: int = 40  # play (play.py): robot interaction with actions and no task text
    human_videos_per_task: int = 6  # action-free human videos of every task
    held_out_per_task: int = 3  # robot demos and human videos of every task, never trained on (scores)
    config: str = "workcell"
    tracker: str = "lucas_kanade"  # or ground_truth: the simulator's tracks (tells tracker from model errors)
    tokenizer_steps: int | None = 1500  # None: the config's
    forward_steps: int | None = 500
    regressor_steps: int | None = None  # None: the forward model's
    inverse_steps: int | None = 400  # with all demos; a few-shot model gets its share, at least min_inverse_share
    min_inverse_share: float = 0.8
    demo_share: float | None = 0.5  # demos' share of the inverse samples beside the play data (None: uniform)
    finetune_share: float = 0.3  # AMPLIFY's fine-tuning on predicted codes, as a share of its inverse steps
    eval_episodes: int = 15
    eval_max_steps: int | None = 80  # 1.6 x the longest expert demo (50 steps)
    eval_seed_start: int = 100_000
    eval_batch: int = 10
    workers: int = 2
    health_episodes: int = 6  # held-out episodes LK is scored on against the simulator (tracks_health)

    @classmethod
    def quick(cls) -> "JobSettings":
        return cls(train_tasks=["open the drawer", "push the blue block to the left"],
                   zero_shot_tasks=["close the drawer"], demos_per_task=3, few_shot=[1], robot_videos_per_task=4,
                   play_episodes=2, human_videos_per_task=1, held_out_per_task=1, tokenizer_steps=4, forward_steps=4,
                   inverse_steps=4, eval_episodes=2, eval_max_steps=10, eval_batch=2, health_episodes=2)

    @property
    def demo_counts(self) -> list[int]:
        return [*self.few_shot, self.demos_per_task]

    @property
    def every_task(self) -> list[str]:
        return [*self.train_tasks, *self.zero_shot_tasks]

    def inverse_models(self) -> list[str]:
        return [f"{kind}_{k}" for k in self.demo_counts for kind in ("amplify", "bc", "bctext")] + [
            f"bcnoplay_{k}" for k in self.few_shot]

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
            out[f"BCtext_{k}"] = {"inverse": f"bctext_{k}", "forward": None, "tasks": tasks, "demos": k}
            if k in self.few_shot:
                out[f"BCnoplay_{k}"] = {"inverse": f"bcnoplay_{k}", "forward": None, "tasks": self.train_tasks,
                                        "demos": k}
        k = self.few_shot[0] if self.few_shot else self.demos_per_task
        out[f"AMPLIFY_{k}_robot_videos_only"] = {"inverse": f"amplify_{k}", "forward": "forward_robot",
                                                 "tasks": self.train_tasks, "demos": k}
        return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="amplify-main", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, default=None,
                   help=f"every artefact goes here; re-running reuses finished stages (default {DEFAULT_RUN_DIR}, "
                        f"with --quick {QUICK_RUN_DIR})")
    p.add_argument("--quick", action="store_true", help="tiny numbers: checks the whole job in minutes")
    p.add_argument("--tracks", choices=("lucas_kanade", "ground_truth"), default=None,
                   help="where the keypoint tracks come from: the Lucas-Kanade tracker (default) or the simulator's "
                        "ground truth (to tell tracker errors from model errors)")
    p.add_argument("--workers", type=int, default=None, help="processes for data, tracks and evaluation (default 2)")
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
        d = run_dir / "data"
        self.robot, self.robot_videos, self.human, self.held_out = d / "robot", d / "robot_videos", d / "human", d / "held_out"
        self.play = d / "play"
        self.models = run_dir / "models"
        self.t0 = time.perf_counter()

    @property
    def video_stores(self) -> list[Path]:
        """Every store with a task text: what the forward model learns from (the demos are videos too)."""
        return [self.robot, self.robot_videos, self.human]

    @property
    def track_stores(self) -> list[Path]:
        """Every store the tokenizer learns from: the videos and the play data (motion needs no task text)."""
        return [*self.video_stores, self.play]

    def stage(self, name: str, fn, position: str = "") -> dict:
        marker = self.stages_dir / f"{name}.json"
        if marker.exists():
            log.info("stage %s %s: done before, reused", position, name)
            return json.loads(marker.read_text())
        log.info("stage %s %s ... (%.1f min since the start)", position, name, (time.perf_counter() - self.t0) / 60)
        started = time.perf_counter()
        info = fn() or {}
        info["seconds"] = round(time.perf_counter() - started, 1)
        marker.write_text(json.dumps(info, indent=2))
        log.info("stage %s %s: %.1f s", position, name, info["seconds"])
        return info

    # -- stages ---------------------------------------------------------------------------------------
    def _generate(self, out: Path, tasks: list[str] | None, n: int, embodiment: str, seed_base: int,
                  video_only: bool = False) -> None:
        from training.generate_workcell import main as generate

        args = [str(out), *(["--tasks", *tasks] if tasks else ["--play"]), "--episodes-per-task", str(n),
                "--embodiment", embodiment, "--seed-base", str(seed_base), "--workers", str(self.s.workers),
                "--retries", "3"]
        if generate(args + (["--video-only"] if video_only else [])) != 0:
            raise RuntimeError(f"{embodiment} episode generation into {out} failed (see the log above)")

    def data(self) -> dict:
        from amplify_core.episodes import list_episodes

        s = self.s
        self._generate(self.robot, s.train_tasks, s.demos_per_task, "robot", 0)
        if s.robot_videos_per_task > s.demos_per_task:  # the training tasks' videos beyond their demos
            self._generate(self.robot_videos, s.train_tasks, s.robot_videos_per_task - s.demos_per_task, "robot",
                           20_000, video_only=True)
        self._generate(self.robot_videos, s.zero_shot_tasks, s.robot_videos_per_task, "robot", 20_000, video_only=True)
        self._generate(self.play, None, s.play_episodes, "robot", 30_000)
        self._generate(self.human, s.every_task, s.human_videos_per_task, "human", 50_000)
        self._generate(self.held_out, s.every_task, s.held_out_per_task, "robot", 70_000)
        self._generate(self.held_out, s.every_task, s.held_out_per_task, "human", 70_000)
        return {store.name: len(list_episodes(store)) for store in (*self.track_stores, self.held_out)}

    def tracks(self) -> dict:
        from training.main_job_health import track_stores

        stores = [*self.track_stores, self.held_out]
        failed = track_stores(stores, self.s.tracker, self.s.workers)
        if failed:
            raise RuntimeError(f"tracks failed for {len(failed)} episode(s): {failed[:3]}")
        for k in self.s.few_shot:  # the first k demos of every training task, as links (no copies)
            subset = self.demos(k)
            subset.mkdir(parents=True, exist_ok=True)
            for path in sorted(self.robot.glob("robot_*")):
                index = int(path.name.split(".")[0].rsplit("_", 1)[1])
                if index < k and not (subset / path.name).exists():
                    os.symlink(path.resolve(), subset / path.name)
        return {"tracker": self.s.tracker, "tracked": len(list(self.run.glob("data/*/*.tracks.h5")))}

    def tracks_health(self) -> dict:
        from training.main_job_health import label_report, tracker_accuracy

        out = {"labels": {store.name: label_report([store]) for store in self.track_stores}}
        if self.s.tracker == "lucas_kanade":
            out["tracker_vs_ground_truth"] = tracker_accuracy(self.held_out, self.s.health_episodes)
        return out

    def demos(self, k: int) -> Path:
        return self.robot if k == self.s.demos_per_task else self.run / "data" / f"robot_{k}_demos"

    def train(self, what: str) -> dict:
        from amplify_core.configs import load_config
        from training.stages import train_forward, train_inverse, train_regressor, train_tokenizer

        config, s, m = load_config(self.s.config), self.s, self.models
        if what == "tokenizer":
            r = train_tokenizer(config, self.track_stores, m, s.tokenizer_steps, self.device)
        elif what in ("forward", "forward_robot"):
            stores = self.video_stores if what == "forward" else [self.robot, self.robot_videos]
            r = train_forward(config, stores, m, m / "tokenizer.pt", s.forward_steps, self.device, name=what)
        elif what == "regressor":
            r = train_regressor(config, self.video_stores, m, s.regressor_steps or s.forward_steps, self.device)
        else:
            kind, k = what.split("_")
            codes = kind == "amplify"
            steps = s.inverse_steps_for(int(k), s.inverse_steps or config.train_inverse.steps)
            stores = [self.demos(int(k))] + ([] if kind == "bcnoplay" else [self.play])
            r = train_inverse(config, stores, m, m / "tokenizer.pt" if codes else None,
                              m / "forward.pt" if codes else None, steps,
                              finetune_steps=max(1, round(steps * s.finetune_share)) if codes else 0,
                              use_codes=codes, device=self.device, name=what, task_text=kind == "bctext",
                              demo_share=s.demo_share)
            if codes:  # the fine-tuned model is the one AMPLIFY runs with (and the one its codes match)
                (m / f"{what}_finetuned.pt").replace(m / f"{what}.pt")
        return {"checkpoint": str(m / f"{what}.pt"), "final_loss": r.losses[-1] if r.losses else None,
                "losses": r.losses}

    def models_health(self) -> dict:
        from training.main_job_health import forward_agreement, inverse_open_loop, tokenizer_health

        m = self.models
        out = {"tokenizer": tokenizer_health(m / "tokenizer.pt", [self.held_out]),
               "forward": forward_agreement(m / "tokenizer.pt", m / "forward.pt", m / "text_embeddings.npz",
                                            [self.held_out]),
               "inverse": {}, "inverse_zero_shot": {}}
        for name in self.s.inverse_models():  # on the training tasks (the target) and on the unseen zero-shot tasks
            forward = m / "forward.pt" if name.startswith("amplify") else None
            for key, tasks in (("inverse", self.s.train_tasks), ("inverse_zero_shot", self.s.zero_shot_tasks)):
                out[key][name] = inverse_open_loop(m / f"{name}.pt", forward, m / "text_embeddings.npz",
                                                   [self.held_out], tasks, every=4)
        return out

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
                if e["demos"] in (s.demos_per_task, s.demo_counts[0]) and "robot_videos_only" not in name:
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

        m = self.models
        models = Predictors(m / "tokenizer.pt", m / "forward.pt", m / "regressor.pt", m / "text_embeddings.npz")
        scores = score(models, [self.held_out])
        episode = next(p for p in list_episodes(self.held_out) if p.name.startswith("robot_"))
        picture = figure(models, episode, frame=8, view="front", out=self.run / "tracks_figure.png")
        return {"scores": scores, "figure": str(picture), "figure_episode": episode.name}

    def report(self) -> dict:
        from training.main_job_report import write_report

        path = write_report(self, REPORT_SECTIONS)
        return {"report": str(path), "results": str(self.run / "results.json")}

    def run_all(self) -> Path:
        models = ["tokenizer", "forward", "forward_robot", "regressor", *self.s.inverse_models()]
        plan = [("data", self.data), ("tracks", self.tracks), ("tracks_health", self.tracks_health)]
        plan += [(what, lambda w=what: self.train(w)) for what in models]
        plan += [("models_health", self.models_health), ("evaluate", self.evaluate),
                 ("tracks_eval", self.tracks_eval), ("report", self.report)]
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
    if args.tracks:
        settings.tracker = args.tracks
    run_dir = args.run_dir or (QUICK_RUN_DIR if args.quick else DEFAULT_RUN_DIR)
    started = time.perf_counter()
    try:
        report = Job(run_dir, settings, args.device, argv).run_all()
    except RuntimeError as exc:
        print(f"amplify-main: {exc}", file=sys.stderr)
        return 1
    print(f"done in {time.perf_counter() - started:.0f} s: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
