"""Search spaces: distributions, their Optuna form, grids and seeded samplers."""

from __future__ import annotations

import re
from typing import Any

import optuna
import pydantic
import pytest

from sweep.space import (
    Distribution,
    cmaes_available,
    decode_params,
    encode_value,
    grid_points,
    grid_size,
    make_sampler,
    sampler_seed,
    to_optuna_distributions,
)
from sweep.spec import SearchSpec, StudySpec

optuna.logging.set_verbosity(optuna.logging.WARNING)
needs_cmaes = pytest.mark.skipif(not cmaes_available(), reason="the cmaes package is absent")


def dist(data: dict[str, Any]) -> Distribution:
    return Distribution.model_validate(data)


def search_spec(sampler: str, trials: int | None = 8, objectives: int = 1) -> SearchSpec:
    metrics = ["metric.mmd", "metric.mutual_info"][:objectives]
    return SearchSpec.model_validate(
        {
            "sampler": sampler,
            "trials_per_arm": trials,
            "seed": 3,
            "objectives": [{"metric": m, "direction": "minimize"} for m in metrics],
        }
    )


SPACE = {
    "objective.lambda": dist({"log_uniform": {"low": 1.0, "high": 1e4}}),
    "objective.alpha": dist({"uniform": {"low": 0.0, "high": 1.0}}),
    "model.latent_dim": dist({"int": {"low": 2, "high": 32, "step": 2}}),
    "model.decoder.depth": dist({"int": {"low": 1, "high": 8, "log": True}}),
    "objective.kernel": dist({"choice": ["rbf", "imq"]}),
    "objective.scales": dist({"choice": [[1.0], [0.5, 1.0, 2.0]]}),
}


def sample(
    space: dict[str, Distribution], n: int, sampler: optuna.samplers.BaseSampler | None = None
) -> list[dict[str, Any]]:
    """n parameter sets drawn through Optuna's ask/tell, as a runner would."""
    study = optuna.create_study(sampler=sampler or optuna.samplers.RandomSampler(seed=0))
    distributions = to_optuna_distributions(space)
    drawn = []
    for i in range(n):
        trial = study.ask(fixed_distributions=distributions)
        drawn.append(dict(trial.params))
        study.tell(trial, float(i % 3))
    return drawn


# -- distributions -----------------------------------------------------------------------------


def test_distributions_convert_to_the_matching_optuna_classes() -> None:
    converted = to_optuna_distributions(SPACE)
    lam = converted["objective.lambda"]
    assert isinstance(lam, optuna.distributions.FloatDistribution)
    assert (lam.low, lam.high, lam.log) == (1.0, 1e4, True)
    alpha = converted["objective.alpha"]
    assert isinstance(alpha, optuna.distributions.FloatDistribution) and not alpha.log
    latent = converted["model.latent_dim"]
    assert isinstance(latent, optuna.distributions.IntDistribution)
    assert (latent.low, latent.high, latent.step, latent.log) == (2, 32, 2, False)
    assert converted["model.decoder.depth"].log
    kernel = converted["objective.kernel"]
    assert isinstance(kernel, optuna.distributions.CategoricalDistribution)
    assert kernel.choices == ("rbf", "imq")
    assert list(converted) == list(SPACE)


def test_list_choices_become_hashable_strings_for_optuna() -> None:
    scales = to_optuna_distributions(SPACE)["objective.scales"]
    assert scales.choices == ("[1.0]", "[0.5, 1.0, 2.0]")
    assert all(isinstance(c, str) for c in scales.choices)


def test_sampled_values_stay_within_bounds() -> None:
    for params in sample(SPACE, 200):
        assert 1.0 <= params["objective.lambda"] <= 1e4
        assert 0.0 <= params["objective.alpha"] <= 1.0
        latent = params["model.latent_dim"]
        assert isinstance(latent, int) and 2 <= latent <= 32 and latent % 2 == 0
        assert 1 <= params["model.decoder.depth"] <= 8
        assert params["objective.kernel"] in ("rbf", "imq")


def test_log_uniform_samples_spread_over_decades() -> None:
    # Log-uniform on [1, 1e4]: each decade holds a quarter of the mass; a uniform draw would put
    # ~90% above 1000 and almost nothing below 10.
    lambdas = [p["objective.lambda"] for p in sample(SPACE, 400)]
    below_10 = sum(v < 10 for v in lambdas) / len(lambdas)
    assert 0.15 < below_10 < 0.35


