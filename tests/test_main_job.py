"""amplify-main --quick: every stage runs, the report has every section with this run's numbers, results.json holds
them, AMPLIFY's inverse model is fine-tuned on the forward model's codes, and a second run reuses the finished
stages."""

import json

import pytest

from training.main_job import QUICK_RUN_DIR, REPORT_SECTIONS, JobSettings, main
from training.main_job_report import cell, pooled


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The quick job, run once for the module from a scratch working directory (its default run folder)."""
    import os

    cwd = tmp_path_factory.mktemp("cwd")
    old = os.getcwd()
    os.chdir(cwd)
    try:
        assert main(["--quick"]) == 0
    finally:
        os.chdir(old)
    return cwd / QUICK_RUN_DIR


def test_quick_writes_its_own_run_folder_never_the_main_jobs(quick_run):
    assert quick_run.name == "main_job_quick" and (quick_run / "report.md").is_file()
    assert not (quick_run.parent / "main_job").exists()  # the README's main job can still start afresh


def test_quick_main_job_writes_a_complete_report(quick_run):
    run = quick_run
    report = (run / "report.md").read_text()
    positions = [report.index(section) for section in REPORT_SECTIONS]
    assert positions == sorted(positions)  # every section, in order
    settings = JobSettings.quick()
    for name, e in settings.evaluations().items():  # the tables show what each evaluation measured
        result = json.loads((run / "eval" / f"{name}.json").read_text())
        assert sorted(result["summary"]) == sorted([*e["tasks"], "all"])
        assert len(result["episodes"]) == 2 * len(e["tasks"]) and len({x["seed"] for x in result["episodes"]}) == 2
        if e["tasks"] != settings.train_tasks:  # evaluated on the zero-shot tasks too: in their table
            for task in settings.zero_shot_tasks:
                assert cell(result["summary"][task]) in report
    k = settings.few_shot[0]
    few = pooled(json.loads((run / "eval" / f"AMPLIFY_{k}.json").read_text()), settings.train_tasks)
    assert f"| {k} | {cell(few)} |" in report
    assert list((run / "eval" / f"gifs_AMPLIFY_{k}").glob("*.gif"))
    for picture in ("few_shot.png", "zero_shot.png", "cross_embodiment.png", "tracks_figure.png",
                    "training_curves.png"):
        assert (run / picture).stat().st_size > 1000, picture
    scores = json.loads((run / "stages" / "tracks_eval.json").read_text())["scores"]
    assert f"{scores['forward']['all']['mse']:.5f}" in report and f"{scores['regression']['all']['mse']:.5f}" in report
    for stage in ("data", "tracks", "tracks_health", "tokenizer", "forward", "forward_robot", "regressor",
                  "amplify_1", "bc_3", "bctext_3", "bcnoplay_1", "models_health", "evaluate", "tracks_eval"):
        assert f"| {stage} |" in report


def test_the_health_of_every_stage_is_in_the_report_and_in_results_json(quick_run):
    report = (quick_run / "report.md").read_text()
    results = json.loads((quick_run / "results.json").read_text())
    health = results["health"]
    for store in ("robot", "robot_videos", "human", "play"):
        labels = health["labels"][store]
        assert f"| {store} | {labels['trusted_labels']} | {labels['centre_fraction']:.3f} |" in report
    moving = health["tracker"]["robot"]["views"]["moving"]
    assert f"{moving['delta_auc']:.3f}" in report and 0 < moving["coverage"] <= 1
    tok = health["tokenizer"]
    assert f"{tok['expected']['moving']['delta_auc']:.3f}" in report
    assert f"{tok['no_motion']['moving']['delta_auc']:.3f}" in report
    assert tok["codes"]["distinct"] >= 1 and "true" in tok["moving_ce"] and "shuffled" in tok["moving_ce"]
    assert set(health["forward"]) >= {f"{t} (robot)" for t in JobSettings.quick().every_task}
    for name in JobSettings.quick().inverse_models():
        errors = health["inverse"][name]["first_action"]
        assert set(errors) == {"x", "y", "z", "rx", "ry", "rz", "gripper"}
        assert f"| {name} | {100 * errors['x']:.2f} | {100 * errors['y']:.2f} |" in report  # cm
        # the open-loop errors are taken on the training tasks' demos; the zero-shot tasks' are reported apart
        assert set(health["inverse_zero_shot"][name]["first_action"]) == set(errors)
    for key in ("stages", "evaluations", "zero_shot", "cross_embodiment", "track_prediction", "settings"):
        assert key in results, key
    assert results["evaluations"]["AMPLIFY_3"]["pooled_training_tasks"]["episodes"] == 4


def test_amplify_inverse_models_are_fine_tuned_on_the_forward_models_codes(quick_run):
    """The issue: the main job passed forward=None, so AMPLIFY's inverse model saw other codes at test time (the
    forward model's) than in training (the tokenizer's)."""
    from amplify_core.checkpoint import load_model

    models = quick_run / "models"
    for k in JobSettings.quick().demo_counts:
        _, meta = load_model(models / f"amplify_{k}.pt", "inverse")
        assert meta["codes_from"] == "forward"
        # stored as given (relative to the job's working directory)
        assert (quick_run.parent.parent / meta["forward"]).resolve() == (models / "forward.pt").resolve()
        _, bc_meta = load_model(models / f"bc_{k}.pt", "inverse")
        assert bc_meta["codes_from"] is None and not bc_meta["use_codes"]
    assert (models / "checkpoints" / "amplify_1_finetuned_last.pt").is_file()  # the fine-tuning ran


def test_every_inverse_model_learns_from_the_play_data_but_bc_without_play(quick_run):
    from amplify_core.checkpoint import load_model
    from amplify_core.episodes import EpisodeReader, list_episodes

    play = list_episodes(quick_run / "data" / "play")
    assert len(play) == JobSettings.quick().play_episodes
    with EpisodeReader(play[0]) as ep:
        assert ep.task == "" and ep.actions() is not None
    for name in JobSettings.quick().inverse_models():
        stores = [p.rstrip("/").rsplit("/", 1)[-1] for p in load_model(quick_run / "models" / f"{name}.pt",
                                                                        "inverse")[1]["stores"]]
        assert ("play" in stores) == (not name.startswith("bcnoplay")), (name, stores)


def test_demos_fill_the_demo_share_of_the_inverse_samples_beside_play(quick_run):
    from amplify_core.checkpoint import load_model

    share = JobSettings.quick().demo_share
    for name in JobSettings.quick().inverse_models():
        meta = load_model(quick_run / "models" / f"{name}.pt", "inverse")[1]
        if name.startswith("bcnoplay"):
            assert meta["demo_share"] == 1.0 and meta["demo_repeats"] == 1
        else:  # with play: at least the share (repeated only when they were fewer)
            assert meta["demo_share"] >= share and meta["demo_repeats"] >= 1, (name, meta)


def test_results_json_holds_the_claims_with_exactly_the_issues_keys(quick_run):
    import subprocess

    results = json.loads((quick_run / "results.json").read_text())
    claims = results["claims"]
    k = JobSettings.quick().few_shot[0]
    assert set(claims[f"few_shot_{k}"]) == {"amplify", "bc", "bctext", "bc_no_play"}
    assert set(claims) == {"commit", "date", "stage_minutes", "bctext_all_demos", f"few_shot_{k}", "zero_shot",
                           "tokenizer_moving", "no_motion_moving", "forward_moving", "regression_moving"}
    assert claims["stage_minutes"] == results["stages"]["total_minutes"]
    few = results["evaluations"][f"AMPLIFY_{k}"]["pooled_training_tasks"]
    assert claims[f"few_shot_{k}"]["amplify"] == [few["successes"], few["episodes"]]
    assert claims["zero_shot"]["bc"] == [results["zero_shot"]["BC"]["successes"], results["zero_shot"]["BC"]["episodes"]]
    assert claims["forward_moving"] == results["track_prediction"]["forward"]["moving"]["delta_auc"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert claims["commit"].split("+")[0] == head


def test_a_second_run_reuses_every_finished_stage(quick_run):
    import os

    first = {p.name: p.stat().st_mtime_ns for p in (quick_run / "stages").glob("*.json") if p.stem != "report"}
    old = os.getcwd()
    os.chdir(quick_run.parent.parent)
    try:
        assert main(["--quick"]) == 0  # resumed: nothing recomputed
    finally:
        os.chdir(old)
    assert {p.name: p.stat().st_mtime_ns for p in (quick_run / "stages").glob("*.json") if p.stem != "report"} == first


def test_other_settings_on_an_existing_run_dir_are_refused(tmp_path):
    from training.main_job import Job

    Job(tmp_path, JobSettings.quick(), None, [])
    with pytest.raises(SystemExit, match="other settings"):
        Job(tmp_path, JobSettings(), None, [])
