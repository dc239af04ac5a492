"""The main job's report: RUN_DIR/report.md with its figures, from what the stages measured in this run."""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict
from pathlib import Path

from amplify_core.metrics import success_interval


def pooled(result: dict, tasks: list[str]) -> dict:
    """Successes, episodes, rate and 95 % Wilson interval over ``tasks`` of one evaluation."""
    k = sum(result["summary"][t]["successes"] for t in tasks)
    n = sum(result["summary"][t]["episodes"] for t in tasks)
    return {"successes": k, "episodes": n, "success_rate": k / n, "ci95": list(success_interval(k, n))}


def cell(s: dict) -> str:
    return f"{s['successes']}/{s['episodes']} = {s['success_rate']:.2f} [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]"


def ratio(a: dict, b: dict) -> str:
    if b["success_rate"] == 0:
        return "- (both 0)" if a["success_rate"] == 0 else "- (baseline 0)"
    return f"{a['success_rate'] / b['success_rate']:.2f}x"


def compare(a: dict, b: dict) -> str:
    """Whether two success rates differ beyond their 95 % intervals, in words."""
    if a["ci95"][0] > b["ci95"][1]:
        return "higher, beyond the 95 % intervals"
    if a["ci95"][1] < b["ci95"][0]:
        return "lower, beyond the 95 % intervals"
    return "the 95 % intervals overlap: no difference shown"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _few_shot_plot(rows: list[tuple[int, dict, dict]], text_bc: dict[int, dict], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    series = {"AMPLIFY": {k: a for k, a, _ in rows}, "BC": {k: b for k, _, b in rows}}
    if text_bc:
        series["BC+text"] = text_bc
    for label, points in series.items():
        x = sorted(points)
        y = [points[k]["success_rate"] for k in x]
        err = [[v - points[k]["ci95"][0] for v, k in zip(y, x)], [points[k]["ci95"][1] - v for v, k in zip(y, x)]]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label)
    ax.set_xlabel("action demos per training task")
    ax.set_ylabel("success rate (95 % interval)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xticks([r[0] for r in rows])
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _bars(groups: dict[str, dict[str, dict]], path: Path, title: str) -> None:
    """groups: x label -> {series name -> pooled stats}."""
    import numpy as np

    plt = _plt()
    series = list(next(iter(groups.values())))
    fig, ax = plt.subplots(figsize=(1.8 + 1.4 * len(groups), 3.0))
    width = 0.8 / len(series)
    for i, name in enumerate(series):
        rates = np.array([g[name]["success_rate"] for g in groups.values()])
        lo = np.array([g[name]["ci95"][0] for g in groups.values()])
        hi = np.array([g[name]["ci95"][1] for g in groups.values()])
        x = np.arange(len(groups)) + (i - (len(series) - 1) / 2) * width
        ax.bar(x, rates, width, label=name, yerr=[rates - lo, hi - rates], capsize=3)
    ax.set_xticks(np.arange(len(groups)), [g.replace(" the ", "\n") for g in groups], fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("success rate (95 % interval)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _curves_plot(stages: dict, names: list[str], path: Path) -> None:
    plt = _plt()
    names = [n for n in names if stages.get(n, {}).get("losses")]
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.3 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        ax.plot(stages[name]["losses"], lw=0.8)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.supxlabel("optimizer step", fontsize=8)
    fig.supylabel("training loss", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _track_rows(scores: dict) -> list[str]:
    rows = ["| prediction | MSE (all) | pixel acc. (all) | Delta_AUC (all) | MSE (moving) | pixel acc. (moving) | "
            "Delta_AUC (moving) |", "|---|---|---|---|---|---|---|"]
    names = {"forward": "AMPLIFY forward, decoded by the tokenizer", "regression": "direct regression (MSE baseline)",
             "tokenizer": "tokenizer reconstruction (ceiling)", "static": "no motion (floor)"}
    for method, label in names.items():
        a, m = scores[method]["all"], scores[method]["moving"]
        moving = (f"{m['mse']:.5f} | {m['pixel_accuracy']:.3f} | {m['delta_auc']:.3f}" if m else "- | - | -")
        rows.append(f"| {label} | {a['mse']:.5f} | {a['pixel_accuracy']:.3f} | {a['delta_auc']:.3f} | {moving} |")
    return rows


def write_report(job, sections: list[str]) -> Path:
    run, s = job.run, job.s
    markers = sorted((p for p in job.stages_dir.glob("*.json") if p.stem != "report"), key=lambda p: p.stat().st_mtime)
    stages = {p.stem: json.loads(p.read_text()) for p in markers}  # in the order they ran
    evaluations = s.evaluations()
    results = {name: json.loads(Path(path).read_text()) for name, path in stages["evaluate"]["results"].items()}
    all_k = s.demos_per_task
    lines = ["# AMPLIFY on the workcell: report", "",
             "Every number below was measured in this run (RUN_DIR/stages/*.json, RUN_DIR/eval/*.json). Success "
             "is k/n episodes = rate [95 % Wilson interval]; every policy ran on the same seeds.", ""]

    data = stages["data"]
    lines += [sections[0], "",
              f"- training tasks (robot demos + videos): {', '.join(s.train_tasks)}",
              f"- zero-shot tasks (videos only: no inverse model ever sees their actions): "
              f"{', '.join(s.zero_shot_tasks)}",
              f"- episodes: {data['robot']} robot demos ({s.demos_per_task} per training task), {data['human']} "
              f"human videos ({s.videos_per_task} per task, no actions), {data['held_out']} held-out videos "
              f"(track prediction)",
              f"- models: `{s.config}` config. AMPLIFY = tokenizer + forward (all videos) + inverse with codes. "
              f"BC = the paper's \"inverse only\" baseline: the same inverse network without codes (and so without "
              f"the task text: it must tell the task from the scene), same demos and seeds",
              f"- evaluation: {s.eval_episodes} episodes per task and policy, seeds {s.eval_seed_start}.."
              f"{s.eval_seed_start + s.eval_episodes - 1}, step limit {s.eval_max_steps or 'of the workcell config'}",
              "", sections[1], "", "| stage | seconds |", "|---|---|"]
    # an evaluation finished before an interruption is reused: its own measured time counts, not the last pass's
    seconds = {name: info["seconds"] for name, info in stages.items()}
    seconds["evaluate"] = max(seconds["evaluate"], sum(r.get("seconds", 0) for r in results.values()))
    lines += [f"| {name} | {sec} |" for name, sec in seconds.items()]
    total = sum(seconds.values())
    lines += [f"| total | {total:.0f} ({total / 60:.1f} min) |", ""]

    # 1. few-shot
    rows = [(k, pooled(results[f"AMPLIFY_{k}"], s.train_tasks), pooled(results[f"BC_{k}"], s.train_tasks))
            for k in s.demo_counts]
    text_bc = {k: pooled(results[f"BCtext_{k}"], s.train_tasks) for k in s.demo_counts if f"BCtext_{k}" in results}
    _few_shot_plot(rows, text_bc, run / "few_shot.png")
    lines += [sections[2], "", "Training tasks pooled; the forward model saw all videos in every row. BC+text = the BC "
              "network with the task-text token (language-conditioned BC, where trained).", "",
              "| demos per task | AMPLIFY | BC | AMPLIFY / BC | BC+text | AMPLIFY / BC+text |", "|---|---|---|---|---|---|"]
    lines += [f"| {k} | {cell(a)} | {cell(b)} | {ratio(a, b)} | " +
              (f"{cell(text_bc[k])} | {ratio(a, text_bc[k])} |" if k in text_bc else "- | - |") for k, a, b in rows]
    lines += ["", "![few-shot success](few_shot.png)", "", "Per task:", "",
              "| task | " + " | ".join(f"AMPLIFY {k} | BC {k}" for k in s.demo_counts) + " |",
              "|---|" + "---|---|" * len(s.demo_counts)]
    for task in s.train_tasks:
        lines.append(f"| {task} | " + " | ".join(
            f"{cell(results[f'AMPLIFY_{k}']['summary'][task])} | {cell(results[f'BC_{k}']['summary'][task])}"
            for k in s.demo_counts) + " |")
    few_k, few_a, few_b = rows[0]
    lines += ["", f"Target pattern (paper): AMPLIFY >= 1.5x BC with few demos. Measured with {few_k} demo(s) per "
              f"task: AMPLIFY {few_a['success_rate']:.2f} vs BC {few_b['success_rate']:.2f} ({ratio(few_a, few_b)}; "
              f"{compare(few_a, few_b)})"
              + (f", vs BC+text {text_bc[few_k]['success_rate']:.2f} ({ratio(few_a, text_bc[few_k])}; "
                 f"{compare(few_a, text_bc[few_k])})." if few_k in text_bc else "."), ""]

    # 2. zero-shot
    policies = ["AMPLIFY", "BC"] + (["BCtext"] if f"BCtext_{all_k}" in results else [])
    zero = {task: {p.replace("BCtext", "BC+text"): results[f"{p}_{all_k}"]["summary"][task] for p in policies}
            for task in s.zero_shot_tasks}
    _bars(zero, run / "zero_shot.png", f"zero-shot tasks (inverse models trained on {all_k} demos of the others)")
    names = list(next(iter(zero.values())))
    lines += [sections[3], "", f"Inverse models trained on all {all_k} demos of the training tasks only.", "",
              "| zero-shot task | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {task} | " + " | ".join(cell(z[n]) for n in names) + " |" for task, z in zero.items()]
    lines += ["", "![zero-shot success](zero_shot.png)", ""]

    # 3. cross-embodiment
    with_h, without_h = results[f"AMPLIFY_{all_k}"], results["AMPLIFY_robot_videos_only"]
    groups = {"training tasks": {"forward on robot + human videos": pooled(with_h, s.train_tasks),
                                 "forward on robot videos only": pooled(without_h, s.train_tasks)},
              "zero-shot tasks": {"forward on robot + human videos": pooled(with_h, s.zero_shot_tasks),
                                  "forward on robot videos only": pooled(without_h, s.zero_shot_tasks)}}
    _bars(groups, run / "cross_embodiment.png", "AMPLIFY: forward model with / without human videos")
    lines += [sections[4], "", f"The same inverse model ({all_k} demos per task, codes); only the forward model "
              "differs.", "", "| tasks | forward on robot + human videos | forward on robot videos only |",
              "|---|---|---|"]
    lines += [f"| {g} | {cell(v['forward on robot + human videos'])} | {cell(v['forward on robot videos only'])} |"
              for g, v in groups.items()]
    lines += ["", "![cross-embodiment](cross_embodiment.png)", ""]

    # track prediction
    te = stages["tracks_eval"]
    sc = te["scores"]
    lines += [sections[5], "", f"{sc['frames']} frames of {sc['episodes']} held-out videos (every 4th frame), all "
              f"three views, steps 1..T-1 against the Lucas-Kanade reference; 'moving' = points that move > 1 px "
              f"({100 * sc['moving_fraction']:.1f} % of them).", ""]
    lines += _track_rows(sc)
    lines += ["", f"Reference | AMPLIFY forward | regression, front view of {te['figure_episode']}, frame 8:", "",
              "![tracks](tracks_figure.png)", ""]

    lines += [sections[6], ""]
    for name in results:
        for gif in sorted((run / "eval" / f"gifs_{name}").glob("*.gif")):
            lines.append(f"- {name.replace('_', ' ')}, {gif.stem.replace('_', ' ')}: ![]({gif.relative_to(run)})")
    names = [n for n in stages if "losses" in stages[n]]
    _curves_plot(stages, names, run / "training_curves.png")
    lines += ["", sections[7], "", "![training losses](training_curves.png)", "",
              "| model | final training loss |", "|---|---|"]
    lines += [f"| {n} | {stages[n]['final_loss']:.4f} |" for n in names if stages[n].get("final_loss") is not None]
    lines += ["", sections[8], "", "```bash", shlex.join(["amplify-main", *job.argv]), "```", "",
              "Settings:", "", "```json", json.dumps(asdict(s), indent=2), "```", "",
              "Evaluations:", "", "```json", json.dumps(evaluations, indent=2), "```", ""]
    path = run / "report.md"
    path.write_text("\n".join(lines))
    return path
