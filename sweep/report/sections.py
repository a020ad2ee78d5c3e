"""Build the study report: read the folder, compute, draw, write one self-contained HTML file.

The public entry point is :func:`build_report`. Each section is computed by its own function
which turns anything missing (no trials yet, an arm that only failed, no Optuna database, no
artifacts) into a note that says why, so a running, empty or partly failed study still gets a
report.
"""

from __future__ import annotations

import datetime as dt
import logging
import platform
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from infovae_core.config import TRAIN_SPLIT_SIZES
from sweep import names
from sweep.analysis.claims import ArmClassification
from sweep.analysis.descriptive import (
    capacity_levels,
    compute_seconds,
    learning_curve_bands,
    status_counts,
)
from sweep.analysis.formatting import format_mean_interval
from sweep.analysis.grid import DEFAULT_METRICS
from sweep.analysis.importance import FANOVA_DEPTH, FANOVA_TREES, MAX_IMPORTANCE_TRIALS
from sweep.analysis.load import StudyData, hashable_param
from sweep.analysis.study import StudyAnalysis, analyse_study
from sweep.analysis.verdict import config_signature_columns
from sweep.atomic_files import atomic_write_text
from sweep.names import REPORT_FILE
from sweep.report import figures
from sweep.report.blocks import (
    Block,
    FigureBlock,
    Header,
    ImageBlock,
    NoteBlock,
    ReportContent,
    Section,
    TableBlock,
)
from sweep.report.html import render_report
from sweep.run.run_record import package_versions
from sweep.spec import EPOCH_TERMS

log = logging.getLogger(__name__)

_HEADLINE_METRICS = ("mmd", "mutual_info", "nll_iwae")
_TERM_ORDER = {term: i for i, term in enumerate(EPOCH_TERMS)}

__all__ = ["build_content", "build_report", "write_report"]


def build_report(study_dir: Path, out: Path | None = None, partial: bool = False) -> Path:
    """Read and analyse the study folder once, write its HTML report and return its path.

    ``study_dir`` is a study folder (with ``study.yaml``); ``out`` defaults to
    ``study_dir / "report.html"``. ``partial=True`` marks the report as built from a study that
    is still running; a report of a study whose plan is not finished (killed, or read from a
    mirror while it runs elsewhere) says how many trials are left either way. The file is
    written to a temporary file beside ``out`` and renamed over it, so a reader never sees half
    a report. Raises :class:`~sweep.store.NotAStudyFolderError` for a folder without
    ``study.yaml``.
    """
    study_dir = Path(study_dir)
    out = Path(out) if out is not None else study_dir / REPORT_FILE
    return write_report(build_content(analyse_study(study_dir), partial=partial), out)


def write_report(content: ReportContent, out: Path) -> Path:
    """Render ``content`` as the HTML page and write it to ``out`` atomically (a temporary file
    beside it, renamed over it); returns ``out``."""
    out = Path(out)
    page = render_report(content)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, page)
    return out


def build_content(analysis: StudyAnalysis, *, partial: bool = False) -> ReportContent:
    """Every section of the report, from the study's analysis."""
    data = analysis.data
    trials = data.trials
    failures = trials[trials[names.STATUS] == names.FAILED]
    sections = (
        *_settings_sections(analysis),
        _hyperparameter_section(analysis),
        _training_section(data),
        _latent_section(analysis),
    )
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return ReportContent(
        title=f"{data.name}: ELBO vs InfoVAE",
        generated_at=now,
        partial=partial,
        trials_left=analysis.trials_left,
        header=_header(data, analysis.roles),
        verdict=analysis.verdict,
        verdict_note=analysis.verdict_note,
        claims=analysis.claims,
        sections=sections,
        failures=failures[
            [
                names.ARM,
                names.PHASE,
                names.TRIAL_ID,
                names.SEED,
                names.ENDED_AT,
                names.HOST,
                names.ERROR,
            ]
        ].reset_index(drop=True),
        warnings=data.warnings,
        convergence=analysis.convergence,
    )


# --------------------------------------------------------------------------- header


