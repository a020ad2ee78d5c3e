"""Read a study folder (``study.yaml``, ``trials.parquet``, ``epochs.parquet``) once, for every
output.

The study file is read by the project's loader (:func:`sweep.spec.load_study`) and the results
by the project's store (:class:`sweep.store.ResultsStore`), so the report sees the study exactly
as the runner, ``show`` and ``export`` do: the same validated spec, and every recorded trial
(part files not yet compacted included). The report still works on any folder the runner
left behind, finished or not: a study file the loader refuses, or a results file the store
cannot read, becomes a warning shown in the report (naming the file) plus what is left, never
a traceback. Column names follow the results schema of docs/results.md (:mod:`sweep.names`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sweep import names
from sweep.analysis.convergence import DEFAULT_CONVERGENCE_METRIC, DEFAULT_CONVERGENCE_TOLERANCE
from sweep.analysis.ranking import Direction, Objective
from sweep.integrity import damaged_files, describe_damage
from sweep.spec import StudyIssue, StudySpec, StudySpecError, load_study
from sweep.store import DamagedStudyError, ResultsStore, StoreError, require_study_folder

#: Columns every trials table has after :func:`load_study_data` (added as nulls when absent).
TRIAL_COLUMNS: tuple[str, ...] = names.TRIAL_FIXED_COLUMNS
EPOCH_COLUMNS: tuple[str, ...] = names.EPOCH_FIXED_COLUMNS
#: Columns whose values are whole numbers: read as floats like every number (a missing value
#: is NaN), shown as integers (:func:`whole_number`).
INTEGER_COLUMNS: frozenset[str] = frozenset(
    {
        names.SEED,
        names.param("model.decoder.width"),
        names.param("model.decoder.depth"),
        names.param("model.latent_dim"),
    }
)
#: ``param.*`` columns read as numbers (a hand-written file may hold them as text).
_NUMERIC_PARAMS: tuple[str, ...] = tuple(
    names.param(key)
    for key in (
        "objective.lambda",
        "objective.alpha",
        "model.decoder.width",
        "model.decoder.depth",
        "model.latent_dim",
    )
)


def _objective(column: str, direction: Direction) -> Objective:
    return Objective(names.strip(column, names.METRIC), direction)


@dataclass(frozen=True)
class StudyData:
    """Everything the report needs from one study folder, read once.

    ``trials`` has one row per trial (``TRIAL_COLUMNS`` always present, ``metric.*`` as float64);
    ``epochs`` one row per trial and epoch; ``spec`` is the validated study
    (:func:`sweep.spec.load_study`), None when the loader refused ``study.yaml`` (the reason is
    among the warnings, and the report then goes by what the trials say); ``warnings`` lists
    problems met while reading, shown in the report.
    """

    study_dir: Path
    spec: StudySpec | None
    trials: pd.DataFrame
    epochs: pd.DataFrame
    warnings: tuple[str, ...]
    spec_error: StudySpecError | None = None
    #: The driver's ``run.json`` (:mod:`sweep.run.run_record`), None when absent or unreadable.
    run_record: dict[str, Any] | None = None

    def require_spec(self) -> StudySpec:
        """The validated study; raises the loader's :class:`~sweep.spec.StudySpecError` (naming
        the file and line) when it refused ``study.yaml``: outputs ranked by a guessed objective
        (``show``, ``ls``) would look right and be wrong."""
        if self.spec is None:
            study_file = str(self.study_dir / names.STUDY_FILE)
            raise self.spec_error or StudySpecError(
                [StudyIssue(study_file, None, "", "not read by the study loader")]
            )
        return self.spec

    @property
    def name(self) -> str:
        if self.spec is not None:
            return self.spec.name
        studies = self.trials[names.STUDY].dropna().unique() if len(self.trials) else []
        return str(studies[0]) if len(studies) else self.study_dir.name

    @property
    def description(self) -> str:
        return self.spec.description if self.spec is not None else ""

    @property
    def dataset(self) -> str:
        if self.spec is not None:
            return self.spec.data.dataset
        column = names.param("data.dataset")
        if column in self.trials.columns:
            values = self.trials[column].dropna().unique()
            if len(values):
                return ", ".join(sorted(str(v) for v in values))
        return "unknown"

    @property
    def arm_specs(self) -> dict[str, Mapping[str, Any]]:
        """Each arm of the spec as a mapping (``{"fixed": {...}, "search": {...}}``, as
        :meth:`StudySpec.to_yaml` writes it); {} when the study file was refused."""
        if self.spec is None:
            return {}
        return {arm: spec.model_dump(mode="json") for arm, spec in self.spec.arms.items()}

    @property
    def arms(self) -> tuple[str, ...]:
        """Arm names: the spec's order first, then any arm seen only in the trials."""
        found = list(self.spec.arm_names) if self.spec is not None else []
        if len(self.trials):
            for arm in self.trials[names.ARM].dropna().astype(str).unique():
                if arm not in found:
                    found.append(arm)
        return tuple(found)

    @property
    def objectives(self) -> tuple[Objective, ...]:
        """The search objectives of the spec, else a sensible default (IWAE NLL, minimised)."""
        if self.spec is not None:
            return tuple(_objective(o.metric, o.direction) for o in self.spec.search.objectives)
        if names.metric("nll_iwae") in self.trials.columns or not len(self.trials):
            return (Objective("nll_iwae", "minimize"),)
        return (Objective("elbo", "maximize"),)

    @property
    def primary_objective(self) -> Objective:
        return self.objectives[0]

    @property
    def rank_objective(self) -> Objective:
        """The objective that orders trials within a Pareto front
        (:mod:`sweep.analysis.ranking`): the study's ``confirm.rank_by``, else its first
        objective."""
        if self.spec is not None:
            rank = self.spec.confirm_rank
            return _objective(rank.metric, rank.direction)
        return self.primary_objective

    @property
    def convergence(self) -> tuple[str, float]:
        """(metric, tolerance) of the spec's ``convergence:`` block (its defaults, those of
        :mod:`sweep.analysis.convergence`, when the block is absent or the study file was
        refused)."""
        if self.spec is None:
            return DEFAULT_CONVERGENCE_METRIC, DEFAULT_CONVERGENCE_TOLERANCE
        return self.spec.convergence.metric, self.spec.convergence.tolerance


