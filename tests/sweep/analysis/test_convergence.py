"""The convergence rule (sweep.analysis.convergence) on curves whose answers are computed by
hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sweep.analysis.convergence import (
    convergence_summary,
    describe_rule,
    judge_curve,
    trial_convergence,
    window_size,
)


@pytest.mark.parametrize(
    ("epochs", "window"),
    [(1, 1), (4, 1), (10, 1), (14, 1), (15, 2), (20, 2), (24, 2), (25, 3), (50, 5), (100, 10)],
)
def test_window_is_a_tenth_of_the_epochs_rounded_half_up_at_least_one(epochs, window) -> None:
    assert window_size(epochs) == window


def test_a_flat_curve_has_converged_with_zero_change() -> None:
    judged = judge_curve([-100.0] * 20)
    assert judged.status == "converged"
    assert judged.relative_change == 0.0
    assert (judged.window, judged.epochs) == (2, 20)


def test_a_still_rising_curve_has_not_converged() -> None:
    # -200 + 5 e for e = 0..19; w = 2: last (e = 18, 19) = -110, -105, mean -107.5;
    # before (e = 16, 17) = -120, -115, mean -117.5; |change| / |mean last| = 10 / 107.5.
    judged = judge_curve([-200.0 + 5 * e for e in range(20)])
    assert judged.status == "not_converged"
    assert judged.relative_change == pytest.approx(10 / 107.5, rel=1e-12)


def test_the_tolerance_is_inclusive_and_compares_the_relative_change() -> None:
    # E = 10, w = 1: last -100.5, before -100.0: 0.5 / 100.5 = 0.0049751...
    curve = [-150.0] * 8 + [-100.0, -100.5]
    assert judge_curve(curve, tolerance=0.005).status == "converged"
    assert judge_curve(curve, tolerance=0.0049).status == "not_converged"
    assert judge_curve(curve).relative_change == pytest.approx(0.5 / 100.5, rel=1e-12)
    assert judge_curve(curve, tolerance=0.5 / 100.5).status == "converged"


def test_only_the_last_two_windows_count() -> None:
    # A huge early drop does not matter; E = 30, w = 3: last 3 mean 10, before 3 mean 10.02.
    curve = [1000.0] * 24 + [10.02] * 3 + [10.0] * 3
    judged = judge_curve(curve)
    assert judged.window == 3
    assert judged.relative_change == pytest.approx(0.02 / 10.0, rel=1e-9)
    assert judged.status == "converged"


def test_a_short_run_is_unknown() -> None:
    for n in (0, 1, 2, 3):
        judged = judge_curve([-100.0] * n)
        assert judged.status == "unknown" and judged.relative_change is None
        assert "needs at least 4" in judged.reason
    assert judge_curve([-100.0] * 4).status == "converged"


def test_a_non_finite_value_in_the_windows_is_unknown_never_nan() -> None:
    judged = judge_curve([-100.0] * 8 + [math.nan, -100.0])
    assert judged.status == "unknown" and judged.relative_change is None
    assert "not finite" in judged.reason
    # outside the windows it does not matter
    assert judge_curve([math.inf] + [-100.0] * 9).status == "converged"


def test_a_curve_near_zero_uses_the_floor_not_a_division_by_zero() -> None:
    assert judge_curve([0.0] * 10).relative_change == 0.0
    judged = judge_curve([0.0] * 9 + [1e-3])
    assert judged.relative_change == pytest.approx(1.0)
    assert judged.status == "not_converged"


@pytest.mark.parametrize("tolerance", [0.0, -1.0, math.nan])
def test_a_non_positive_tolerance_is_refused(tolerance: float) -> None:
    with pytest.raises(ValueError, match="convergence.tolerance"):
        judge_curve([1.0] * 10, tolerance)


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    trials = pd.DataFrame(
        {
            "trial_id": ["flat", "rising", "short", "no-epochs", "failed"],
            "arm": ["a", "a", "b", "b", "b"],
            "phase": ["confirm", "confirm", "search", "search", "search"],
            "status": ["completed", "completed", "completed", "completed", "failed"],
        }
    )
    rows = []
    for e in range(10):
        rows.append({"trial_id": "flat", "epoch": e, "val.elbo": -50.0})
        rows.append({"trial_id": "rising", "epoch": e, "val.elbo": -100.0 + e})
    rows += [{"trial_id": "short", "epoch": e, "val.elbo": -1.0} for e in range(2)]
    rows += [{"trial_id": "failed", "epoch": e, "val.elbo": -1.0} for e in range(10)]
    epochs = pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # order must not matter
    return trials, epochs


def test_trial_convergence_judges_every_completed_trial_from_its_sorted_curve() -> None:
    trials, epochs = _frames()
    judged = trial_convergence(trials, epochs).set_index("trial_id")
    assert list(judged.index) == ["flat", "rising", "short", "no-epochs"]  # failed left out
    assert judged.loc["flat", "status"] == "converged"
    # rising: last -91, before -92: 1 / 91
    assert judged.loc["rising", "status"] == "not_converged"
    assert judged.loc["rising", "relative_change"] == pytest.approx(1 / 91)
    assert judged.loc["short", "status"] == "unknown"
    assert judged.loc["no-epochs", "status"] == "unknown"
    assert np.isnan(judged.loc["short", "relative_change"])


def test_trial_convergence_uses_the_given_metric_and_tolerance() -> None:
    trials, epochs = _frames()
    assert (trial_convergence(trials, epochs, metric="val.loss")["status"] == "unknown").all()
    loose = trial_convergence(trials, epochs, tolerance=0.02).set_index("trial_id")
    assert loose.loc["rising", "status"] == "converged"  # 1/91 = 0.011 <= 0.02


def test_convergence_summary_counts_per_arm_and_phase_with_the_median_change() -> None:
    trials, epochs = _frames()
    summary = convergence_summary(trial_convergence(trials, epochs))
    a = summary[summary["arm"] == "a"].iloc[0]
    assert (a["phase"], a["converged"], a["not_converged"], a["unknown"]) == ("confirm", 1, 1, 0)
    assert a["median_relative_change"] == pytest.approx((0 + 1 / 91) / 2)
    b = summary[summary["arm"] == "b"].iloc[0]
    assert (b["converged"], b["not_converged"], b["unknown"]) == (0, 0, 2)
    assert np.isnan(b["median_relative_change"])


def test_the_rule_in_words_names_metric_and_tolerance() -> None:
    text = describe_rule("val.loss", 0.01)
    assert "val.loss" in text and "1%" in text and "last tenth" in text
