"""The Optuna ask/tell searcher: outcomes told through public calls, repeats not trained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from sweep.run.optuna_record import (
    INTERRUPTED_ATTR,
    add_recorded_unsearched,
    confirm_recorder,
    recover_interrupted,
)
from sweep.run.searcher import ArmSearch, DuplicateIndex, FixedArm, arms_searcher
from sweep.run.trial import TrialMeta, TrialResult, sampled_params

SPACE = {"model.decoder.width": optuna.distributions.CategoricalDistribution([8, 16])}


def _storage(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'optuna.db'}"


def _search(tmp_path: Path, arm: str = "elbo", **kwargs: Any) -> ArmSearch:
    options: dict[str, Any] = {
        "arm": arm,
        "storage": _storage(tmp_path),
        "sampler": optuna.samplers.RandomSampler(seed=0),
        "space": SPACE,
        "metrics": ["metric.mmd"],
        "directions": ["minimize"],
        "seed_for": lambda index: 7,  # the same seed for every trial: repeats are exact
    }
    options.update(kwargs)
    return ArmSearch(**options)


def _fake_train(config: dict[str, Any]) -> TrialResult:
    return TrialResult("completed", metrics={"metric.mmd": config["model.decoder.width"] / 100})


def _key(config: dict[str, Any]) -> str:
    params = sampled_params(config)
    return DuplicateIndex.canonical({**params, "train.seed": TrialMeta.of(config).seed})


def test_repeated_configuration_is_recorded_as_a_copy_and_told_to_optuna(
    tmp_path: Path,
) -> None:
    trained: list[dict[str, Any]] = []
    copies: list[tuple[str, str]] = []
    results: dict[str, TrialResult] = {}

    def copy(config: dict[str, Any], original: str) -> TrialResult:
        copies.append((TrialMeta.of(config).trial_id, original))
        return results[original]

    index = DuplicateIndex(_key, copy)
    search = _search(tmp_path)
    searcher = arms_searcher({"elbo": search}, {"elbo": 8}, index)
    for n in range(100):
        config = searcher.suggest(f"tune-{n}")
        if config == "FINISHED" or config is None:
            break
        trained.append(config)
        result = _fake_train(config)
        own_id = TrialMeta.of(config).trial_id
        results[own_id] = result
        index.add(_key(config), own_id)
        searcher.on_trial_complete(f"tune-{n}", result.to_report())

    widths = [c["model.decoder.width"] for c in trained]
    assert sorted(widths) == [8, 16]  # each distinct configuration trained once
    assert len(trained) + len(copies) == 8  # the budget counts copies
    trials = search.study.get_trials()
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials)
    by_id = {t.user_attrs["trial_id"]: t for t in trials}
    for copy_id, original in copies:
        assert by_id[copy_id].user_attrs["copy_of"] == original
        assert by_id[copy_id].value == by_id[original].value  # Optuna sees the same value
        assert by_id[copy_id].params == by_id[original].params


def test_without_an_index_every_suggestion_is_trained(tmp_path: Path) -> None:
    searcher = arms_searcher({"elbo": _search(tmp_path)}, {"elbo": 5})
    configs = [searcher.suggest(f"t{n}") for n in range(6)]
    assert sum(isinstance(c, dict) for c in configs) == 5
    assert configs[-1] == "FINISHED"


def test_failures_and_stops_are_told_with_their_states(tmp_path: Path) -> None:
    search = _search(tmp_path)
    for n in range(4):
        search.suggest(f"t{n}")
    search.on_trial_complete("t0", TrialResult("completed", metrics={"metric.mmd": 0.5}))
    search.on_trial_complete("t1", TrialResult("failed", error="NonFiniteLossError"))
    search.on_trial_complete("t2", TrialResult("completed", metrics={"metric.mmd": float("nan")}))
    search.on_trial_complete("t3", TrialResult(status=None))  # stopped by the scheduler
    told_again = TrialResult("completed", metrics={"metric.mmd": 0.1})
    search.on_trial_complete("t3", told_again)  # told once
    states = [t.state for t in search.study.get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL, TrialState.PRUNED]
    assert search.study.get_trials()[1].user_attrs["error"] == "NonFiniteLossError"


def test_several_objectives_are_told_together(tmp_path: Path) -> None:
    search = _search(
        tmp_path,
        metrics=["metric.mmd", "metric.mutual_info"],
        directions=["minimize", "maximize"],
    )
    search.suggest("t0")
    search.on_trial_complete(
        "t0", TrialResult("completed", metrics={"metric.mmd": 0.5, "metric.mutual_info": 2.0})
    )
    assert search.study.get_trials()[0].values == [0.5, 2.0]


def _row(trial_id: str, status: str, **values: Any) -> dict[str, Any]:
    """A store row as ``recorded_by_arm`` gives it (the columns recover_interrupted reads)."""
    return {"trial_id": trial_id, "status": status, "error": None, "seed": 7, **values}


def test_resume_keeps_history_and_reruns_interrupted_configurations(tmp_path: Path) -> None:
    first = _search(tmp_path)
    done = first.suggest("a")
    first.on_trial_complete("a", _fake_train(done))
    lost = first.suggest("b")  # the driver dies while this one trains
    recorded_elsewhere = first.suggest("c")  # recorded in the store before the driver died

    storage = _storage(tmp_path)
    done_id = TrialMeta.of(done).trial_id
    elsewhere_id = TrialMeta.of(recorded_elsewhere).trial_id
    recorded = {
        done_id: _row(done_id, "completed", **{"metric.mmd": 0.5}),
        elsewhere_id: _row(elsewhere_id, "completed", **{"metric.mmd": 0.3}),
    }
    assert recover_interrupted(storage, "elbo", recorded, ["metric.mmd"]) == 1
    study = optuna.load_study(study_name="elbo", storage=storage)
    trials = study.get_trials()
    assert [t.state for t in trials[:3]] == [
        TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE
    ]
    assert trials[2].value == 0.3  # the sampler keeps what the store recorded
    assert study.user_attrs[INTERRUPTED_ATTR] == [1]

    resumed = _search(tmp_path)
    again = resumed.suggest("d")  # the enqueued configuration comes first
    assert again["model.decoder.width"] == lost["model.decoder.width"]
    assert TrialMeta.of(again).trial_id == "elbo-0003"
    assert len(resumed.study.get_trials()) == 4  # history kept


@pytest.mark.parametrize(
    ("status", "values", "state"),
    [
        ("failed", {}, TrialState.FAIL),
        ("stopped", {}, TrialState.PRUNED),
        ("completed", {"metric.mmd": float("nan")}, TrialState.FAIL),
    ],
)
def test_recover_interrupted_tells_a_recorded_trial_its_stored_outcome(
    tmp_path: Path, status: str, values: dict[str, float], state: TrialState
) -> None:
    search = _search(tmp_path)
    trial_id = TrialMeta.of(search.suggest("a")).trial_id
    recorded = {trial_id: _row(trial_id, status, **values)}
    assert recover_interrupted(_storage(tmp_path), "elbo", recorded, ["metric.mmd"]) == 0
    study = optuna.load_study(study_name="elbo", storage=_storage(tmp_path))
    assert [t.state for t in study.get_trials()] == [state]  # nothing enqueued
    assert study.user_attrs[INTERRUPTED_ATTR] == []


def test_recover_interrupted_without_a_study_does_nothing(tmp_path: Path) -> None:
    assert recover_interrupted(_storage(tmp_path), "absent", {}, ["metric.mmd"]) == 0


@pytest.mark.parametrize("value", [10, 10.0])
def test_canonical_key_ignores_int_float_and_none(value: float) -> None:
    assert DuplicateIndex.canonical({"a": value, "b": None}) == DuplicateIndex.canonical(
        {"a": 10.0}
    )


def test_a_searched_arm_names_its_objectives_for_the_dashboard(tmp_path: Path) -> None:
    search = _search(
        tmp_path, metrics=["metric.nll_iwae", "metric.mmd"], directions=["minimize"] * 2
    )
    stored = optuna.load_study(study_name="elbo", storage=_storage(tmp_path))
    assert search.study.metric_names == stored.metric_names == ["metric.nll_iwae", "metric.mmd"]


def _fixed(tmp_path: Path) -> FixedArm:
    return FixedArm(
        "plain",
        lambda index: 100 + index,
        {},
        storage=_storage(tmp_path),
        metrics=["metric.mmd"],
        directions=["minimize"],
    )


def test_an_arm_without_search_space_records_its_trials_in_optuna(tmp_path: Path) -> None:
    arm = _fixed(tmp_path)
    arm.suggest("tune-0")
    arm.suggest("tune-1")
    arm.on_trial_complete("tune-0", TrialResult("completed", metrics={"metric.mmd": 0.25}))
    arm.on_trial_complete("tune-1", TrialResult("failed", error="NonFiniteLossError"))
    study = optuna.load_study(study_name="plain", storage=_storage(tmp_path))
    assert study.metric_names == ["metric.mmd"]
    done, failed = study.trials
    assert done.state == TrialState.COMPLETE and done.values == [0.25] and done.params == {}
    assert done.user_attrs == {"trial_id": "plain-0000", "seed": 100}
    assert failed.state == TrialState.FAIL and failed.user_attrs["error"] == "NonFiniteLossError"


def test_an_unsearched_copy_is_recorded_once_with_its_original(tmp_path: Path) -> None:
    arm = _fixed(tmp_path)
    arm.suggest("tune-0")
    arm.mark_copy("tune-0", "plain-0007")
    arm.on_trial_complete("tune-0", TrialResult("completed", metrics={"metric.mmd": 0.5}))
    arm.on_trial_complete("tune-0", TrialResult("completed", metrics={"metric.mmd": 0.5}))
    again = _fixed(tmp_path)  # a resumed driver offers the same trial id again
    again.suggest("tune-9")
    again.on_trial_complete("tune-9", TrialResult("completed", metrics={"metric.mmd": 0.5}))
    (trial,) = optuna.load_study(study_name="plain", storage=_storage(tmp_path)).trials
    assert trial.user_attrs["copy_of"] == "plain-0007"


def test_an_unsearched_arm_adds_the_recorded_trials_its_optuna_study_lacks(
    tmp_path: Path,
) -> None:
    import numpy as np

    arm = _fixed(tmp_path)
    arm.suggest("tune-0")
    arm.on_trial_complete("tune-0", TrialResult("completed", metrics={"metric.mmd": 0.25}))
    recorded = {  # plain-0001 was recorded, then the driver died before Optuna heard of it
        "plain-0000": _row("plain-0000", "completed", **{"metric.mmd": 0.25}),
        "plain-0001": {
            **_row("plain-0001", "completed", **{"metric.mmd": np.float64(0.5)}),
            "seed": np.int64(101),  # as pandas gives a store row
        },
    }
    storage = _storage(tmp_path)
    added = [
        add_recorded_unsearched(storage, "plain", recorded, ["metric.mmd"], ["minimize"])
        for _ in range(2)  # a second resume adds nothing more
    ]
    assert added == [1, 0]
    trials = optuna.load_study(study_name="plain", storage=storage).trials
    assert [(t.user_attrs["trial_id"], t.values) for t in trials] == [
        ("plain-0000", [0.25]), ("plain-0001", [0.5])
    ]
    assert trials[1].user_attrs["seed"] == 101


def test_recorded_confirm_trials_missing_from_optuna_are_added_with_their_source(
    tmp_path: Path,
) -> None:
    search = _search(tmp_path)
    source = search.suggest("t0")
    search.on_trial_complete("t0", _fake_train(source))
    source_id = TrialMeta.of(source).trial_id
    planned = [
        TrialMeta("elbo", f"elbo-confirm1-seed{seed}", seed, "confirm", {}, source_id)
        for seed in (1000, 1001)
    ]
    rows = {"elbo-confirm1-seed1000": {  # recorded; seed 1001 never ran
        **_row("elbo-confirm1-seed1000", "completed", **{"metric.mmd": 0.4}), "seed": 1000,
    }}
    recorder = confirm_recorder(_storage(tmp_path), ["metric.mmd"], ["minimize"])
    recorder.add_recorded(planned, rows)
    recorder.add_recorded(planned, rows)  # once only
    (trial,) = optuna.load_study(study_name="elbo/confirm", storage=_storage(tmp_path)).trials
    assert trial.user_attrs == {
        "trial_id": "elbo-confirm1-seed1000", "seed": 1000, "source": source_id
    }
    assert trial.values == [0.4]
    assert trial.params == {"model.decoder.width": source["model.decoder.width"]}


def test_confirm_trials_wait_for_the_arm_search_then_follow_in_the_same_searcher(
    tmp_path: Path,
) -> None:
    planned: list[str] = []

    def plan(arm: str) -> list[TrialMeta]:
        planned.append(arm)
        return [TrialMeta(arm, f"{arm}-confirm1-seed{s}", s) for s in (1, 2)]

    searcher = arms_searcher({"elbo": _search(tmp_path)}, {"elbo": 2}, None, plan, ["elbo"])
    first, second = searcher.suggest("t0"), searcher.suggest("t1")
    assert TrialMeta.of(first).trial_id != TrialMeta.of(second).trial_id
    assert searcher.suggest("t2") is None  # both search trials still running: wait
    searcher.on_trial_complete("t0", _fake_train(first).to_report())
    assert searcher.suggest("t2") is None and planned == []  # one still running
    searcher.on_trial_complete("t1", _fake_train(second).to_report())
    confirms = [searcher.suggest(f"t{n}") for n in (2, 3)]
    assert planned == ["elbo"]  # planned once, after the last search trial ended
    assert [TrialMeta.of(c).trial_id for c in confirms] == [
        "elbo-confirm1-seed1",
        "elbo-confirm1-seed2",
    ]
    assert all(TrialMeta.of(c).phase == "confirm" for c in confirms)
    assert searcher.suggest("t4") == "FINISHED"


def test_an_arm_confirms_while_another_arm_still_searches(tmp_path: Path) -> None:
    def plan(arm: str) -> list[TrialMeta]:
        return [TrialMeta(arm, f"{arm}-confirm1-seed1", 1)]

    searches = {"a": _search(tmp_path, "a"), "b": _search(tmp_path, "b")}
    searcher = arms_searcher(searches, {"a": 1, "b": 3}, None, plan, ["a", "b"])
    configs = {f"t{n}": searcher.suggest(f"t{n}") for n in range(4)}
    arms = [TrialMeta.of(c).arm for c in configs.values()]
    assert sorted(arms) == ["a", "b", "b", "b"]  # every search trial handed out
    a_trial = next(t for t, c in configs.items() if TrialMeta.of(c).arm == "a")
    searcher.on_trial_complete(a_trial, _fake_train(configs[a_trial]).to_report())
    confirm = searcher.suggest("t4")  # b's search trials are still running
    assert TrialMeta.of(confirm).trial_id == "a-confirm1-seed1"
    assert searcher.suggest("t5") is None


def test_an_arm_with_its_search_done_before_the_run_confirms_at_once(tmp_path: Path) -> None:
    def plan(arm: str) -> list[TrialMeta]:
        return [TrialMeta(arm, f"{arm}-confirm1-seed1", 1)]

    searcher = arms_searcher({}, {}, None, plan, ["elbo"])
    assert TrialMeta.of(searcher.suggest("t0")).trial_id == "elbo-confirm1-seed1"
    assert searcher.suggest("t1") == "FINISHED"


def test_a_failed_search_trial_still_releases_the_arm_confirm(tmp_path: Path) -> None:
    searcher = arms_searcher(
        {"elbo": _search(tmp_path)}, {"elbo": 1}, None, lambda arm: [], ["elbo"]
    )
    searcher.suggest("t0")
    assert searcher.suggest("t1") is None
    searcher.on_trial_complete("t0", error=True)
    assert searcher.suggest("t1") == "FINISHED"  # nothing to confirm: done, not stuck
