"""`infovae-sweep compare A B`: two studies' confirm-phase metrics side by side, with the same
intervals as each study's report, unconverged runs marked, setting differences noted."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats
from typer.testing import CliRunner

from sweep.analysis.comparison import compare_studies
from sweep.analysis.study import analyse_study
from sweep.cli import app
from sweep.names import STUDY_FILE
from sweep.report.html import render_comparison
from sweep.tables import comparison_text
from tests.sweep.synthetic_study import ELBO_MEANS, INFO_MEANS, SyntheticArm, write_synthetic_study

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[3]
HOSTILE = '<script>alert("x")</script>'


def _study(folder: Path, *, name: str, arms: dict[str, SyntheticArm], seeds: int, seed: int):
    options = {"n_search": 3, "n_epochs": 8, "artifacts": False}
    return write_synthetic_study(folder, arms=arms, n_seeds=seeds, name=name, seed=seed, **options)


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A: elbo and infovae on digits, 4 seeds. B: the same arms (its elbo still improving at
    the end: not converged) plus `extra`, on mnist with 40 epochs and 3 seeds."""
    root = tmp_path_factory.mktemp("compare")
    a = _study(
        root / "alpha",
        name="alpha",
        arms={
            "elbo": SyntheticArm(means=ELBO_MEANS),
            "infovae": SyntheticArm(lambda_=100.0, means=INFO_MEANS),
        },
        seeds=4,
        seed=0,
    )
    b = _study(
        root / "beta",
        name="beta",
        arms={
            "elbo": SyntheticArm(means=ELBO_MEANS, still_rising=True),
            "infovae": SyntheticArm(lambda_=100.0, means={**INFO_MEANS, "mmd": 0.01}),
            "extra": SyntheticArm(means=INFO_MEANS),
        },
        seeds=3,
        seed=1,
    )
    spec = yaml.safe_load((b / STUDY_FILE).read_text(encoding="utf-8"))
    spec["data"]["dataset"] = "mnist"
    spec["defaults"] = {"train": {"epochs": 40}}
    (b / STUDY_FILE).write_text(yaml.safe_dump(spec), encoding="utf-8")
    return a, b


@pytest.fixture(scope="module")
def comparison(studies):
    return compare_studies(*studies)


def _row(comparison, metric: str, arm: str):
    (item,) = [m for m in comparison.metrics if m.metric.key == metric]
    (row,) = [r for r in item.rows if r.arm == arm]
    return row


def test_each_side_shows_the_numbers_of_its_own_reports_verdict(studies, comparison) -> None:
    for folder, side in zip(studies, ("a", "b"), strict=True):
        verdict = analyse_study(folder).verdict
        assert verdict is not None
        for row in verdict.rows:
            for summary in row.summaries:
                ours = getattr(_row(comparison, row.metric.key, summary.arm), side)
                assert ours == summary.interval  # same runs, same bootstrap, same seed
    assert _row(comparison, "mmd", "elbo").a.n == 4
    assert _row(comparison, "mmd", "elbo").b.n == 3


def test_b_minus_a_is_the_difference_of_the_means_with_welchs_test(comparison) -> None:
    a, b = comparison.a, comparison.b
    for item in comparison.metrics:
        if item.metric.goal == "zero":
            continue
        for arm in comparison.shared:
            row = _row(comparison, item.metric.key, arm)
            x, y = b.samples(arm, item.metric), a.samples(arm, item.metric)
            diff = row.b_vs_a.difference
            assert diff.estimate == pytest.approx(x.mean() - y.mean())
            assert diff.low <= diff.estimate <= diff.high
            p = stats.ttest_ind(x, y, equal_var=False).pvalue
            assert row.b_vs_a.test.welch_p == pytest.approx(p)
    worse = _row(comparison, "mmd", "infovae")  # B's infovae was drawn with twice the MMD
    assert worse.b_vs_a.better == "A" and worse.b_vs_a.difference.low > 0


def test_arms_are_matched_by_name_and_those_in_one_study_listed(comparison) -> None:
    assert comparison.shared == ("elbo", "infovae")
    assert comparison.only_a == () and comparison.only_b == ("extra",)
    extra = _row(comparison, "mmd", "extra")
    assert extra.a is None and extra.b.n == 3 and extra.b_vs_a is None
    text = comparison_text(comparison)
    assert "Only in B: extra" in text and "(not in A)" in text
    page = render_comparison(comparison)
    assert re.search(r"<tr><td>extra</td><td>no</td><td>yes</td></tr>", page)
    assert '<td class="absent">not in A</td>' in page


def test_unconverged_confirm_runs_are_marked(comparison) -> None:
    marked = [(side.label, runs.arm, runs.not_converged) for side, runs in comparison.unconverged]
    assert marked == [("B", "elbo", 3)]
    text = comparison_text(comparison)
    assert "elbo (not converged in B)" in text
    assert "infovae (not converged" not in text
    page = render_comparison(comparison)
    assert 'id="unconverged-banner"' in page and "B elbo: 3 of 3" in page
    assert page.count("3 of 3 not converged") == len(
        [m for m in comparison.metrics if _row(comparison, m.metric.key, "elbo").b.n]
    )


