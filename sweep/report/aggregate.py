"""Statistics behind the report: confidence intervals, tests, effect sizes and summaries.

Every function is a pure function of arrays or DataFrames, seeded where it resamples, so a
report built twice from the same store is identical.

Conventions used throughout:

- A *difference* is ``mean(treatment) - mean(reference)``.
- Confidence intervals are percentile bootstrap intervals (Efron): resample each group with
  replacement ``n_resamples`` times, take the statistic on every resample and report its
  ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles.
- Metrics have a *goal*: ``min`` (lower is better), ``max`` (higher is better) or ``zero``
  (nearer 0 is better, e.g. log det Cov, which is 0 for a perfect N(0, I)). For ``zero`` the
  comparison between arms is made on ``|x|`` per seed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from sweep import names, ranking
from sweep.report.data import Objective, hashable_param

Goal = Literal["min", "max", "zero"]

DEFAULT_RESAMPLES = 10_000
DEFAULT_CONFIDENCE = 0.95
SIGNIFICANCE_LEVEL = 0.05


@dataclass(frozen=True)
class MetricSpec:
    """A metric column of the verdict: ``key`` is the name after ``metric.``."""

    key: str
    label: str
    goal: Goal

    @property
    def column(self) -> str:
        return names.metric(self.key)


#: The confirm-phase metrics of the verdict, in display order (probe accuracies are appended
#: per labelled-set size found in the store, see :func:`verdict_metrics`).
BASE_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("mmd", "MMD² (q(z) vs p(z))", "min"),
    MetricSpec("log_det_cov", "log det Cov[z]", "zero"),
    MetricSpec("mutual_info", "mutual information I(x; z) [nats]", "max"),
    MetricSpec("nll_iwae", "NLL (IWAE) [nats]", "min"),
    MetricSpec("elbo", "ELBO [nats]", "max"),
    MetricSpec("active_units", "active units", "max"),
)

_PROBE = re.compile(r"^metric\.probe_acc_(\d+)$")


def verdict_metrics(columns: Iterable[str]) -> tuple[MetricSpec, ...]:
    """The base metrics plus one ``probe_acc_<n>`` per n present in ``columns``, n ascending."""
    sizes = sorted({int(m.group(1)) for c in columns if (m := _PROBE.match(c))})
    probes = tuple(MetricSpec(f"probe_acc_{n}", f"probe accuracy (n={n})", "max") for n in sizes)
    return BASE_METRICS + probes


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval; ``n`` is the number of observations
    (for a difference, of the smaller group). Bounds are NaN when they cannot be computed."""

    estimate: float
    low: float
    high: float
    n: int


