"""Plotly figures of the report: each function takes a DataFrame and returns a ``go.Figure``.

No HTML is written here (that is :mod:`sweep.report.html`). Text that comes from the study
(arm names, parameter values) is passed through :func:`plot_text`, because Plotly renders a
subset of HTML tags in labels; escaping keeps a hostile arm name inert. Figures hold only what
they draw, aggregated where the store is large (learning curves are median and band per arm,
not one line per trial), so the report stays small.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from sweep import names
from sweep.analysis.descriptive import capacity_label, capacity_levels, median_by
from sweep.analysis.load import hashable_param
from sweep.analysis.ranking import Objective, pareto_optimal

LAMBDA_COLUMN = names.param("objective.lambda")
KERNEL_COLUMN = names.param("objective.kernel")
ALPHA_COLUMN = names.param("objective.alpha")

PALETTE: tuple[str, ...] = tuple(qualitative.D3)
MAX_PARCOORDS_DIMENSIONS = 12
_AXIS = {
    "gridcolor": "#e6e8ee",
    "linecolor": "#b8bfcc",
    "zerolinecolor": "#d0d5de",
    "automargin": True,
}
#: A small white template. Plotly deep-copies the template into every figure, and its stock
#: templates are large enough that the copies dominate the build time of a big report.
TEMPLATE = go.layout.Template(
    layout={
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "colorway": list(PALETTE),
        "font": {
            "family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif",
            "color": "#1d2330",
        },
        "xaxis": _AXIS,
        "yaxis": _AXIS,
        "hovermode": "closest",
        "legend": {"bgcolor": "rgba(255,255,255,0.6)"},
        "margin": {"l": 60, "r": 30, "t": 60, "b": 50},
    }
)


def new_figure(data: object = None) -> go.Figure:
    """A figure on the report's template (set at construction, so Plotly never copies its
    large default template)."""
    return go.Figure(data=data, layout={"template": TEMPLATE})


def subplots(**kwargs: object) -> go.Figure:
    """``make_subplots`` on the report's template."""
    return make_subplots(figure=new_figure(), **kwargs)


def plot_text(value: object) -> str:
    """Study-provided text made safe for Plotly labels (HTML-escaped)."""
    return html.escape(str(value), quote=True)


def arm_colors(arms: Sequence[str]) -> dict[str, str]:
    """One stable colour per arm, in arm order."""
    return {arm: PALETTE[i % len(PALETTE)] for i, arm in enumerate(arms)}


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _points(x: object, y: object, name: str, marker: dict[str, object], **style: object):
    """A scatter trace of points (no lines)."""
    return go.Scatter(x=x, y=y, mode="markers", name=name, marker=marker, **style)


def _panels(
    titles: Sequence[object], vertical_spacing: float | None = 0.14, **layout: object
) -> tuple[go.Figure, int, int]:
    """A figure of one panel per title on :func:`_grid`'s rows and columns; ``rows`` and
    ``cols`` come back for placing traces. ``vertical_spacing`` None: half a figure's height
    shared out between the rows."""
    rows, cols = _grid(len(titles))
    spacing = 0.5 / rows if vertical_spacing is None else vertical_spacing
    fig = subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[plot_text(title) for title in titles],
        vertical_spacing=spacing,
        **layout,
    )
    return fig, rows, cols


def _arm_parts(frame: pd.DataFrame, arms: Sequence[str]):
    """``(arm, its rows of frame, its colour)`` for each arm with rows, in ``arms``' order."""
    colors = arm_colors(arms)
    for arm in arms:
        part = frame[frame[names.ARM] == arm]
        if not part.empty:
            yield arm, part, colors[arm]


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = max(1, min(n, max_cols))
    return math.ceil(n / cols), cols


def _varies(frame: pd.DataFrame, column: str) -> bool:
    return column in frame.columns and frame[column].map(hashable_param).nunique(dropna=True) > 1