def _header(data: StudyData, roles: Sequence[ArmClassification]) -> Header:
    trials = data.trials
    settings: dict[str, str] = {}
    for arm in data.arms:
        arm_spec = data.spec.arms.get(arm) if data.spec is not None else None
        text = []
        if arm_spec is not None and arm_spec.fixed:
            fixed = arm_spec.fixed_settings
            text.append("fixed: " + ", ".join(f"{k} = {v}" for k, v in fixed.items()))
        if arm_spec is not None and arm_spec.search:
            text.append("searched: " + ", ".join(arm_spec.search))
        settings[arm] = "; ".join(text) if text else "(not in study.yaml)"
    totals = (
        {str(k): int(v) for k, v in trials[names.STATUS].fillna("(unknown)").value_counts().items()}
        if len(trials)
        else {}
    )
    if len(trials):
        hardware = (
            trials.assign(
                host=trials[names.HOST].fillna("?").astype(str),
                device=trials[names.DEVICE].fillna("?").astype(str),
            )
            .groupby([names.HOST, names.DEVICE])
            .size()
            .rename("trials")
            .reset_index()
        )
    else:
        hardware = pd.DataFrame(columns=[names.HOST, names.DEVICE, "trials"])
    versions = {"python": platform.python_version(), **package_versions()}
    objectives = ", ".join(f"{o.metric} ({o.direction})" for o in data.objectives)
    return Header(
        study=data.name,
        description=data.description,
        dataset=data.dataset,
        roles=tuple(roles),
        arm_settings=settings,
        counts=status_counts(trials),
        status_totals=totals,
        compute_seconds=compute_seconds(trials),
        hardware=hardware,
        versions=versions,
        objectives=objectives,
    )


# --------------------------------------------------------------------------- hyperparameters


def _metric_columns(data: StudyData) -> list[tuple[str, str]]:
    """(column, label) of the metrics drawn against hyperparameters: the primary objective
    first, then the headline metrics present."""
    keys = [o.metric for o in data.objectives[:1]] + list(_HEADLINE_METRICS)
    out: list[tuple[str, str]] = []
    for key in dict.fromkeys(keys):
        column = names.metric(key)
        if column in data.trials.columns and data.trials[column].notna().any():
            out.append((column, key))
    return out


def _searched_params(data: StudyData, arm: str, frame: pd.DataFrame) -> list[str]:
    """Columns of the hyperparameters searched for ``arm`` that vary in ``frame``: the arm's
    search keys in the spec when given, else every non-seed ``param.*`` column."""
    arm_spec = data.spec.arms.get(arm) if data.spec is not None else None
    keys = [names.param(k) for k in arm_spec.search] if arm_spec is not None else []
    candidates = [k for k in keys if k in frame.columns] or config_signature_columns(frame)
    return [c for c in candidates if frame[c].map(hashable_param).nunique(dropna=True) > 1]


def _train_sizes(data: StudyData, done: pd.DataFrame) -> pd.Series | None:
    """``param.data.train_size`` of ``done`` as numbers, a null (the whole split) read as the
    training split's size of the study's dataset; None when the size does not vary."""
    column = names.param("data.train_size")
    if column not in done.columns:
        return None
    whole = TRAIN_SPLIT_SIZES.get(data.dataset, np.nan)
    sizes = pd.to_numeric(done[column], errors="coerce").astype(float).fillna(whole)
    return sizes if sizes.nunique(dropna=True) > 1 else None


