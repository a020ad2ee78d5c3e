"""Per-configuration summaries: mean and 95% interval of each metric over the seeds of a setting.

Grid studies (training-set size x seed, decoder depth x seed, ...) replicate every setting over
several seeds on the grid and have no confirm phase, so the report's verdict does not apply;
``infovae-sweep summary`` (and the report's settings table) gives, per arm and setting, the
mean of each metric over the completed trials with a Student-t interval
(:func:`sweep.analysis.stats.t_interval`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from sweep import names
from sweep.analysis.load import hashable_param
from sweep.analysis.stats import t_interval
from sweep.analysis.verdict import config_signature_columns

DEFAULT_METRICS: tuple[str, ...] = (
    "mmd",
    "log_det_cov",
    "mutual_info",
    "kl",
    "active_units",
    "nll_iwae",
)


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


@dataclass(frozen=True)
class SearchSettings:
    """The settings a grid search compared, each replicated over seeds: ``summary`` is
    :func:`configuration_summary` of the completed search trials (one row per arm and setting
    of ``keys``), ``converged[i]`` the (converged, judged) counts of row i's trials."""

    summary: pd.DataFrame
    keys: tuple[str, ...]
    converged: tuple[tuple[int, int], ...]


def search_settings(
    trials: pd.DataFrame, convergence_of: Callable[[object], str]
) -> SearchSettings | None:
    """The settings table of a grid study, or None when the search did not replicate its
    settings: most settings (median count) must have two completed search runs or more, so a
    search that samples configurations (TPE, say) has none. ``convergence_of`` gives a trial's
    convergence status by trial id."""
    done = trials[(trials[names.STATUS] == names.COMPLETED) & (trials[names.PHASE] == names.SEARCH)]
    if done.empty:
        return None
    summary = configuration_summary(done, phases=(names.SEARCH,))
    keys = tuple(c for c in summary.columns if c.startswith(names.PARAM))
    if not keys or summary.empty or float(summary["n"].median()) < 2:
        return None
    converged = []
    for _, row in summary.iterrows():
        mask = done[names.ARM] == row[names.ARM]
        for key in keys:
            mask &= done[key].astype(str) == str(row[key])
        found = [convergence_of(t) for t in done.loc[mask, names.TRIAL_ID]]
        converged.append((found.count("converged"), len(found)))
    return SearchSettings(summary, keys, tuple(converged))
