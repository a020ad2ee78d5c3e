"""The one rule for "the best trials": which search trials the confirm phase re-trains, which
trial the live view shows as best, and (once they switch to it) the leaderboard and the report.

Rule, for the completed trials of one selection (e.g. one arm's search phase):

1. Only completed trials with a finite value of every objective are ranked; a copy
   (``copy_of`` set: a repeat of a completed configuration, not trained) whose original is
   among the ranked trials is left out, since the original already stands for that
   configuration (a copy of another arm's trial ranks in its own arm).
2. One objective: by its value, best first (``minimize``: lowest first).
3. Several objectives: Pareto-first. Trials are sorted into non-dominated fronts (front 0 is
   the Pareto set, front 1 the Pareto set of the rest, ...); a lower front ranks first, and
   within a front trials are ordered by the ``rank_by`` objective (the study's
   ``confirm.rank_by``, else its first objective).
4. Ties (equal values, and equal fronts) are broken by ``trial_id`` ascending, so that the
   ranking is the same on every run and every machine (trial ids are zero-padded, so
   this is also the order in which the search proposed them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from sweep import names

__all__ = [
    "Direction",
    "Objective",
    "ObjectiveKey",
    "best_trial",
    "better",
    "pareto_fronts",
    "pareto_optimal",
    "rank_trials",
]

#: ``(metric column, direction)``, direction ``minimize`` or ``maximize``.
ObjectiveKey = tuple[str, str]
Direction = Literal["minimize", "maximize"]


@dataclass(frozen=True)
class Objective:
    """One search objective: the trials column (``metric.<name>``) and its direction."""

    metric: str
    direction: Direction

    @property
    def column(self) -> str:
        return names.metric(self.metric)

    @property
    def ranking(self) -> tuple[str, str]:
        """``(column, direction)``: the objective as :mod:`sweep.analysis.ranking` takes it."""
        return self.column, self.direction


def better(value: float, best: float | None, direction: str) -> bool:
    """Whether ``value`` beats ``best`` (None: nothing yet) under ``direction``; ties do not."""
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best if direction == "minimize" else value > best


#: Rows compared at once when sorting into fronts: bounds the memory of the pairwise
#: comparison to CHUNK x n x m booleans, whatever the number of trials.
_CHUNK = 256


def _dominated(candidates: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Which rows of ``values`` [r, m] some row of ``candidates`` [c, m] dominates (no worse in
    every column, better in one; every column minimised)."""
    out = np.zeros(len(values), dtype=bool)
    for start in range(0, len(candidates), _CHUNK):
        j = candidates[start : start + _CHUNK, None, :]
        no_worse = (j <= values[None, :, :]).all(axis=2)  # [j, i]: j no worse than i
        strictly = (j < values[None, :, :]).any(axis=2)
        out |= (no_worse & strictly).any(axis=0)
    return out


def pareto_fronts(values: np.ndarray, *, first_only: bool = False) -> np.ndarray:
    """Front index of each row of ``values`` (n x m, every column to be minimised).

    Row i is dominated by row j when j is no worse in every column and better in one. Front 0
    holds the rows no other row dominates; front k those that only rows of fronts < k do. With
    ``first_only`` every row outside front 0 gets front 1 (one pass instead of one per front).
    """
    n = len(values)
    fronts = np.full(n, -1, dtype=np.int64)
    remaining = np.arange(n)
    front = 0
    while remaining.size:
        v = values[remaining]
        dominated = _dominated(v, v)
        fronts[remaining[~dominated]] = front
        remaining = remaining[dominated]
        front += 1
        if first_only:
            fronts[remaining] = front
            break
    return fronts


def pareto_optimal(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Which rows of ``values`` [n, m] are on the Pareto front (front 0 of
    :func:`pareto_fronts`), ``directions`` giving ``minimize`` / ``maximize`` per column. Rows
    with a non-finite value are never optimal. Returns a bool array [n]."""
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    v = np.asarray(values, dtype=np.float64) * signs
    finite = np.isfinite(v).all(axis=1)
    mask = np.zeros(len(v), dtype=bool)
    mask[np.flatnonzero(finite)] = pareto_fronts(v[finite], first_only=True) == 0
    return mask


def rank_trials(
    trials: pd.DataFrame, objectives: Sequence[ObjectiveKey], rank_by: str | None = None
) -> pd.DataFrame:
    """The rankable rows of ``trials`` (see the module docstring), best first.

    ``objectives`` lists ``(metric column, direction)``; ``rank_by`` (a metric among them,
    default the first) orders trials within a Pareto front. A missing objective column leaves
    nothing to rank (an empty frame with ``trials``' columns).
    """
    if not objectives:
        raise ValueError("rank_trials needs at least one objective")
    metrics = [metric for metric, _ in objectives]
    rank_by = rank_by or metrics[0]
    if rank_by not in metrics:
        raise ValueError(f"rank_by {rank_by!r} is not one of the objectives {metrics}")
    if not len(trials) or any(metric not in trials for metric in metrics):
        return trials.iloc[0:0]
    done = trials[trials[names.STATUS] == names.COMPLETED]
    if names.COPY_OF in done:
        copies = done[names.COPY_OF].notna() & done[names.COPY_OF].isin(done[names.TRIAL_ID])
        done = done[~copies]
    values = done[metrics].astype(float).to_numpy()
    done = done[np.isfinite(values).all(axis=1)]
    if not len(done):
        return done
    signs = np.array([1.0 if direction == "minimize" else -1.0 for _, direction in objectives])
    minimised = done[metrics].astype(float).to_numpy() * signs
    front = pareto_fronts(minimised) if len(metrics) > 1 else np.zeros(len(done), np.int64)
    key = minimised[:, metrics.index(rank_by)]
    keys = pd.DataFrame(
        {"front": front, "key": key, "trial_id": done[names.TRIAL_ID].astype(str).to_numpy()}
    )
    order = keys.sort_values(["front", "key", "trial_id"], kind="mergesort").index
    return done.iloc[order.to_numpy()]


def best_trial(
    trials: pd.DataFrame,
    arm: str,
    objectives: Objective | Sequence[Objective],
    rank_by: Objective | None = None,
) -> pd.Series | None:
    """The best completed trial of ``arm`` by the one rule of :func:`rank_trials`
    (Pareto front first for several ``objectives``, then ``rank_by``, default the first; ties
    by trial id); confirm phase preferred when any confirm trial can be ranked, else all
    phases. None when there is no candidate."""
    if isinstance(objectives, Objective):
        objectives = (objectives,)
    rank_by = rank_by or objectives[0]
    rows = trials[trials[names.ARM] == arm]
    keys = [o.ranking for o in objectives]
    confirm = rows[rows[names.PHASE] == names.CONFIRM]
    for pool in (confirm, rows):
        ranked = rank_trials(pool, keys, rank_by=rank_by.column)
        if len(ranked):
            return ranked.iloc[0]
    return None
