"""Whether a trial converged, judged from its per-epoch curve by one documented rule.

The rule (:func:`judge_curve`), applied to the curve of one per-epoch metric (by default
``val.elbo``, the validation ELBO in nats per image) of a trial with E recorded epochs:

- window ``w = max(1, floor(E / 10 + 0.5))`` epochs (a tenth of training, rounded half up);
- ``unknown`` when ``E < 4`` or ``E < 2 w`` (too short to compare two windows), or when a value
  in the two last windows is not finite;
- otherwise ``change = mean(last w values) - mean(the w values before them)`` and
  ``relative = |change| / max(|mean(last w values)|, 1e-8)``, a unitless fraction;
- ``converged`` when ``relative <= tolerance`` (default 0.005: the metric moved by at most
  0.5 % over the last tenth of training), else ``not_converged``.

A study sets the metric and tolerance in its optional ``convergence:`` block
(:class:`sweep.spec.ConvergenceSpec`). The report and ``infovae-sweep show`` both judge every
trial with :func:`trial_convergence`, so they agree. This module needs only NumPy at import
(the study spec imports its defaults); pandas is imported by the table functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CONVERGENCE_STATUSES",
    "DEFAULT_CONVERGENCE_METRIC",
    "DEFAULT_CONVERGENCE_TOLERANCE",
    "MIN_EPOCHS",
    "Convergence",
    "ConvergenceStatus",
    "convergence_summary",
    "describe_rule",
    "judge_curve",
    "trial_convergence",
    "window_size",
]

ConvergenceStatus = Literal["converged", "not_converged", "unknown"]
CONVERGENCE_STATUSES: tuple[ConvergenceStatus, ...] = ("converged", "not_converged", "unknown")
DEFAULT_CONVERGENCE_METRIC = "val.elbo"
DEFAULT_CONVERGENCE_TOLERANCE = 0.005
#: Fewer recorded epochs than this give ``unknown``.
MIN_EPOCHS = 4
_FLOOR = 1e-8


@dataclass(frozen=True)
class Convergence:
    """The judgement of one curve.

    ``relative_change``: ``|mean(last w) - mean(previous w)| / max(|mean(last w)|, 1e-8)``
    (unitless), None when ``status`` is ``unknown``. ``window``: w in epochs. ``epochs``: E.
    ``reason``: why the status is ``unknown`` (empty otherwise).
    """

    status: ConvergenceStatus
    relative_change: float | None
    window: int
    epochs: int
    reason: str = ""


def window_size(epochs: int) -> int:
    """``w = max(1, floor(E / 10 + 0.5))``: a tenth of ``epochs``, rounded half up."""
    return max(1, math.floor(epochs / 10 + 0.5))


def judge_curve(
    values: Sequence[float] | np.ndarray, tolerance: float = DEFAULT_CONVERGENCE_TOLERANCE
) -> Convergence:
    """Judge one per-epoch curve (``values`` in epoch order) by the module's rule.

    Raises ``ValueError`` for ``tolerance <= 0`` (or not finite).
    """
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise ValueError(f"convergence.tolerance: must be > 0, got {tolerance}")
    curve = np.asarray(values, dtype=np.float64).reshape(-1)
    e = int(curve.size)
    w = window_size(e)
    if e < MIN_EPOCHS or e < 2 * w:
        reason = f"{e} epoch(s): the rule needs at least {max(MIN_EPOCHS, 2 * w)}"
        return Convergence("unknown", None, w, e, reason)
    last, previous = curve[e - w :], curve[e - 2 * w : e - w]
    if not (np.isfinite(last).all() and np.isfinite(previous).all()):
        return Convergence("unknown", None, w, e, "a value in the last two windows is not finite")
    last_mean = float(last.mean())
    change = last_mean - float(previous.mean())
    relative = abs(change) / max(abs(last_mean), _FLOOR)
    status: ConvergenceStatus = "converged" if relative <= tolerance else "not_converged"
    return Convergence(status, relative, w, e)


def describe_rule(
    metric: str = DEFAULT_CONVERGENCE_METRIC, tolerance: float = DEFAULT_CONVERGENCE_TOLERANCE
) -> str:
    """The rule in words, for the report and the CLI."""
    return (
        f"A run has converged when the mean of {metric} over its last tenth of epochs "
        f"(w = max(1, E/10 rounded half up) epochs) differs from the mean over the w epochs "
        f"before by at most {tolerance * 100:g}% of the last mean; runs with fewer than "
        f"{MIN_EPOCHS} epochs (or without {metric}) are unknown."
    )


def trial_convergence(
    trials: pd.DataFrame,
    epochs: pd.DataFrame,
    metric: str = DEFAULT_CONVERGENCE_METRIC,
    tolerance: float = DEFAULT_CONVERGENCE_TOLERANCE,
) -> pd.DataFrame:
    """Judge every completed trial of ``trials`` from its rows in ``epochs``.

    ``trials``: ``trial_id``, ``arm``, ``phase``, ``status`` (docs/results.md's trials.parquet);
    ``epochs``: ``trial_id``, ``epoch`` and ``metric`` (epochs.parquet). A trial's curve is its
    rows sorted by ``epoch`` (the last row kept for a repeated epoch). A completed trial without
    epoch rows or without ``metric`` is ``unknown``. Failed and stopped trials are left out.

    Returns one row per completed trial: ``trial_id, arm, phase, status, relative_change``
    (NaN when unknown), ``window``, ``epochs``, ``reason``.
    """
    import pandas as pd

    columns = [
        "trial_id",
        "arm",
        "phase",
        "status",
        "relative_change",
        "window",
        "epochs",
        "reason",
    ]
    if trials.empty or "status" not in trials.columns:
        return pd.DataFrame(columns=columns)
    done = trials[trials["status"] == "completed"]
    curves: dict[str, np.ndarray] = {}
    if not epochs.empty and metric in epochs.columns and "trial_id" in epochs.columns:
        ordered = epochs[["trial_id", "epoch", metric]].sort_values(["trial_id", "epoch"])
        ordered = ordered.drop_duplicates(["trial_id", "epoch"], keep="last")
        for trial_id, part in ordered.groupby("trial_id", sort=False):
            curves[str(trial_id)] = part[metric].to_numpy(dtype=np.float64)
    rows = []
    for trial_id, arm, phase in zip(done["trial_id"], done["arm"], done["phase"], strict=True):
        curve = curves.get(str(trial_id))
        if curve is None:
            judged = Convergence("unknown", None, 0, 0, f"no {metric} per-epoch records")
        else:
            judged = judge_curve(curve, tolerance)
        rows.append(
            {
                "trial_id": trial_id,
                "arm": arm,
                "phase": phase,
                "status": judged.status,
                "relative_change": (
                    math.nan if judged.relative_change is None else judged.relative_change
                ),
                "window": judged.window,
                "epochs": judged.epochs,
                "reason": judged.reason,
            }
        )
    return pd.DataFrame(rows, columns=columns)


def convergence_summary(judged: pd.DataFrame) -> pd.DataFrame:
    """Per arm and phase (in order of appearance): counts of ``converged``, ``not_converged``
    and ``unknown`` trials and the median relative change over the judged (not unknown) ones
    (NaN when none). Input: :func:`trial_convergence`'s table."""
    import pandas as pd

    columns = ["arm", "phase", *CONVERGENCE_STATUSES, "median_relative_change"]
    rows = []
    for (arm, phase), part in judged.groupby(["arm", "phase"], sort=False):
        counts = part["status"].value_counts()
        known = part["relative_change"].dropna()
        rows.append(
            {
                "arm": arm,
                "phase": phase,
                **{status: int(counts.get(status, 0)) for status in CONVERGENCE_STATUSES},
                "median_relative_change": float(known.median()) if len(known) else math.nan,
            }
        )
    return pd.DataFrame(rows, columns=columns)
