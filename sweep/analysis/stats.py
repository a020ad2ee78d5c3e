"""Statistics of a study's numbers: confidence intervals, two-sample tests and effect sizes.

Every function is a pure function of arrays, seeded where it resamples, so an analysis computed
twice from the same study folder is identical.

Conventions used throughout:

- A *difference* is ``mean(treatment) - mean(reference)``.
- Bootstrap intervals are percentile intervals (Efron): resample each group with replacement
  ``n_resamples`` times, take the statistic on every resample and report its
  ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles.
- Metrics have a *goal*: ``min`` (lower is better), ``max`` (higher is better) or ``zero``
  (nearer 0 is better, e.g. log det Cov, which is 0 for a perfect N(0, I)). For ``zero`` the
  comparison between arms is made on ``|x|`` per seed.
- Grid studies' per-setting means use the Student-t interval (:func:`t_interval`): with the 3 to
  5 seeds such studies run, a percentile bootstrap over 3 values cannot be wider than their
  range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

Goal = Literal["min", "max", "zero"]

DEFAULT_RESAMPLES = 10_000
DEFAULT_CONFIDENCE = 0.95
SIGNIFICANCE_LEVEL = 0.05


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval; ``n`` is the number of observations
    (for a difference, of the smaller group). Bounds are NaN when they cannot be computed."""

    estimate: float
    low: float
    high: float
    n: int


def clean_values(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def bootstrap_mean_ci(
    values: Sequence[float] | np.ndarray,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Mean of ``values`` (shape [n], non-finite entries dropped) with a percentile bootstrap CI.

    With one observation the interval is the point itself; with none, everything is NaN.
    """
    x = clean_values(values)
    n = x.size
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n == 1:
        return Interval(mean, mean, mean, 1)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, n, size=(n_resamples, n))].mean(axis=1)
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(mean, float(low), float(high), n)


def bootstrap_diff_ci(
    treatment: Sequence[float] | np.ndarray,
    reference: Sequence[float] | np.ndarray,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """``mean(treatment) - mean(reference)`` with a percentile bootstrap CI.

    The two groups are independent (different seeds), so each is resampled on its own.
    Bounds are NaN unless both groups have at least two observations.
    """
    a, b = clean_values(treatment), clean_values(reference)
    if a.size == 0 or b.size == 0:
        return Interval(math.nan, math.nan, math.nan, min(a.size, b.size))
    diff = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return Interval(diff, math.nan, math.nan, min(a.size, b.size))
    rng = np.random.default_rng(seed)
    ma = a[rng.integers(0, a.size, size=(n_resamples, a.size))].mean(axis=1)
    mb = b[rng.integers(0, b.size, size=(n_resamples, b.size))].mean(axis=1)
    low, high = np.quantile(ma - mb, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(diff, float(low), float(high), min(a.size, b.size))


@dataclass(frozen=True)
class TwoSampleTest:
    """Welch's t-test, the Mann-Whitney U test and Hedges' g for two independent samples.

    ``welch_t = (mean_a - mean_b) / sqrt(s_a^2 / n_a + s_b^2 / n_b)`` with the
    Welch-Satterthwaite degrees of freedom; ``hedges_g = J * (mean_a - mean_b) / s_pooled``,
    ``s_pooled^2 = ((n_a - 1) s_a^2 + (n_b - 1) s_b^2) / (n_a + n_b - 2)``,
    ``J = 1 - 3 / (4 (n_a + n_b) - 9)``. Two-sided p-values. NaN where undefined
    (fewer than two observations per group, or no variance at all).
    """

    welch_t: float
    welch_df: float
    welch_p: float
    mannwhitney_u: float
    mannwhitney_p: float
    hedges_g: float


def two_sample_test(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray
) -> TwoSampleTest:
    """Compare sample ``a`` with sample ``b`` (shapes [n_a], [n_b]); see :class:`TwoSampleTest`."""
    x, y = clean_values(a), clean_values(b)
    nan = math.nan
    if x.size < 2 or y.size < 2:
        return TwoSampleTest(nan, nan, nan, nan, nan, nan)
    va, vb = x.var(ddof=1), y.var(ddof=1)
    se2 = va / x.size + vb / y.size
    diff = x.mean() - y.mean()
    if se2 > 0:
        welch = stats.ttest_ind(x, y, equal_var=False)
        t, p = float(welch.statistic), float(welch.pvalue)
        df = se2**2 / ((va / x.size) ** 2 / (x.size - 1) + (vb / y.size) ** 2 / (y.size - 1))
    else:  # both groups constant: identical means -> no evidence, different -> certain
        t, df, p = (nan, nan, nan) if diff == 0 else (math.copysign(math.inf, diff), nan, 0.0)
    mw = stats.mannwhitneyu(x, y, alternative="two-sided")
    pooled = math.sqrt(((x.size - 1) * va + (y.size - 1) * vb) / (x.size + y.size - 2))
    correction = 1 - 3 / (4 * (x.size + y.size) - 9)
    g = correction * diff / pooled if pooled > 0 else nan
    return TwoSampleTest(t, float(df), p, float(mw.statistic), float(mw.pvalue), float(g))


def goal_values(values: Sequence[float] | np.ndarray, goal: Goal) -> np.ndarray:
    """The per-seed quantity compared between arms: ``|x|`` for goal ``zero``, else ``x``."""
    array = np.asarray(values, dtype=np.float64)
    return np.abs(array) if goal == "zero" else array


def is_better(a: float, b: float, goal: Goal) -> bool:
    """Whether comparison value ``a`` beats ``b`` (values already passed through
    :func:`goal_values`; NaN never beats anything)."""
    if math.isnan(a):
        return False
    if math.isnan(b):
        return True
    return a > b if goal == "max" else a < b


def t_interval(
    values: Sequence[float] | np.ndarray, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[float, float, float]:
    """``(mean, low, high)`` of the finite ``values``: the Student-t interval of the mean,
    ``mean +- t_{(1 + confidence) / 2, n - 1} * sd / sqrt(n)``.

    One value gives a NaN interval around it; none gives NaN throughout.
    """
    x = clean_values(values)
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if x.size == 1:
        return (mean, math.nan, math.nan)
    half = float(stats.t.ppf((1 + confidence) / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return (mean, mean - half, mean + half)