def test_list_valued_choices_round_trip_through_decode_params() -> None:
    seen = {tuple(decode_params(p)["objective.scales"]) for p in sample(SPACE, 50)}
    assert seen == {(1.0,), (0.5, 1.0, 2.0)}
    for value in SPACE["objective.scales"].values:
        assert decode_params({"k": encode_value(value)}) == {"k": value}


def test_decode_params_leaves_scalars_alone() -> None:
    params = {"objective.kernel": "imq", "objective.lambda": 3.5, "model.latent_dim": 4}
    assert decode_params(params) == params


def test_sampled_params_build_a_trial_config() -> None:
    study = StudySpec.model_validate(
        {
            "name": "s",
            "data": {"dataset": "digits"},
            "defaults": {"objective.alpha": 1.0},
            "arms": {"a": {"search": {k: v.model_dump(by_alias=True) for k, v in SPACE.items()}}},
            "search": {
                "trials_per_arm": 4,
                "objectives": [{"metric": "metric.mmd", "direction": "minimize"}],
            },
        }
    )
    for params in sample(SPACE, 10):
        config = study.arm_config("a", decode_params(params))
        assert config.objective.scales in ((1.0,), (0.5, 1.0, 2.0))
        assert config.objective.lambda_ == pytest.approx(params["objective.lambda"])


@pytest.mark.parametrize(
    "data, phrase",
    [
        ({"uniform": {"low": 1.0, "high": 1.0}}, "low must be < high"),
        ({"log_uniform": {"low": -1.0, "high": 1.0}}, "must be > 0"),
        ({"int": {"low": 0, "high": 10, "step": 3}}, "multiple of step"),
        ({"int": {"low": 0, "high": 8, "log": True}}, "log: true needs low >= 1"),
        ({"choice": []}, "at least one value"),
        ({"choice": ["rbf", "rbf"]}, "duplicate value"),
        ({"choice": ["[1]"]}, "may not start with '['"),
        ({"choice": [{"a": 1}]}, "scalars or lists"),
        ({"uniform": {"low": 0.0, "high": 1.0}, "choice": [1]}, "exactly one"),
        ({}, "exactly one"),
    ],
)
def test_invalid_distributions_are_refused(data: dict[str, Any], phrase: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=re.escape(phrase)):
        dist(data)


def test_extremes_are_the_bounds_or_every_value() -> None:
    assert SPACE["objective.lambda"].extremes() == (1.0, 1e4)
    assert SPACE["model.latent_dim"].extremes() == (2, 32)
    assert SPACE["objective.kernel"].extremes() == ("rbf", "imq")


# -- grids -------------------------------------------------------------------------------------


def test_grid_points_are_the_cartesian_product() -> None:
    space = {
        "objective.kernel": dist({"grid": ["rbf", "imq"]}),
        "objective.lambda": dist({"grid": [1.0, 10.0, 100.0]}),
    }
    assert grid_points(space) == [
        {"objective.kernel": "rbf", "objective.lambda": 1.0},
        {"objective.kernel": "rbf", "objective.lambda": 10.0},
        {"objective.kernel": "rbf", "objective.lambda": 100.0},
        {"objective.kernel": "imq", "objective.lambda": 1.0},
        {"objective.kernel": "imq", "objective.lambda": 10.0},
        {"objective.kernel": "imq", "objective.lambda": 100.0},
    ]
    assert grid_size(space) == 6


def test_grid_points_keep_list_values_decoded() -> None:
    space = {"objective.scales": dist({"choice": [[1.0], [0.5, 2.0]]})}
    assert grid_points(space) == [{"objective.scales": [1.0]}, {"objective.scales": [0.5, 2.0]}]


def test_an_empty_space_is_a_grid_of_one_point() -> None:
    assert grid_points({}) == [{}]
    assert grid_size({}) == 1


def test_a_grid_over_a_continuous_range_is_refused() -> None:
    with pytest.raises(ValueError, match="objective.alpha"):
        grid_points({"objective.alpha": SPACE["objective.alpha"]})


def test_grid_sampler_visits_every_point_once() -> None:
    space = {
        "objective.kernel": dist({"grid": ["rbf", "imq"]}),
        "objective.scales": dist({"grid": [[1.0], [0.5, 1.0, 2.0]]}),
        "train.seed": dist({"grid": [0, 1, 2]}),
    }
    sampler = make_sampler(search_spec("grid", trials=None), 0, space)
    drawn = [decode_params(p) for p in sample(space, grid_size(space), sampler)]
    as_key = [tuple((k, str(v)) for k, v in sorted(p.items())) for p in drawn]
    expected = [tuple((k, str(v)) for k, v in sorted(p.items())) for p in grid_points(space)]
    assert sorted(as_key) == sorted(expected)