def metric_vs_lambda(
    trials: pd.DataFrame, column: str, label: str, arms: Sequence[str]
) -> go.Figure:
    """Metric against lambda (log x axis), one panel per arm whose lambda varies, coloured by
    kernel when the kernel varies, else by alpha when alpha varies. Arms with a fixed lambda
    (the ELBO has lambda = 1) appear in every panel as a dashed line at their median.
    Input: completed trials with ``arm``, ``param.objective.lambda`` and ``column``."""
    frame = trials[np.isfinite(trials[column].to_numpy(dtype=np.float64))]
    frame = frame[frame[LAMBDA_COLUMN].to_numpy(dtype=np.float64) > 0]
    varying = [a for a in arms if frame.loc[frame[names.ARM] == a, LAMBDA_COLUMN].nunique() > 1]
    fixed = [a for a in arms if a not in varying and (frame[names.ARM] == a).any()]
    panels = varying or list(arms)
    fig, rows, cols = _panels(panels, shared_yaxes=True, horizontal_spacing=0.06)
    scatter = frame[frame[names.ARM].isin(panels)]
    by_kernel = _varies(scatter, KERNEL_COLUMN)
    by_alpha = not by_kernel and _varies(scatter, ALPHA_COLUMN)
    kernels = sorted(scatter[KERNEL_COLUMN].dropna().astype(str).unique()) if by_kernel else []
    kernel_color = {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(kernels)}
    if by_alpha:
        alpha = scatter[ALPHA_COLUMN].astype(float)
        cmin, cmax = float(alpha.min()), float(alpha.max())
    colors = arm_colors(arms)
    fixed_medians = median_by(frame[frame[names.ARM].isin(fixed)], column, [names.ARM])
    shown: set[str] = set()
    for i, arm in enumerate(panels):
        r, c = i // cols + 1, i % cols + 1
        part = scatter[scatter[names.ARM] == arm]
        if by_kernel:
            for kernel in kernels:
                sub = part[part[KERNEL_COLUMN].astype(str) == kernel]
                if sub.empty:
                    continue
                fig.add_trace(
                    _points(
                        sub[LAMBDA_COLUMN],
                        sub[column],
                        f"kernel {plot_text(kernel)}",
                        {"color": kernel_color[kernel], "size": 6, "opacity": 0.7},
                        legendgroup=kernel,
                        showlegend=kernel not in shown,
                    ),
                    row=r,
                    col=c,
                )
                shown.add(kernel)
        else:
            marker: dict[str, object] = {"size": 6, "opacity": 0.7, "color": colors[arm]}
            if by_alpha:
                marker = {
                    "size": 6,
                    "opacity": 0.8,
                    "color": part[ALPHA_COLUMN].astype(float),
                    "colorscale": "Viridis",
                    "cmin": cmin,
                    "cmax": cmax,
                    "colorbar": {"title": {"text": "alpha"}} if i == 0 else None,
                    "showscale": i == 0,
                }
            fig.add_trace(
                _points(
                    part[LAMBDA_COLUMN], part[column], plot_text(arm), marker, showlegend=False
                ),
                row=r,
                col=c,
            )
        if varying:
            for other in fixed:
                median = float(fixed_medians[other])
                lam = float(frame.loc[frame[names.ARM] == other, LAMBDA_COLUMN].iloc[0])
                fig.add_hline(
                    y=median,
                    line_dash="dash",
                    line_color=colors[other],
                    row=r,
                    col=c,
                    annotation_text=f"{plot_text(other)} median (lambda = {lam:g})",
                    annotation_font_color=colors[other],
                )
    fig.update_xaxes(type="log", title_text="lambda")
    fig.update_yaxes(title_text=plot_text(label), col=1)
    fig.update_layout(
        height=320 * rows + 60,
        title=f"{plot_text(label)} vs lambda",
        margin={"t": 70},
    )
    return fig


def metric_vs_capacity(
    trials: pd.DataFrame, column: str, label: str, arms: Sequence[str]
) -> go.Figure:
    """Metric against decoder capacity (kind / width / depth levels ordered from least to most
    expressive): one box per arm and level. Input: completed trials with ``column``."""
    frame = trials[np.isfinite(trials[column].to_numpy(dtype=np.float64))]
    frame = frame.assign(level=capacity_levels(frame))
    levels = sorted(frame["level"].unique())
    labels = [capacity_label(level) for level in levels]
    fig = new_figure()
    for arm, part, color in _arm_parts(frame, arms):
        fig.add_trace(
            go.Box(
                x=[capacity_label(level) for level in part["level"]],
                y=part[column],
                name=plot_text(arm),
                marker_color=color,
                boxpoints=False,
            )
        )
    fig.update_layout(
        height=380,
        boxmode="group",
        title=f"{plot_text(label)} vs decoder capacity",
        xaxis={
            "title": {"text": "decoder (kind, width, depth)"},
            "categoryorder": "array",
            "categoryarray": labels,
        },
        yaxis={"title": {"text": plot_text(label)}},
    )
    return fig


