"""The main job's report: RUN_DIR/report.md with its figures, and RUN_DIR/results.json with every number in it,
from what the stages measured in this run."""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict
from pathlib import Path

from amplify_core.metrics import success_interval

# What the issues ask of the embedded default (docs/main_job.md); the report prints each figure beside its target.
TARGETS = {
    "bctext_all_demos": 0.6,  # success averaged over the training tasks
    "amplify_all_demos": 0.5,
    "first_action_error_m": 0.015,  # held-out demos, every position dimension
    "tracker_moving_delta_auc": 0.9,  # Lucas-Kanade against the simulator's ground truth
    "tokenizer_moving_delta_auc": 0.8,  # held-out videos
    "moving_median_step_px": 1.5,
    "moving_not_centre_fraction": 0.7,
}


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


def verdict(value: float, target: float, higher: bool = True) -> str:
    ok = value >= target if higher else value <= target
    return f"{'met' if ok else 'NOT met'}: target {'>=' if higher else '<='} {target:g}"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bars(groups: dict[str, dict[str, dict]], path: Path, title: str) -> None:
    """A grouped bar chart of success rates with their 95 % intervals; groups: x label -> {series -> pooled}."""
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


def _demos_plot(series: dict[str, dict[int, dict]], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    for label, points in series.items():
        x = sorted(points)
        y = [points[k]["success_rate"] for k in x]
        err = [[v - points[k]["ci95"][0] for v, k in zip(y, x)], [points[k]["ci95"][1] - v for v, k in zip(y, x)]]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("action demos per training task")
    ax.set_ylabel("success rate (95 % interval)")
    ax.set_ylim(-0.02, 1.02)
    ticks = sorted({k for points in series.values() for k in points})
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.legend(fontsize=8)
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


def _track_rows(scores: dict, names: dict) -> list[str]:
    rows = ["| prediction | MSE (all) | pixel acc. (all) | Delta_AUC (all) | MSE (moving) | pixel acc. (moving) | "
            "Delta_AUC (moving) |", "|---|---|---|---|---|---|---|"]
    for method, label in names.items():
        a, m = scores[method]["all"], scores[method]["moving"]
        moving = (f"{m['mse']:.5f} | {m['pixel_accuracy']:.3f} | {m['delta_auc']:.3f}" if m else "- | - | -")
        rows.append(f"| {label} | {a['mse']:.5f} | {a['pixel_accuracy']:.3f} | {a['delta_auc']:.3f} | {moving} |")
    return rows


def _health_lines(stages: dict, s) -> tuple[list[str], dict]:
    """The Health section and its figures: one check per stage, each beside its target."""
    tracks, models = stages["tracks_health"], stages["models_health"]
    lines = ["One figure per stage, so that a regression shows where it starts. Targets from the issues "
             "(docs/main_job.md).", "", "**Labels** (local-window classes of the tracks the tokenizer trains on; trusted "
             "steps only: the tracker saw the point at both ends; moving = > 1 px from its start):", "",
             "| store | trusted labels | centre class | moving point-steps | moving: median step (px) | moving: "
             "not centre |", "|---|---|---|---|---|---|"]
    for store, r in tracks["labels"].items():
        lines.append(f"| {store} | {r['trusted_labels']} | {r['centre_fraction']:.3f} | {r['moving_fraction']:.3f} | "
                     f"{r['moving_median_step_px']:.2f} ({verdict(r['moving_median_step_px'], TARGETS['moving_median_step_px'])}) | "
                     f"{r['moving_not_centre_fraction']:.3f} ({verdict(r['moving_not_centre_fraction'], TARGETS['moving_not_centre_fraction'])}) |")
    health = {"labels": tracks["labels"]}
    if "tracker_vs_ground_truth" in tracks:
        lines += ["", "**Tracker** (Lucas-Kanade against the simulator's ground truth, held-out episodes, "
                  "`amplify-workcell-track-accuracy`; coverage = share of the ground truth's visible point-steps the "
                  "tracker keeps):", "", "| episodes | all: Delta_AUC | all: coverage | moving: Delta_AUC | "
                  "moving: pixel acc. | moving: coverage |", "|---|---|---|---|---|---|"]
        for emb, r in tracks["tracker_vs_ground_truth"].items():
            a, m = r["views"]["all"], r["views"]["moving"]
            lines.append(f"| {emb} ({r['episodes']}) | {a['delta_auc']:.3f} | {a['coverage']:.3f} | {m['delta_auc']:.3f} "
                         f"({verdict(m['delta_auc'], TARGETS['tracker_moving_delta_auc'])}) | {m['pixel_accuracy']:.3f} | "
                         f"{m['coverage']:.3f} |")
        health["tracker"] = tracks["tracker_vs_ground_truth"]
    else:
        lines += ["", f"**Tracker**: the simulator's ground-truth tracks (`--tracks {s.tracker}`)."]
    tok = models["tokenizer"]
    lines += ["", f"**Tokenizer** (its own codes of {tok['frames']} held-out windows decoded; visible steps):", "",
              "| decoded as | Delta_AUC (all) | Delta_AUC (moving) | pixel acc. (moving) |", "|---|---|---|---|"]
    for method, label in (("expected", "expected displacement"), ("argmax", "most likely class"),
                          ("no_motion", "no motion (floor)")):
        a, m = tok[method]["all"], tok[method]["moving"]
        target = f" ({verdict(m['delta_auc'], TARGETS['tokenizer_moving_delta_auc'])})" if method == "expected" else ""
        lines.append(f"| {label} | {a['delta_auc']:.3f} | {m['delta_auc']:.3f}{target} | {m['pixel_accuracy']:.3f} |")
    c, ce = tok["codes"], tok["moving_ce"]
    lines += ["", f"Codes in use: {c['distinct']} of {c['codebook']} (perplexity {c['perplexity']:.0f}, "
              f"{c['windows']} windows). Moving-point cross-entropy of the decoder: {ce['true']:.3f} with the true "
              f"codes, {ce['shuffled']:.3f} with codes of other windows (the codes carry the motion when the first is "
              f"far below the second).", "", "**Forward model** (greedy codes against the tokenizer's codes of "
              "held-out frames):", "", "| task (embodiment) | code agreement |", "|---|---|"]
    lines += [f"| {task} | {r['code_agreement']:.3f} |" for task, r in models["forward"].items()]
    lines += ["", "**Inverse models** (open loop on the held-out robot demos of the training tasks: mean absolute "
              "error of the first action and of the whole 16-step chunk, per dimension; cm, rad, gripper 0..1; "
              "AMPLIFY with the forward model's codes, as it runs):", "",
              "| model | x | y | z | rx | ry | rz | gripper | chunk x | chunk y | chunk z |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]

    def row(name, r):
        f, ch = r["first_action"], r["chunk"]
        return (f"| {name} | " + " | ".join(f"{100 * f[k]:.2f}" for k in ("x", "y", "z"))
                + " | " + " | ".join(f"{f[k]:.3f}" for k in ("rx", "ry", "rz", "gripper"))
                + " | " + " | ".join(f"{100 * ch[k]:.2f}" for k in ("x", "y", "z")) + " |")

    lines += [row(name, r) for name, r in models["inverse"].items()]
    full = [n for n in models["inverse"] if n.endswith(f"_{s.demos_per_task}")]
    worst = max(max(models["inverse"][n]["first_action"][k] for k in ("x", "y", "z")) for n in full)
    lines += ["", f"Largest first-action position error of the all-demos models ({', '.join(full)}): "
              f"{100 * worst:.2f} cm ({verdict(worst, TARGETS['first_action_error_m'], higher=False)} m, per "
              f"dimension); the few-shot models are printed for comparison."]
    if models.get("inverse_zero_shot"):
        lines += ["", "The same on the held-out demos of the zero-shot tasks, whose actions no inverse model saw "
                  "(what the codes alone carry over):", "",
                  "| model | x | y | z | rx | ry | rz | gripper | chunk x | chunk y | chunk z |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        lines += [row(name, r) for name, r in models["inverse_zero_shot"].items()]
    lines.append("")
    health.update(tokenizer=tok, forward=models["forward"], inverse=models["inverse"],
                  inverse_zero_shot=models.get("inverse_zero_shot", {}), worst_first_action_position_error_m=worst)
    return lines, health


def _commit() -> str:
    """The commit of the code that ran (``+dirty`` when its tracked files differ from it; ``unknown`` outside git)."""
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=here).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True, cwd=here).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def claims(job, out: dict, table: dict, zero_pooled: dict, results: dict) -> dict:
    """The figures the paper's claims are checked on, as [successes, episodes] and Delta_AUC on moving points."""
    import datetime

    s = job.s
    kn = lambda p: [p["successes"], p["episodes"]]  # noqa: E731
    sc = out["track_prediction"]
    c = {"commit": _commit(), "date": datetime.date.today().isoformat(),
         "stage_minutes": out["stages"]["total_minutes"],
         "bctext_all_demos": kn(table["BCtext"][s.demos_per_task])}
    for k in s.few_shot:
        c[f"few_shot_{k}"] = {"amplify": kn(table["AMPLIFY"][k]), "bc": kn(table["BC"][k]),
                              "bctext": kn(table["BCtext"][k])}
        if f"BCnoplay_{k}" in results:  # beside the claim: BC on the same demos without the play data
            c[f"few_shot_{k}"]["bc_no_play"] = kn(pooled(results[f"BCnoplay_{k}"], s.train_tasks))
    c["zero_shot"] = {"amplify": kn(zero_pooled["AMPLIFY"]), "bc": kn(zero_pooled["BC"]),
                      "bctext": kn(zero_pooled["BCtext"])}
    moving = lambda name: sc[name]["moving"]["delta_auc"] if sc[name]["moving"] else None  # noqa: E731
    c.update(tokenizer_moving=moving("tokenizer"), no_motion_moving=moving("static"), forward_moving=moving("forward"),
             regression_moving=moving("regression"))
    return c


def write_report(job, sections: list[str]) -> Path:
    run, s = job.run, job.s
    markers = sorted((p for p in job.stages_dir.glob("*.json") if p.stem != "report"), key=lambda p: p.stat().st_mtime)
    stages = {p.stem: json.loads(p.read_text()) for p in markers}  # in the order they ran
    evaluations = s.evaluations()
    results = {name: json.loads(Path(path).read_text()) for name, path in stages["evaluate"]["results"].items()}
    all_k, tasks, zs = s.demos_per_task, s.train_tasks, s.zero_shot_tasks
    out = {"settings": asdict(s), "stages": {}, "evaluations": {}}
    lines = ["# AMPLIFY on the workcell: report", "",
             "Every number below was measured in this run (RUN_DIR/stages/*.json, RUN_DIR/eval/*.json; all of them in "
             "RUN_DIR/results.json). Success is k/n episodes = rate [95 % Wilson interval]; every policy ran on the "
             "same seeds.", ""]

    data = stages["data"]
    lines += [sections[0], "",
              f"- training tasks (robot demos with actions): {', '.join(tasks)}",
              f"- zero-shot tasks (action-free robot videos only: no inverse model ever sees their actions): "
              f"{', '.join(zs)}",
              f"- episodes: {data['robot']} robot demos ({all_k} per training task), {data['robot_videos']} action-free "
              f"robot videos (every task has {s.robot_videos_per_task} robot videos, its demos included), "
              f"{data['play']} play episodes (actions, no task text: random reaches, pushes, grasps and drops, drawer "
              f"both ways), {data['human']} human videos ({s.human_videos_per_task} per task), {data['held_out']} "
              f"held-out demos and videos (health checks, track prediction)",
              f"- tracks: {s.tracker.replace('_', '-')}; models: `{s.config}` config "
              f"(`config/models/{s.config}.yaml`). AMPLIFY = tokenizer + forward (every video) + inverse with codes, "
              f"trained on the tokenizer's codes then fine-tuned on the forward model's. BC = the paper's \"inverse "
              f"only\" baseline: the same inverse network without codes (and without the task text: it must tell the "
              f"task from the scene). BC+text = BC with the task-text token. Same demos, play data and seeds for all "
              f"three; BC without play = BC on the demos alone",
              f"- evaluation: {s.eval_episodes} episodes per task and policy, seeds {s.eval_seed_start}.."
              f"{s.eval_seed_start + s.eval_episodes - 1}, step limit {s.eval_max_steps or 'of the workcell config'}",
              "", sections[1], "", "| stage | seconds |", "|---|---|"]
    # an evaluation finished before an interruption is reused: its own measured time counts, not the last pass's
    seconds = {name: info["seconds"] for name, info in stages.items()}
    seconds["evaluate"] = round(max(seconds["evaluate"], sum(r.get("seconds", 0) for r in results.values())), 1)
    lines += [f"| {name} | {sec} |" for name, sec in seconds.items()]
    total = sum(seconds.values())
    lines += [f"| total | {total:.0f} ({total / 60:.1f} min) |", ""]
    out["stages"] = {"seconds": seconds, "total_minutes": round(total / 60, 2)}

    health_lines, out["health"] = _health_lines(stages, s)
    lines += [sections[2], "", *health_lines]

    # all demos / few-shot
    table = {kind: {k: pooled(results[f"{kind}_{k}"], tasks) for k in s.demo_counts} for kind in ("AMPLIFY", "BC", "BCtext")}
    out["evaluations"] = {name: {"pooled_training_tasks": pooled(r, [t for t in tasks if t in r["summary"]]),
                                 "per_task": {t: v for t, v in r["summary"].items() if t != "all"}}
                          for name, r in results.items()}
    a, b, t = table["AMPLIFY"][all_k], table["BC"][all_k], table["BCtext"][all_k]
    lines += [sections[3], "", f"Training tasks pooled, {all_k} demos per task.", "",
              "| AMPLIFY | BC | BC+text |", "|---|---|---|", f"| {cell(a)} | {cell(b)} | {cell(t)} |", "",
              f"Learnability: BC+text {t['success_rate']:.2f} ({verdict(t['success_rate'], TARGETS['bctext_all_demos'])}), "
              f"AMPLIFY {a['success_rate']:.2f} ({verdict(a['success_rate'], TARGETS['amplify_all_demos'])}).", "",
              "Per task:", "", "| task | AMPLIFY | BC | BC+text |", "|---|---|---|---|"]
    lines += [f"| {task} | " + " | ".join(cell(results[f"{p}_{all_k}"]["summary"][task]) for p in ("AMPLIFY", "BC", "BCtext"))
              + " |" for task in tasks]
    series = {"AMPLIFY": table["AMPLIFY"], "BC": table["BC"], "BC+text": table["BCtext"]}
    _demos_plot(series, run / "few_shot.png")
    lines += ["", sections[4], "", "Training tasks pooled; the forward model saw every video in every row; every "
              "inverse model but 'BC without play' also learnt from the play data.", "",
              "| demos per task | AMPLIFY | BC | AMPLIFY / BC | BC+text | AMPLIFY / BC+text | BC without play |",
              "|---|---|---|---|---|---|---|"]
    for k in s.demo_counts:
        a, b, t = table["AMPLIFY"][k], table["BC"][k], table["BCtext"][k]
        noplay = cell(pooled(results[f"BCnoplay_{k}"], tasks)) if f"BCnoplay_{k}" in results else "-"
        lines.append(f"| {k} | {cell(a)} | {cell(b)} | {ratio(a, b)} | {cell(t)} | {ratio(a, t)} | {noplay} |")
    lines += ["", "![success against demos](few_shot.png)", ""]
    for k in s.few_shot:
        a, b, t = table["AMPLIFY"][k], table["BC"][k], table["BCtext"][k]
        lines += [f"With {k} demo(s) per task: AMPLIFY {a['success_rate']:.2f} vs BC {b['success_rate']:.2f} "
                  f"({ratio(a, b)}; {compare(a, b)}), vs BC+text {t['success_rate']:.2f} ({ratio(a, t)}; {compare(a, t)}).",
                  "", "| task | AMPLIFY | BC | BC+text |", "|---|---|---|---|"]
        lines += [f"| {task} | " + " | ".join(cell(results[f"{p}_{k}"]["summary"][task]) for p in ("AMPLIFY", "BC", "BCtext"))
                  + " |" for task in tasks]
        lines.append("")

    # zero-shot
    zero = {task: {p.replace("BCtext", "BC+text"): results[f"{p}_{all_k}"]["summary"][task]
                   for p in ("AMPLIFY", "BC", "BCtext")} for task in zs}
    bars(zero, run / "zero_shot.png", f"zero-shot tasks (inverse models trained on {all_k} demos of the others)")
    names = list(next(iter(zero.values())))
    zero_pooled = {p: pooled(results[f"{p}_{all_k}"], zs) for p in ("AMPLIFY", "BC", "BCtext")}
    lines += [sections[5], "", f"The inverse models of the all-demos row ({all_k} demos of each training task and the play data); the "
              "forward model saw action-free robot videos of these tasks.", "",
              "| zero-shot task | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {task} | " + " | ".join(cell(z[n]) for n in names) + " |" for task, z in zero.items()]
    lines += [f"| **pooled** | " + " | ".join(cell(zero_pooled[p]) for p in ("AMPLIFY", "BC", "BCtext")) + " |", "",
              "![zero-shot success](zero_shot.png)", ""]
    out["zero_shot"] = zero_pooled

    # cross-embodiment
    k = s.few_shot[0] if s.few_shot else all_k
    with_h, without_h = results[f"AMPLIFY_{k}"], results[f"AMPLIFY_{k}_robot_videos_only"]
    groups = {"training tasks": {"forward on robot + human videos": pooled(with_h, tasks),
                                 "forward on robot videos only": pooled(without_h, tasks)}}
    bars(groups, run / "cross_embodiment.png", "AMPLIFY: forward model with / without human videos")
    g = groups["training tasks"]
    lines += [sections[6], "", f"The same inverse model ({k} demos per task, codes); only the forward model differs.",
              "", "| tasks | forward on robot + human videos | forward on robot videos only |", "|---|---|---|",
              f"| training tasks | {cell(g['forward on robot + human videos'])} | {cell(g['forward on robot videos only'])} |",
              "", "![cross-embodiment](cross_embodiment.png)", ""]
    out["cross_embodiment"] = g

    # track prediction
    te = stages["tracks_eval"]
    sc = te["scores"]
    lines += [sections[7], "", f"{sc['frames']} windows of {sc['episodes']} held-out videos (every 4th frame), all "
              f"three views, steps 1..T-1 where the reference saw the point; 'moving' = points that get > 1 px from "
              f"their start ({100 * sc['moving_fraction']:.1f} % of the visible point-steps).", ""]
    lines += _track_rows(sc, {"forward": "AMPLIFY forward, decoded by the tokenizer (expected)",
                              "forward_argmax": "AMPLIFY forward, decoded by the tokenizer (argmax)",
                              "regression": "direct regression (MSE baseline)",
                              "tokenizer": "tokenizer reconstruction (ceiling)", "static": "no motion (floor)"})
    f, r = sc["forward"]["moving"], sc["regression"]["moving"]
    if f and r:
        lines += ["", f"On moving points AMPLIFY's forward prediction scores Delta_AUC {f['delta_auc']:.3f} against the "
                  f"regression's {r['delta_auc']:.3f}."]
    lines += ["", f"Reference | AMPLIFY forward | regression, front view of {te['figure_episode']}, frame 8:", "",
              "![tracks](tracks_figure.png)", ""]
    out["track_prediction"] = sc
    out["claims"] = claims(job, out, table, zero_pooled, results)
    lines += ["**Claims** (`results.json` key `claims`, the figures docs/main_job.md checks):", "", "```json",
              json.dumps(out["claims"], indent=2), "```", ""]

    lines += [sections[8], ""]
    for name in results:
        for gif in sorted((run / "eval" / f"gifs_{name}").glob("*.gif")):
            lines.append(f"- {name.replace('_', ' ')}, {gif.stem.replace('_', ' ')}: ![]({gif.relative_to(run)})")
    names = [n for n in stages if "losses" in stages[n]]
    _curves_plot(stages, names, run / "training_curves.png")
    lines += ["", sections[9], "", "![training losses](training_curves.png)", "",
              "| model | final training loss |", "|---|---|"]
    lines += [f"| {n} | {stages[n]['final_loss']:.4f} |" for n in names if stages[n].get("final_loss") is not None]
    out["final_losses"] = {n: stages[n].get("final_loss") for n in names}
    lines += ["", sections[10], "", "```bash", shlex.join(["amplify-main", *job.argv]), "```", "",
              "Settings:", "", "```json", json.dumps(asdict(s), indent=2), "```", "",
              "Evaluations:", "", "```json", json.dumps(evaluations, indent=2), "```", ""]
    path = run / "report.md"
    path.write_text("\n".join(lines))
    (run / "results.json").write_text(json.dumps(out, indent=2))
    return path
