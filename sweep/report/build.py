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
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from infovae_core.config import TRAIN_SPLIT_SIZES
from sweep import names
from sweep.atomic_files import atomic_write_text
from sweep.convergence import describe_rule, trial_convergence
from sweep.names import REPORT_FILE
from sweep.plan import trials_left
from sweep.report import figures
from sweep.report.aggregate import (
    best_trial,
    capacity_levels,
    compute_seconds,
    config_signature_columns,
    covariance_spectrum,
    latent_projection,
    learning_curve_bands,
    status_counts,
)
from sweep.report.analysis import analyse
from sweep.report.claims import ArmClassification
from sweep.report.content import (
    Block,
    FigureBlock,
    Header,
    ImageBlock,
    NoteBlock,
    ReportContent,
    Section,
    TableBlock,
)
from sweep.report.data import (
    NotAStudyFolderError,
    StudyData,
    hashable_param,
    load_study_data,
)
from sweep.report.html import render_report
from sweep.spec import EPOCH_TERMS
from sweep.summary import DEFAULT_METRICS, configuration_summary, format_cell

log = logging.getLogger(__name__)

#: Latent points drawn per arm (a random subset when the artifact holds more).
MAX_LATENT_POINTS = 1000
#: Largest PNG embedded; bigger files are skipped with a note (keeps the page small).
MAX_PNG_BYTES = 2_000_000
#: fANOVA settings: fewer, shallower trees than Optuna's default keep thousands of trials fast.
FANOVA_TREES = 16
FANOVA_DEPTH = 8
#: fANOVA's cost grows faster than linearly with trials; past this many completed trials per
#: arm a seeded random subset is used (importances of 500 trials are already stable).
MAX_IMPORTANCE_TRIALS = 500
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_LIBRARIES = (
    "torch",
    "numpy",
    "scipy",
    "scikit-learn",
    "pandas",
    "pyarrow",
    "optuna",
    "ray",
    "plotly",
)
_HEADLINE_METRICS = ("mmd", "mutual_info", "nll_iwae")
_TERM_ORDER = {term: i for i, term in enumerate(EPOCH_TERMS)}

__all__ = ["NotAStudyFolderError", "build_report", "build_content", "write_report"]


def build_report(study_dir: Path, out: Path | None = None, partial: bool = False) -> Path:
    """Write the study's HTML report and return its path.

    ``study_dir`` is a study folder (with ``study.yaml``); ``out`` defaults to
    ``study_dir / "report.html"``. ``partial=True`` marks the report as built from a study that
    is still running; a report of a study whose plan is not finished (killed, or read from a
    mirror while it runs elsewhere) says how many trials are left either way. The file is
    written to a temporary file beside ``out`` and renamed over it, so a reader never sees half
    a report. Raises :class:`NotAStudyFolderError` for a folder without ``study.yaml``.
    """
    study_dir = Path(study_dir)
    out = Path(out) if out is not None else study_dir / REPORT_FILE
    return write_report(build_content(load_study_data(study_dir), partial=partial), out)


def write_report(content: ReportContent, out: Path) -> Path:
    """Render ``content`` as the HTML page and write it to ``out`` atomically (a temporary file
    beside it, renamed over it); returns ``out``."""
    out = Path(out)
    page = render_report(content)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, page)
    return out