def metric_vs_train_size(
    trials: pd.DataFrame, column: str, label: str, arms: Sequence[str]
) -> go.Figure:
    """Metric against the number of training images (``param.data.train_size``, log x axis):
    every trial as a point and, per arm, a line through the median at each size, so the arms
    can be compared size by size (the paper's small-data experiment). Input: completed trials
    with ``arm``, a numeric ``param.data.train_size`` (the caller fills a null, the whole
    split, with its size) and ``column``."""
    size = names.param("data.train_size")
    frame = trials[np.isfinite(trials[column].to_numpy(dtype=np.float64))]
    frame = frame[np.isfinite(frame[size].to_numpy(dtype=np.float64))]
    fig = new_figure()
    for arm, part, color in _arm_parts(frame, arms):
        marker = {"color": color, "size": 6, "opacity": 0.5}
        fig.add_trace(
            _points(
                part[size], part[column], plot_text(arm), marker, legendgroup=arm, showlegend=False
            )
        )
        medians = median_by(part, column, [size])
        fig.add_trace(
            go.Scatter(
                x=medians.index.to_numpy(dtype=np.float64),
                y=medians.to_numpy(),
                mode="lines+markers",
                name=f"{plot_text(arm)} (median)",
                legendgroup=arm,
                line={"color": color},
            )
        )
    fig.update_layout(
        height=380,
        title=f"{plot_text(label)} vs training-set size",
        xaxis={"type": "log", "title": {"text": "training images (data.train_size)"}},
        yaxis={"title": {"text": plot_text(label)}},
    )
    return fig


def parallel_coordinates(
    trials: pd.DataFrame, params: Sequence[str], objective: Objective
) -> go.Figure:
    """Parallel coordinates of the search: one axis per searched parameter (log10 for lambda,
    codes for categorical values), the arm when there are several, and the objective, which
    also colours the lines. Input: completed search trials."""
    frame = trials[np.isfinite(trials[objective.column].to_numpy(dtype=np.float64))]
    dims: list[dict[str, object]] = []
    if frame[names.ARM].nunique() > 1:
        dims.append(_categorical_dimension(frame[names.ARM], names.ARM))
    for param in list(params)[: MAX_PARCOORDS_DIMENSIONS - 2]:
        if param not in frame.columns:
            continue
        values = frame[param]
        name = param.removeprefix(names.PARAM)
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.notna().all() and len(values):
            numeric = numeric.astype(float)
            if param.endswith("lambda") and (numeric > 0).all():
                dims.append({"label": plot_text(f"log10 {name}"), "values": np.log10(numeric)})
            else:
                dims.append({"label": plot_text(name), "values": numeric})
        else:
            dims.append(_categorical_dimension(values.map(hashable_param), name))
    dims.append({"label": plot_text(objective.metric), "values": frame[objective.column]})
    reverse = objective.direction == "minimize"  # better trials drawn in the bright colour
    fig = new_figure(
        go.Parcoords(
            dimensions=dims,
            line={
                "color": frame[objective.column],
                "colorscale": "Viridis",
                "reversescale": reverse,
                "showscale": True,
                "colorbar": {"title": {"text": plot_text(objective.metric)}},
            },
        )
    )
    fig.update_layout(
        height=420, title="Search: parallel coordinates", margin={"l": 80, "r": 80, "t": 90}
    )
    return fig


def _categorical_dimension(values: pd.Series, label: str) -> dict[str, object]:
    text = values.map(lambda v: "(none)" if v is None else str(v))
    categories = sorted(text.unique())
    code = {c: i for i, c in enumerate(categories)}
    return {
        "label": plot_text(label),
        "values": text.map(code).to_numpy(dtype=float),
        "tickvals": list(range(len(categories))),
        "ticktext": [plot_text(c) for c in categories],
    }


def importance_figure(importances: pd.DataFrame, arms: Sequence[str]) -> go.Figure:
    """Horizontal bars of hyperparameter importance per arm. Input columns: ``arm, param,
    importance`` (importances of one arm sum to 1)."""
    fig = new_figure()
    for arm, part, color in _arm_parts(importances, arms):
        fig.add_trace(
            go.Bar(
                x=part["importance"],
                y=[plot_text(p) for p in part["param"]],
                orientation="h",
                name=plot_text(arm),
                marker_color=color,
            )
        )
    n_params = max(1, importances["param"].nunique())
    fig.update_layout(
        barmode="group",
        height=160 + 28 * n_params * max(1, len(arms)) // 2,
        title="Hyperparameter importance",
        xaxis={"title": {"text": "importance"}},
    )
    return fig


