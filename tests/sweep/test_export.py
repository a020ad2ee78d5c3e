"""`infovae-sweep export`: the report's verdict, claims and leaderboards as files people paste."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from sweep import cli
from sweep.analysis.study import analyse_study
from sweep.cli import app
from sweep.export import FORMATS, VERDICT_COLUMNS, latex_escape
from sweep.report.sections import build_content
from tests.sweep.synthetic_study import ELBO_MEANS, INFO_MEANS, SyntheticArm, write_synthetic_study

runner = CliRunner()


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Arms with underscores in their names (LaTeX must escape them); InfoVAE clearly better."""
    arms = {
        "elbo_plain": SyntheticArm(alpha=0.0, lambda_=1.0, means=ELBO_MEANS),
        "info_mmd": SyntheticArm(alpha=0.0, lambda_=100.0, search_lambda=True, means=INFO_MEANS),
    }
    root = tmp_path_factory.mktemp("export")
    return write_synthetic_study(root / "syn", arms=arms, n_search=4, n_seeds=4, artifacts=False)


def _export(folder: Path, fmt: str, out: Path) -> list[Path]:
    result = runner.invoke(app, ["export", str(folder), "--format", fmt, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return [Path(line) for line in result.stdout.split()]


def test_csv_has_one_file_per_table_holding_the_reports_numbers(study, tmp_path):
    paths = _export(study, "csv", tmp_path)
    assert sorted(p.name for p in paths) == [
        "claims.csv",
        "convergence.csv",
        "leaderboard-elbo_plain.csv",
        "leaderboard-info_mmd.csv",
        "verdict.csv",
    ]
    verdict = pd.read_csv(tmp_path / "verdict.csv")
    assert tuple(verdict.columns) == VERDICT_COLUMNS
    report = build_content(analyse_study(study))  # what the HTML report shows
    assert report.verdict is not None
    assert len(verdict) == len(report.verdict.rows) * 2
    for row in report.verdict.rows:
        for summary in row.summaries:
            line = verdict[
                (verdict["metric"] == row.metric.column) & (verdict["arm"] == summary.arm)
            ]
            assert len(line) == 1
            assert line["mean"].item() == pytest.approx(summary.interval.estimate, rel=1e-12)
            assert line["ci_low"].item() == pytest.approx(summary.interval.low, rel=1e-12)
            assert line["n"].item() == summary.interval.n == 4
        (comp,) = row.comparisons
        line = verdict[(verdict["metric"] == row.metric.column) & (verdict["arm"] == "info_mmd")]
        assert line["reference"].item() == "elbo_plain"
        assert line["welch_p"].item() == pytest.approx(comp.test.welch_p, rel=1e-12)
        assert line["hedges_g"].item() == pytest.approx(comp.test.hedges_g, rel=1e-12)
    mmd = verdict[verdict["metric"] == "metric.mmd"].set_index("arm")
    assert mmd.loc["info_mmd", "mean"] < mmd.loc["elbo_plain", "mean"]  # the synthetic truth
    assert mmd.loc["info_mmd", "winner"] == "info_mmd"
    assert math.isnan(mmd.loc["elbo_plain", "welch_p"])  # the reference has no test against itself
    claims = pd.read_csv(tmp_path / "claims.csv")
    assert list(claims["status"]) == [c.status for c in report.claims]
    assert "holds" in set(claims["status"])
    board = pd.read_csv(tmp_path / "leaderboard-info_mmd.csv")
    (expected,) = [b for b in analyse_study(study).leaderboards(top=10) if b.arm == "info_mmd"]
    assert list(board.columns) == list(expected.columns)
    assert list(board["trial"]) == [row[0] for row in expected.values]
    assert list(board["converged"]) == [row[-1] for row in expected.values]
    assert set(board["converged"]) == {"converged"}  # the synthetic curves are flat
    assert (verdict["runs_not_converged"] == 0).all()
    assert (verdict["runs_convergence_unknown"] == 0).all()
    assert "unconverged" not in (tmp_path / "verdict.csv").read_text()
    convergence = pd.read_csv(tmp_path / "convergence.csv")
    expected_table = report.convergence.table  # the report's per-arm, per-phase table
    assert list(convergence["arm"]) == list(expected_table["arm"])
    assert list(convergence["phase"]) == list(expected_table["phase"])
    assert list(convergence["converged"]) == list(expected_table["converged"])
    assert list(convergence["not_converged"]) == list(expected_table["not converged"])


def test_json_is_one_document_with_every_table(study, tmp_path):
    (path,) = _export(study, "json", tmp_path)
    document = json.loads(path.read_text())  # no NaN: strict JSON
    assert document["study"] == "synthetic" and document["reference"] == "elbo_plain"
    assert set(document["tables"]) == {
        "verdict",
        "claims",
        "convergence",
        "leaderboard-elbo_plain",
        "leaderboard-info_mmd",
    }
    verdict = pd.DataFrame(document["tables"]["verdict"]["rows"])
    csv_path = _export(study, "csv", tmp_path / "csv")[0].parent / "verdict.csv"
    from_csv = pd.read_csv(csv_path)
    pd.testing.assert_series_equal(verdict["mean"], from_csv["mean"], check_exact=False)
    reference_rows = verdict[verdict["arm"] == "elbo_plain"]
    assert reference_rows["welch_p"].isna().all()  # null in JSON
    assert document["verdict_unconverged"] is False
    assert document["convergence_rule"].startswith("A run has converged when the mean of val.elbo")
    assert document["tables"]["convergence"]["note"] == document["convergence_rule"]


def test_latex_is_booktabs_with_escaped_text_and_balanced_environments(study, tmp_path):
    (path,) = _export(study, "latex", tmp_path)
    text = path.read_text()
    body = "\n".join(line for line in text.splitlines() if not line.startswith("%"))
    for env in ("table", "tabular"):
        begins = len(re.findall(r"\\begin\{" + env + r"\}", body))
        assert begins == len(re.findall(r"\\end\{" + env + r"\}", body)) == 5
    assert body.count(r"\toprule") == body.count(r"\bottomrule") == 5
    assert re.search(r"(?<!\\)_", body.replace(r"\_", "")) is None  # every _ escaped
    assert r"info\_mmd" in body and r"metric.log\_det\_cov" not in body  # labels, not columns
    assert re.search(r"(?<!\\)[%#$]", body) is None  # & is checked by the column count
    assert body.count("{") == body.count("}")
    for line in body.splitlines():
        if line.endswith(r"\\"):
            assert line.count(" & ") + 1 == _tabular_columns(body, line)


def _tabular_columns(body: str, line: str) -> int:
    start = body.rfind(r"\begin{tabular}{", 0, body.index(line))
    spec = body[start + len(r"\begin{tabular}{") :].split("\n", 1)[0][:-1]
    return len(re.findall(r"p\{[^}]*\}|[lcr]", spec))


def test_latex_escape_escapes_every_special_character():
    assert latex_escape("a_b & 50% $x$ #1 {y} ~z^2 \\ <|>") == (
        r"a\_b \& 50\% \$x\$ \#1 \{y\} \textasciitilde{}z\textasciicircum{}2 "
        r"\textbackslash{} \textless{}\textbar{}\textgreater{}"
    )


def test_markdown_pipe_tables_have_one_cell_per_column(study, tmp_path):
    (path,) = _export(study, "markdown", tmp_path)
    text = path.read_text()
    assert text.count("## ") == 5
    blocks = [b for b in text.split("\n\n") if b.startswith("| ")]
    assert len(blocks) == 5
    for block in blocks:
        lines = block.splitlines()
        widths = {len(re.findall(r"(?<!\\)\|", line)) for line in lines}
        assert len(widths) == 1, block  # escaped pipes (|log det Cov|) do not split cells
        assert set(lines[1].replace("|", "").split()) == {"---"}
    assert r"\|x\|" in text


def test_default_out_is_the_study_export_folder_and_nothing_temporary_stays(tmp_path):
    folder = write_synthetic_study(tmp_path / "s", n_search=2, n_seeds=2, artifacts=False)
    result = runner.invoke(app, ["export", str(folder)])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (folder / "export").iterdir())
    assert names == [
        "claims.csv",
        "convergence.csv",
        "leaderboard-elbo.csv",
        "leaderboard-infovae.csv",
        "verdict.csv",
    ]


def test_export_before_any_confirm_trial_writes_empty_verdict(tmp_path):
    folder = write_synthetic_study(tmp_path / "s", n_search=2, n_seeds=0, artifacts=False)
    paths = _export(folder, "csv", tmp_path / "out")
    assert pd.read_csv(tmp_path / "out" / "verdict.csv").empty
    assert len(paths) == 5
    (tex,) = _export(folder, "latex", tmp_path / "tex")
    assert "(no rows)" in tex.read_text()


def _rising_infovae(folder: Path) -> Path:
    """The default synthetic study but InfoVAE's curves still improve 7 % per epoch at the end."""
    from dataclasses import replace

    from tests.sweep.synthetic_study import default_arms

    arms = default_arms()
    arms["infovae"] = replace(arms["infovae"], still_rising=True)
    return write_synthetic_study(folder, arms=arms, n_search=3, n_seeds=3, artifacts=False)


def test_a_verdict_on_unconverged_confirm_runs_is_marked_in_every_format(tmp_path):
    folder = _rising_infovae(tmp_path / "s")
    _export(folder, "csv", tmp_path / "csv")
    verdict = pd.read_csv(tmp_path / "csv" / "verdict.csv").set_index(["metric", "arm"])
    assert (verdict.xs("infovae", level="arm")["runs_not_converged"] == 3).all()
    assert (verdict.xs("elbo", level="arm")["runs_not_converged"] == 0).all()
    convergence = pd.read_csv(tmp_path / "csv" / "convergence.csv").set_index(["arm", "phase"])
    assert convergence.loc[("infovae", "confirm"), "not_converged"] == 3
    assert convergence.loc[("elbo", "confirm"), "converged"] == 3
    assert convergence.loc[("infovae", "confirm"), "median_relative_change"] > 0.005
    board = pd.read_csv(tmp_path / "csv" / "leaderboard-infovae.csv")
    assert set(board["converged"]) == {"not_converged"}

    (path,) = _export(folder, "json", tmp_path / "json")
    document = json.loads(path.read_text())
    assert document["verdict_unconverged"] is True
    for name in ("verdict", "claims"):
        assert "drawn from unconverged runs (infovae: 3 of 3)" in document["tables"][name]["title"]
    for fmt in ("markdown", "latex"):
        (path,) = _export(folder, fmt, tmp_path / fmt)
        assert path.read_text().count("drawn from unconverged runs (infovae: 3 of 3)") == 2


def test_a_folder_that_is_not_a_study_is_refused_and_nothing_written(tmp_path):
    out = tmp_path / "out"
    for folder in (tmp_path, tmp_path / "missing"):
        result = runner.invoke(app, ["export", str(folder), "--out", str(out)])
        assert result.exit_code == 2
        assert "not a" in result.output and str(folder) in result.output.replace("\n", "")
    assert not out.exists()


def test_an_unknown_format_lists_the_formats(tmp_path):
    result = runner.invoke(app, ["export", str(tmp_path), "--format", "xlsx"])
    assert result.exit_code == 2
    assert "'csv', 'markdown', 'latex', 'json'" in " ".join(
        re.sub("[\u2500-\u257f]", " ", result.output).split()
    )
    assert tuple(choice.value for choice in cli.ExportFormatChoice) == FORMATS
