"""Leaderboards of a study folder for `infovae-sweep show` and `ls`.

The study is read through its loader and store (:func:`sweep.spec.load_study`,
:class:`sweep.store.ResultsStore`) and each arm's trials are ranked by the one rule of
:func:`sweep.ranking.rank_trials`. A study file the loader refuses is an error
(:class:`~sweep.spec.StudySpecError`, naming the file and line): a leaderboard ranked by a
guessed objective would look right and be wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sweep import names
from sweep.convergence import convergence_summary, describe_rule, trial_convergence
from sweep.plan import trials_left
from sweep.ranking import rank_trials
from sweep.spec import StudySpec, load_study
from sweep.store import ResultsStore


@dataclass(frozen=True)
class Leaderboard:
    """One arm's best completed trials: ``rows`` formatted for a terminal, ``values`` the same
    cells unformatted (numbers stay numbers, missing values None) for exports. The last column,
    ``converged``, is the trial's judgement by :mod:`sweep.convergence`: in ``rows`` the status
    and relative change (``yes 0.12%``, ``no 7.1%``, ``unknown``), in ``values`` the status
    (``converged``, ``not_converged`` or ``unknown``). ``convergence``: the arm's trials judged
    (counts per phase), one line. ``trials_left``: the arm's trials of the study's plan not
    recorded yet (:func:`sweep.plan.trials_left`)."""

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


def _converged_status(judged: pd.DataFrame, trial_id: str) -> str:
    """``converged``, ``not_converged`` or ``unknown`` (also for a trial not judged)."""
    return str(judged.loc[trial_id, "status"]) if trial_id in judged.index else "unknown"


def _converged_cell(judged: pd.DataFrame, trial_id: str) -> str:
    """``yes 0.12%`` / ``no 7.1%`` / ``unknown``: the trial's status and relative change."""
    if trial_id not in judged.index:
        return "unknown"
    word = _STATUS_WORD[_converged_status(judged, trial_id)]
    change = float(judged.loc[trial_id, "relative_change"])
    return word if math.isnan(change) else f"{word} {100 * change:.2g}%"


def _convergence_line(summary: pd.DataFrame, arm: str) -> str:
    """``convergence: search 10 converged, 2 not, 0 unknown (median change 0.3%); confirm ...``"""
    parts = []
    for row in summary[summary[names.ARM] == arm].itertuples(index=False):
        median = row.median_relative_change
        tail = "" if math.isnan(median) else f" (median change {100 * median:.2g}%)"
        parts.append(
            f"{row.phase} {row.converged} converged, {row.not_converged} not, "
            f"{row.unknown} unknown{tail}"
        )
    return "convergence: " + ("; ".join(parts) if parts else "no completed trials")


def _spec(folder: Path) -> StudySpec:
    """The study of ``folder`` (raises :class:`~sweep.spec.StudySpecError` naming the file)."""
    return load_study(folder / names.STUDY_FILE)


def _ranked(trials: pd.DataFrame, arm: str, spec: StudySpec) -> pd.DataFrame:
    """``arm``'s rankable trials, best first (:func:`sweep.ranking.rank_trials`)."""
    objectives = list(zip(spec.search.metrics, spec.search.directions, strict=True))
    mine = trials[trials[names.ARM] == arm]
    return rank_trials(mine, objectives, rank_by=spec.confirm_rank.metric)


def _plain(value: object) -> object:
    """A cell as a plain Python value: numpy scalars unwrapped, NaN/NA as None."""
    if value is None or (
        not isinstance(value, str) and pd.api.types.is_scalar(value) and pd.isna(value)
    ):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def leaderboards(folder: Path, top: int = 5) -> list[Leaderboard]:
    """The best ``top`` completed trials of each arm by the study's confirm-ranking objective,
    with their searched parameters, the objectives' values and whether each converged, plus a
    line per arm counting its converged trials per phase (the study's ``convergence:`` rule)."""
    store = ResultsStore.open(folder)  # first: a folder that is not a study is named as such
    spec = _spec(Path(folder))
    trials = store.trials()
    rule = spec.convergence
    judged = trial_convergence(trials, store.epochs(), rule.metric, rule.tolerance)
    summary = convergence_summary(judged)
    judged = judged.assign(trial_id=judged[names.TRIAL_ID].astype(str)).set_index(names.TRIAL_ID)
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
                raw = [row[names.TRIAL_ID], row[names.PHASE], _plain(row[names.SEED])]
                raw += [_plain(row.get(m)) for m in objectives]
                raw += [_plain(row.get(p)) for p in params]
                cells = [str(raw[0]), str(raw[1]), str(raw[2]), *map(_format, raw[3:])]
                raw.append(_converged_status(judged, trial_id))
                cells.append(_converged_cell(judged, trial_id))
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
                trials_left(spec, trials, [arm]),
            )
        )
    return boards


def convergence_rule(folder: Path) -> str:
    """The convergence rule of the study in ``folder`` in words (its ``convergence:`` block)."""
    rule = _spec(Path(folder)).convergence
    return describe_rule(rule.metric, rule.tolerance)


def best_per_arm(folder: Path) -> list[str]:
    """``arm=value`` of the best completed trial per arm (:func:`sweep.ranking.rank_trials`),
    the value being the study's ranking metric."""
    return best_of(leaderboards(folder, top=1))


def best_of(boards: list[Leaderboard]) -> list[str]:
    """``arm=value`` of the top row of each arm's leaderboard (those with a completed trial)."""
    result = []
    for board in boards:
        if board.rows:
            column = board.columns.index(board.metric)
            result.append(f"{board.arm}={board.rows[0][column]}")
    return result
