"""Two studies side by side (``infovae-sweep compare A B``): the confirm-phase metrics of the
arms they share, for one HTML page (:func:`sweep.report.html.render_comparison`) and a text
summary (:func:`sweep.tables.comparison_text`).

Each study is read once and analysed as its own report does it
(:func:`~sweep.analysis.study.analyse_study`; a damaged results file is an error): per
arm, the completed confirm runs of its best confirmed configuration, the mean with the same 95%
percentile-bootstrap interval as the report's verdict, and convergence by the study's own rule.
Arms are matched by name; for each shared arm, study B is compared with study A by
:func:`sweep.analysis.verdict.compare` (the verdict's difference CI, Welch and Mann-Whitney
tests, on |x| for metrics whose goal is 0). Differences between the two study files (dataset,
budget, settings) are listed, since they are what the comparison measures.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sweep.analysis.load import StudyData, flatten_mapping
from sweep.analysis.stats import Interval, bootstrap_mean_ci
from sweep.analysis.study import ArmConvergence, StudyAnalysis, analyse_study
from sweep.analysis.verdict import MetricSpec, PairComparison, compare, verdict_metrics

#: Parts of the study file compared (name, description, storage and resources do not change
#: the numbers).
COMPARED_SECTIONS: tuple[str, ...] = ("data", "defaults", "search", "confirm", "convergence")
_NOT_SET = "(not set)"


@dataclass(frozen=True)
class StudySide:
    """One of the two studies: ``label`` is "A" or "B"."""

    label: str
    analysis: StudyAnalysis

    @property
    def data(self) -> StudyData:
        return self.analysis.data

    @property
    def name(self) -> str:
        return self.data.name

    @property
    def arms(self) -> tuple[str, ...]:
        return self.data.arms

    def samples(self, arm: str, metric: MetricSpec) -> np.ndarray:
        """The arm's confirm-run values of ``metric`` used by this study's verdict (empty when
        the study has no verdict or the arm no completed confirm run)."""
        verdict = self.analysis.verdict
        return verdict.samples(arm, metric) if verdict is not None else np.empty(0)

    def convergence(self, arm: str) -> ArmConvergence | None:
        """How many of the arm's confirm runs in the verdict did not converge (None: none
        judged)."""
        for runs in self.analysis.convergence.verdict_runs:
            if runs.arm == arm:
                return runs
        return None

    def unconverged(self, arm: str) -> ArmConvergence | None:
        """The arm's convergence when some of its confirm runs did not converge, else None."""
        runs = self.convergence(arm)
        return runs if runs is not None and runs.not_converged > 0 else None


@dataclass(frozen=True)
class ArmRow:
    """One arm on one metric: each study's mean and CI (None when the study has no such arm)
    and, for a shared arm, B against A."""

    arm: str
    a: Interval | None
    b: Interval | None
    b_vs_a: PairComparison | None


@dataclass(frozen=True)
class MetricComparison:
    metric: MetricSpec
    rows: tuple[ArmRow, ...]


@dataclass(frozen=True)
class SettingDifference:
    """A key of the study files whose value differs (``(not set)`` where one lacks it)."""

    key: str
    a: str
    b: str


@dataclass(frozen=True)
class StudyComparison:
    a: StudySide
    b: StudySide
    shared: tuple[str, ...]
    only_a: tuple[str, ...]
    only_b: tuple[str, ...]
    metrics: tuple[MetricComparison, ...]
    differences: tuple[SettingDifference, ...]
    settings_note: str
    generated_at: str

    @property
    def arms(self) -> tuple[str, ...]:
        """Every arm: A's order, then the arms only in B."""
        return self.a.arms + self.only_b

    @property
    def unconverged(self) -> list[tuple[StudySide, ArmConvergence]]:
        """(study, arm) pairs whose confirm runs include one not converged."""
        return [
            (side, runs)
            for side in (self.a, self.b)
            for arm in side.arms
            if (runs := side.unconverged(arm)) is not None
        ]


