"""The one ranking of "best trials" (sweep.analysis.ranking)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sweep.analysis.ranking import better, pareto_fronts, rank_trials


def _trials(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["trial_id", "status", "metric.a", "metric.b", "copy_of"])


def test_single_objective_best_first_ties_by_trial_id() -> None:
    trials = _trials(
        [
            ("t3", "completed", 0.2, 0.0, None),
            ("t1", "completed", 0.2, 0.0, None),
            ("t2", "completed", 0.1, 0.0, None),
            ("t4", "failed", 0.0, 0.0, None),
            ("t5", "completed", float("nan"), 0.0, None),
            ("t6", "completed", 0.1, 0.0, "t2"),  # a copy: its original stands for it
            ("t7", "completed", 0.3, 0.0, "other-arm-0"),  # its original is not ranked here
        ]
    )
    assert rank_trials(trials, [("metric.a", "minimize")])["trial_id"].tolist() == [
        "t2",
        "t1",
        "t3",
        "t7",
    ]
    assert rank_trials(trials, [("metric.a", "maximize")])["trial_id"].tolist() == [
        "t7",
        "t1",
        "t3",
        "t2",
    ]


def test_several_objectives_rank_the_pareto_front_first() -> None:
    # minimise a, maximise b.
    trials = _trials(
        [
            ("t3", "completed", 0.2, 0.5, None),
            ("t2", "completed", 0.3, 5.0, None),
            ("t1", "completed", 0.1, 1.0, None),
            ("t4", "completed", 0.05, 0.1, None),
        ]
    )
    objectives = [("metric.a", "minimize"), ("metric.b", "maximize")]
    # fronts: t4 (best a), t1, t2 are non-dominated; t3 is dominated by t1.
    ranked = rank_trials(trials, objectives)["trial_id"].tolist()
    assert ranked == ["t4", "t1", "t2", "t3"]  # front 0 by a, then front 1
    by_b = rank_trials(trials, objectives, rank_by="metric.b")["trial_id"].tolist()
    assert by_b == ["t2", "t1", "t4", "t3"]  # t3 has a better b than t4, yet a worse front


def test_pareto_fronts_closed_form() -> None:
    values = np.array([[0.0, 3.0], [1.0, 1.0], [3.0, 0.0], [2.0, 2.0], [3.0, 3.0], [1.0, 1.0]])
    assert pareto_fronts(values).tolist() == [0, 0, 0, 1, 2, 0]  # equal rows share a front


def test_missing_objective_column_ranks_nothing() -> None:
    trials = _trials([("t1", "completed", 0.1, 0.0, None)])
    assert rank_trials(trials, [("metric.zz", "minimize")]).empty
    with pytest.raises(ValueError, match="rank_by"):
        rank_trials(trials, [("metric.a", "minimize")], rank_by="metric.b")


def test_better_ignores_ties_and_non_finite() -> None:
    assert better(1.0, None, "minimize")
    assert better(0.5, 1.0, "minimize") and not better(1.0, 1.0, "minimize")
    assert better(2.0, 1.0, "maximize") and not better(float("nan"), None, "maximize")
