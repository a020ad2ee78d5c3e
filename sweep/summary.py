"""Per-configuration summaries: mean and 95% interval of each metric over the seeds of a setting.

Grid studies (training-set size x seed, decoder depth x seed, ...) replicate every setting over
several seeds on the grid and have no confirm phase, so the report's verdict does not apply;
``infovae-sweep summary`` gives, per arm and setting, the mean of each metric over the completed
trials with a Student-t interval ``mean +- t_{0.975, n-1} * sd / sqrt(n)``. With the 3 to 5
seeds such studies run, the t interval is the honest one: a percentile bootstrap over 3 values
cannot be wider than their range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from sweep.report.aggregate import config_signature_columns
from sweep.report.data import hashable_param

DEFAULT_METRICS: tuple[str, ...] = (
    "mmd",
    "log_det_cov",
    "mutual_info",
    "kl",
    "active_units",
    "nll_iwae",
)


def t_interval(
    values: Sequence[float] | np.ndarray, confidence: float = 0.95
) -> tuple[float, float, float]:
    """``(mean, low, high)`` of the finite ``values``: the Student-t interval of the mean.

    One value gives a NaN interval around it; none gives NaN throughout.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if x.size == 1:
        return (mean, math.nan, math.nan)
    half = float(stats.t.ppf((1 + confidence) / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return (mean, mean - half, mean + half)


def default_grouping(trials: pd.DataFrame) -> list[str]:
    """The ``param.*`` columns that vary within some arm, seeds excluded: the settings a study
    compared (e.g. ``param.data.train_size``)."""
    varying = []
    for column in sorted(config_signature_columns(trials)):
        # List-valued settings (kernel scales) come as arrays from Parquet: compare as JSON.
        values = trials[column].map(hashable_param)
        per_arm = values.groupby(trials["arm"]).nunique(dropna=False)
        if (per_arm > 1).any():
            varying.append(column)
    return varying


def configuration_summary(
    trials: pd.DataFrame,
    by: Sequence[str] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    phases: Sequence[str] = ("search", "confirm"),
    confidence: float = 0.95,
) -> pd.DataFrame:
    """One row per arm and setting of ``by`` (default :func:`default_grouping`): ``n`` completed
    trials, and per metric ``<metric>``, ``<metric>.low``, ``<metric>.high`` (t interval).

    Args:
        trials: ``trials.parquet`` as read by the store or the report.
        by: ``param.*`` columns to group on besides ``arm``.
        metrics: metric names without the ``metric.`` prefix; absent ones are skipped.
        phases: which phases' trials to pool.
        confidence: of the interval.
    """
    done = trials[(trials["status"] == "completed") & trials["phase"].isin(list(phases))]
    keys = list(by) if by is not None else default_grouping(done)
    missing = [k for k in keys if k not in done.columns]
    if missing:
        raise KeyError(f"no such column in trials.parquet: {', '.join(missing)}")
    present = [m for m in metrics if f"metric.{m}" in done.columns]
    rows = []
    if len(done):
        grouped = done.assign(**{k: done[k].map(hashable_param) for k in keys})
        for group, frame in grouped.groupby(["arm", *keys], dropna=False, sort=True):
            values = group if isinstance(group, tuple) else (group,)
            row: dict[str, object] = dict(zip(["arm", *keys], values, strict=True))
            row["n"] = len(frame)
            for metric in present:
                mean, low, high = t_interval(frame[f"metric.{metric}"].to_numpy(), confidence)
                row[metric], row[f"{metric}.low"], row[f"{metric}.high"] = mean, low, high
            rows.append(row)
    columns = ["arm", *keys, "n"] + [f"{m}{s}" for m in present for s in ("", ".low", ".high")]
    return pd.DataFrame(rows, columns=columns)


def format_cell(mean: float, low: float, high: float) -> str:
    """``1.234 [1.100, 1.368]``; just the mean when the interval is undefined."""
    if math.isnan(mean):
        return "-"
    digits = 4 if abs(mean) < 0.1 else 3 if abs(mean) < 10 else 2
    if math.isnan(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