def pareto_figure(
    trials: pd.DataFrame, objectives: Sequence[Objective], arms: Sequence[str]
) -> go.Figure:
    """The first two objectives against each other for completed trials, per arm, with each
    arm's Pareto front drawn as a line through its non-dominated trials."""
    ox, oy = objectives[0], objectives[1]
    colors = arm_colors(arms)
    fig = new_figure()
    for arm in arms:
        part = trials[trials[names.ARM] == arm]
        values = part[[ox.column, oy.column]].to_numpy(dtype=np.float64)
        keep = np.isfinite(values).all(axis=1)
        part, values = part[keep], values[keep]
        if part.empty:
            continue
        mask = pareto_optimal(values, [ox.direction, oy.direction])
        marker = {"color": _rgba(colors[arm], 0.35), "size": 5}
        fig.add_trace(
            _points(
                values[~mask, 0],
                values[~mask, 1],
                plot_text(arm),
                marker,
                legendgroup=plot_text(arm),
            )
        )
        front = values[mask]
        front = front[np.argsort(front[:, 0])]
        fig.add_trace(
            go.Scatter(
                x=front[:, 0],
                y=front[:, 1],
                mode="lines+markers",
                name=f"{plot_text(arm)} Pareto front",
                legendgroup=plot_text(arm),
                line={"color": colors[arm], "shape": "hv"},
                marker={"color": colors[arm], "size": 8},
            )
        )
    fig.update_layout(
        height=420,
        title="Pareto front",
        xaxis={"title": {"text": f"{plot_text(ox.metric)} ({ox.direction})"}},
        yaxis={"title": {"text": f"{plot_text(oy.metric)} ({oy.direction})"}},
    )
    return fig


def learning_curves_figure(bands: pd.DataFrame, arms: Sequence[str]) -> go.Figure:
    """Learning curves: one panel per loss term, per arm the median over runs as a line and
    the quantile band as a shaded area. Input:
    :func:`sweep.analysis.descriptive.learning_curve_bands`."""
    terms = list(dict.fromkeys(bands["term"]))
    fig, rows, cols = _panels(terms, horizontal_spacing=0.07)
    colors = arm_colors(arms)
    traces: list[go.Scatter] = []
    where_rows: list[int] = []
    where_cols: list[int] = []
    groups = {key: part for key, part in bands.groupby(["term", names.ARM], sort=False)}
    for i, term in enumerate(terms):
        r, c = i // cols + 1, i % cols + 1
        for arm in arms:
            part = groups.get((term, arm))
            if part is None or part.empty:
                continue
            part = part.sort_values(names.EPOCH)
            epochs = part[names.EPOCH].to_numpy(dtype=float)
            traces.append(
                go.Scatter(
                    x=np.concatenate([epochs, epochs[::-1]]),
                    y=np.concatenate(
                        [part["high"].to_numpy(float), part["low"].to_numpy(float)[::-1]]
                    ),
                    fill="toself",
                    fillcolor=_rgba(colors[arm], 0.18),
                    line={"width": 0},
                    hoverinfo="skip",
                    showlegend=False,
                    legendgroup=plot_text(arm),
                    name=f"{plot_text(arm)} band",
                )
            )
            traces.append(
                go.Scatter(
                    x=epochs,
                    y=part["median"].to_numpy(float),
                    mode="lines",
                    name=plot_text(arm),
                    legendgroup=plot_text(arm),
                    showlegend=i == 0,
                    line={"color": colors[arm], "width": 2},
                )
            )
            where_rows += [r, r]
            where_cols += [c, c]
    if traces:  # one batched call: adding traces one by one to subplots is slow
        fig.add_traces(traces, rows=where_rows, cols=where_cols)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(
        height=300 * rows + 60, title="Learning curves (median and 10-90% band over runs)"
    )
    return fig