def test_differences_in_dataset_budget_and_settings_are_listed(comparison) -> None:
    found = {d.key: (d.a, d.b) for d in comparison.differences}
    assert found["data.dataset"] == ("digits", "mnist")
    assert found["defaults.train.epochs"] == ("(not set)", "40")
    assert found["confirm.seeds"] == ("4", "3")
    assert not any(k.startswith("arms.extra") for k in found)  # only shared arms' settings
    text = comparison_text(comparison)
    assert "data.dataset: digits (A) vs mnist (B)" in text
    assert 'id="differences-table"' in render_comparison(comparison)


def test_a_study_compared_with_itself_has_no_differences(studies) -> None:
    same = compare_studies(studies[0], studies[0])
    assert same.differences == () and same.only_a == same.only_b == ()
    for item in same.metrics:
        for row in item.rows:
            if row.b_vs_a is not None and row.a.n:
                assert row.b_vs_a.difference.estimate == 0
    assert "The study files agree" in comparison_text(same)


def test_valid_study_files_are_compared_with_their_defaults_filled_in(tmp_path) -> None:
    """A key written with its default value in one file and left out in the other is no
    difference; a changed budget is."""
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        shutil.copy(ROOT / "studies" / "digits.yaml", folder / STUDY_FILE)
    spec = yaml.safe_load((b / STUDY_FILE).read_text(encoding="utf-8"))
    assert "convergence" not in spec
    spec["convergence"] = {"tolerance": 0.005}  # the default
    spec["defaults"]["train"]["epochs"] = 600
    (b / STUDY_FILE).write_text(yaml.safe_dump(spec), encoding="utf-8")
    result = compare_studies(a, b)
    assert [(d.key, d.a, d.b) for d in result.differences] == [
        ("defaults.train.epochs", "300", "600")
    ]
    assert "defaults of the study format filled in" in result.settings_note
    assert all(not r.a.n and not r.b.n for m in result.metrics for r in m.rows)  # no trials


def test_cli_prints_the_summary_and_writes_the_page_beside_study_a(studies) -> None:
    a, b = studies
    result = runner.invoke(app, ["compare", str(a), str(b)])
    assert result.exit_code == 0, result.output
    out = a / "compare-beta.html"
    assert f"compare: {out}" in result.stdout
    assert "MMD² (q(z) vs p(z))" in result.stdout and "B - A" in result.stdout
    page = out.read_text(encoding="utf-8")
    import plotly.offline

    library = plotly.offline.get_plotlyjs()
    assert page.count(library) == 1 and "cdn.plot.ly" not in page.replace(library, "")
    assert page.count('class="plotly-graph-div"') == 1
    assert '"toImageButtonOptions": {"format": "svg"' in page
    assert not list(a.glob(".tmp-*"))


def test_cli_out_writes_where_asked(studies, tmp_path) -> None:
    out = tmp_path / "sub" / "c.html"
    result = runner.invoke(app, ["compare", str(studies[1]), str(studies[0]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and f"compare: {out}" in result.stdout
    assert not list(studies[1].glob("compare-*.html"))


@pytest.mark.parametrize("which", [0, 1])
def test_a_folder_that_is_not_a_study_exits_2_and_writes_nothing(studies, tmp_path, which):
    empty = tmp_path / "not-a-study"
    empty.mkdir()
    args = [str(studies[0]), str(empty)] if which else [str(empty), str(studies[0])]
    before = sorted(p.name for p in studies[0].iterdir())
    result = runner.invoke(app, ["compare", *args, "--out", str(tmp_path / "c.html")])
    assert result.exit_code == 2
    assert "not-a-study" in result.output and "study.yaml" in result.output
    assert not (tmp_path / "c.html").exists()
    assert sorted(p.name for p in studies[0].iterdir()) == before


def test_study_text_is_escaped_in_the_page(tmp_path) -> None:
    # The loader refuses such a study or arm name, so the hostile arm comes in through the
    # results files (as a hand-edited trials.parquet could bring it).
    arms = {"a": SyntheticArm(means=ELBO_MEANS), "b": SyntheticArm(means=INFO_MEANS)}
    a = _study(tmp_path / "a", name="hostile", arms=arms, seeds=2, seed=0)
    b = _study(tmp_path / "b", name="plain", arms=arms, seeds=2, seed=1)
    for folder in (a, b):
        trials = pd.read_parquet(folder / "trials.parquet")
        trials.loc[trials["arm"] == "a", "arm"] = HOSTILE
        trials.to_parquet(folder / "trials.parquet")
    page = render_comparison(compare_studies(a, b))
    assert HOSTILE not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_a_study_without_confirm_runs_shows_nothing_measured(studies, tmp_path) -> None:
    folder = _study(
        tmp_path / "s", name="s", arms={"elbo": SyntheticArm(means=ELBO_MEANS)}, seeds=0, seed=2
    )
    result = compare_studies(studies[0], folder)
    row = _row(result, "mmd", "elbo")
    assert row.b.n == 0 and math.isnan(row.b.estimate)
    assert "B has no completed confirm runs" in comparison_text(result)
    assert np.isfinite(row.a.estimate)


def test_a_damaged_results_file_exits_2_naming_it_and_writes_nothing(studies, tmp_path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(studies[1], broken)
    (broken / "trials.parquet").write_bytes(b"PAR1 not really parquet")
    out = tmp_path / "c.html"
    result = runner.invoke(app, ["compare", str(studies[0]), str(broken), "--out", str(out)])
    assert result.exit_code == 2
    assert "trials.parquet" in result.output
    assert not out.exists()