def compare_studies(folder_a: Path, folder_b: Path) -> StudyComparison:
    """Read, analyse and set side by side two study folders.

    Raises :class:`~sweep.analysis.load.NotAStudyFolderError` naming a folder without
    ``study.yaml`` and :class:`~sweep.store.StoreError` naming a damaged results file.
    """
    a = StudySide("A", analyse_study(folder_a, strict=True))
    b = StudySide("B", analyse_study(folder_b, strict=True))
    data_a, data_b = a.data, b.data
    shared = tuple(arm for arm in a.arms if arm in b.arms)
    only_a = tuple(arm for arm in a.arms if arm not in b.arms)
    only_b = tuple(arm for arm in b.arms if arm not in a.arms)
    columns = list(data_a.trials.columns) + list(data_b.trials.columns)
    metrics = []
    for metric in verdict_metrics(columns):
        rows = []
        for arm in a.arms + only_b:
            values_a, values_b = a.samples(arm, metric), b.samples(arm, metric)
            in_a, in_b = arm in a.arms, arm in b.arms
            rows.append(
                ArmRow(
                    arm,
                    bootstrap_mean_ci(values_a) if in_a else None,
                    bootstrap_mean_ci(values_b) if in_b else None,
                    compare("B", values_b, "A", values_a, metric.goal) if in_a and in_b else None,
                )
            )
        metrics.append(MetricComparison(metric, tuple(rows)))
    differences, note = setting_differences(data_a, data_b, shared)
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return StudyComparison(
        a, b, shared, only_a, only_b, tuple(metrics), tuple(differences), note, now
    )


# --------------------------------------------------------------------------- study files


def _flat(spec: Mapping[str, Any], shared_arms: tuple[str, ...]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section in COMPARED_SECTIONS:
        value = spec.get(section)
        if isinstance(value, Mapping):
            flat.update(flatten_mapping(value, f"{section}."))
        elif value is not None:
            flat[section] = value
    arms = spec.get("arms")
    if isinstance(arms, Mapping):
        for arm in shared_arms:
            settings = arms.get(arm)
            if isinstance(settings, Mapping):
                flat.update(flatten_mapping(settings, f"arms.{arm}."))
    return flat


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def setting_differences(
    a: StudyData, b: StudyData, shared_arms: tuple[str, ...]
) -> tuple[list[SettingDifference], str]:
    """The keys of the two study files (``data``, ``defaults``, ``search``, ``confirm``,
    ``convergence`` and the shared arms' settings) whose values differ, with the defaults of
    the study format filled in (:class:`~sweep.spec.StudySpec`), and a note on how the files
    were read. A study file the loader refused has no settings to compare: then none are
    listed, and the note says which."""
    if a.spec is None or b.spec is None:
        refused = [side for side, data in (("A", a), ("B", b)) if data.spec is None]
        return [], (
            f"Study settings not compared: the study file of {' and '.join(refused)} was "
            "refused by the study loader (see its warnings)."
        )
    spec_a = a.spec.model_dump(mode="json", by_alias=True)
    spec_b = b.spec.model_dump(mode="json", by_alias=True)
    note = "Study files compared with the defaults of the study format filled in."
    flat_a, flat_b = _flat(spec_a, shared_arms), _flat(spec_b, shared_arms)
    found = []
    for key in sorted(set(flat_a) | set(flat_b)):
        value_a = _text(flat_a[key]) if key in flat_a else _NOT_SET
        value_b = _text(flat_b[key]) if key in flat_b else _NOT_SET
        if value_a != value_b:
            found.append(SettingDifference(key, value_a, value_b))
    return found, note


# --------------------------------------------------------------------------- figure data


def interval_frame(comparison: StudyComparison) -> pd.DataFrame:
    """Long table for :func:`sweep.report.figures.compare_figure`: one row per metric, arm and
    study with a measured mean (columns ``metric, arm, study, mean, low, high, n``)."""
    rows = []
    for item in comparison.metrics:
        for row in item.rows:
            for side, interval in ((comparison.a, row.a), (comparison.b, row.b)):
                if interval is None or interval.n == 0 or math.isnan(interval.estimate):
                    continue
                rows.append(
                    {
                        "metric": item.metric.label,
                        "arm": row.arm,
                        "study": f"{side.label}: {side.name}",
                        "mean": interval.estimate,
                        "low": interval.low,
                        "high": interval.high,
                        "n": interval.n,
                    }
                )
    return pd.DataFrame(rows, columns=["metric", "arm", "study", "mean", "low", "high", "n"])


def default_out(comparison: StudyComparison) -> Path:
    """``<A folder>/compare-<B name>.html`` (B's name reduced to safe characters)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", comparison.b.name).strip(".-") or "study"
    return comparison.a.data.study_dir / f"compare-{name}.html"
