"""Read a study folder (``study.yaml``, ``trials.parquet``, ``epochs.parquet``) for the report.

The report reads the files directly with pandas so that it works on any folder the runner
left behind, finished or not: a missing or unreadable file becomes an empty table plus a
warning shown in the report, never a traceback. Column names follow the results
schema of docs/results.md (``param.<dotted key>``, ``metric.<name>``, ``train.<term>``,
``val.<term>``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml

from sweep.convergence import DEFAULT_CONVERGENCE_METRIC, DEFAULT_CONVERGENCE_TOLERANCE

Direction = Literal["minimize", "maximize"]

#: Columns every trials table has after :func:`load_study_data` (added as nulls when absent).
TRIAL_COLUMNS: tuple[str, ...] = (
    "study",
    "arm",
    "phase",
    "trial_id",
    "seed",
    "status",
    "error",
    "started_at",
    "ended_at",
    "train_seconds",
    "eval_seconds",
    "host",
    "device",
)
EPOCH_COLUMNS: tuple[str, ...] = ("study", "arm", "trial_id", "epoch")


class NotAStudyFolderError(FileNotFoundError):
    """The folder handed to the report has no ``study.yaml``."""


@dataclass(frozen=True)
class Objective:
    """One search objective: the trials column (``metric.<name>``) and its direction."""

    metric: str
    direction: Direction

    @property
    def column(self) -> str:
        return f"metric.{self.metric}"

    def better(self, a: float, b: float) -> bool:
        """Whether value ``a`` is strictly better than ``b`` (NaN is never better)."""
        if math.isnan(a):
            return False
        if math.isnan(b):
            return True
        return a < b if self.direction == "minimize" else a > b


@dataclass(frozen=True)
class StudyData:
    """Everything the report needs from one study folder, read once.

    ``trials`` has one row per trial (``TRIAL_COLUMNS`` always present, ``metric.*`` as float64);
    ``epochs`` one row per trial and epoch; ``spec`` is the raw ``study.yaml`` mapping (empty if
    it is not a mapping); ``warnings`` lists problems met while reading, shown in the report.
    """

    study_dir: Path
    spec: Mapping[str, Any]
    trials: pd.DataFrame
    epochs: pd.DataFrame
    warnings: tuple[str, ...]

    @property
    def name(self) -> str:
        value = self.spec.get("name")
        if isinstance(value, str) and value:
            return value
        names = self.trials["study"].dropna().unique() if len(self.trials) else []
        return str(names[0]) if len(names) else self.study_dir.name

    @property
    def description(self) -> str:
        value = self.spec.get("description")
        return value if isinstance(value, str) else ""

    @property
    def dataset(self) -> str:
        data = self.spec.get("data")
        if isinstance(data, Mapping) and data.get("dataset"):
            return str(data["dataset"])
        if "param.data.dataset" in self.trials.columns:
            values = self.trials["param.data.dataset"].dropna().unique()
            if len(values):
                return ", ".join(sorted(str(v) for v in values))
        return "unknown"

    @property
    def arm_specs(self) -> dict[str, Mapping[str, Any]]:
        """The ``arms`` mapping of the spec (arm name -> {fixed, search}); {} when absent."""
        arms = self.spec.get("arms")
        if isinstance(arms, Mapping):
            return {str(k): (v if isinstance(v, Mapping) else {}) for k, v in arms.items()}
        if isinstance(arms, list):  # tolerate a list of {name: ...} entries
            out: dict[str, Mapping[str, Any]] = {}
            for item in arms:
                if isinstance(item, Mapping) and "name" in item:
                    out[str(item["name"])] = item
            return out
        return {}

    @property
    def arms(self) -> tuple[str, ...]:
        """Arm names: the spec's order first, then any arm seen only in the trials."""
        names = list(self.arm_specs)
        if len(self.trials):
            for arm in self.trials["arm"].dropna().astype(str).unique():
                if arm not in names:
                    names.append(arm)
        return tuple(names)

    @property
    def objectives(self) -> tuple[Objective, ...]:
        """The search objectives of the spec, else a sensible default (IWAE NLL, minimised)."""
        search = self.spec.get("search")
        found: list[Objective] = []
        if isinstance(search, Mapping):
            raw = search.get("objectives")
            if raw is None and search.get("metric") is not None:
                raw = [{"metric": search.get("metric"), "direction": search.get("direction")}]
            if isinstance(raw, list):
                for item in raw:
                    objective = _parse_objective(item)
                    if objective is not None:
                        found.append(objective)
        if found:
            return tuple(found)
        if "metric.nll_iwae" in self.trials.columns or not len(self.trials):
            return (Objective("nll_iwae", "minimize"),)
        return (Objective("elbo", "maximize"),)

    @property
    def primary_objective(self) -> Objective:
        return self.objectives[0]

    @property
    def convergence(self) -> tuple[str, float]:
        """(metric, tolerance) of the spec's ``convergence:`` block, each falling back to the
        default (:mod:`sweep.convergence`) when absent or not usable."""
        block = self.spec.get("convergence")
        block = block if isinstance(block, Mapping) else {}
        metric = block.get("metric")
        tolerance = block.get("tolerance")
        if not (isinstance(metric, str) and metric.partition(".")[0] in ("val", "train")):
            metric = DEFAULT_CONVERGENCE_METRIC
        usable = (
            isinstance(tolerance, (int, float))
            and not isinstance(tolerance, bool)
            and math.isfinite(tolerance)
            and tolerance > 0
        )
        return metric, float(tolerance) if usable else DEFAULT_CONVERGENCE_TOLERANCE


