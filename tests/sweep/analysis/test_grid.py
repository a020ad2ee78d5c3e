"""Per-configuration summaries (mean and t interval over seeds) and the `summary` command."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from typer.testing import CliRunner

from sweep.analysis.grid import configuration_summary, default_grouping
from sweep.analysis.stats import t_interval
from sweep.cli import app
from tests.sweep.synthetic_study import write_synthetic_study


def test_t_interval_matches_the_hand_computed_student_interval() -> None:
    # mean 2, sd 1, n 3: half width t_{0.975, 2} / sqrt(3) = 4.302653 / 1.732051 = 2.484138.
    mean, low, high = t_interval([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0)
    assert low == pytest.approx(2.0 - 2.484138, abs=1e-5)
    assert high == pytest.approx(2.0 + 2.484138, abs=1e-5)


def test_t_interval_of_one_value_has_no_width_and_of_none_no_mean() -> None:
    mean, low, high = t_interval([5.0, float("nan")])
    assert mean == 5.0 and math.isnan(low) and math.isnan(high)
    assert all(math.isnan(v) for v in t_interval([]))


def _grid_trials() -> pd.DataFrame:
    rows = []
    for arm, offset in (("elbo", 0.0), ("info", 1.0)):
        for size in (500, 50_000):
            for seed in (0, 1, 2):
                rows.append(
                    {
                        "arm": arm,
                        "phase": "search",
                        "status": "completed",
                        "param.data.train_size": size,
                        "param.train.seed": seed,
                        "param.model.latent_dim": 16,
                        "metric.mmd": offset + size / 1000 + seed,
                    }
                )
    rows.append({**rows[0], "status": "failed", "metric.mmd": 999.0})
    return pd.DataFrame(rows)


def test_default_grouping_is_the_searched_settings_without_seeds() -> None:
    assert default_grouping(_grid_trials()) == ["param.data.train_size"]


def test_summary_groups_completed_trials_by_arm_and_setting() -> None:
    table = configuration_summary(_grid_trials(), metrics=("mmd",))
    assert list(table["n"]) == [3, 3, 3, 3]  # the failed trial is left out
    row = table[(table["arm"] == "info") & (table["param.data.train_size"] == 500)].iloc[0]
    # seeds add 0, 1, 2 to 1.0 + 0.5: mean 2.5, sd 1.
    assert row["mmd"] == pytest.approx(2.5)
    assert row["mmd.high"] - row["mmd"] == pytest.approx(2.484138, abs=1e-5)


def test_summary_refuses_an_unknown_grouping_column() -> None:
    with pytest.raises(KeyError, match="param.nope"):
        configuration_summary(_grid_trials(), by=["param.nope"])


def test_summary_command_prints_each_arm_and_writes_csv(tmp_path) -> None:
    folder = write_synthetic_study(tmp_path / "syn", n_search=3, n_seeds=3, artifacts=False)
    out = tmp_path / "summary.csv"
    result = CliRunner().invoke(
        app, ["summary", str(folder), "--by", "param.objective.alpha", "--csv", str(out)]
    )
    assert result.exit_code == 0, result.output
    written = pd.read_csv(out)
    assert set(written["arm"]) <= set(pd.read_parquet(folder / "trials.parquet")["arm"])
    assert {"mmd", "mmd.low", "mmd.high", "n"} <= set(written.columns)
    assert "mean [95% t interval]" in result.output


def test_summary_command_on_a_folder_that_is_not_a_study_exits_2(tmp_path) -> None:
    result = CliRunner().invoke(app, ["summary", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a study folder" in result.output
