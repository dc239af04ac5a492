"""amplify-main --quick: every stage runs, the report has every section with this run's numbers, and a second
run reuses the finished stages."""

import json

from training.main_job import REPORT_SECTIONS, main


def test_quick_main_job_writes_a_complete_report_and_resumes(tmp_path):
    run = tmp_path / "run"
    assert main(["--quick", "--run-dir", str(run)]) == 0
    report = (run / "report.md").read_text()
    positions = [report.index(section) for section in REPORT_SECTIONS]
    assert positions == sorted(positions)  # every section, in order
    for name in ("AMPLIFY", "BC"):  # the table shows what the evaluation measured, task by task
        result = json.loads((run / "eval" / f"{name}.json").read_text())
        for task, s in result["summary"].items():
            assert f"{s['successes']}/{s['episodes']} = {s['success_rate']:.2f}" in report
        assert len(result["episodes"]) == 4 and len({e["seed"] for e in result["episodes"]}) == 2
        assert list((run / "eval" / f"gifs_{name}").glob("*.gif"))
    assert (run / "success.png").stat().st_size > 1000 and (run / "training_curves.png").stat().st_size > 1000
    for stage in ("data", "tracks", "tokenizer", "forward", "amplify", "bc", "evaluate"):
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
