"""Two studies side by side (``infovae-sweep compare A B``): the confirm-phase metrics of the
arms they share, one HTML page and a text summary.

Each study is read (:func:`read_study`: the spec as the report reads it, the trials through the
store) and analysed as its own report does it (:func:`~sweep.report.analysis.analyse`): per
arm, the completed confirm runs of its best confirmed configuration, the mean with the same 95%
percentile-bootstrap interval as the report's verdict, and convergence by the study's own rule.
Arms are matched by name; for each shared arm, study B is compared with study A by
:func:`sweep.report.aggregate.compare` (the verdict's difference CI, Welch and Mann-Whitney
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
import plotly.graph_objects as go

from sweep.report import figures
from sweep.report.aggregate import (
    Interval,
    MetricSpec,
    PairComparison,
    bootstrap_mean_ci,
    compare,
    format_number,
    verdict_metrics,
)
from sweep.report.analysis import ArmConvergence, StudyAnalysis, analyse
from sweep.report.data import StudyData, flatten_mapping, load_study_data

#: Parts of the study file compared (name, description, storage and resources do not change
#: the numbers).
COMPARED_SECTIONS: tuple[str, ...] = ("data", "defaults", "search", "confirm", "convergence")
_NOT_SET = "(not set)"


@dataclass(frozen=True)
class StudySide:
    """One of the two studies: ``label`` is "A" or "B"."""

    label: str
    data: StudyData
    analysis: StudyAnalysis

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

    Raises :class:`~sweep.report.data.NotAStudyFolderError` naming a folder without
    ``study.yaml`` and :class:`~sweep.store.StoreError` naming a damaged results file.
    """
    data_a, data_b = read_study(Path(folder_a)), read_study(Path(folder_b))
    a, b = StudySide("A", data_a, analyse(data_a)), StudySide("B", data_b, analyse(data_b))
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


def read_study(folder: Path) -> StudyData:
    """The study as its report reads it (:func:`load_study_data`: the spec through
    :func:`sweep.spec.load_study`, the trials and epochs through
    :class:`~sweep.store.ResultsStore`), except that a damaged results file is an error naming
    it rather than a warning."""
    return load_study_data(folder, strict=True)


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


# --------------------------------------------------------------------------- text


def interval_text(interval: Interval | None, label: str = "") -> str:
    """``mean [low, high] (n)``; ``-`` for nothing measured, ``(not in <label>)`` for an arm
    the study does not have."""
    if interval is None:
        return f"(not in {label})"
    if interval.n == 0 or math.isnan(interval.estimate):
        return "-"
    if math.isnan(interval.low):
        return f"{format_number(interval.estimate)} (n={interval.n})"
    return (
        f"{format_number(interval.estimate)} [{format_number(interval.low)}, "
        f"{format_number(interval.high)}] (n={interval.n})"
    )


def p_text(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return "< 1e-6" if p < 1e-6 else f"{p:.3g}"


def goal_text(metric: MetricSpec) -> str:
    if metric.goal == "zero":
        return "nearer 0 is better; B - A and tests on |x|"
    return "lower is better" if metric.goal == "min" else "higher is better"


def _marks(comparison: StudyComparison, arm: str) -> str:
    marks = [s.label for s in (comparison.a, comparison.b) if s.unconverged(arm) is not None]
    return f" (not converged in {' and '.join(marks)})" if marks else ""


def format_text(comparison: StudyComparison) -> str:
    """The comparison as plain text (the CLI prints it)."""
    a, b = comparison.a, comparison.b
    lines = [
        f"A: {a.name} ({a.data.study_dir}), dataset {a.data.dataset}",
        f"B: {b.name} ({b.data.study_dir}), dataset {b.data.dataset}",
    ]
    if comparison.differences:
        lines.append("The study files differ in:")
        lines += [f"  {d.key}: {d.a} (A) vs {d.b} (B)" for d in comparison.differences]
    else:
        lines.append("The study files agree on data, defaults, search, confirm and convergence.")
    lines.append(comparison.settings_note)
    lines.append(f"Arms in both: {', '.join(comparison.shared) or 'none'}")
    if comparison.only_a:
        lines.append(f"Only in A: {', '.join(comparison.only_a)}")
    if comparison.only_b:
        lines.append(f"Only in B: {', '.join(comparison.only_b)}")
    for side in (a, b):
        if side.analysis.verdict is None:
            lines.append(f"{side.label} has no completed confirm runs: its metrics are '-'.")
    for side, runs in comparison.unconverged:
        lines.append(
            f"Not converged: {side.label} {runs.arm}, {runs.not_converged} of {runs.runs} "
            "confirm runs; train longer before reading its differences as final."
        )
    lines.append(
        "Confirm phase: mean [95% bootstrap CI] (n seeds); B - A with its 95% CI and Welch's p."
    )
    header = ("arm", "A", "B", "B - A", "p")
    for item in comparison.metrics:
        if not any(_measured(row) for row in item.rows):
            continue
        lines.append("")
        lines.append(f"{item.metric.label} ({goal_text(item.metric)})")
        table = [header]
        for row in item.rows:
            diff = row.b_vs_a
            table.append(
                (
                    row.arm + _marks(comparison, row.arm),
                    interval_text(row.a, a.label),
                    interval_text(row.b, b.label),
                    _diff_text(diff) if diff else "",
                    p_text(diff.test.welch_p) if diff else "",
                )
            )
        widths = [max(len(r[i]) for r in table) for i in range(len(header))]
        for r in table:
            cells = (c.ljust(w) for c, w in zip(r, widths, strict=True))
            lines.append(("  " + "  ".join(cells)).rstrip())
    return "\n".join(lines) + "\n"


def _measured(row: ArmRow) -> bool:
    return any(i is not None and i.n > 0 for i in (row.a, row.b))


def _diff_text(diff: PairComparison) -> str:
    d = diff.difference
    if d.n == 0 or math.isnan(d.estimate):
        return "-"
    if math.isnan(d.low):
        return format_number(d.estimate)
    return f"{format_number(d.estimate)} [{format_number(d.low)}, {format_number(d.high)}]"


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


def compare_figure(comparison: StudyComparison) -> go.Figure:
    """The metrics of both studies per arm with their CIs (a Plotly figure)."""
    return figures.compare_figure(
        interval_frame(comparison),
        [f"{s.label}: {s.name}" for s in (comparison.a, comparison.b)],
        comparison.arms,
    )
