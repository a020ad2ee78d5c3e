"""Descriptive tables of a study: trial counts, compute time, decoder capacity levels,
learning-curve bands and the latent space of one trial (spectrum and 2-D projection)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sweep import names


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
    """A sortable decoder key per trial: (kind rank, kind, width, depth, likelihood); for a
    PixelCNN (channels, gated layers) stand in for (width, depth). The likelihood keeps a
    Gaussian and a Bernoulli decoder of one size apart: their mutual information is not
    comparable (a PixelCNN is always Bernoulli, so its likelihood is left blank).

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
    likelihoods = column(names.param("model.decoder.likelihood"))

    def text(value: Any) -> str:
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        return "" if missing else str(value)

    keys = [
        (
            rank.get(text(k), 3) if text(k) else -1,
            text(k),
            -1.0 if math.isnan(w) else float(w),
            -1.0 if math.isnan(dp) else float(dp),
            "" if text(k) == "pixelcnn" else text(lik),
        )
        for k, w, dp, lik in zip(kinds, widths, depths, likelihoods, strict=True)
    ]
    return pd.Series(keys, index=trials.index, dtype="object")


def capacity_label(key: tuple[int, str, float, float, str]) -> str:
    """Human label for a :func:`capacity_levels` key, e.g. ``mlp w=256 d=2 bernoulli``."""
    _, kind, width, depth, likelihood = key
    parts = [kind or "?"]
    size, layers = ("channels", "layers") if kind == "pixelcnn" else ("w", "d")
    if width >= 0:
        parts.append(f"{size}={width:g}")
    if depth >= 0:
        parts.append(f"{layers}={depth:g}")
    if likelihood:
        parts.append(likelihood)
    return " ".join(parts)


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


def median_by(frame: pd.DataFrame, column: str, by: Sequence[str]) -> pd.Series:
    """The median of ``column`` over the rows of each group of ``by`` (e.g. ``["arm"]``, or
    ``["arm", "param.data.train_size"]``), indexed by the groups in sorted order."""
    return frame.groupby(list(by))[column].median().sort_index()
