"""The main job's report: RUN_DIR/report.md with its figures, from what the stages measured in this run."""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict
from pathlib import Path


def _success_rows(results: dict, tasks: list[str], zero_shot: list[str]) -> list[str]:
    rows = ["| task | setting | " + " | ".join(results) + " |", "|---|---|" + "---|" * len(results)]
    for task in [*tasks, "all"]:
        setting = "zero-shot (videos only)" if task in zero_shot else ("all tasks" if task == "all" else "trained")
        cells = []
        for res in results.values():
            s = res["summary"].get(task)
            cells.append(f"{s['successes']}/{s['episodes']} = {s['success_rate']:.2f} "
                         f"[{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]" if s else "-")
        rows.append(f"| {task} | {setting} | " + " | ".join(cells) + " |")
    return rows


def _bar_plot(results: dict, tasks: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(tasks), 3.2))
    width = 0.8 / len(results)
    for i, (name, res) in enumerate(results.items()):
        rates = np.array([res["summary"][t]["success_rate"] for t in tasks])
        lo = np.array([res["summary"][t]["ci95"][0] for t in tasks])
        hi = np.array([res["summary"][t]["ci95"][1] for t in tasks])
        x = np.arange(len(tasks)) + (i - (len(results) - 1) / 2) * width
        ax.bar(x, rates, width, label=name, yerr=[rates - lo, hi - rates], capsize=3)
    ax.set_xticks(np.arange(len(tasks)), [t.replace(" the ", "\n") for t in tasks], fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("success rate (95 % interval)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _curves_plot(stages: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in ("tokenizer", "forward", "amplify", "bc") if stages.get(n, {}).get("losses")]
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        ax.plot(stages[name]["losses"])
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("optimizer step", fontsize=8)
    axes[0][0].set_ylabel("training loss", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(job, sections: list[str]) -> Path:
    run, s = job.run, job.s
    order = ["data", "tracks", "tokenizer", "forward", "amplify", "bc", "evaluate"]
    stages = {name: json.loads((job.stages_dir / f"{name}.json").read_text()) for name in order}
    results = {name: json.loads(Path(path).read_text()) for name, path in stages["evaluate"]["results"].items()}
    tasks = [*s.train_tasks, *s.zero_shot_tasks]
    _bar_plot(results, tasks, run / "success.png")
    _curves_plot(stages, run / "training_curves.png")
    lines = ["# AMPLIFY on the workcell: report", "",
             "Every number below was measured in this run (RUN_DIR/stages/*.json, RUN_DIR/eval/*.json).", "",
             sections[0], "",
             f"- training tasks (robot demos + videos): {', '.join(s.train_tasks)}",
             f"- zero-shot tasks (videos only, no actions for any inverse model): {', '.join(s.zero_shot_tasks)}",
             f"- {stages['data']['robot_episodes']} robot demos ({s.demos_per_task} per training task), "
             f"{stages['data']['human_episodes']} human videos ({s.videos_per_task} per task)",
             f"- models: `{s.config}` config; AMPLIFY = tokenizer + forward (all videos) + inverse with codes; "
             f"BC = the same inverse network without codes, same demos and seeds",
             f"- evaluation: {s.eval_episodes} episodes per task, seeds {s.eval_seed_start}.."
             f"{s.eval_seed_start + s.eval_episodes - 1} (the same for both), step limit "
             f"{s.eval_max_steps or 'of the workcell config'}", "",
             sections[1], "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {info['seconds']} |" for name, info in stages.items() if name != "report"]
    lines += ["", sections[2], ""] + _success_rows(results, tasks, s.zero_shot_tasks)
    lines += ["", "![success rates](success.png)", "", sections[3], ""]
    for name in results:
        for gif in sorted((run / "eval" / f"gifs_{name}").glob("*.gif")):
            lines.append(f"- {name}, {gif.stem.replace('_', ' ')}: ![]({gif.relative_to(run)})")
    lines += ["", sections[4], "", "![training losses](training_curves.png)", "",
              "| model | final training loss |", "|---|---|"]
    lines += [f"| {n} | {stages[n]['final_loss']:.4f} |" for n in ("tokenizer", "forward", "amplify", "bc")
              if stages.get(n, {}).get("final_loss") is not None]
    lines += ["", sections[5], "", "```bash", shlex.join(["amplify-main", *job.argv]), "```", "",
              "Settings:", "", "```json", json.dumps(asdict(s), indent=2), "```", ""]
    path = run / "report.md"
    path.write_text("\n".join(lines))
    return path