def _parse_objective(item: Any) -> Objective | None:
    if isinstance(item, str):
        metric, direction = item, "minimize"
    elif isinstance(item, Mapping) and item.get("metric"):
        metric, direction = str(item["metric"]), str(item.get("direction") or "minimize")
    else:
        return None
    metric = metric.removeprefix("metric.")
    normalised: Direction = "maximize" if direction.lower().startswith("max") else "minimize"
    return Objective(metric, normalised)


def load_study_data(study_dir: Path) -> StudyData:
    """Read a study folder; raise :class:`NotAStudyFolderError` when it has no ``study.yaml``."""
    study_dir = Path(study_dir)
    spec_path = study_dir / "study.yaml"
    if not study_dir.is_dir():
        raise NotAStudyFolderError(f"{study_dir}: not a folder (expected a study folder)")
    if not spec_path.is_file():
        raise NotAStudyFolderError(
            f"{study_dir}: not a study folder (no study.yaml); "
            "pass the folder that `infovae-sweep run` wrote, e.g. results/<study>"
        )
    warnings: list[str] = []
    spec: Mapping[str, Any] = {}
    try:
        loaded = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
        if isinstance(loaded, Mapping):
            spec = loaded
        elif loaded is not None:
            warnings.append("study.yaml: not a mapping; study settings ignored")
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        warnings.append(f"study.yaml: could not be parsed ({exc})")
    trials = _read_parquet(study_dir / "trials.parquet", warnings)
    epochs = _read_parquet(study_dir / "epochs.parquet", warnings)
    return StudyData(
        study_dir=study_dir,
        spec=spec,
        trials=normalise_trials(trials),
        epochs=normalise_epochs(epochs),
        warnings=tuple(warnings),
    )


def _read_parquet(path: Path, warnings: list[str]) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame()
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # a damaged file must not stop the report
        warnings.append(f"{path.name}: could not be read ({type(exc).__name__}: {exc})")
        return pd.DataFrame()


def normalise_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """Return a copy with every ``TRIAL_COLUMNS`` entry present and numeric columns as floats."""
    out = trials.copy()
    for column in TRIAL_COLUMNS:
        if column not in out.columns:
            out[column] = pd.Series([None] * len(out), index=out.index, dtype="object")
    for column in ("arm", "phase", "trial_id", "status"):
        out[column] = _text_column(out[column])
    for column in ["train_seconds", "eval_seconds", "seed"] + [
        c for c in out.columns if c.startswith("metric.")
    ]:
        out[column] = pd.to_numeric(out[column], errors="coerce").astype("float64")
    for column in (
        "param.objective.lambda",
        "param.objective.alpha",
        "param.model.decoder.width",
        "param.model.decoder.depth",
        "param.model.latent_dim",
    ):
        if column in out.columns:
            out[column] = pd.to_numeric(out[column], errors="coerce").astype("float64")
    return out.reset_index(drop=True)


def normalise_epochs(epochs: pd.DataFrame) -> pd.DataFrame:
    """Return a copy with ``EPOCH_COLUMNS`` present and loss terms as floats."""
    out = epochs.copy()
    for column in EPOCH_COLUMNS:
        if column not in out.columns:
            out[column] = pd.Series([None] * len(out), index=out.index, dtype="object")
    for column in ("arm", "trial_id"):
        out[column] = _text_column(out[column])
    out["epoch"] = pd.to_numeric(out["epoch"], errors="coerce")
    for column in out.columns:
        if column.startswith(("train.", "val.")):
            out[column] = pd.to_numeric(out[column], errors="coerce").astype("float64")
    return out.reset_index(drop=True)


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
