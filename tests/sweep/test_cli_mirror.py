"""The CLI on a study mirrored under a storage URI (file:// URIs; no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sweep.cli import app
from sweep.run.mirror import StudyMirror
from tests.sweep.studies import write_study
from tests.sweep.synthetic_study import write_synthetic_study

runner = CliRunner()


@pytest.fixture
def mirrored(tmp_path) -> str:
    """A synthetic study mirrored to file://.../bucket/syn; returns that URI."""
    folder = write_synthetic_study(
        tmp_path / "results" / "syn", n_search=3, n_seeds=2, n_epochs=3, optuna_db=True
    )
    uri = f"{(tmp_path / 'bucket').as_uri()}/syn"
    StudyMirror(folder, uri).sync(force=True)
    return uri


def test_show_reads_a_mirror_uri(mirrored):
    result = runner.invoke(app, ["show", mirrored, "--top", "2"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "elbo" in result.output and "infovae" in result.output


def test_summary_reads_a_mirror_uri(mirrored):
    # (--by: the synthetic study stores objective.scales as a list column, which the default
    # grouping cannot hash; a real study stores it as JSON text.)
    by = ["--by", "param.model.decoder.width"]
    result = runner.invoke(app, ["summary", mirrored, *by], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "mean [95% t interval]" in result.output


def test_ls_lists_the_studies_under_a_storage_uri(mirrored):
    storage = mirrored.rpartition("/")[0]
    result = runner.invoke(app, ["ls", storage], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "syn" in result.output


def test_report_of_a_mirror_uri_is_written_to_the_current_folder(mirrored, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["report", mirrored])
    assert result.exit_code == 0, result.output
    assert "<html" in (tmp_path / "syn-report.html").read_text(encoding="utf-8").lower()
    assert not (tmp_path / "bucket" / "syn" / "report.html").exists()  # the mirror is read only


def test_report_of_an_unfinished_mirror_says_so(tmp_path, monkeypatch):
    import pandas as pd

    folder = write_synthetic_study(tmp_path / "results" / "syn", n_search=3, n_seeds=2,
                                   n_epochs=3, artifacts=False)
    trials = pd.read_parquet(folder / "trials.parquet")  # the last confirm trial not yet run
    trials[trials["trial_id"] != trials["trial_id"].iloc[-1]].to_parquet(
        folder / "trials.parquet"
    )
    uri = f"{(tmp_path / 'bucket').as_uri()}/syn"
    StudyMirror(folder, uri).sync(force=True)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["report", uri], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "unfinished: 1 trial(s) of its plan not recorded yet" in result.output
    assert 'id="unfinished-banner"' in (tmp_path / "syn-report.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("command", ["show", "report", "summary", "export", "resume"])
def test_a_uri_that_holds_no_study_exits_2(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bucket" / "nothing").mkdir(parents=True)
    uri = f"{(tmp_path / 'bucket').as_uri()}/nothing"
    extra = ["--results", "r"] if command == "resume" else []
    result = runner.invoke(app, [command, uri, *extra])
    assert result.exit_code == 2, result.output
    assert "not a study" in result.output
    assert not (tmp_path / "r").exists() and not list(tmp_path.glob("nothing*"))


def test_resume_from_a_uri_refuses_a_results_folder_that_holds_the_study(mirrored, tmp_path):
    existing = tmp_path / "results" / "syn"
    assert existing.is_dir()
    result = runner.invoke(app, ["resume", mirrored, "--results", str(tmp_path / "results")])
    assert result.exit_code == 2, result.output
    assert "already exists" in result.output


def test_run_refuses_a_storage_whose_mirror_holds_the_study_and_writes_nothing(tmp_path):
    study = write_study(tmp_path, "syn", trials=1, seeds=0, epochs=1)
    (tmp_path / "bucket" / "syn").mkdir(parents=True)
    (tmp_path / "bucket" / "syn" / "study.yaml").write_text("name: syn\n")
    results = tmp_path / "results"
    result = runner.invoke(
        app,
        ["run", str(study), "--results", str(results), "--storage", (tmp_path / "bucket").as_uri()],
    )
    assert result.exit_code == 2, result.output
    assert "already holds a study named 'syn'" in result.output
    assert not results.exists()


def test_run_refuses_an_unknown_optuna_storage_and_writes_nothing(tmp_path):
    study = write_study(tmp_path, "syn", trials=1, seeds=0, epochs=1)
    results = tmp_path / "results"
    result = runner.invoke(
        app, ["run", str(study), "--results", str(results), "--optuna-storage", "redis"]
    )
    assert result.exit_code == 2, result.output
    assert "--optuna-storage" in result.output
    assert not Path(results).exists()