def load_study_data(
    study_dir: Path, *, strict: bool = False, check_damage: bool = False
) -> StudyData:
    """Read a study folder through :func:`sweep.spec.load_study` and
    :class:`sweep.store.ResultsStore`.

    Raises :class:`NotAStudyFolderError` when it has no ``study.yaml``, and with
    ``check_damage`` :class:`~sweep.store.DamagedStudyError` naming every damaged file
    (:func:`sweep.integrity.damaged_files`, which reads the results through the same store).
    A study file the loader refuses becomes a warning (the loader's message, naming the file
    and line). A results file the store cannot read becomes a warning naming it and empty
    tables, or with ``strict`` the store's :class:`~sweep.store.StoreError`.
    """
    study_dir = require_study_folder(study_dir)
    opened: list[ResultsStore] = []

    def open_store(folder: Path) -> ResultsStore:
        opened.append(ResultsStore.open(folder))
        return opened[-1]

    if check_damage and (problems := damaged_files(study_dir, open_store=open_store)):
        raise DamagedStudyError(describe_damage(study_dir, problems))
    warnings: list[str] = []
    spec: StudySpec | None = None
    spec_error: StudySpecError | None = None
    try:
        spec = load_study(study_dir / names.STUDY_FILE)
    except StudySpecError as error:
        spec_error = error
        warnings.append(
            f"{names.STUDY_FILE}: refused by the study loader, so its settings are ignored "
            f"and the report goes by the trials: {error}"
        )
    try:
        store = opened[-1] if opened else ResultsStore.open(study_dir)
        trials, epochs = store.trials(), store.epochs()
    except StoreError as error:
        if strict:
            raise
        warnings.append(f"results not read: {error}")
        trials, epochs = pd.DataFrame(), pd.DataFrame()
    return StudyData(
        study_dir=study_dir,
        spec=spec,
        trials=normalise_trials(trials),
        epochs=normalise_epochs(epochs),
        warnings=tuple(warnings),
        spec_error=spec_error,
        run_record=read_run_record(study_dir),
    )


def read_run_record(folder: Path) -> dict[str, Any] | None:
    """The study's ``run.json`` as a mapping; None when it is absent or not a JSON object."""
    try:
        document = json.loads((Path(folder) / names.RUN_RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def normalise_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """Return a copy with every ``TRIAL_COLUMNS`` entry present and numeric columns as floats."""
    out = trials.copy()
    for column in TRIAL_COLUMNS:
        if column not in out.columns:
            out[column] = pd.Series([None] * len(out), index=out.index, dtype="object")
    for column in (names.ARM, names.PHASE, names.TRIAL_ID, names.STATUS):
        out[column] = _text_column(out[column])
    numeric = [names.TRAIN_SECONDS, names.EVAL_SECONDS, names.SEED]
    numeric += [c for c in out.columns if c.startswith(names.METRIC)]
    numeric += [c for c in _NUMERIC_PARAMS if c in out.columns]
    for column in numeric:
        out[column] = pd.to_numeric(out[column], errors="coerce").astype("float64")
    return out.reset_index(drop=True)


def normalise_epochs(epochs: pd.DataFrame) -> pd.DataFrame:
    """Return a copy with ``EPOCH_COLUMNS`` present and loss terms as floats."""
    out = epochs.copy()
    for column in EPOCH_COLUMNS:
        if column not in out.columns:
            out[column] = pd.Series([None] * len(out), index=out.index, dtype="object")
    for column in (names.ARM, names.TRIAL_ID):
        out[column] = _text_column(out[column])
    out[names.EPOCH] = pd.to_numeric(out[names.EPOCH], errors="coerce")
    for column in out.columns:
        if column.startswith((names.TRAIN, names.VAL)):
            out[column] = pd.to_numeric(out[column], errors="coerce").astype("float64")
    return out.reset_index(drop=True)


def whole_number(column: str, value: object) -> object:
    """``value`` of ``column`` as an ``int`` when the column holds whole numbers
    (:data:`INTEGER_COLUMNS`) and the value is one; else unchanged."""
    if column in INTEGER_COLUMNS and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _text_column(values: pd.Series) -> pd.Series:
    """Values as Python ``str`` (object dtype), missing ones as None; vectorised, since the
    epochs table has one row per trial and epoch."""
    missing = values.isna().to_numpy()
    text = values.astype(str).astype(object)
    text[missing] = None
    return text


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def hashable_param(value: Any) -> Any:
    """A hashable, comparable stand-in for a parameter value (lists and arrays become JSON)."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str | bool | int | float):
        return value
    if hasattr(value, "tolist"):  # numpy scalars and arrays (Parquet list columns)
        value = value.tolist()
        if isinstance(value, str | bool | int | float):
            return hashable_param(value)
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, sort_keys=True, default=str)
    return None if _is_missing(value) else str(value)


def flatten_mapping(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to dotted keys: {"objective": {"alpha": 0}} -> {"objective.alpha": 0}
    (a mapping of dotted keys to values).

    Keys that are already dotted are kept as they are, so both spellings of a spec work.
    """
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_mapping(value, f"{name}."))
        else:
            flat[name] = value
    return flat