def _clean(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def bootstrap_mean_ci(
    values: Sequence[float] | np.ndarray,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Mean of ``values`` (shape [n], non-finite entries dropped) with a percentile bootstrap CI.

    With one observation the interval is the point itself; with none, everything is NaN.
    """
    x = _clean(values)
    n = x.size
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n == 1:
        return Interval(mean, mean, mean, 1)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, n, size=(n_resamples, n))].mean(axis=1)
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(mean, float(low), float(high), n)


def bootstrap_diff_ci(
    treatment: Sequence[float] | np.ndarray,
    reference: Sequence[float] | np.ndarray,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """``mean(treatment) - mean(reference)`` with a percentile bootstrap CI.

    The two groups are independent (different seeds), so each is resampled on its own.
    Bounds are NaN unless both groups have at least two observations.
    """
    a, b = _clean(treatment), _clean(reference)
    if a.size == 0 or b.size == 0:
        return Interval(math.nan, math.nan, math.nan, min(a.size, b.size))
    diff = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return Interval(diff, math.nan, math.nan, min(a.size, b.size))
    rng = np.random.default_rng(seed)
    ma = a[rng.integers(0, a.size, size=(n_resamples, a.size))].mean(axis=1)
    mb = b[rng.integers(0, b.size, size=(n_resamples, b.size))].mean(axis=1)
    low, high = np.quantile(ma - mb, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(diff, float(low), float(high), min(a.size, b.size))


@dataclass(frozen=True)
class TwoSampleTest:
    """Welch's t-test, the Mann-Whitney U test and Hedges' g for two independent samples.

    ``welch_t = (mean_a - mean_b) / sqrt(s_a^2 / n_a + s_b^2 / n_b)`` with the
    Welch-Satterthwaite degrees of freedom; ``hedges_g = J * (mean_a - mean_b) / s_pooled``,
    ``s_pooled^2 = ((n_a - 1) s_a^2 + (n_b - 1) s_b^2) / (n_a + n_b - 2)``,
    ``J = 1 - 3 / (4 (n_a + n_b) - 9)``. Two-sided p-values. NaN where undefined
    (fewer than two observations per group, or no variance at all).
    """

    welch_t: float
    welch_df: float
    welch_p: float
    mannwhitney_u: float
    mannwhitney_p: float
    hedges_g: float


def two_sample_test(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray
) -> TwoSampleTest:
    """Compare sample ``a`` with sample ``b`` (shapes [n_a], [n_b]); see :class:`TwoSampleTest`."""
    x, y = _clean(a), _clean(b)
    nan = math.nan
    if x.size < 2 or y.size < 2:
        return TwoSampleTest(nan, nan, nan, nan, nan, nan)
    va, vb = x.var(ddof=1), y.var(ddof=1)
    se2 = va / x.size + vb / y.size
    diff = x.mean() - y.mean()
    if se2 > 0:
        welch = stats.ttest_ind(x, y, equal_var=False)
        t, p = float(welch.statistic), float(welch.pvalue)
        df = se2**2 / ((va / x.size) ** 2 / (x.size - 1) + (vb / y.size) ** 2 / (y.size - 1))
    else:  # both groups constant: identical means -> no evidence, different -> certain
        t, df, p = (nan, nan, nan) if diff == 0 else (math.copysign(math.inf, diff), nan, 0.0)
    mw = stats.mannwhitneyu(x, y, alternative="two-sided")
    pooled = math.sqrt(((x.size - 1) * va + (y.size - 1) * vb) / (x.size + y.size - 2))
    correction = 1 - 3 / (4 * (x.size + y.size) - 9)
    g = correction * diff / pooled if pooled > 0 else nan
    return TwoSampleTest(t, float(df), p, float(mw.statistic), float(mw.pvalue), float(g))


def goal_values(values: np.ndarray | pd.Series, goal: Goal) -> np.ndarray:
    """The per-seed quantity compared between arms: ``|x|`` for goal ``zero``, else ``x``."""
    array = np.asarray(values, dtype=np.float64)
    return np.abs(array) if goal == "zero" else array


def is_better(a: float, b: float, goal: Goal) -> bool:
    """Whether comparison value ``a`` beats ``b`` (values already passed through
    :func:`goal_values`; NaN never beats anything)."""
    if math.isnan(a):
        return False
    if math.isnan(b):
        return True
    return a > b if goal == "max" else a < b


# --------------------------------------------------------------------------- confirm selection


@dataclass(frozen=True)
class ConfirmSelection:
    """The confirm-phase trials of one arm used in the verdict.

    The confirm phase re-runs the ``top_k`` best configurations with several seeds; when more
    than one configuration was confirmed, the verdict uses the one with the best mean primary
    objective (``config_rank`` 1 of ``n_configs``), so every number is over seeds of one
    configuration. ``trials`` holds only completed runs of that configuration.
    """

    arm: str
    trials: pd.DataFrame
    n_configs: int
    config: dict[str, object]


def _is_seed_key(column: str) -> bool:
    return column == names.param("seed") or column.endswith(".seed") or column.endswith("_seed")


def config_signature_columns(trials: pd.DataFrame) -> list[str]:
    """The ``param.*`` columns that identify a configuration (every one except seeds)."""
    return [c for c in trials.columns if c.startswith(names.PARAM) and not _is_seed_key(c)]


def select_confirm_trials(trials: pd.DataFrame, arm: str, objective: Objective) -> ConfirmSelection:
    """Completed confirm-phase trials of ``arm`` for its best confirmed configuration."""
    rows = trials[
        (trials[names.ARM] == arm)
        & (trials[names.PHASE] == names.CONFIRM)
        & (trials[names.STATUS] == names.COMPLETED)
    ]
    if rows.empty:
        return ConfirmSelection(arm, rows, 0, {})
    columns = config_signature_columns(rows)
    if not columns:
        return ConfirmSelection(arm, rows, 1, {})
    keys = rows[columns].map(hashable_param)
    signature = keys.apply(lambda r: tuple(r.tolist()), axis=1)
    groups = list(rows.groupby(signature, sort=False).groups.items())
    best_key, best_index = groups[0]
    best_value: float | None = None
    for key, index in groups:
        if objective.column in rows.columns:
            value = float(rows.loc[index, objective.column].mean())
        else:
            value = float(len(index)) if objective.direction == "maximize" else -float(len(index))
        if ranking.better(value, best_value, objective.direction) or (
            best_value is None and math.isnan(value) and len(index) > len(best_index)
        ):
            best_key, best_index = key, index
            best_value = value if math.isfinite(value) else None
    config = dict(zip(columns, best_key, strict=True))
    return ConfirmSelection(arm, rows.loc[best_index], len(groups), config)


def best_trial(
    trials: pd.DataFrame,
    arm: str,
    objectives: Objective | Sequence[Objective],
    rank_by: Objective | None = None,
) -> pd.Series | None:
    """The best completed trial of ``arm`` by the one rule of :func:`sweep.ranking.rank_trials`
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
        ranked = ranking.rank_trials(pool, keys, rank_by=rank_by.column)
        if len(ranked):
            return ranked.iloc[0]
    return None


# --------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class ArmSummary:
    """Mean +- CI of one metric over the seeds of one arm (raw metric values)."""

    arm: str
    interval: Interval


@dataclass(frozen=True)
class PairComparison:
    """``treatment`` against ``reference`` on one metric, on the goal values (|x| for ``zero``).

    ``better`` is the arm whose mean goal value is better (None if tied or unknown);
    ``significant`` means Welch's p < ``SIGNIFICANCE_LEVEL``.
    """

    treatment: str
    reference: str
    difference: Interval
    test: TwoSampleTest
    better: str | None

    @property
    def significant(self) -> bool:
        return bool(self.test.welch_p < SIGNIFICANCE_LEVEL)


@dataclass(frozen=True)
class MetricVerdict:
    """One row of the verdict table.

    ``winner`` is the arm with the best mean goal value; ``winner_significant`` says whether
    it beats every other measured arm with Welch's p < ``SIGNIFICANCE_LEVEL``.
    """

    metric: MetricSpec
    summaries: tuple[ArmSummary, ...]
    comparisons: tuple[PairComparison, ...]
    winner: str | None
    winner_significant: bool


@dataclass(frozen=True)
class Verdict:
    """The confirm-phase comparison of all arms; ``reference`` is the arm others are compared to."""

    arms: tuple[str, ...]
    reference: str | None
    selections: tuple[ConfirmSelection, ...]
    rows: tuple[MetricVerdict, ...]

    def samples(self, arm: str, metric: MetricSpec) -> np.ndarray:
        """The raw per-seed values of ``metric`` for ``arm`` (finite only)."""
        for selection in self.selections:
            if selection.arm == arm and metric.column in selection.trials.columns:
                return _clean(selection.trials[metric.column].to_numpy())
        return np.empty(0)


def compare(
    treatment_name: str,
    treatment: np.ndarray,
    reference_name: str,
    reference: np.ndarray,
    goal: Goal,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> PairComparison:
    """Compare raw per-seed values of two arms on the goal values (see :func:`goal_values`)."""
    a, b = _clean(goal_values(treatment, goal)), _clean(goal_values(reference, goal))
    difference = bootstrap_diff_ci(a, b, n_resamples=n_resamples, seed=seed)
    test = two_sample_test(a, b)
    better: str | None = None
    if a.size and b.size:
        if is_better(float(a.mean()), float(b.mean()), goal):
            better = treatment_name
        elif is_better(float(b.mean()), float(a.mean()), goal):
            better = reference_name
    return PairComparison(treatment_name, reference_name, difference, test, better)


def build_verdict(
    trials: pd.DataFrame,
    arms: Sequence[str],
    objective: Objective,
    reference: str | None,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Verdict:
    """The verdict table: per metric, each arm's mean +- bootstrap CI over confirm seeds, each
    other arm against ``reference`` (difference CI, Welch / Mann-Whitney, Hedges' g) and the
    winner."""
    selections = tuple(select_confirm_trials(trials, arm, objective) for arm in arms)
    metrics = verdict_metrics(trials.columns)
    rows: list[MetricVerdict] = []
    for metric in metrics:
        raw = {
            s.arm: (
                _clean(s.trials[metric.column].to_numpy())
                if metric.column in s.trials.columns
                else np.empty(0)
            )
            for s in selections
        }
        summaries = tuple(
            ArmSummary(arm, bootstrap_mean_ci(raw[arm], n_resamples=n_resamples, seed=seed))
            for arm in arms
        )
        comparisons = tuple(
            compare(
                arm,
                raw[arm],
                reference,
                raw[reference],
                metric.goal,
                n_resamples=n_resamples,
                seed=seed,
            )
            for arm in arms
            if reference is not None and arm != reference
        )
        measured = [arm for arm in arms if raw[arm].size]
        winner: str | None = None
        significant = False
        if measured:
            scores = {arm: float(goal_values(raw[arm], metric.goal).mean()) for arm in measured}
            winner = measured[0]
            for arm in measured[1:]:
                if is_better(scores[arm], scores[winner], metric.goal):
                    winner = arm
            ties = [a for a in measured if a != winner and scores[a] == scores[winner]]
            if ties:
                winner = None
            elif len(measured) > 1:
                significant = all(
                    two_sample_test(
                        goal_values(raw[winner], metric.goal), goal_values(raw[other], metric.goal)
                    ).welch_p
                    < SIGNIFICANCE_LEVEL
                    for other in measured
                    if other != winner
                )
        rows.append(MetricVerdict(metric, summaries, comparisons, winner, significant))
    return Verdict(tuple(arms), reference, selections, tuple(rows))


# --------------------------------------------------------------------------- learning curves


def learning_curve_bands(
    epochs: pd.DataFrame,
    terms: Sequence[str],
    *,
    low: float = 0.1,
    high: float = 0.9,
) -> pd.DataFrame:
    """Per arm, epoch and term: the median over trials and a [``low``, ``high``] quantile band.

    Input: one row per trial and epoch with columns ``arm``, ``epoch`` and the ``terms``
    (e.g. ``val.loss``). Output (long form): ``arm, epoch, term, median, low, high, n`` with
    ``n`` the number of trials with a finite value. Quantiles interpolate linearly, as
    ``numpy.quantile`` does. Thousands of trials collapse to three lines per arm and term,
    which keeps the report small.
    """
    columns = [names.ARM, names.EPOCH, "term", "median", "low", "high", "n"]
    present = [t for t in terms if t in epochs.columns]
    if epochs.empty or not present:
        return pd.DataFrame(columns=columns)
    long = epochs.melt(id_vars=[names.ARM, names.EPOCH], value_vars=present, var_name="term")
    long = long[np.isfinite(long["value"].to_numpy(dtype=np.float64))]
    if long.empty:
        return pd.DataFrame(columns=columns)
    grouped = long.groupby([names.ARM, names.EPOCH, "term"], sort=True)["value"]
    out = pd.DataFrame(
        {
            "median": grouped.median(),
            "low": grouped.quantile(low),
            "high": grouped.quantile(high),
            "n": grouped.count(),
        }
    ).reset_index()
    order = {term: i for i, term in enumerate(present)}  # keep the caller's term order
    out = out.sort_values(
        ["term", names.ARM, names.EPOCH],
        key=lambda c: c.map(order) if c.name == "term" else c,
        kind="stable",
    )
    return out[columns].reset_index(drop=True)


# --------------------------------------------------------------------------- latent space


def covariance_spectrum(latents: np.ndarray) -> np.ndarray:
    """Eigenvalues of the sample covariance (ddof=1) of ``latents`` [n, d], descending, shape [d].

    For z ~ N(0, I) every eigenvalue is near 1; eigenvalues near 0 are collapsed directions.
    """
    z = np.asarray(latents, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] < 2:
        return np.empty(0)
    cov = np.atleast_2d(np.cov(z, rowvar=False))
    return np.sort(np.linalg.eigvalsh(cov))[::-1]


def latent_projection(latents: np.ndarray, *, seed: int = 0) -> pd.DataFrame:
    """Project z ~ q(z|x) [n, d] and n draws from the prior N(0, I_d) onto the first two
    principal axes of the latents (centred on the latents' mean).

    Returns columns ``x, y, source`` with ``source`` in {"q(z|x)", "prior"}; with d = 1 the
    second coordinate is 0. The prior draws use ``seed`` so the picture is reproducible.
    """
    z = np.asarray(latents, dtype=np.float64)
    n, d = z.shape
    prior = np.random.default_rng(seed).standard_normal((n, d))
    mean = z.mean(axis=0)
    if d == 1:
        axes = np.array([[1.0]])
    else:
        _, _, vt = np.linalg.svd(z - mean, full_matrices=False)
        axes = vt[:2].T  # [d, 2]
    pz, pp = (z - mean) @ axes, (prior - mean) @ axes
    if d == 1:
        pz = np.column_stack([pz[:, 0], np.zeros(n)])
        pp = np.column_stack([pp[:, 0], np.zeros(n)])
    return pd.DataFrame(
        {
            "x": np.concatenate([pz[:, 0], pp[:, 0]]),
            "y": np.concatenate([pz[:, 1], pp[:, 1]]),
            "source": ["q(z|x)"] * n + ["prior"] * n,
        }
    )


# --------------------------------------------------------------------------- Pareto front


def pareto_mask(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Which rows of ``values`` [n, m] are Pareto-optimal (not dominated by any other row).

    Row i is dominated by row j when j is at least as good on every objective and strictly
    better on one; ``directions`` holds "minimize" / "maximize" per column. Rows with a
    non-finite value are never optimal. Returns a bool array [n].
    """
    v = np.asarray(values, dtype=np.float64).copy()
    for k, direction in enumerate(directions):
        if direction == "maximize":
            v[:, k] = -v[:, k]
    finite = np.isfinite(v).all(axis=1)
    mask = np.zeros(len(v), dtype=bool)
    candidates = np.flatnonzero(finite)
    pts = v[candidates]
    if pts.shape[1] == 2:
        # Two objectives: sort by the first (ties by the second); a point is optimal when its
        # second value beats every earlier point's, or it equals the running best exactly.
        order = np.lexsort((pts[:, 1], pts[:, 0]))
        best = math.inf
        best_point: tuple[float, float] | None = None
        for index in order:
            x, y = pts[index]
            if y < best:
                mask[candidates[index]] = True
                best, best_point = y, (x, y)
            elif best_point is not None and (x, y) == best_point:
                mask[candidates[index]] = True  # a duplicate of an optimal point
        return mask
    for i, point in enumerate(pts):
        dominated = np.any(np.all(pts <= point, axis=1) & np.any(pts < point, axis=1))
        mask[candidates[i]] = not dominated
    return mask


# --------------------------------------------------------------------------- header counts


def status_counts(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials per arm, phase and status: columns ``arm, phase, <status...>, total``."""
    if trials.empty:
        return pd.DataFrame(columns=[names.ARM, names.PHASE, "total"])
    frame = trials.assign(
        arm=trials[names.ARM].fillna("(none)"),
        phase=trials[names.PHASE].fillna("(none)"),
        status=trials[names.STATUS].fillna("(unknown)"),
    )
    table = pd.crosstab([frame[names.ARM], frame[names.PHASE]], frame[names.STATUS])
    table["total"] = table.sum(axis=1)
    return table.reset_index().rename_axis(columns=None)


def compute_seconds(trials: pd.DataFrame) -> float:
    """Total compute time: the sum of ``train_seconds`` and ``eval_seconds`` over all trials."""
    if trials.empty:
        return 0.0
    total = trials[names.TRAIN_SECONDS].fillna(0).sum() + trials[names.EVAL_SECONDS].fillna(0).sum()
    return float(total)


def capacity_levels(trials: pd.DataFrame) -> pd.Series:
    """A sortable decoder-capacity key per trial: (kind rank, kind, width, depth); for a PixelCNN
    (channels, gated layers) stand in for (width, depth).

    Kind ranks mlp < conv < pixelcnn (an autoregressive decoder is the most expressive); an
    unknown kind ranks after the known ones. Missing values rank lowest.
    """
    rank = {"mlp": 0, "conv": 1, "pixelcnn": 2}

    def column(name: str) -> pd.Series:
        if name in trials.columns:
            return trials[name]
        return pd.Series([None] * len(trials), index=trials.index, dtype="object")

    kinds, widths, depths = (
        column(names.param("model.decoder.kind")),
        pd.to_numeric(column(names.param("model.decoder.width")), errors="coerce"),
        pd.to_numeric(column(names.param("model.decoder.depth")), errors="coerce"),
    )
    # A PixelCNN's capacity is its channels and gated layers, not the conditioning MLP's size.
    pixelcnn = kinds.astype(str) == "pixelcnn"
    if pixelcnn.any():
        channels = pd.to_numeric(
            column(names.param("model.decoder.pixelcnn_channels")), errors="coerce"
        )
        layers = pd.to_numeric(
            column(names.param("model.decoder.pixelcnn_layers")), errors="coerce"
        )
        widths = widths.where(~pixelcnn, channels)
        depths = depths.where(~pixelcnn, layers)
    keys = [
        (
            -1 if k is None or (isinstance(k, float) and math.isnan(k)) else rank.get(str(k), 3),
            str(k) if k is not None and not (isinstance(k, float) and math.isnan(k)) else "",
            -1.0 if math.isnan(w) else float(w),
            -1.0 if math.isnan(dp) else float(dp),
        )
        for k, w, dp in zip(kinds, widths, depths, strict=True)
    ]
    return pd.Series(keys, index=trials.index, dtype="object")


def capacity_label(key: tuple[int, str, float, float]) -> str:
    """Human label for a :func:`capacity_levels` key, e.g. ``mlp w=256 d=2``."""
    _, kind, width, depth = key
    parts = [kind or "?"]
    size, layers = ("channels", "layers") if kind == "pixelcnn" else ("w", "d")
    if width >= 0:
        parts.append(f"{size}={width:g}")
    if depth >= 0:
        parts.append(f"{layers}={depth:g}")
    return " ".join(parts)


def format_number(x: float | int | None) -> str:
    """Compact number: 4 significant digits, scientific for very small or large values."""
    if x is None:
        return "n/a"
    x = float(x)
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.3e}"
    return f"{x:.4g}"
