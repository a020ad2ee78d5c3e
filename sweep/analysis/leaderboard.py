"""Leaderboards of a study for `infovae-sweep show`, `ls` and the exports.

Each arm's trials are ranked by the one rule of :func:`sweep.analysis.ranking.rank_trials`,
from the study as its :class:`~sweep.analysis.study.StudyAnalysis` read and judged it. A study
file the loader refuses is an error (:class:`~sweep.spec.StudySpecError`, naming the file and
line): a leaderboard ranked by a guessed objective would look right and be wrong.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from sweep import names
from sweep.analysis.formatting import format_percent, format_value, plain_value
from sweep.analysis.load import whole_number
from sweep.analysis.ranking import rank_trials
from sweep.spec import StudySpec

if TYPE_CHECKING:
    from sweep.analysis.study import StudyAnalysis


@dataclass(frozen=True)
class Leaderboard:
    """One arm's best completed trials: ``rows`` formatted for a terminal, ``values`` the same
    cells unformatted (numbers stay numbers, missing values None) for exports. The last
    column, ``converged``, is the trial's judgement by :mod:`sweep.analysis.convergence`: in
    ``rows`` the status and relative change (``yes 0.12%``, ``no 7.1%``, ``unknown``), in
    ``values`` the status (``converged``, ``not_converged`` or ``unknown``). ``convergence``:
    the arm's trials judged (counts per phase), one line. ``trials_left``: the arm's trials
    of the study's plan not recorded yet (:func:`sweep.plan.trials_left`)."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    arm: str = ""
    metric: str = ""
    direction: str = ""
    values: tuple[tuple[object, ...], ...] = ()
    convergence: str = ""
    trials_left: int = 0


_STATUS_WORD = {"converged": "yes", "not_converged": "no", "unknown": "unknown"}


def _converged_cell(analysis: StudyAnalysis, trial_id: str) -> str:
    """``yes 0.12%`` / ``no 7.1%`` / ``unknown``: the trial's status and relative change."""
    word = _STATUS_WORD[analysis.convergence_of(trial_id)]
    change = analysis.relative_change_of(trial_id)
    return word if math.isnan(change) else f"{word} {format_percent(change)}"


def _convergence_line(summary: pd.DataFrame, arm: str) -> str:
    """``convergence: search 10 converged, 2 not, 0 unknown (median change 0.3%); confirm ...``"""
    parts = []
    for row in summary[summary[names.ARM] == arm].itertuples(index=False):
        median = row.median_relative_change
        tail = "" if math.isnan(median) else f" (median change {format_percent(median)})"
        parts.append(
            f"{row.phase} {row.converged} converged, {row.not_converged} not, "
            f"{row.unknown} unknown{tail}"
        )
    return "convergence: " + ("; ".join(parts) if parts else "no completed trials")


def _ranked(trials: pd.DataFrame, arm: str, spec: StudySpec) -> pd.DataFrame:
    """``arm``'s rankable trials, best first (:func:`sweep.analysis.ranking.rank_trials`)."""
    objectives = list(zip(spec.search.metrics, spec.search.directions, strict=True))
    mine = trials[trials[names.ARM] == arm]
    return rank_trials(mine, objectives, rank_by=spec.confirm_rank.metric)


def build_leaderboards(analysis: StudyAnalysis, top: int = 5) -> tuple[Leaderboard, ...]:
    """The best ``top`` completed trials of each arm by the study's confirm-ranking objective,
    with their searched parameters, the objectives' values and whether each converged, plus a
    line per arm counting its converged trials per phase (the study's ``convergence:`` rule).

    Raises the loader's :class:`~sweep.spec.StudySpecError` when it refused ``study.yaml``.
    """
    spec = analysis.data.require_spec()
    trials = analysis.data.trials
    summary = analysis.convergence.summary
    metric, direction = spec.confirm_rank.metric, spec.confirm_rank.direction
    objectives = list(spec.search.metrics)
    boards = []
    for arm in spec.arm_names:
        ranked = _ranked(trials, arm, spec).head(top) if len(trials) else None
        params = [names.param(key) for key in spec.arms[arm].search]
        columns = (
            "trial",
            names.PHASE,
            names.SEED,
            *objectives,
            *[names.strip(p, names.PARAM) for p in params],
            "converged",
        )
        rows, values = [], []
        if ranked is not None:
            for _, row in ranked.iterrows():
                trial_id = str(row[names.TRIAL_ID])
                raw = [row[names.TRIAL_ID], row[names.PHASE]]
                raw += [
                    whole_number(c, plain_value(row.get(c)))
                    for c in (names.SEED, *objectives, *params)
                ]
                cells = [str(raw[0]), str(raw[1]), str(raw[2])]
                cells += [format_value(v, missing="-", scientific=False) for v in raw[3:]]
                raw.append(analysis.convergence_of(trial_id))
                cells.append(_converged_cell(analysis, trial_id))
                values.append(tuple(raw))
                rows.append(tuple(cells))
        title = f"{arm}: best by {metric} ({direction})"
        if spec.search.is_multi_objective:
            title += ", Pareto front first"
        boards.append(
            Leaderboard(
                title,
                columns,
                tuple(rows),
                arm,
                metric,
                direction,
                tuple(values),
                _convergence_line(summary, arm),
                analysis.trials_left_of(arm),
            )
        )
    return tuple(boards)


def best_of(boards: Sequence[Leaderboard]) -> list[str]:
    """``arm=value`` of the top row of each arm's leaderboard (those with a completed trial)."""
    result = []
    for board in boards:
        if board.rows:
            column = board.columns.index(board.metric)
            result.append(f"{board.arm}={board.rows[0][column]}")
    return result