def latent_scatter(points: pd.DataFrame, arm: str) -> go.Figure:
    """z ~ q(z|x) against prior draws in the latents' first two principal axes.
    Input: :func:`sweep.analysis.descriptive.latent_projection` (columns ``x, y, source``)."""
    fig = new_figure()
    styles = {"prior": ("#9e9e9e", 0.35), "q(z|x)": ("#1f77b4", 0.6)}
    for source in ("prior", "q(z|x)"):
        part = points[points["source"] == source]
        color, alpha = styles[source]
        fig.add_trace(
            _points(part["x"], part["y"], source, {"size": 4, "color": _rgba(color, alpha)})
        )
    fig.update_layout(
        height=380,
        title=f"{plot_text(arm)}: q(z|x) vs prior (PCA of z)",
        xaxis={"title": {"text": "PC 1"}},
        yaxis={"title": {"text": "PC 2"}, "scaleanchor": "x"},
    )
    return fig


def spectrum_figure(spectra: pd.DataFrame, arms: Sequence[str]) -> go.Figure:
    """Eigenvalues of the latent covariance, largest first, per arm (log y), against the
    prior's all-ones spectrum. Input columns: ``arm, index, eigenvalue``."""
    fig = new_figure()
    for arm, part, color in _arm_parts(spectra, arms):
        fig.add_trace(
            go.Scatter(
                x=part["index"],
                y=part["eigenvalue"].clip(lower=1e-8),
                mode="lines+markers",
                name=plot_text(arm),
                line={"color": color},
            )
        )
    if not spectra.empty:
        fig.add_hline(y=1.0, line_dash="dash", line_color="#777", annotation_text="prior N(0, I)")
    fig.update_layout(
        height=360,
        title="Covariance spectrum of z ~ q(z|x)",
        xaxis={"title": {"text": "eigenvalue rank"}, "dtick": 1},
        yaxis={"title": {"text": "eigenvalue"}, "type": "log"},
    )
    return fig


def compare_figure(
    intervals: pd.DataFrame, studies: Sequence[str], arms: Sequence[str]
) -> go.Figure:
    """Two studies side by side: per metric (one panel each), each arm's mean with its 95% CI
    in each study. Input columns: ``metric, arm, study, mean, low, high`` (``studies`` in
    legend order, ``arms`` in axis order)."""
    metrics = list(dict.fromkeys(intervals["metric"])) or ["(no measured metric)"]
    fig, rows, cols = _panels(metrics, horizontal_spacing=0.08, vertical_spacing=None)
    order = [plot_text(a) for a in arms]
    ranges: dict[int, list[float]] = {}
    for s, study in enumerate(studies):
        color = PALETTE[s % len(PALETTE)]
        for i, metric in enumerate(metrics):
            part = intervals[(intervals[names.STUDY] == study) & (intervals["metric"] == metric)]
            if part.empty:
                continue
            mean = part["mean"].to_numpy(dtype=float)
            ranges.setdefault(i, []).extend(
                np.concatenate([mean, part["low"].to_numpy(float), part["high"].to_numpy(float)])
            )
            fig.add_trace(
                go.Scatter(
                    x=[plot_text(a) for a in part[names.ARM]],
                    y=mean,
                    mode="markers",
                    marker={"color": color, "size": 9},
                    error_y={
                        "type": "data",
                        "symmetric": False,
                        "array": np.nan_to_num(part["high"].to_numpy(dtype=float) - mean),
                        "arrayminus": np.nan_to_num(mean - part["low"].to_numpy(dtype=float)),
                        "color": color,
                    },
                    name=plot_text(study),
                    legendgroup=plot_text(study),
                    showlegend=i == 0,
                    customdata=part[["low", "high", "n"]].to_numpy(),
                    hovertemplate="%{x}: %{y:.4g} [%{customdata[0]:.4g}, %{customdata[1]:.4g}]"
                    " (n = %{customdata[2]})<extra>" + plot_text(study) + "</extra>",
                ),
                row=i // cols + 1,
                col=i % cols + 1,
            )
    fig.update_xaxes(categoryorder="array", categoryarray=order)
    for i, values in ranges.items():  # the data's range, not zero-anchored
        finite = np.asarray(values, dtype=float)
        finite = finite[np.isfinite(finite)]
        if finite.size:
            low, high = float(finite.min()), float(finite.max())
            pad = 0.08 * (high - low) or 0.05 * abs(high) or 1.0
            fig.update_yaxes(range=[low - pad, high + pad], row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(
        height=280 * rows + 80,
        title="Confirm-phase mean and 95% CI per arm, both studies",
        scattermode="group",
        legend={"orientation": "h", "y": -0.08},
    )
    return fig