# -- samplers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sampler, objectives, cls",
    [
        ("tpe", 1, optuna.samplers.TPESampler),
        ("random", 1, optuna.samplers.RandomSampler),
        pytest.param("cmaes", 1, optuna.samplers.CmaEsSampler, marks=needs_cmaes),
        ("nsga2", 2, optuna.samplers.NSGAIISampler),
        ("grid", 1, optuna.samplers.GridSampler),
    ],
)
def test_make_sampler_returns_the_named_optuna_sampler(
    sampler: str, objectives: int, cls: type
) -> None:
    space = {"objective.kernel": dist({"choice": ["rbf", "imq"]})}
    trials = None if sampler == "grid" else 8
    made = make_sampler(search_spec(sampler, trials, objectives), 0, space)
    assert isinstance(made, cls)


def test_grid_sampler_needs_the_space() -> None:
    with pytest.raises(ValueError, match="space"):
        make_sampler(search_spec("grid", trials=None), 0)


@pytest.mark.parametrize("sampler", ["tpe", "random", pytest.param("cmaes", marks=needs_cmaes)])
def test_samplers_are_reproducible_for_one_arm(sampler: str) -> None:
    space = {k: SPACE[k] for k in ("objective.lambda", "objective.alpha", "model.latent_dim")}
    first = sample(space, 12, make_sampler(search_spec(sampler), 1, space))
    again = sample(space, 12, make_sampler(search_spec(sampler), 1, space))
    assert first == again


def test_arms_draw_different_sequences() -> None:
    space = {"objective.alpha": SPACE["objective.alpha"]}
    arm0 = sample(space, 5, make_sampler(search_spec("random"), 0, space))
    arm1 = sample(space, 5, make_sampler(search_spec("random"), 1, space))
    assert arm0 != arm1


def test_sampler_seed_is_a_32_bit_function_of_study_seed_and_arm() -> None:
    seeds = {sampler_seed(s, a) for s in range(3) for a in range(3)}
    assert len(seeds) == 9
    assert all(0 <= s < 2**32 for s in seeds)
    assert sampler_seed(0, 1) == sampler_seed(0, 1)


def test_distribution_describe_is_compact() -> None:
    assert SPACE["objective.lambda"].describe() == "log_uniform[1, 10000]"
    assert SPACE["model.latent_dim"].describe() == "int[2, 32, step 2]"
    assert SPACE["objective.scales"].describe() == "choice{[1.0], [0.5, 1.0, 2.0]}"


def test_cmaes_without_its_package_is_refused_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sweep.spec.study_spec.cmaes_available", lambda: False)
    with pytest.raises(pydantic.ValidationError, match="pip install cmaes"):
        search_spec("cmaes")


def _tpe_study(history: list[tuple[float, float]], sampler) -> optuna.Study:
    space = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    study = optuna.create_study(sampler=sampler)
    for x, value in history:
        study.add_trial(
            optuna.trial.create_trial(params={"x": x}, distributions=space, value=value)
        )
    return study


def test_a_tpe_window_conditions_on_the_latest_trials_only() -> None:
    from sweep.space import RecentTPESampler

    space = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    old = [(0.05 + 0.01 * i, float(i)) for i in range(30)]  # good values near x = 0
    recent = [(0.95 - 0.01 * i, float(i)) for i in range(9)]  # good values near x = 1
    # The window holds the trial being sampled too: 10 = the 9 latest + the one asked.
    windowed = _tpe_study(old + recent, RecentTPESampler(10, n_startup_trials=2, seed=3))
    alone = _tpe_study(recent, optuna.samplers.TPESampler(n_startup_trials=2, seed=3))
    everything = _tpe_study(old + recent, optuna.samplers.TPESampler(n_startup_trials=2, seed=3))
    suggested = windowed.ask(space).params["x"]
    assert suggested == alone.ask(space).params["x"]
    assert suggested != everything.ask(space).params["x"]


def test_tpe_window_is_refused_for_another_sampler() -> None:
    with pytest.raises(pydantic.ValidationError, match="tpe_window"):
        SearchSpec(
            sampler="random",
            trials_per_arm=4,
            tpe_window=20,
            objectives=[{"metric": "metric.mmd", "direction": "minimize"}],
        )
