"""amplify-main --quick: every stage runs, the report has every section with this run's numbers, and a second
run reuses the finished stages."""

import json

from training.main_job import REPORT_SECTIONS, JobSettings, main
from training.main_job_report import cell, pooled


def test_quick_main_job_writes_a_complete_report_and_resumes(tmp_path):
    run = tmp_path / "run"
    assert main(["--quick", "--run-dir", str(run)]) == 0
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
    assert list((run / "eval" / "gifs_AMPLIFY_2").glob("*.gif"))
    for picture in ("few_shot.png", "zero_shot.png", "cross_embodiment.png", "tracks_figure.png",
                    "training_curves.png"):
        assert (run / picture).stat().st_size > 1000, picture
    scores = json.loads((run / "stages" / "tracks_eval.json").read_text())["scores"]
    assert f"{scores['forward']['all']['mse']:.5f}" in report and f"{scores['regression']['all']['mse']:.5f}" in report
    for stage in ("data", "tracks", "tokenizer", "forward", "forward_robot", "regressor", "amplify_1", "bc_2",
                  "bctext_2", "evaluate", "tracks_eval"):
        assert f"| {stage} |" in report
    first = {p.name: p.stat().st_mtime_ns for p in (run / "stages").glob("*.json") if p.stem != "report"}
    assert main(["--quick", "--run-dir", str(run)]) == 0  # resumed: nothing recomputed
    assert {p.name: p.stat().st_mtime_ns for p in (run / "stages").glob("*.json") if p.stem != "report"} == first


def test_other_settings_on_an_existing_run_dir_are_refused(tmp_path):
    import pytest

    from training.main_job import Job, JobSettings

    Job(tmp_path, JobSettings.quick(), None, [])
    with pytest.raises(SystemExit, match="other settings"):
        Job(tmp_path, JobSettings(), None, [])