def build_content(data: StudyData, *, partial: bool = False) -> ReportContent:
    """Compute every section of the report from the study's data."""
    trials = data.trials
    analysis = analyse(data)
    failures = trials[trials[names.STATUS] == names.FAILED]
    sections = (
        *_settings_sections(data),
        _hyperparameter_section(data),
        _training_section(data),
        _latent_section(data),
    )
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return ReportContent(
        title=f"{data.name}: ELBO vs InfoVAE",
        generated_at=now,
        partial=partial,
        trials_left=trials_left(data.spec, trials) if data.spec is not None else 0,
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
    versions = {"python": platform.python_version()}
    for name in ("infovae-sweep", *_LIBRARIES):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
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


def _hyperparameter_section(data: StudyData) -> Section:
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
    blocks.extend(_importance_blocks(data))
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


def _importance_blocks(data: StudyData) -> list[Block]:
    """fANOVA importances from the Optuna storage, one bar group per arm."""
    try:
        import optuna
    except ImportError as exc:  # pragma: no cover - optuna is a dependency
        return [NoteBlock(f"Hyperparameter importance not available: {exc}")]
    from sweep.optuna_storage import close_optuna_storage, open_optuna_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    notes: list[Block] = []
    rows: list[dict[str, object]] = []
    try:
        # A reader (the study folder's storage.yaml names the storage; optuna.db by default):
        # no table creation (never writes to the runner's database) and no schema migration
        # check (saves importing Alembic).
        storage = open_optuna_storage(data.study_dir, read_only=True)
    except Exception as exc:
        return [
            NoteBlock(
                f"Hyperparameter importance not available: the Optuna storage could not be "
                f"opened ({type(exc).__name__}: {exc})."
            )
        ]
    if storage is None:
        return [
            NoteBlock(
                f"Hyperparameter importance not available: no {names.OPTUNA_FILE} (nor the "
                f"Optuna journal that {names.STORAGE_FILE} names) in the study folder."
            )
        ]
    try:
        for arm in data.arms:
            try:
                importances = _fanova(optuna, storage, arm)
            except Exception as exc:  # Optuna raises several types for "cannot evaluate"
                notes.append(
                    NoteBlock(f"{arm}: importance not available ({type(exc).__name__}: {exc}).")
                )
                continue
            if not importances:
                notes.append(
                    NoteBlock(f"{arm}: importance not available (no searched parameter varies).")
                )
            for param, value in importances.items():
                rows.append({"arm": arm, "param": param, "importance": float(value)})
    finally:
        close_optuna_storage(storage)
    blocks: list[Block] = []
    if rows:
        frame = pd.DataFrame(rows)
        blocks.append(
            FigureBlock(
                figures.importance_figure(frame, data.arms),
                f"fANOVA ({FANOVA_TREES} trees, depth {FANOVA_DEPTH}) on the Optuna study of each "
                f"arm (at most {MAX_IMPORTANCE_TRIALS} completed trials, a seeded random subset "
                "beyond that), first objective; importances of an arm sum to 1.",
            )
        )
    return blocks + notes


def _fanova(optuna: Any, storage: Any, arm: str) -> dict[str, float]:
    """fANOVA importances of the Optuna study named ``arm``, first objective.

    The completed trials are read from SQLite once and copied into an in-memory study:
    Optuna's evaluator re-reads the trial list several times, which against SQLite costs
    seconds for a few thousand trials.
    """
    stored = optuna.load_study(study_name=arm, storage=storage)
    complete = stored.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        raise ValueError(f"{len(complete)} completed trial(s) in the Optuna study; need at least 2")
    if len(complete) > MAX_IMPORTANCE_TRIALS:
        keep = np.random.default_rng(0).choice(len(complete), MAX_IMPORTANCE_TRIALS, replace=False)
        complete = [complete[i] for i in sorted(keep)]
    memory = optuna.create_study(directions=stored.directions)
    memory.add_trials(complete)
    return optuna.importance.get_param_importances(
        memory,
        evaluator=optuna.importance.FanovaImportanceEvaluator(
            n_trees=FANOVA_TREES, max_depth=FANOVA_DEPTH, seed=0
        ),
        target=lambda t: t.values[0],
    )


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


def _settings_sections(data: StudyData) -> tuple[Section, ...]:
    """Grid studies (training-set size x seeds, decoder depth x seeds, ...) have no verdict:
    their finding is each setting's mean over its seeds. Shown when most settings of the
    search phase were run with two seeds or more (median count >= 2): a search that samples
    configurations (TPE, say) has one run for most of them and gets no table."""
    trials = data.trials
    done = trials[(trials[names.STATUS] == names.COMPLETED) & (trials[names.PHASE] == names.SEARCH)]
    if done.empty:
        return ()
    summary = configuration_summary(done, phases=(names.SEARCH,))
    keys = [c for c in summary.columns if c.startswith(names.PARAM)]
    if not keys or summary.empty or float(summary["n"].median()) < 2:
        return ()
    metric, tolerance = data.convergence
    judged = trial_convergence(done, data.epochs, metric, tolerance)
    status = dict(zip(judged["trial_id"].astype(str), judged["status"], strict=True))
    metrics = [m for m in DEFAULT_METRICS if m in summary.columns]
    rows = []
    for _, row in summary.head(SETTINGS_TABLE_ROWS).iterrows():
        mask = done[names.ARM] == row[names.ARM]
        for key in keys:
            mask &= done[key].astype(str) == str(row[key])
        found = [status.get(str(t), "unknown") for t in done.loc[mask, names.TRIAL_ID]]
        cells = {"arm": row[names.ARM]}
        cells.update({key.removeprefix(names.PARAM): row[key] for key in keys})
        cells["seeds"] = int(row["n"])
        cells["converged"] = f"{found.count('converged')}/{len(found)}"
        for name in metrics:
            cells[name] = format_cell(row[name], row[f"{name}.low"], row[f"{name}.high"])
        rows.append(cells)
    caption = (
        "Per arm and setting: the mean over the completed search runs (seeds) with a 95% "
        "Student-t interval, and how many of those runs converged. "
        + describe_rule(metric, tolerance)
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


def _artifact_dir(data: StudyData, trial_id: str) -> Path | None:
    """``artifacts/<trial_id>`` if ``trial_id`` is a plain name (no path tricks) and exists."""
    root = data.study_dir / names.ARTIFACTS_DIR
    if not trial_id or trial_id in {".", ".."} or "/" in trial_id or "\\" in trial_id:
        return None
    folder = root / trial_id
    return folder if folder.is_dir() else None


def _load_latents(path: Path) -> tuple[np.ndarray | None, str]:
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as exc:  # corrupt or not an .npy file
        return None, f"latents.npy could not be read ({type(exc).__name__}: {exc})"
    if z.ndim != 2 or z.shape[0] < 2 or z.shape[1] < 1 or not np.issubdtype(z.dtype, np.number):
        return None, f"latents.npy has shape {z.shape} (expected [n >= 2, d >= 1] numbers)"
    z = z.astype(np.float64)
    z = z[np.isfinite(z).all(axis=1)]
    if z.shape[0] < 2:
        return None, "latents.npy has fewer than two finite rows"
    if z.shape[0] > MAX_LATENT_POINTS:
        keep = np.random.default_rng(0).choice(z.shape[0], MAX_LATENT_POINTS, replace=False)
        z = z[np.sort(keep)]
    return z, ""


def _latent_section(data: StudyData) -> Section:
    objective = data.rank_objective
    blocks: list[Block] = []
    spectra: list[pd.DataFrame] = []
    for arm in data.arms:
        best = (
            best_trial(data.trials, arm, data.objectives, objective) if len(data.trials) else None
        )
        if best is None:
            blocks.append(NoteBlock(f"{arm}: no completed trial with {objective.metric}."))
            continue
        trial_id = str(best[names.TRIAL_ID])
        value = float(best[objective.column])
        label = f"{arm}: best trial {trial_id} ({best['phase']}, {objective.metric} = {value:.4g})"
        folder = _artifact_dir(data, trial_id)
        if folder is None:
            blocks.append(NoteBlock(f"{label}: no artifacts folder."))
            continue
        latents_path = folder / "latents.npy"
        if latents_path.is_file():
            z, problem = _load_latents(latents_path)
            if z is None:
                blocks.append(NoteBlock(f"{label}: {problem}."))
            else:
                fig = figures.latent_scatter(latent_projection(z, seed=0), arm)
                blocks.append(
                    FigureBlock(fig, f"{label}; {len(z)} points, latent dim {z.shape[1]}.")
                )
                eig = covariance_spectrum(z)
                spectra.append(
                    pd.DataFrame(
                        {"arm": arm, "index": np.arange(1, len(eig) + 1), "eigenvalue": eig}
                    )
                )
        else:
            blocks.append(NoteBlock(f"{label}: no latents.npy."))
        for name, title in (("samples.png", "samples"), ("reconstructions.png", "reconstructions")):
            path = folder / name
            if not path.is_file():
                blocks.append(NoteBlock(f"{label}: no {name}."))
                continue
            size = path.stat().st_size
            if size > MAX_PNG_BYTES:
                blocks.append(
                    NoteBlock(
                        f"{label}: {name} is {size} bytes, over the "
                        f"{MAX_PNG_BYTES}-byte limit; not embedded."
                    )
                )
                continue
            png = path.read_bytes()
            if not png.startswith(_PNG_MAGIC):
                blocks.append(NoteBlock(f"{label}: {name} is not a PNG file."))
                continue
            blocks.append(ImageBlock(f"{arm}: {title} (trial {trial_id})", png))
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
    """How :mod:`sweep.ranking` picks the best trial of this study, in words."""
    rank = data.rank_objective
    by = f"by {rank.metric} ({rank.direction})"
    if len(data.objectives) < 2:
        return by
    pareto = ", ".join(o.metric for o in data.objectives)
    return f"on the Pareto front of {pareto} first, then {by}"