def _hyperparameter_section(analysis: StudyAnalysis) -> Section:
    data = analysis.data
    trials = data.trials
    arms = data.arms
    done = trials[trials[names.STATUS] == names.COMPLETED] if len(trials) else trials
    blocks: list[Block] = []
    metrics = _metric_columns(data)
    if done.empty or not metrics:
        blocks.append(NoteBlock("No completed trials with metrics yet."))
        return Section("Against the hyperparameters", "hyperparameters", tuple(blocks))
    lam = names.param("objective.lambda")
    if lam in done.columns and done[lam].nunique(dropna=True) > 1:
        for column, label in metrics:
            blocks.append(
                FigureBlock(
                    figures.metric_vs_lambda(done, column, label, arms),
                    "Every completed trial (search and confirm); log x axis.",
                )
            )
    else:
        blocks.append(NoteBlock("lambda was not varied in this study: no metric-vs-lambda plot."))
    sizes = _train_sizes(data, done)
    if sizes is not None:
        for column, label in metrics:
            blocks.append(
                FigureBlock(
                    figures.metric_vs_train_size(
                        done.assign(**{names.param("data.train_size"): sizes}), column, label, arms
                    ),
                    "Every completed trial (search and confirm) against data.train_size, the "
                    "whole training split where it was not set; lines join each arm's medians.",
                )
            )
    levels = capacity_levels(done)
    if levels.nunique() > 1:
        for column, label in metrics[:2]:
            blocks.append(FigureBlock(figures.metric_vs_capacity(done, column, label, arms)))
    else:
        blocks.append(NoteBlock("Decoder capacity was not varied: no metric-vs-capacity plot."))
    search = done[done[names.PHASE] == names.SEARCH]
    objective = data.primary_objective
    if objective.column not in search.columns or search[objective.column].notna().sum() < 2:
        blocks.append(
            NoteBlock(
                "Fewer than two completed search trials with "
                f"{objective.metric}: no parallel-coordinates plot."
            )
        )
    else:
        for arm in arms:
            part = search[(search[names.ARM] == arm) & search[objective.column].notna()]
            params = _searched_params(data, arm, part)
            if len(part) < 2 or not params:
                blocks.append(
                    NoteBlock(
                        f"{arm}: nothing searched or fewer than two completed "
                        "search trials; no parallel-coordinates plot."
                    )
                )
                continue
            fig = figures.parallel_coordinates(part, params, objective)
            fig.update_layout(title=f"Search of {figures.plot_text(arm)}: parallel coordinates")
            blocks.append(FigureBlock(fig))
    blocks.extend(_importance_blocks(analysis))
    if len(data.objectives) >= 2:
        ox, oy = data.objectives[0], data.objectives[1]
        if {ox.column, oy.column} <= set(done.columns):
            pool = search if not search.empty else done
            blocks.append(
                FigureBlock(
                    figures.pareto_figure(pool, data.objectives, arms),
                    "Completed search trials; lines join each arm's non-dominated trials.",
                )
            )
        else:
            blocks.append(
                NoteBlock("Pareto front: an objective column is missing from trials.parquet.")
            )
    return Section("Against the hyperparameters", "hyperparameters", tuple(blocks))


def _importance_blocks(analysis: StudyAnalysis) -> list[Block]:
    """fANOVA importances from the Optuna storage, one bar group per arm."""
    found = analysis.importances
    if found.problem:
        return [NoteBlock(f"Hyperparameter importance not available: {found.problem}.")]
    blocks: list[Block] = []
    if len(found.frame):
        blocks.append(
            FigureBlock(
                figures.importance_figure(found.frame, analysis.data.arms),
                f"fANOVA ({FANOVA_TREES} trees, depth {FANOVA_DEPTH}) on the Optuna study of each "
                f"arm (at most {MAX_IMPORTANCE_TRIALS} completed trials, a seeded random subset "
                "beyond that), first objective; importances of an arm sum to 1.",
            )
        )
    return blocks + [NoteBlock(note) for note in found.notes]


# --------------------------------------------------------------------------- training


def _training_section(data: StudyData) -> Section:
    trials, epochs = data.trials, data.epochs
    if epochs.empty or trials.empty:
        return Section("Training", "training", (NoteBlock("No per-epoch records yet."),))
    confirm = trials[
        (trials[names.PHASE] == names.CONFIRM) & (trials[names.STATUS] == names.COMPLETED)
    ]
    intro = "Confirm runs (completed)."
    ids = set(confirm[names.TRIAL_ID].dropna())
    if not ids:
        ids = set(trials[names.TRIAL_ID].dropna())
        intro = "No completed confirm runs yet: all runs so far, search phase included."
    frame = epochs[epochs[names.TRIAL_ID].isin(ids)]
    if frame.empty:
        return Section("Training", "training", (NoteBlock("No per-epoch records for these runs."),))
    blocks: list[Block] = []
    for prefix, name in ((names.VAL, "Validation"), (names.TRAIN, "Training")):
        terms = sorted(
            (c for c in frame.columns if c.startswith(prefix)),
            key=lambda c: (_TERM_ORDER.get(names.strip(c, prefix), 99), c),
        )
        bands = learning_curve_bands(frame, terms)
        if bands.empty:
            blocks.append(NoteBlock(f"{name}: no {prefix}* terms recorded."))
            continue
        fig = figures.learning_curves_figure(bands, data.arms)
        fig.update_layout(title=f"{name} terms per epoch (median and 10-90% band over runs)")
        blocks.append(FigureBlock(fig))
    return Section("Training", "training", tuple(blocks), intro=intro)


