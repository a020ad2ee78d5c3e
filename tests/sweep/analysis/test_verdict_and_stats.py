"""Aggregation and statistics of the report, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sweep.analysis.descriptive import (
    compute_seconds,
    covariance_spectrum,
    latent_projection,
    learning_curve_bands,
    status_counts,
)
from sweep.analysis.load import normalise_trials
from sweep.analysis.ranking import Objective, best_trial, pareto_optimal
from sweep.analysis.stats import bootstrap_diff_ci, bootstrap_mean_ci, two_sample_test
from sweep.analysis.verdict import (
    MetricSpec,
    build_verdict,
    compare,
    select_confirm_trials,
    verdict_metrics,
)

A = [1.0, 2.0, 3.0, 4.0]
B = [2.0, 4.0, 6.0, 8.0, 10.0]


def _trials(rows: list[dict[str, object]]) -> pd.DataFrame:
    return normalise_trials(pd.DataFrame(rows))


def test_bootstrap_mean_ci_of_a_constant_sample_is_the_constant() -> None:
    ci = bootstrap_mean_ci([2.5] * 6)
    assert (ci.estimate, ci.low, ci.high, ci.n) == (2.5, 2.5, 2.5, 6)


def test_bootstrap_mean_ci_estimate_is_the_mean_and_drops_non_finite_values() -> None:
    ci = bootstrap_mean_ci([1.0, 2.0, 6.0, math.nan, math.inf])
    assert ci.estimate == pytest.approx(3.0)
    assert ci.n == 3


def test_bootstrap_mean_ci_of_one_value_is_a_point_and_of_none_is_nan() -> None:
    one = bootstrap_mean_ci([4.0])
    assert (one.low, one.high, one.n) == (4.0, 4.0, 1)
    assert math.isnan(bootstrap_mean_ci([]).estimate)


def test_bootstrap_mean_ci_matches_the_normal_interval_for_a_large_sample() -> None:
    # For n = 400 the bootstrap distribution of the mean is close to N(mean, s^2 / n).
    x = np.random.default_rng(1).normal(10.0, 2.0, size=400)
    ci = bootstrap_mean_ci(x, n_resamples=20_000)
    half = 1.959964 * x.std(ddof=1) / math.sqrt(x.size)
    assert ci.low == pytest.approx(x.mean() - half, abs=0.03)
    assert ci.high == pytest.approx(x.mean() + half, abs=0.03)


def test_bootstrap_is_reproducible_for_a_seed() -> None:
    assert bootstrap_mean_ci(A, seed=3) == bootstrap_mean_ci(A, seed=3)


def test_bootstrap_diff_ci_estimate_is_the_difference_of_means() -> None:
    ci = bootstrap_diff_ci(B, A)
    assert ci.estimate == pytest.approx(6.0 - 2.5)
    assert ci.low < 3.5 < ci.high
    assert ci.n == 4


def test_bootstrap_diff_ci_matches_the_normal_interval_for_large_samples() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 2.0, 500)
    ci = bootstrap_diff_ci(a, b, n_resamples=20_000)
    half = 1.959964 * math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    diff = a.mean() - b.mean()
    assert ci.low == pytest.approx(diff - half, abs=0.04)
    assert ci.high == pytest.approx(diff + half, abs=0.04)


def test_bootstrap_diff_ci_needs_two_values_per_group_for_bounds() -> None:
    ci = bootstrap_diff_ci([1.0], [2.0, 3.0])
    assert ci.estimate == pytest.approx(-1.5)
    assert math.isnan(ci.low) and math.isnan(ci.high)


def test_two_sample_test_matches_hand_computed_welch_statistics() -> None:
    # mean_a = 2.5, s_a^2 = 5/3; mean_b = 6, s_b^2 = 10; se^2 = 5/12 + 2 = 29/12.
    result = two_sample_test(A, B)
    se2 = 29 / 12
    t = -3.5 / math.sqrt(se2)
    df = se2**2 / ((5 / 12) ** 2 / 3 + 2.0**2 / 4)
    assert result.welch_t == pytest.approx(t)
    assert result.welch_df == pytest.approx(df)
    assert result.welch_p == pytest.approx(2 * stats.t.sf(abs(t), df))


def test_two_sample_test_matches_hand_computed_hedges_g() -> None:
    # s_pooled^2 = (3 * 5/3 + 4 * 10) / 7 = 45/7; J = 1 - 3 / (4 * 9 - 9) = 8/9.
    result = two_sample_test(A, B)
    assert result.hedges_g == pytest.approx((8 / 9) * -3.5 / math.sqrt(45 / 7))


def test_two_sample_test_matches_hand_counted_mann_whitney_u() -> None:
    # Pairs with a_i > b_j count 1, ties 0.5: a=2 ties 2 (0.5), a=3 beats 2 (1), a=4 beats 2
    # and ties 4 (1.5): U = 3.
    assert two_sample_test(A, B).mannwhitney_u == pytest.approx(3.0)


def test_two_sample_test_is_nan_with_fewer_than_two_values() -> None:
    result = two_sample_test([1.0], B)
    assert math.isnan(result.welch_p) and math.isnan(result.hedges_g)


def test_compare_on_goal_zero_uses_absolute_values() -> None:
    # Raw values -3 vs 0.5: lower raw is -3, but 0.5 is nearer 0, so it is better.
    far = np.array([-3.0, -3.1, -2.9])
    near = np.array([0.5, 0.4, 0.6])
    result = compare("near", near, "far", far, "zero")
    assert result.better == "near"
    assert result.difference.estimate == pytest.approx(0.5 - 3.0)


def test_verdict_metrics_appends_probe_sizes_in_numeric_order() -> None:
    columns = ["metric.probe_acc_1000", "metric.mmd", "metric.probe_acc_100"]
    keys = [m.key for m in verdict_metrics(columns)]
    assert keys[-2:] == ["probe_acc_100", "probe_acc_1000"]
    assert keys[0] == "mmd"


def _confirm_rows() -> list[dict[str, object]]:
    rows = []
    for seed, value in enumerate([1.0, 1.2, 1.4]):  # config lambda=10: mean 1.2
        rows.append(
            {
                "arm": "a",
                "phase": "confirm",
                "status": "completed",
                "trial_id": f"x{seed}",
                "param.objective.lambda": 10.0,
                "param.train.seed": seed,
                "metric.nll_iwae": value,
            }
        )
    for seed, value in enumerate([0.5, 0.7]):  # config lambda=100: mean 0.6 (better)
        rows.append(
            {
                "arm": "a",
                "phase": "confirm",
                "status": "completed",
                "trial_id": f"y{seed}",
                "param.objective.lambda": 100.0,
                "param.train.seed": seed,
                "metric.nll_iwae": value,
            }
        )
    rows.append(
        {
            "arm": "a",
            "phase": "confirm",
            "status": "failed",
            "trial_id": "z",
            "param.objective.lambda": 100.0,
            "param.train.seed": 9,
            "metric.nll_iwae": math.nan,
        }
    )
    return rows


def test_select_confirm_trials_takes_the_best_configuration_over_its_seeds() -> None:
    selection = select_confirm_trials(
        _trials(_confirm_rows()), "a", Objective("nll_iwae", "minimize")
    )
    assert selection.n_configs == 2
    assert sorted(selection.trials["trial_id"]) == ["y0", "y1"]
    assert selection.config["param.objective.lambda"] == 100.0


def test_select_confirm_trials_follows_the_objective_direction() -> None:
    selection = select_confirm_trials(
        _trials(_confirm_rows()), "a", Objective("nll_iwae", "maximize")
    )
    assert sorted(selection.trials["trial_id"]) == ["x0", "x1", "x2"]


def test_best_trial_prefers_the_confirm_phase() -> None:
    rows = _confirm_rows() + [
        {
            "arm": "a",
            "phase": "search",
            "status": "completed",
            "trial_id": "s",
            "metric.nll_iwae": 0.1,
        }
    ]
    best = best_trial(_trials(rows), "a", Objective("nll_iwae", "minimize"))
    assert best is not None and best["trial_id"] == "y0"


def test_best_trial_falls_back_to_search_and_is_none_without_candidates() -> None:
    rows = [
        {
            "arm": "a",
            "phase": "search",
            "status": "completed",
            "trial_id": "s1",
            "metric.elbo": -3.0,
        },
        {
            "arm": "a",
            "phase": "search",
            "status": "completed",
            "trial_id": "s2",
            "metric.elbo": -2.0,
        },
    ]
    trials = _trials(rows)
    best = best_trial(trials, "a", Objective("elbo", "maximize"))
    assert best is not None and best["trial_id"] == "s2"
    assert best_trial(trials, "b", Objective("elbo", "maximize")) is None


def test_build_verdict_names_the_winner_and_its_significance() -> None:
    rows = []
    for seed in range(6):
        rows.append(
            {
                "arm": "elbo",
                "phase": "confirm",
                "status": "completed",
                "trial_id": f"e{seed}",
                "param.train.seed": seed,
                "metric.mmd": 0.05 + 0.001 * seed,
                "metric.mutual_info": 2.0 + 0.01 * seed,
            }
        )
        rows.append(
            {
                "arm": "info",
                "phase": "confirm",
                "status": "completed",
                "trial_id": f"i{seed}",
                "param.train.seed": seed,
                "metric.mmd": 0.01 + 0.001 * seed,
                "metric.mutual_info": 2.0 + 0.01 * seed,
            }
        )
    verdict = build_verdict(_trials(rows), ["elbo", "info"], Objective("mmd", "minimize"), "elbo")
    by_key = {row.metric.key: row for row in verdict.rows}
    assert by_key["mmd"].winner == "info" and by_key["mmd"].winner_significant
    assert by_key["mmd"].comparisons[0].difference.estimate == pytest.approx(-0.04)
    assert by_key["mutual_info"].winner is None  # identical values: a tie
    assert by_key["nll_iwae"].winner is None  # not measured


def test_learning_curve_bands_match_hand_computed_quantiles() -> None:
    epochs = pd.DataFrame(
        {
            "arm": ["a"] * 3 + ["a"] * 3,
            "trial_id": ["t1", "t2", "t3"] * 2,
            "epoch": [0, 0, 0, 1, 1, 1],
            "val.loss": [1.0, 2.0, 4.0, 3.0, math.nan, 5.0],
        }
    )
    bands = learning_curve_bands(epochs, ["val.loss", "val.missing"])
    first = bands[bands["epoch"] == 0].iloc[0]
    # Linear interpolation on [1, 2, 4]: q0.1 at position 0.2 -> 1.2, q0.9 at 1.8 -> 3.6.
    assert (first["median"], first["low"], first["high"], first["n"]) == pytest.approx(
        (2.0, 1.2, 3.6, 3)
    )
    second = bands[bands["epoch"] == 1].iloc[0]
    assert (second["median"], second["n"]) == (4.0, 2)
    assert set(bands["term"]) == {"val.loss"}


def test_covariance_spectrum_matches_hand_computed_eigenvalues() -> None:
    # Var(x) = (1 + 1) / 3, Var(y) = (4 + 4) / 3, Cov = 0.
    z = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    np.testing.assert_allclose(covariance_spectrum(z), [8 / 3, 2 / 3])


def test_latent_projection_keeps_a_line_on_the_first_axis() -> None:
    t = np.linspace(-1, 1, 50)
    z = np.column_stack([t, 2 * t, -t])
    points = latent_projection(z)
    q = points[points["source"] == "q(z|x)"]
    np.testing.assert_allclose(q["y"], 0.0, atol=1e-9)
    np.testing.assert_allclose(np.sort(np.abs(q["x"])), np.sort(np.abs(t * math.sqrt(6))))
    assert (points["source"] == "prior").sum() == 50


def test_latent_projection_of_one_dimension_puts_zero_on_the_second_axis() -> None:
    points = latent_projection(np.arange(5.0).reshape(5, 1))
    assert (points["y"] == 0).all()


def test_pareto_optimal_finds_the_non_dominated_points() -> None:
    values = np.array([[1, 5], [2, 2], [3, 1], [3, 3], [4, 4], [np.nan, 0]], dtype=float)
    mask = pareto_optimal(values, ["minimize", "minimize"])
    assert mask.tolist() == [True, True, True, False, False, False]


def test_pareto_optimal_respects_maximize() -> None:
    values = np.array([[1, 5], [2, 2], [3, 1], [0, 6]], dtype=float)
    # minimise x, maximise y: (0, 6) dominates every other point.
    assert pareto_optimal(values, ["minimize", "maximize"]).tolist() == [False, False, False, True]


def test_status_counts_and_compute_seconds_match_hand_counts() -> None:
    trials = _trials(
        [
            {
                "arm": "a",
                "phase": "search",
                "status": "completed",
                "train_seconds": 10.0,
                "eval_seconds": 2.0,
            },
            {"arm": "a", "phase": "search", "status": "failed", "train_seconds": 1.0},
            {
                "arm": "b",
                "phase": "confirm",
                "status": "completed",
                "train_seconds": 20.0,
                "eval_seconds": 3.0,
            },
        ]
    )
    counts = status_counts(trials).set_index(["arm", "phase"])
    assert counts.loc[("a", "search"), "completed"] == 1
    assert counts.loc[("a", "search"), "failed"] == 1
    assert counts.loc[("a", "search"), "total"] == 2
    assert counts.loc[("b", "confirm"), "failed"] == 0
    assert compute_seconds(trials) == pytest.approx(36.0)


def test_metric_spec_column_names_the_trials_column() -> None:
    assert MetricSpec("mmd", "MMD", "min").column == "metric.mmd"


def test_pareto_optimal_two_objective_shortcut_agrees_with_pairwise_dominance() -> None:
    rng = np.random.default_rng(5)
    values = np.round(rng.normal(size=(300, 2)), 1)  # rounding makes ties and duplicates
    fast = pareto_optimal(values, ["minimize", "maximize"])
    flipped = values * np.array([1.0, -1.0])
    brute = np.array([
        not np.any(np.all(flipped <= p, axis=1) & np.any(flipped < p, axis=1)) for p in flipped
    ])
    assert fast.tolist() == brute.tolist()


def test_pixelcnn_capacity_is_its_channels_and_layers():
    import pandas as pd

    from sweep.analysis.descriptive import capacity_label, capacity_levels

    trials = pd.DataFrame(
        {
            "param.model.decoder.kind": ["mlp", "pixelcnn", "pixelcnn"],
            "param.model.decoder.width": [256, 256, 256],
            "param.model.decoder.depth": [2, 2, 2],
            "param.model.decoder.pixelcnn_channels": [32, 16, 32],
            "param.model.decoder.pixelcnn_layers": [4, 2, 8],
        }
    )
    levels = capacity_levels(trials)
    assert sorted(levels) == [levels[0], levels[1], levels[2]]
    assert capacity_label(levels[2]) == "pixelcnn channels=32 layers=8"
    assert capacity_label(levels[0]) == "mlp w=256 d=2"


def test_decoders_of_one_size_with_different_likelihoods_are_different_levels():
    import pandas as pd

    from sweep.analysis.descriptive import capacity_label, capacity_levels

    trials = pd.DataFrame(
        {
            "param.model.decoder.kind": ["mlp", "mlp", "pixelcnn"],
            "param.model.decoder.width": [256, 256, 256],
            "param.model.decoder.depth": [2, 2, 2],
            "param.model.decoder.likelihood": ["gaussian", "bernoulli", "bernoulli"],
            "param.model.decoder.pixelcnn_channels": [None, None, 32],
            "param.model.decoder.pixelcnn_layers": [None, None, 2],
        }
    )
    levels = capacity_levels(trials)
    assert levels.nunique() == 3
    assert [capacity_label(level) for level in sorted(levels)] == [
        "mlp w=256 d=2 bernoulli",
        "mlp w=256 d=2 gaussian",
        "pixelcnn channels=32 layers=2",
    ]
