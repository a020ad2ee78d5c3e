"""The driver's run record, run.json: one entry per run, written as running and completed with
how it ended; the code, machine and load it ran under."""

from __future__ import annotations

import json
from pathlib import Path

from sweep.run.run_record import RunRecorder, code_version, command_line, source_sha256


def _runs(folder: Path) -> list[dict]:
    return json.loads((folder / "run.json").read_text())["runs"]


def test_a_run_is_recorded_as_running_then_with_how_it_ended(tmp_path: Path) -> None:
    recorder = RunRecorder(tmp_path, "study")
    recorder.start(trials_recorded=0, argv=["/usr/bin/infovae-sweep", "run", "s.yaml"])
    (entry,) = _runs(tmp_path)
    assert entry["status"] == "running" and entry["ended_at"] is None
    assert entry["command"] == ["infovae-sweep", "run", "s.yaml"]
    recorder.finish("finished", trials_recorded=12)
    (entry,) = _runs(tmp_path)
    assert entry["status"] == "finished"
    assert entry["trials_recorded"] == {"start": 0, "end": 12}
    assert entry["wall_seconds"] >= 0 and entry["ended_at"] >= entry["started_at"]
    assert len(entry["load_average"]["end"]) == 3
    assert entry["cpu"]["cores"] >= 1 and entry["python"].count(".") == 2


def test_a_resumed_study_appends_a_run(tmp_path: Path) -> None:
    first = RunRecorder(tmp_path, "study")
    first.start(0)
    first.finish("interrupted", 5)
    second = RunRecorder(tmp_path, "study")
    second.start(5, argv=["infovae-sweep", "resume", "results/study"])
    second.finish("finished", 12)
    runs = _runs(tmp_path)
    assert [r["status"] for r in runs] == ["interrupted", "finished"]
    assert runs[1]["command"][1] == "resume"


def test_the_code_version_names_this_checkouts_commit_and_the_cores_hash() -> None:
    code = code_version()
    root = Path(__file__).resolve().parents[3]
    assert code["infovae_core_sha256"] == source_sha256(root / "infovae_core")
    if (root / ".git").exists():
        assert code["commit"] is not None and len(code["commit"]) == 40
        assert isinstance(code["dirty"], bool)


def test_the_source_hash_changes_with_one_byte(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    before = source_sha256(tmp_path)
    (tmp_path / "a.py").write_text("x = 2\n")
    assert source_sha256(tmp_path) != before


def test_the_command_is_shown_by_the_programs_name() -> None:
    assert command_line(["/opt/venv/bin/infovae-sweep", "report", "r"])[0] == "infovae-sweep"
