"""The CLI's tables and text: renderers of a :class:`~sweep.analysis.study.StudyAnalysis` (or a
comparison of two) for a terminal. Numbers are written by :mod:`sweep.analysis.formatting`;
nothing here reads a study folder or computes a statistic."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd
from rich.table import Table

from sweep import names
from sweep.analysis.formatting import (
    format_interval,
    format_mean_interval,
    format_p,
    goal_rule,
)

if TYPE_CHECKING:
    from sweep.analysis.comparison import ArmRow, StudyComparison
    from sweep.analysis.leaderboard import Leaderboard
    from sweep.analysis.stats import Interval
    from sweep.analysis.verdict import PairComparison


def leaderboard_table(board: Leaderboard) -> Table:
    """One arm's leaderboard (``show``)."""
    table = Table(title=board.title)
    for column in board.columns:
        table.add_column(column)
    for row in board.rows:
        table.add_row(*row)
    return table


def studies_table(title: str, rows: Sequence[Sequence[str]]) -> Table:
    """``ls``: one row per study (name, trials, per status, trials left, best per arm)."""
    table = Table(title=f"studies under {title}")
    # "left": trials of the study's plan not recorded yet (a study stopped early, or one still
    # running: its live driver or, under a storage URI, a cluster that mirrors it).
    for column in ("study", "trials", *names.STATUSES, "left", "best per arm"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


def grid_summary_table(study: str, summary: pd.DataFrame, metrics: Sequence[str]) -> Table:
    """``summary``: per arm and setting, ``mean [95% t interval]`` of each metric and n."""
    shown = [m for m in metrics if m in summary.columns]
    keys = [c for c in summary.columns if c.startswith(names.PARAM)]
    view = Table(title=f"{study}: mean [95% t interval] over completed trials")
    for column in [names.ARM, *[names.strip(k, names.PARAM) for k in keys], "n", *shown]:
        view.add_column(column)
    for _, row in summary.iterrows():
        cells = [str(row[names.ARM]), *[str(row[k]) for k in keys], str(row["n"])]
        cells += [format_mean_interval(row[m], row[f"{m}.low"], row[f"{m}.high"]) for m in shown]
        view.add_row(*cells)
    return view


# --------------------------------------------------------------------------- compare


def interval_text(interval: Interval | None, label: str = "") -> str:
    """``mean [low, high] (n=k)``; ``-`` for nothing measured, ``(not in <label>)`` for an arm
    the study does not have."""
    if interval is None:
        return f"(not in {label})"
    if interval.n == 0:
        return "-"
    text = format_interval(interval.estimate, interval.low, interval.high, missing="-")
    return text if text == "-" else f"{text} (n={interval.n})"


def _diff_text(diff: PairComparison) -> str:
    d = diff.difference
    return "-" if d.n == 0 else format_interval(d.estimate, d.low, d.high, missing="-")


def _marks(comparison: StudyComparison, arm: str) -> str:
    marks = [s.label for s in (comparison.a, comparison.b) if s.unconverged(arm) is not None]
    return f" (not converged in {' and '.join(marks)})" if marks else ""


def _measured(row: ArmRow) -> bool:
    return any(i is not None and i.n > 0 for i in (row.a, row.b))


def comparison_text(comparison: StudyComparison) -> str:
    """The comparison of two studies as plain text (``compare`` prints it)."""
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
        lines.append(f"{item.metric.label} ({goal_rule(item.metric.goal, 'B - A')})")
        table = [header]
        for row in item.rows:
            diff = row.b_vs_a
            table.append(
                (
                    row.arm + _marks(comparison, row.arm),
                    interval_text(row.a, a.label),
                    interval_text(row.b, b.label),
                    _diff_text(diff) if diff else "",
                    format_p(diff.test.welch_p) if diff else "",
                )
            )
        widths = [max(len(r[i]) for r in table) for i in range(len(header))]
        for r in table:
            cells = (c.ljust(w) for c, w in zip(r, widths, strict=True))
            lines.append(("  " + "  ".join(cells)).rstrip())
    return "\n".join(lines) + "\n"


__all__ = [
    "comparison_text",
    "grid_summary_table",
    "interval_text",
    "leaderboard_table",
    "studies_table",
]
