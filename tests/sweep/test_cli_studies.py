"""The study commands of the CLI: validate, ls, show, report, resume (without running Ray)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from sweep.analysis.study import analyse_study
from sweep.cli import app
from tests.sweep.synthetic_study import write_synthetic_study

runner = CliRunner()
STUDIES = Path(__file__).resolve().parents[2] / "studies"


def test_validate_prints_the_plan_of_a_shipped_study():
    result = runner.invoke(app, ["validate", str(STUDIES / "digits.yaml")])
    assert result.exit_code == 0, result.output
    assert "study digits" in result.stdout
    assert "elbo" in result.stdout and "infovae-mmd" in result.stdout


def test_validate_refuses_a_bad_file_naming_line_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    text = (
        (STUDIES / "digits.yaml")
        .read_text()
        .replace(
            "objective.lambda: {log_uniform: {low: 1.0",
            "objective.lambda: {log_uniform: {low: -1.0",
        )
    )
    bad.write_text(text)
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    assert "arms.infovae-mmd.search.objective.lambda" in result.output
    assert f"{bad}:" in result.output.replace("\n", "")


def test_run_refuses_a_bad_file_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nunknown_key: 1\n")
    result = runner.invoke(app, ["run", str(bad), "--results", str(tmp_path / "results")])
    assert result.exit_code == 2
    assert "unknown_key" in result.output
    assert not (tmp_path / "results").exists()


def test_ls_lists_studies_with_best_value_per_arm(tmp_path):
    write_synthetic_study(tmp_path / "results" / "synthetic", n_search=3, n_seeds=2)
    result = runner.invoke(app, ["ls", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    assert "synthetic" in result.stdout
    assert "elbo=" in result.stdout.replace("\n", "")


def test_ls_and_show_count_the_trials_left_of_an_unfinished_study(tmp_path):
    import pandas as pd

    folder = write_synthetic_study(tmp_path / "results" / "synthetic", n_search=3, n_seeds=2)
    trials = pd.read_parquet(folder / "trials.parquet")
    confirm = trials.index[trials["phase"] == "confirm"]
    trials.drop(index=confirm[:3]).to_parquet(folder / "trials.parquet")  # stopped early
    result = runner.invoke(app, ["ls", str(tmp_path / "results")], terminal_width=200)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("┃"))
    row = next(line for line in lines if line.startswith("│ synthetic"))
    cells = dict(zip(header.split("┃"), row.split("│"), strict=True))
    cells = {name.strip(): value.strip() for name, value in cells.items()}
    assert cells["trials"] == str(len(trials) - 3) and cells["left"] == "3"
    shown = runner.invoke(app, ["show", str(folder)], terminal_width=200)
    assert "unfinished: 3 trial(s) of the study's plan not recorded yet" in shown.stdout


def test_show_of_a_finished_study_does_not_call_it_unfinished(tmp_path):
    folder = write_synthetic_study(tmp_path / "synthetic", n_search=3, n_seeds=2)
    result = runner.invoke(app, ["show", str(folder)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "unfinished" not in result.stdout


def test_show_prints_a_leaderboard_per_arm(tmp_path):
    folder = write_synthetic_study(tmp_path / "synthetic", n_search=3, n_seeds=2)
    result = runner.invoke(app, ["show", str(folder), "--top", "2"])
    assert result.exit_code == 0, result.output
    assert "best by" in result.stdout


def test_report_writes_html(tmp_path):
    folder = write_synthetic_study(tmp_path / "synthetic", n_search=3, n_seeds=2)
    result = runner.invoke(app, ["report", str(folder), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")


def test_commands_refuse_a_folder_that_is_not_a_study(tmp_path):
    for command in (["report", str(tmp_path)], ["resume", str(tmp_path)], ["show", str(tmp_path)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, command
        assert "not a study folder" in result.output.replace("\n", " ")


def test_validate_and_run_refuse_a_file_with_a_nul_byte(tmp_path):
    bad = tmp_path / "nul.yaml"
    bad.write_bytes((STUDIES / "digits.yaml").read_bytes().replace(b"name:", b"\x00name:", 1))
    for command in (
        ["validate", str(bad)],
        ["run", str(bad), "--results", str(tmp_path / "results")],
    ):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, (command, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit)
        output = result.output.replace("\n", "")
        assert f"{bad}:" in output and "U+0000 at line" in output, output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nul.yaml"]


def test_show_judges_the_convergence_of_every_arm(tmp_path):
    from dataclasses import replace

    from tests.sweep.synthetic_study import default_arms

    arms = default_arms()
    arms["infovae"] = replace(arms["infovae"], still_rising=True)
    folder = write_synthetic_study(tmp_path / "synthetic", arms=arms, n_search=3, n_seeds=2)
    leaderboards = analyse_study(folder).leaderboards(top=10)
    boards = {board.title.split(":")[0]: board for board in leaderboards}
    assert boards["elbo"].convergence.startswith(
        "convergence: search 3 converged, 0 not, 0 unknown"
    )
    assert "confirm 2 converged, 0 not" in boards["elbo"].convergence
    assert "search 0 converged, 3 not, 0 unknown" in boards["infovae"].convergence
    assert "confirm 0 converged, 2 not" in boards["infovae"].convergence
    for arm, word in (("infovae", "no "), ("elbo", "yes ")):
        column = boards[arm].columns.index("converged")  # each arm lists its own searched keys
        assert all(row[column].startswith(word) for row in boards[arm].rows)

    result = runner.invoke(app, ["show", str(folder)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "convergence: search 0 converged, 3 not" in result.stdout
    assert "A run has converged when the mean of val.elbo" in result.stdout
