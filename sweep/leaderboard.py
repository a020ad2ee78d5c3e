"""Leaderboards of a study folder for `infovae-sweep show` and `ls`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sweep.convergence import convergence_summary, describe_rule, trial_convergence
from sweep.spec import ConvergenceSpec, StudySpec, StudySpecError
from sweep.store import STUDY_FILE, ResultsStore


@dataclass(frozen=True)
class Leaderboard:
    """One arm's best completed trials: ``rows`` formatted for a terminal, ``values`` the same
    cells unformatted (numbers stay numbers, missing values None) for exports. The last column,
    ``converged``, is the trial's judgement by :mod:`sweep.convergence`: in ``rows`` the status
    and relative change (``yes 0.12%``, ``no 7.1%``, ``unknown``), in ``values`` the status
    (``converged``, ``not_converged`` or ``unknown``). ``convergence``: the arm's trials judged
    (counts per phase), one line."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    arm: str = ""
    metric: str = ""
    direction: str = ""
    values: tuple[tuple[object, ...], ...] = ()
    convergence: str = ""


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
    for row in summary[summary["arm"] == arm].itertuples(index=False):
        median = row.median_relative_change
        tail = "" if math.isnan(median) else f" (median change {100 * median:.2g}%)"
        parts.append(
            f"{row.phase} {row.converged} converged, {row.not_converged} not, "
            f"{row.unknown} unknown{tail}"
        )
    return "convergence: " + ("; ".join(parts) if parts else "no completed trials")


def _spec(folder: Path) -> StudySpec | None:
    try:
        return StudySpec.from_yaml_text(
            (folder / STUDY_FILE).read_text(encoding="utf-8"), source=str(folder / STUDY_FILE)
        )
    except (OSError, StudySpecError):
        return None


def _ranked(trials: pd.DataFrame, arm: str, metric: str, direction: str) -> pd.DataFrame:
    mine = trials[(trials["arm"] == arm) & (trials["status"] == "completed")]
    if metric not in mine:
        return mine.iloc[0:0]
    # A numpy mask, not ``Series.map``: mapping an empty column gives floats, which pandas then
    # reads as column labels instead of a row mask (the KeyError of an arm with no completion).
    finite = np.isfinite(pd.to_numeric(mine[metric], errors="coerce").to_numpy(dtype=np.float64))
    mine = mine[finite]
    return mine.sort_values([metric, "trial_id"], ascending=[direction == "minimize", True])


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
    store = ResultsStore.open(folder)
    trials = store.trials()
    spec = _spec(Path(folder))
    rule = spec.convergence if spec is not None else ConvergenceSpec()
    judged = trial_convergence(trials, store.epochs(), rule.metric, rule.tolerance)
    summary = convergence_summary(judged)
    judged = judged.assign(trial_id=judged["trial_id"].astype(str)).set_index("trial_id")
    if spec is None:
        metric, direction = "metric.mmd", "minimize"
        objectives = [metric]
        arms = sorted(trials["arm"].unique()) if len(trials) else []
        searched: dict[str, list[str]] = {arm: [] for arm in arms}
    else:
        metric, direction = spec.confirm_rank.metric, spec.confirm_rank.direction
        objectives = list(spec.search.metrics)
        arms = list(spec.arm_names)
        searched = {arm: list(spec.arms[arm].search) for arm in arms}
    boards = []
    for arm in arms:
        ranked = _ranked(trials, arm, metric, direction).head(top) if len(trials) else None
        params = [f"param.{key}" for key in searched.get(arm, [])]
        columns = (
            "trial",
            "phase",
            "seed",
            *objectives,
            *[p[len("param.") :] for p in params],
            "converged",
        )
        rows, values = [], []
        if ranked is not None:
            for _, row in ranked.iterrows():
                trial_id = str(row["trial_id"])
                raw = [row["trial_id"], row["phase"], _plain(row["seed"])]
                raw += [_plain(row.get(m)) for m in objectives]
                raw += [_plain(row.get(p)) for p in params]
                cells = [str(raw[0]), str(raw[1]), str(raw[2]), *map(_format, raw[3:])]
                raw.append(_converged_status(judged, trial_id))
                cells.append(_converged_cell(judged, trial_id))
                values.append(tuple(raw))
                rows.append(tuple(cells))
        title = f"{arm}: best by {metric} ({direction})"
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
            )
        )
    return boards


def convergence_rule(folder: Path) -> str:
    """The convergence rule of the study in ``folder`` in words (its ``convergence:`` block, or
    the defaults when study.yaml cannot be read)."""
    spec = _spec(Path(folder))
    rule = spec.convergence if spec is not None else ConvergenceSpec()
    return describe_rule(rule.metric, rule.tolerance)


def best_per_arm(folder: Path) -> list[str]:
    """``arm=value`` of the best completed trial per arm (the study's ranking metric)."""
    boards = leaderboards(folder, top=1)
    result = []
    for board in boards:
        if board.rows:
            arm = board.title.split(":")[0]
            result.append(f"{arm}={board.rows[0][3]}")
    return result
