"""Leaderboards (`show`, `ls`) of studies where an arm has no completed trial yet."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sweep.analysis.leaderboard import best_of
from sweep.analysis.study import analyse_study
from sweep.cli import app
from sweep.spec import StudySpecError
from sweep.store import ResultsStore
from tests.sweep.studies import write_study

runner = CliRunner()
T0 = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def _row(arm: str, trial_id: str, status: str, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "study": "partial",
        "arm": arm,
        "phase": "search",
        "trial_id": trial_id,
        "seed": 0,
        "status": status,
        "error": "RuntimeError: boom" if status == "failed" else None,
        "started_at": T0,
        "ended_at": T0 + dt.timedelta(seconds=5),
        "train_seconds": 4.0,
        "eval_seconds": 1.0,
        "host": "node-a",
        "device": "cpu",
        "param.model.decoder.width": 8,
    }
    row.update(extra)
    return row


def partial_study(tmp_path: Path, *, elbo_failed: bool) -> Path:
    """A study folder written through the store in which arm ``elbo`` has no completed trial:
    either only failed ones (``elbo_failed``) or none recorded yet (a study mid-run)."""
    spec_path = write_study(tmp_path, "partial")
    store = ResultsStore.create(tmp_path / "results" / "partial", spec_path.read_text())
    with store.lock():
        for k, mmd in enumerate((0.01, 0.02)):
            row = _row("infovae", f"infovae-s{k:05d}", "completed", **{"metric.mmd": mmd})
            store.record_trial(row, [])
        if elbo_failed:
            store.record_trial(_row("elbo", "elbo-s00000", "failed"), [])
            store.record_trial(_row("elbo", "elbo-s00001", "failed"), [])
    return store.folder


def test_leaderboard_of_an_arm_that_only_failed_is_empty(tmp_path):
    folder = partial_study(tmp_path, elbo_failed=True)
    boards = {board.title.split(":")[0]: board for board in analyse_study(folder).leaderboards()}
    assert boards["elbo"].rows == ()
    assert [row[0] for row in boards["infovae"].rows] == ["infovae-s00000", "infovae-s00001"]
    assert best_of(analyse_study(folder).leaderboards(top=1)) == ["infovae=0.01"]


def test_leaderboard_of_an_arm_not_yet_completed_is_empty(tmp_path):
    folder = partial_study(tmp_path, elbo_failed=False)
    boards = {board.title.split(":")[0]: board for board in analyse_study(folder).leaderboards()}
    assert boards["elbo"].rows == ()
    assert len(boards["infovae"].rows) == 2


def test_show_and_ls_survive_an_arm_without_completed_trials(tmp_path):
    folder = partial_study(tmp_path, elbo_failed=True)
    result = runner.invoke(app, ["show", str(folder)])
    assert result.exit_code == 0, result.output
    assert "elbo: best by metric.mmd" in result.stdout.replace("\n", " ")
    result = runner.invoke(app, ["ls", str(folder.parent)])
    assert result.exit_code == 0, result.output
    assert "infovae=0.01" in result.stdout.replace("\n", "")


def test_a_study_file_the_loader_refuses_is_an_error_naming_it_not_a_guess(tmp_path):
    """A study.yaml that is YAML but not a valid study (so not damage in the sense of
    sweep.integrity): the leaderboard does not guess an objective (it used to rank by
    metric.mmd); ``show``, ``export`` and ``ls`` say what the loader said, naming the file."""
    folder = partial_study(tmp_path, elbo_failed=True)
    study_file = folder / "study.yaml"
    study_file.write_text("name: partial\nsearch: {sampler: tpe}\n")
    with pytest.raises(StudySpecError, match="arms: required key is missing") as caught:
        analyse_study(folder).leaderboards()
    assert str(study_file) in str(caught.value)
    for argv in (["show", str(folder)], ["export", str(folder), "--out", str(tmp_path / "x")]):
        result = runner.invoke(app, argv)
        output = result.output.replace("\n", "")
        assert result.exit_code == 2, result.output
        assert f"{study_file}:1: arms: required key is missing" in output
        assert "best by" not in output and "Traceback" not in output
    assert not (tmp_path / "x").exists()
    result = runner.invoke(app, ["ls", str(folder.parent)])
    assert result.exit_code == 2, result.output
    assert "refused" in result.output and str(study_file) in result.output.replace("\n", "")
