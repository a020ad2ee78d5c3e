"""trials_left: the trials of a study's plan a study folder has not recorded yet, counted
against hand-built trial tables (the plan's numbers worked out by hand in each test)."""

from __future__ import annotations

import pandas as pd

from sweep import names
from sweep.plan import trials_left
from tests.sweep.synthetic_study import default_arms, synthetic_spec

# Two arms (elbo, infovae), 4 search trials each, confirm top_k 1 with 3 seeds:
# a fresh study plans 2 x (4 + 1 x 3) = 14 trials.
SPEC = synthetic_spec(default_arms(), n_search=4, n_seeds=3, failed_per_arm=0)


def _rows(arm: str, phase: str, count: int, status: str = names.COMPLETED) -> list[dict]:
    return [
        {
            names.ARM: arm,
            names.PHASE: phase,
            names.TRIAL_ID: f"{arm}-{phase}-{i}",
            names.STATUS: status,
            names.metric("nll_iwae"): 90.0 + i if status == names.COMPLETED else None,
            names.metric("mmd"): 0.1 * (i + 1) if status == names.COMPLETED else None,
        }
        for i in range(count)
    ]


def _table(*groups: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([row for group in groups for row in group])


def test_a_study_without_trials_has_its_whole_plan_left() -> None:
    assert sorted(SPEC.arm_names) == ["elbo", "infovae"]
    assert trials_left(SPEC, pd.DataFrame()) == 14


def test_an_arm_still_searching_counts_its_whole_confirm_phase() -> None:
    trials = _table(_rows("elbo", names.SEARCH, 3))
    assert trials_left(SPEC, trials) == (1 + 3) + (4 + 3)


def test_confirm_trials_left_are_counted_once_the_search_is_recorded() -> None:
    trials = _table(
        _rows("elbo", names.SEARCH, 4),
        _rows("elbo", names.CONFIRM, 1),
        _rows("infovae", names.SEARCH, 4),
        _rows("infovae", names.CONFIRM, 3),
    )
    assert trials_left(SPEC, trials) == 2


def test_failed_search_trials_count_as_recorded_and_leave_nothing_to_confirm() -> None:
    trials = _table(
        _rows("elbo", names.SEARCH, 4, status=names.FAILED),
        _rows("infovae", names.SEARCH, 4),
        _rows("infovae", names.CONFIRM, 3),
    )
    assert trials_left(SPEC, trials) == 0


def test_a_finished_synthetic_study_has_nothing_left(tmp_path) -> None:
    from sweep.store import ResultsStore
    from tests.sweep.synthetic_study import write_synthetic_study

    folder = write_synthetic_study(tmp_path / "s", n_search=3, n_seeds=2, n_epochs=2,
                                   artifacts=False)
    store = ResultsStore.open(folder)
    spec = synthetic_spec(default_arms(), n_search=3, n_seeds=2, failed_per_arm=1)
    assert trials_left(spec, store.trials()) == 0