# --------------------------------------------------------------------------- settings

#: At most this many rows in the settings table (arm x setting).
SETTINGS_TABLE_ROWS = 80


def _settings_sections(analysis: StudyAnalysis) -> tuple[Section, ...]:
    """Grid studies (training-set size x seeds, decoder depth x seeds, ...) have no verdict:
    their finding is each setting's mean over its seeds
    (:func:`sweep.analysis.grid.search_settings`)."""
    settings = analysis.search_settings
    if settings is None:
        return ()
    summary, keys = settings.summary, settings.keys
    metrics = [m for m in DEFAULT_METRICS if m in summary.columns]
    rows = []
    for (_, row), (converged, judged) in zip(
        summary.head(SETTINGS_TABLE_ROWS).iterrows(), settings.converged, strict=False
    ):
        cells = {"arm": row[names.ARM]}
        cells.update({key.removeprefix(names.PARAM): row[key] for key in keys})
        cells["seeds"] = int(row["n"])
        cells["converged"] = f"{converged}/{judged}"
        for name in metrics:
            cells[name] = format_mean_interval(row[name], row[f"{name}.low"], row[f"{name}.high"])
        rows.append(cells)
    caption = (
        "Per arm and setting: the mean over the completed search runs (seeds) with a 95% "
        "Student-t interval, and how many of those runs converged. " + analysis.convergence.rule
    )
    if len(summary) > SETTINGS_TABLE_ROWS:
        caption += f" First {SETTINGS_TABLE_ROWS} of {len(summary)} rows; "
        caption += "`infovae-sweep summary` lists all."
    table = TableBlock(pd.DataFrame(rows), caption=caption)
    intro = (
        "The settings the search compared, each replicated over seeds "
        f"({', '.join(k.removeprefix('param.') for k in keys)}): the same table as "
        "`infovae-sweep summary`."
    )
    return (Section("Settings compared", "settings", (table,), intro=intro),)


# --------------------------------------------------------------------------- latent space


def _latent_section(analysis: StudyAnalysis) -> Section:
    data = analysis.data
    blocks: list[Block] = []
    spectra: list[pd.DataFrame] = []
    for found in analysis.best_trial_artefacts:
        arm, label = found.arm, found.label
        if found.problem:
            blocks.append(NoteBlock(f"{label or arm}: {found.problem}."))
            continue
        view = found.latents
        if view is None:
            blocks.append(NoteBlock(f"{label}: {found.latents_problem}."))
        else:
            fig = figures.latent_scatter(view.points, arm)
            blocks.append(FigureBlock(fig, f"{label}; {view.n} points, latent dim {view.dim}."))
            eig = view.spectrum
            spectra.append(
                pd.DataFrame({"arm": arm, "index": np.arange(1, len(eig) + 1), "eigenvalue": eig})
            )
        for image in found.images:
            if image.png is None:
                blocks.append(NoteBlock(f"{label}: {image.problem}."))
            else:
                title = f"{arm}: {image.title} (trial {found.trial_id})"
                blocks.append(ImageBlock(title, image.png))
    if spectra:
        frame = pd.concat(spectra, ignore_index=True)
        blocks.append(
            FigureBlock(
                figures.spectrum_figure(frame, data.arms),
                "Eigenvalues of the sample covariance of z ~ q(z|x) for "
                "each arm's best trial; N(0, I) has all eigenvalues 1.",
            )
        )
    if not blocks:
        blocks.append(NoteBlock("No arms."))
    return Section(
        "Latent space",
        "latent",
        tuple(blocks),
        intro=f"Best trial of each arm {_ranking_rule(data)}, confirm phase preferred.",
    )


def _ranking_rule(data: StudyData) -> str:
    """How :mod:`sweep.analysis.ranking` picks the best trial of this study, in words."""
    rank = data.rank_objective
    by = f"by {rank.metric} ({rank.direction})"
    if len(data.objectives) < 2:
        return by
    pareto = ", ".join(o.metric for o in data.objectives)
    return f"on the Pareto front of {pareto} first, then {by}"
