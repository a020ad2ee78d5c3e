"""The confirm-phase verdict of a study: per metric, each arm's mean and interval over the
confirm seeds of its best confirmed configuration, each arm against the reference arm
(difference interval, Welch and Mann-Whitney tests, Hedges' g) and the best arm.

Statistics come from :mod:`sweep.analysis.stats` (its conventions: differences are
treatment - reference, goal ``zero`` compares ``|x|``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sweep import names
from sweep.analysis import ranking
from sweep.analysis.load import hashable_param
from sweep.analysis.ranking import Objective
from sweep.analysis.stats import (
    DEFAULT_RESAMPLES,
    SIGNIFICANCE_LEVEL,
    Goal,
    Interval,
    TwoSampleTest,
    bootstrap_diff_ci,
    bootstrap_mean_ci,
    clean_values,
    goal_values,
    is_better,
    two_sample_test,
)


@dataclass(frozen=True)
class MetricSpec:
    """A metric column of the verdict: ``key`` is the name after ``metric.``."""

    key: str
    label: str
    goal: Goal

    @property
    def column(self) -> str:
        return names.metric(self.key)


#: The confirm-phase metrics of the verdict, in display order (probe accuracies are appended
#: per labelled-set size found in the store, see :func:`verdict_metrics`).
BASE_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("mmd", "MMD² (q(z) vs p(z))", "min"),
    MetricSpec("log_det_cov", "log det Cov[z]", "zero"),
    MetricSpec("mutual_info", "mutual information I(x; z) [nats]", "max"),
    MetricSpec("nll_iwae", "NLL (IWAE) [nats]", "min"),
    MetricSpec("elbo", "ELBO [nats]", "max"),
    MetricSpec("active_units", "active units", "max"),
)


_PROBE = re.compile(r"^metric\.probe_acc_(\d+)$")


def verdict_metrics(columns: Iterable[str]) -> tuple[MetricSpec, ...]:
    """The base metrics plus one ``probe_acc_<n>`` per n present in ``columns``, n ascending."""
    sizes = sorted({int(m.group(1)) for c in columns if (m := _PROBE.match(c))})
    probes = tuple(MetricSpec(f"probe_acc_{n}", f"probe accuracy (n={n})", "max") for n in sizes)
    return BASE_METRICS + probes


@dataclass(frozen=True)
class ConfirmSelection:
    """The confirm-phase trials of one arm used in the verdict.

    The confirm phase re-runs the ``top_k`` best configurations with several seeds; when more
    than one configuration was confirmed, the verdict uses the one with the best mean primary
    objective (``config_rank`` 1 of ``n_configs``), so every number is over seeds of one
    configuration. ``trials`` holds only completed runs of that configuration.
    """

    arm: str
    trials: pd.DataFrame
    n_configs: int
    config: dict[str, object]


def _is_seed_key(column: str) -> bool:
    return column == names.param("seed") or column.endswith(".seed") or column.endswith("_seed")


def config_signature_columns(trials: pd.DataFrame) -> list[str]:
    """The ``param.*`` columns that identify a configuration (every one except seeds)."""
    return [c for c in trials.columns if c.startswith(names.PARAM) and not _is_seed_key(c)]


def select_confirm_trials(trials: pd.DataFrame, arm: str, objective: Objective) -> ConfirmSelection:
    """Completed confirm-phase trials of ``arm`` for its best confirmed configuration."""
    rows = trials[
        (trials[names.ARM] == arm)
        & (trials[names.PHASE] == names.CONFIRM)
        & (trials[names.STATUS] == names.COMPLETED)
    ]
    if rows.empty:
        return ConfirmSelection(arm, rows, 0, {})
    columns = config_signature_columns(rows)
    if not columns:
        return ConfirmSelection(arm, rows, 1, {})
    keys = rows[columns].map(hashable_param)
    signature = keys.apply(lambda r: tuple(r.tolist()), axis=1)
    groups = list(rows.groupby(signature, sort=False).groups.items())
    best_key, best_index = groups[0]
    best_value: float | None = None
    for key, index in groups:
        if objective.column in rows.columns:
            value = float(rows.loc[index, objective.column].mean())
        else:
            value = float(len(index)) if objective.direction == "maximize" else -float(len(index))
        if ranking.better(value, best_value, objective.direction) or (
            best_value is None and math.isnan(value) and len(index) > len(best_index)
        ):
            best_key, best_index = key, index
            best_value = value if math.isfinite(value) else None
    config = dict(zip(columns, best_key, strict=True))
    return ConfirmSelection(arm, rows.loc[best_index], len(groups), config)


@dataclass(frozen=True)
class ArmSummary:
    """Mean +- CI of one metric over the seeds of one arm (raw metric values)."""

    arm: str
    interval: Interval


@dataclass(frozen=True)
class PairComparison:
    """``treatment`` against ``reference`` on one metric, on the goal values (|x| for ``zero``).

    ``better`` is the arm whose mean goal value is better (None if tied or unknown);
    ``significant`` means Welch's p < ``SIGNIFICANCE_LEVEL``.
    """

    treatment: str
    reference: str
    difference: Interval
    test: TwoSampleTest
    better: str | None

    @property
    def significant(self) -> bool:
        return bool(self.test.welch_p < SIGNIFICANCE_LEVEL)


@dataclass(frozen=True)
class MetricVerdict:
    """One row of the verdict table.

    ``winner`` is the arm with the best mean goal value; ``winner_significant`` says whether
    it beats every other measured arm with Welch's p < ``SIGNIFICANCE_LEVEL``.
    """

    metric: MetricSpec
    summaries: tuple[ArmSummary, ...]
    comparisons: tuple[PairComparison, ...]
    winner: str | None
    winner_significant: bool


@dataclass(frozen=True)
class Verdict:
    """The confirm-phase comparison of all arms; ``reference`` is the arm others are compared to."""

    arms: tuple[str, ...]
    reference: str | None
    selections: tuple[ConfirmSelection, ...]
    rows: tuple[MetricVerdict, ...]

    def samples(self, arm: str, metric: MetricSpec) -> np.ndarray:
        """The raw per-seed values of ``metric`` for ``arm`` (finite only)."""
        for selection in self.selections:
            if selection.arm == arm and metric.column in selection.trials.columns:
                return clean_values(selection.trials[metric.column].to_numpy())
        return np.empty(0)


def compare(
    treatment_name: str,
    treatment: np.ndarray,
    reference_name: str,
    reference: np.ndarray,
    goal: Goal,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> PairComparison:
    """Compare raw per-seed values of two arms on the goal values (see :func:`goal_values`)."""
    a, b = clean_values(goal_values(treatment, goal)), clean_values(goal_values(reference, goal))
    difference = bootstrap_diff_ci(a, b, n_resamples=n_resamples, seed=seed)
    test = two_sample_test(a, b)
    better: str | None = None
    if a.size and b.size:
        if is_better(float(a.mean()), float(b.mean()), goal):
            better = treatment_name
        elif is_better(float(b.mean()), float(a.mean()), goal):
            better = reference_name
    return PairComparison(treatment_name, reference_name, difference, test, better)


def build_verdict(
    trials: pd.DataFrame,
    arms: Sequence[str],
    objective: Objective,
    reference: str | None,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Verdict:
    """The verdict table: per metric, each arm's mean +- bootstrap CI over confirm seeds, each
    other arm against ``reference`` (difference CI, Welch / Mann-Whitney, Hedges' g) and the
    winner."""
    selections = tuple(select_confirm_trials(trials, arm, objective) for arm in arms)
    metrics = verdict_metrics(trials.columns)
    rows: list[MetricVerdict] = []
    for metric in metrics:
        raw = {
            s.arm: (
                clean_values(s.trials[metric.column].to_numpy())
                if metric.column in s.trials.columns
                else np.empty(0)
            )
            for s in selections
        }
        summaries = tuple(
            ArmSummary(arm, bootstrap_mean_ci(raw[arm], n_resamples=n_resamples, seed=seed))
            for arm in arms
        )
        comparisons = tuple(
            compare(
                arm,
                raw[arm],
                reference,
                raw[reference],
                metric.goal,
                n_resamples=n_resamples,
                seed=seed,
            )
            for arm in arms
            if reference is not None and arm != reference
        )
        measured = [arm for arm in arms if raw[arm].size]
        winner: str | None = None
        significant = False
        if measured:
            scores = {arm: float(goal_values(raw[arm], metric.goal).mean()) for arm in measured}
            winner = measured[0]
            for arm in measured[1:]:
                if is_better(scores[arm], scores[winner], metric.goal):
                    winner = arm
            ties = [a for a in measured if a != winner and scores[a] == scores[winner]]
            if ties:
                winner = None
            elif len(measured) > 1:
                significant = all(
                    two_sample_test(
                        goal_values(raw[winner], metric.goal), goal_values(raw[other], metric.goal)
                    ).welch_p
                    < SIGNIFICANCE_LEVEL
                    for other in measured
                    if other != winner
                )
        rows.append(MetricVerdict(metric, summaries, comparisons, winner, significant))
    return Verdict(tuple(arms), reference, selections, tuple(rows))
