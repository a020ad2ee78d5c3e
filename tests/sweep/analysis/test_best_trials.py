"""`show`'s leaderboard and the report pick each arm's best trial by the one rule of
sweep.analysis.ranking: Pareto front first for several objectives, the ranking metric within a
front, ties by trial id."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from sweep import names
from sweep.analysis.leaderboard import best_of
from sweep.analysis.ranking import best_trial, rank_trials
from sweep.analysis.study import analyse_study
from sweep.report.sections import build_content
from sweep.spec import StudySpec
from sweep.store import ResultsStore
from tests.sweep.synthetic_study import SyntheticArm, synthetic_spec

T0 = dt.datetime(2025, 1, 2, tzinfo=dt.timezone.utc)


def _study(folder: Path, objectives: list[dict[str, str]], metrics: dict[str, dict]) -> Path:
    """Arm ``a`` with one completed search trial per entry of ``metrics`` (trial id ->
    ``metric.*`` values), recorded in that order through the store."""
    spec = synthetic_spec({"a": SyntheticArm()}, n_search=3, n_seeds=0, failed_per_arm=0)
    document = yaml.safe_load(spec.to_yaml())
    document["search"]["objectives"] = objectives
    spec = StudySpec.from_yaml_text(yaml.safe_dump(document))
    store = ResultsStore.create(folder, spec.to_yaml())
    with store.lock():
        for k, (trial_id, values) in enumerate(metrics.items()):
            row = {
                names.STUDY: spec.name,
                names.ARM: "a",
                names.PHASE: names.SEARCH,
                names.TRIAL_ID: trial_id,
                names.SEED: 0,
                names.STATUS: names.COMPLETED,
                names.STARTED_AT: T0 + dt.timedelta(minutes=k),
                names.param("model.decoder.width"): 64,
                **values,
            }
            store.record_trial(row, [])
    return folder


MMD, NLL = names.metric("mmd"), names.metric("nll_iwae")
CASES = {
    # Equal values, recorded in the reverse order of their ids: the lower id wins.
    "tie": (
        [{"metric": MMD, "direction": "minimize"}],
        {"a-s00002": {MMD: 0.1}, "a-s00001": {MMD: 0.1}, "a-s00000": {MMD: 0.3}},
        "a-s00001",
    ),
    # a-s00000 and a-s00001 tie on the ranking metric (mmd), but a-s00001 dominates it (a
    # better nll_iwae): Pareto front first puts a-s00001 ahead, whatever the ids say.
    "two objectives": (
        [{"metric": MMD, "direction": "minimize"}, {"metric": NLL, "direction": "minimize"}],
        {
            "a-s00000": {MMD: 0.1, NLL: 95.0},
            "a-s00001": {MMD: 0.1, NLL: 90.0},
            "a-s00002": {MMD: 0.2, NLL: 80.0},
        },
        "a-s00001",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_leaderboard_and_report_pick_the_best_trial_of_sweep_ranking(tmp_path, case) -> None:
    objectives, metrics, expected = CASES[case]
    folder = _study(tmp_path / "s", objectives, metrics)
    store = ResultsStore.open(folder)
    keys = [(o["metric"], o["direction"]) for o in objectives]
    ranked = rank_trials(store.trials(), keys, rank_by=MMD)
    assert ranked[names.TRIAL_ID].iloc[0] == expected

    (board,) = analyse_study(folder).leaderboards()
    assert [row[0] for row in board.rows] == ranked[names.TRIAL_ID].tolist()
    assert best_of(analyse_study(folder).leaderboards(top=1)) == ["a=0.1"]

    analysis = analyse_study(folder)
    data = analysis.data
    best = best_trial(data.trials, "a", data.objectives, data.rank_objective)
    assert best is not None and best[names.TRIAL_ID] == expected
    latent = next(s for s in build_content(analysis).sections if s.anchor == "latent")
    assert f"best trial {expected}" in " ".join(str(b) for b in latent.blocks)
