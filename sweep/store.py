"""Results store: a folder per study with ``trials.parquet``, ``epochs.parquet``, ``study.yaml``.

Layout of ``results/<study>/`` (docs/results.md)::

    study.yaml        the study spec as run (written once, atomically)
    trials.parquet    one row per trial
    epochs.parquet    one row per (trial, epoch)
    .lock             single-writer guard (``fcntl.flock``), see :meth:`ResultsStore.lock`

``trials.parquet`` columns, in this order:

* fixed (:data:`TRIAL_SCHEMA`): ``study``, ``arm``, ``phase`` (``search``/``confirm``),
  ``trial_id``, ``attempt``, ``seed``, ``status`` (``completed``/``failed``/``stopped``),
  ``error``, ``started_at``, ``ended_at`` (``timestamp[us, tz=UTC]``), ``train_seconds``,
  ``eval_seconds`` (float64 seconds), ``host``, ``node_id``, ``device``;
* then, sorted by name, ``param.<dotted.key>`` (one per hyperparameter) and ``metric.<name>``.

``epochs.parquet`` columns: ``study``, ``arm``, ``trial_id``, ``epoch`` (:data:`EPOCH_SCHEMA`),
then, sorted, ``train.<term>`` and ``val.<term>`` (float64).

Column types of the dynamic columns:

* ``metric.*``, ``train.*``, ``val.*``: always float64 (ints are converted, None is null).
* ``param.*``: typed from the values: bool -> ``bool``, int -> ``int64``, float -> ``float64``,
  str -> ``string``; a list/tuple (e.g. ``param.objective.scales = [1.0, 2.0]``) is stored as its
  JSON text (``"[1.0, 2.0]"``) in a ``string`` column whose Arrow field metadata carries
  ``infovae.encoding = json``. JSON text was chosen over ``list<float64>`` because every reader
  (pandas, DuckDB, Polars, Plotly) can group, compare and colour by a string, while list cells
  are unhashable in pandas; decode with ``json.loads`` where the numbers are needed.
  None is null. A column that is null in every row so far takes the type of its first value.

The schema evolves as trials arrive: a new column is added with nulls for the earlier rows;
an ``int64`` column that meets a float becomes ``float64`` (lossless for hyperparameter-sized
integers); any other type change (e.g. a bool where an int was, a list where a string was) is
refused with :class:`SchemaConflictError` naming the column.

Writes are atomic: each file is written to a temporary file in the same folder, flushed,
``fsync``-ed and moved over the old one with ``os.replace``; the folder is ``fsync``-ed once
per record (so the renames are durable too). Leftover temp files of a killed writer are
removed by :meth:`ResultsStore.lock`.
:meth:`ResultsStore.record_trial` writes the epochs first, then the trial row, so a crash
between the two leaves orphan epoch rows that the next record of that trial replaces, and
that :meth:`ResultsStore.epochs` hides by default. A trial is recorded at most once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import math
import numbers
import os
import socket
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

__all__ = [
    "EPOCH_SCHEMA",
    "EPOCHS_FILE",
    "LOCK_FILE",
    "PHASES",
    "STATUSES",
    "STUDY_FILE",
    "TRIALS_FILE",
    "TRIAL_SCHEMA",
    "NotAStudyFolderError",
    "ResultsStore",
    "RowError",
    "SchemaConflictError",
    "StoreCorruptError",
    "StoreError",
    "StudyExistsError",
    "StudyLockedError",
    "StudySummary",
    "is_study_folder",
    "json_columns",
    "list_studies",
]

STUDY_FILE = "study.yaml"
TRIALS_FILE = "trials.parquet"
EPOCHS_FILE = "epochs.parquet"
LOCK_FILE = ".lock"
_TMP_PREFIX = ".tmp-"
_TMP_SUFFIX = ".partial"

PHASES: tuple[str, ...] = ("search", "confirm")
STATUSES: tuple[str, ...] = ("completed", "failed", "stopped")

_UTC_US = pa.timestamp("us", tz="UTC")

#: Fixed columns of ``trials.parquet``, in file order. ``study``, ``arm``, ``phase``,
#: ``trial_id``, ``seed`` and ``status`` are required in every row; the rest may be omitted
#: (null). ``attempt`` counts retries of the same trial (the runner decides the base).
TRIAL_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("study", pa.string(), nullable=False),
        pa.field("arm", pa.string(), nullable=False),
        pa.field("phase", pa.string(), nullable=False),
        pa.field("trial_id", pa.string(), nullable=False),
        pa.field("attempt", pa.int64()),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("started_at", _UTC_US),
        pa.field("ended_at", _UTC_US),
        pa.field("train_seconds", pa.float64()),
        pa.field("eval_seconds", pa.float64()),
        pa.field("host", pa.string()),
        pa.field("node_id", pa.string()),
        pa.field("device", pa.string()),
    ]
)
_TRIAL_REQUIRED = ("study", "arm", "phase", "trial_id", "seed", "status")
_TRIAL_PREFIXES = ("param.", "metric.")

#: Fixed columns of ``epochs.parquet``, in file order. ``study``, ``arm`` and ``trial_id`` are
#: filled from the trial row when an epoch row omits them.
EPOCH_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("study", pa.string(), nullable=False),
        pa.field("arm", pa.string(), nullable=False),
        pa.field("trial_id", pa.string(), nullable=False),
        pa.field("epoch", pa.int64(), nullable=False),
    ]
)
_EPOCH_PREFIXES = ("train.", "val.")

_JSON_KEY = b"infovae.encoding"
_JSON_META = {_JSON_KEY: b"json"}
# Rewriting a table made of thousands of one-trial chunks is slower than one contiguous chunk.
_MAX_CHUNKS = 16


# --------------------------------------------------------------------------------------------
# Errors


class StoreError(Exception):
    """Base class of the results store's errors."""


class NotAStudyFolderError(StoreError):
    """The path is not a study folder (no such directory, or no ``study.yaml`` in it)."""


class StudyExistsError(StoreError):
    """``create`` met a folder that already holds a different study (or other files)."""


class StudyLockedError(StoreError):
    """Another driver holds the study's lock."""


class StoreCorruptError(StoreError):
    """A store file cannot be read or does not have the store's schema; names the file."""


class RowError(StoreError, ValueError):
    """A trial or epoch row is malformed; the message names the column."""


class SchemaConflictError(RowError):
    """A column received a value whose type conflicts with the column's type."""


# --------------------------------------------------------------------------------------------
# Value conversion


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def _to_jsonable(value: Any, column: str) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _to_jsonable(v, column) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_jsonable(v, column) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):  # numpy arrays/scalars
        return _to_jsonable(value.tolist(), column)
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if _is_int(value):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise RowError(f"{column}: cannot store {type(value).__name__} value {value!r} in a list")


def _param_value(column: str, value: Any) -> tuple[Any, pa.DataType, bool]:
    """Python value -> (stored value, Arrow type, is-json) for a ``param.*`` column."""
    if value is None:
        return None, pa.float64(), False  # type unknown yet: any later type may take the column
    if isinstance(value, bool | np.bool_):
        return bool(value), pa.bool_(), False
    if _is_int(value):
        return int(value), pa.int64(), False
    if isinstance(value, numbers.Real):
        return float(value), pa.float64(), False
    if isinstance(value, str):
        return value, pa.string(), False
    if isinstance(value, list | tuple | Mapping) or (
        hasattr(value, "tolist") and getattr(value, "ndim", 0) > 0
    ):
        try:
            text = json.dumps(_to_jsonable(value, column), allow_nan=False, sort_keys=True)
        except ValueError as exc:
            raise RowError(f"{column}: cannot store {value!r} as JSON ({exc})") from exc
        return text, pa.string(), True
    if hasattr(value, "item"):  # numpy scalar of another kind
        return _param_value(column, value.item())
    raise RowError(
        f"{column}: unsupported value {value!r} of type {type(value).__name__} "
        "(use bool, int, float, str, a list of those, or None)"
    )


def _float_value(column: str, value: Any) -> float | None:
    if value is None or type(value) is float:  # fast path: thousands of epoch values per trial
        return value
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise RowError(f"{column}: must be a number or None, got {value!r}")
    return float(value)


def _timestamp(column: str, value: Any) -> dt.datetime | None:
    """Aware datetime, epoch seconds (UTC) or ISO 8601 text with offset -> aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise RowError(f"{column}: not an ISO 8601 timestamp: {value!r}") from exc
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise RowError(
                f"{column}: timestamp {value.isoformat()} has no time zone; pass an aware "
                "datetime (e.g. datetime.now(timezone.utc)) or epoch seconds"
            )
        return value.astimezone(dt.timezone.utc)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if not math.isfinite(float(value)):
            raise RowError(f"{column}: timestamp must be finite, got {value!r}")
        return dt.datetime.fromtimestamp(float(value), tz=dt.timezone.utc)
    raise RowError(f"{column}: expected a datetime, epoch seconds or ISO text, got {value!r}")


def _text(column: str, value: Any, *, required: bool) -> str | None:
    if value is None:
        if required:
            raise RowError(f"{column}: required, got None")
        return None
    if not isinstance(value, str):
        raise RowError(f"{column}: must be a string, got {value!r}")
    if required and not value:
        raise RowError(f"{column}: must not be empty")
    return value


def _int_value(column: str, value: Any, *, required: bool) -> int | None:
    if value is None:
        if required:
            raise RowError(f"{column}: required, got None")
        return None
    if not _is_int(value):
        raise RowError(f"{column}: must be an integer, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------
# Row -> one-row Arrow table


def _trial_table(row: Mapping[str, Any]) -> pa.Table:
    """Validate one trial row and return it as a one-row table (fixed columns, then sorted)."""
    missing = [key for key in _TRIAL_REQUIRED if key not in row]
    if missing:
        raise RowError(f"trial row lacks required column(s): {', '.join(missing)}")
    unknown = [
        key for key in row if key not in TRIAL_SCHEMA.names and not key.startswith(_TRIAL_PREFIXES)
    ]
    if unknown:
        raise RowError(
            f"trial row has unknown column(s) {', '.join(sorted(unknown))}; allowed: "
            f"{', '.join(TRIAL_SCHEMA.names)}, param.<key>, metric.<name>"
        )
    values: dict[str, Any] = {}
    for name in ("study", "arm", "phase", "trial_id", "status"):
        values[name] = _text(name, row[name], required=True)
    for name in ("error", "host", "node_id", "device"):
        values[name] = _text(name, row.get(name), required=False)
    if values["phase"] not in PHASES:
        raise RowError(f"phase: must be one of {list(PHASES)}, got {values['phase']!r}")
    if values["status"] not in STATUSES:
        raise RowError(f"status: must be one of {list(STATUSES)}, got {values['status']!r}")
    values["seed"] = _int_value("seed", row["seed"], required=True)
    values["attempt"] = _int_value("attempt", row.get("attempt"), required=False)
    for name in ("started_at", "ended_at"):
        values[name] = _timestamp(name, row.get(name))
    for name in ("train_seconds", "eval_seconds"):
        values[name] = _float_value(name, row.get(name))

    fields = list(TRIAL_SCHEMA)
    arrays = [pa.array([values[f.name]], type=f.type) for f in fields]
    for name in sorted(k for k in row if k.startswith(_TRIAL_PREFIXES)):
        if name in ("param.", "metric."):
            raise RowError(f"{name!r}: column name needs a key after the prefix")
        if name.startswith("metric."):
            value, typ, is_json = _float_value(name, row[name]), pa.float64(), False
        else:
            value, typ, is_json = _param_value(name, row[name])
        fields.append(pa.field(name, typ, metadata=_JSON_META if is_json else None))
        arrays.append(pa.array([value], type=typ))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _epoch_table(trial: Mapping[str, Any], epochs: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Validate the epoch rows of one trial and return them as a table."""
    ident = {name: trial[name] for name in ("study", "arm", "trial_id")}
    columns: dict[str, list[Any]] = {name: [] for name in EPOCH_SCHEMA.names}
    metric_names = sorted({key for rec in epochs for key in rec if key.startswith(_EPOCH_PREFIXES)})
    for name in metric_names:
        if name in _EPOCH_PREFIXES:
            raise RowError(f"{name!r}: column name needs a term after the prefix")
        columns[name] = []
    seen: set[int] = set()
    for index, rec in enumerate(epochs):
        if not isinstance(rec, Mapping):
            raise RowError(f"epochs[{index}]: must be a dict, got {type(rec).__name__}")
        unknown = [
            k for k in rec if k not in EPOCH_SCHEMA.names and not k.startswith(_EPOCH_PREFIXES)
        ]
        if unknown:
            raise RowError(
                f"epochs[{index}]: unknown column(s) {', '.join(sorted(unknown))}; allowed: "
                f"{', '.join(EPOCH_SCHEMA.names)}, train.<term>, val.<term>"
            )
        for name, expected in ident.items():
            if name in rec and rec[name] != expected:
                raise RowError(
                    f"epochs[{index}].{name}: {rec[name]!r} differs from the trial's {expected!r}"
                )
            columns[name].append(expected)
        if "epoch" not in rec:
            raise RowError(f"epochs[{index}]: lacks required column epoch")
        epoch = _int_value(f"epochs[{index}].epoch", rec["epoch"], required=True)
        if epoch in seen:
            raise RowError(f"epochs[{index}].epoch: epoch {epoch} appears twice for this trial")
        seen.add(epoch)
        columns["epoch"].append(epoch)
        for name in metric_names:
            columns[name].append(_float_value(f"epochs[{index}].{name}", rec.get(name)))
    fields = list(EPOCH_SCHEMA) + [pa.field(name, pa.float64()) for name in metric_names]
    arrays = [pa.array(columns[f.name], type=f.type) for f in fields]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


# --------------------------------------------------------------------------------------------
# Schema evolution


def _is_json(field: pa.Field) -> bool:
    return bool(field.metadata) and field.metadata.get(_JSON_KEY) == b"json"


def _kind(field: pa.Field) -> str:
    return "json list" if _is_json(field) else str(field.type)


def _all_null(table: pa.Table, name: str) -> bool:
    column = table.column(name)
    return column.null_count == len(column)


def _merge_field(
    name: str, old: pa.Field, old_table: pa.Table, new: pa.Field, new_table: pa.Table, where: str
) -> pa.Field:
    """Resolve the type of a column present in both tables (see the module docstring)."""
    if old.type == new.type and _is_json(old) == _is_json(new):
        return old
    if _all_null(new_table, name):
        return old
    if _all_null(old_table, name):
        return new
    if {old.type, new.type} == {pa.int64(), pa.float64()}:
        return pa.field(name, pa.float64())
    raise SchemaConflictError(
        f"{name}: {where} has a {_kind(new)} value but the column holds {_kind(old)} values; "
        "a column must keep one type"
    )


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Reorder, cast and null-fill ``table`` to ``schema`` (which covers all its columns)."""
    if table.schema.equals(schema, check_metadata=True):
        return table
    arrays = []
    for field in schema:
        if field.name in table.column_names:
            column = table.column(field.name)
            arrays.append(column if column.type == field.type else column.cast(field.type))
        else:
            arrays.append(pa.nulls(table.num_rows, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _append(old: pa.Table, new: pa.Table, fixed: pa.Schema, where: str) -> pa.Table:
    """``old`` + ``new`` under the union schema: fixed columns first, then dynamic ones sorted."""
    old_fields = {f.name: f for f in old.schema}
    new_fields = {f.name: f for f in new.schema}
    dynamic: dict[str, pa.Field] = {}
    for name in sorted((set(old_fields) | set(new_fields)) - set(fixed.names)):
        if name not in old_fields:
            dynamic[name] = new_fields[name]
        elif name not in new_fields:
            dynamic[name] = old_fields[name]
        else:
            dynamic[name] = _merge_field(name, old_fields[name], old, new_fields[name], new, where)
    schema = pa.schema(list(fixed) + list(dynamic.values()))
    merged = pa.concat_tables([_conform(old, schema), _conform(new, schema)])
    if merged.column(0).num_chunks > _MAX_CHUNKS:
        merged = merged.combine_chunks()
    return merged


# --------------------------------------------------------------------------------------------
# Files


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform/file system allows it.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write(path: Path, write: Any, *, sync_dir: bool = True) -> None:
    """Write ``path`` via a temp file in the same folder: ``write(fileobj)``, fsync, replace.

    ``sync_dir=False`` leaves the folder's fsync (which makes the rename durable) to the
    caller, so that several files replaced together cost one folder sync.
    """
    fd, tmp_name = tempfile.mkstemp(
        dir=path.parent, prefix=f"{_TMP_PREFIX}{path.name}.", suffix=_TMP_SUFFIX
    )
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if sync_dir:
        _fsync_dir(path.parent)


def _write_table(path: Path, table: pa.Table, *, sync_dir: bool = True) -> None:
    # Dictionary-encode only the string columns: on float columns (losses, metrics) dictionary
    # encoding rarely pays and made rewriting a 100k-row epochs file about 3x slower.
    strings = [f.name for f in table.schema if pa.types.is_string(f.type)]
    _atomic_write(
        path,
        lambda handle: pq.write_table(table, handle, use_dictionary=strings),
        sync_dir=sync_dir,
    )


def _write_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def _read_table(path: Path, fixed: pa.Schema, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a store file and check its fixed columns; any failure names the file."""
    try:
        table = pq.read_table(path, columns=list(columns) if columns else None)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise StoreCorruptError(f"{path}: not a readable Parquet file ({exc})") from exc
    names = table.column_names
    # Files rewritten by other tools (pandas writes large_string) are read back to our types.
    for index, name in enumerate(names):
        if pa.types.is_large_string(table.schema.field(name).type):
            field = table.schema.field(name).with_type(pa.string())
            table = table.set_column(index, field, table.column(name).cast(pa.string()))
    for field in fixed:
        if columns is not None and field.name not in columns:
            continue
        if field.name not in names:
            if field.nullable and field.name not in _TRIAL_REQUIRED:
                # An optional column (e.g. attempt, node_id) absent from a file written
                # elsewhere to the schema of docs/results.md: read as nulls.
                table = table.append_column(field, pa.nulls(table.num_rows, field.type))
                names = table.column_names
                continue
            raise StoreCorruptError(f"{path}: lacks the required column {field.name!r}")
        actual = table.schema.field(field.name).type
        if actual != field.type:
            try:
                converted = table.column(field.name).cast(field.type, safe=True)
            except (pa.ArrowException, ValueError):
                raise StoreCorruptError(
                    f"{path}: column {field.name!r} has type {actual}, expected {field.type}"
                ) from None
            position = names.index(field.name)
            table = table.set_column(position, field.with_nullable(True), converted)
    if columns is None:
        # Restore the canonical column order (fixed first, dynamic sorted).
        order = fixed.names + sorted(n for n in names if n not in fixed.names)
        table = table.select(order)
        fields = [fixed.field(n) if n in fixed.names else table.schema.field(n) for n in order]
        table = pa.Table.from_arrays(table.columns, schema=pa.schema(fields))
    return table


def _empty(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()


def _parse_yaml(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def is_study_folder(path: Path | str) -> bool:
    """True when ``path`` is a directory holding a ``study.yaml``."""
    path = Path(path)
    return path.is_dir() and (path / STUDY_FILE).is_file()


def json_columns(schema: pa.Schema) -> list[str]:
    """Names of the ``param.*`` columns that hold JSON text (list-valued hyperparameters)."""
    return [field.name for field in schema if _is_json(field)]


# --------------------------------------------------------------------------------------------
# The store


class ResultsStore:
    """Trials and epochs of one study folder, kept in memory and rewritten atomically per record.

    Build with :meth:`create` (new study, or the same study again) or :meth:`open` (existing).
    Each :meth:`record_trial` rewrites ``epochs.parquet`` (when the trial has epochs) and then
    ``trials.parquet`` once from the in-memory tables. Only one process should write a study:
    hold :meth:`lock` while recording. Methods are thread-safe within one process.
    """

    def __init__(self, folder: Path, trials: pa.Table, epochs: pa.Table) -> None:
        """Use :meth:`create` or :meth:`open`."""
        self.folder = folder
        self._trials = trials
        self._epochs = epochs
        self._mutex = threading.RLock()
        self._lock_handle: Any = None
        self._index()

    # ---- construction ------------------------------------------------------------------

    @classmethod
    def create(
        cls, folder: Path | str, study_yaml_text: str, *, reuse: bool = False
    ) -> ResultsStore:
        """Make (or re-enter) a study folder and write ``study.yaml``; returns the open store.

        A missing or empty folder is created and given ``study.yaml`` and empty
        ``trials.parquet``/``epochs.parquet`` (so readers can open them at once). A folder
        already holding the same study (equal YAML after parsing) is opened as it is. A folder
        holding a different study, or other files without a ``study.yaml``, is refused with
        :class:`StudyExistsError` unless ``reuse=True``, in which case its results are kept and
        ``study.yaml`` is replaced by ``study_yaml_text``.
        """
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise StudyExistsError(f"{folder}: exists and is not a directory")
        folder.mkdir(parents=True, exist_ok=True)
        study_file = folder / STUDY_FILE
        if study_file.is_file():
            existing = study_file.read_text(encoding="utf-8")
            same = existing == study_yaml_text or (
                _parse_yaml(existing) is not None
                and _parse_yaml(existing) == _parse_yaml(study_yaml_text)
            )
            if not same:
                if not reuse:
                    raise StudyExistsError(
                        f"{folder}: already holds a different study ({study_file} differs); "
                        "choose another output folder, or reuse it explicitly"
                    )
                _write_text(study_file, study_yaml_text)
        else:
            others = [p.name for p in folder.iterdir() if p.name != LOCK_FILE]
            if others and not reuse:
                raise StudyExistsError(
                    f"{folder}: exists, is not empty ({', '.join(sorted(others)[:5])}) and has "
                    f"no {STUDY_FILE}; choose another output folder, or reuse it explicitly"
                )
            _write_text(study_file, study_yaml_text)
        for name, schema in ((TRIALS_FILE, TRIAL_SCHEMA), (EPOCHS_FILE, EPOCH_SCHEMA)):
            if not (folder / name).exists():
                _write_table(folder / name, _empty(schema))
        return cls.open(folder)

    @classmethod
    def open(cls, folder: Path | str) -> ResultsStore:
        """Open an existing study folder, reading both tables into memory.

        Raises :class:`NotAStudyFolderError` (naming the path) when ``folder`` does not exist
        or has no ``study.yaml``, and :class:`StoreCorruptError` (naming the file) when a
        Parquet file cannot be read or lacks the fixed columns.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise NotAStudyFolderError(f"{folder}: no such study folder")
        if not (folder / STUDY_FILE).is_file():
            raise NotAStudyFolderError(f"{folder}: not a study folder (no {STUDY_FILE} in it)")
        trials, epochs = cls._load(folder)
        return cls(folder, trials, epochs)

    @staticmethod
    def _load(folder: Path) -> tuple[pa.Table, pa.Table]:
        trials_path, epochs_path = folder / TRIALS_FILE, folder / EPOCHS_FILE
        trials = (
            _read_table(trials_path, TRIAL_SCHEMA) if trials_path.exists() else _empty(TRIAL_SCHEMA)
        )
        epochs = (
            _read_table(epochs_path, EPOCH_SCHEMA) if epochs_path.exists() else _empty(EPOCH_SCHEMA)
        )
        ids = trials.column("trial_id").to_pylist()
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise StoreCorruptError(f"{trials_path}: trial_id(s) recorded twice: {dup[:5]}")
        return trials, epochs

    def _index(self) -> None:
        self._recorded = set(self._trials.column("trial_id").to_pylist())
        self._epoch_ids = set(self._epochs.column("trial_id").to_pylist())

    def reload(self) -> None:
        """Re-read both files from disk (e.g. after another process wrote them)."""
        with self._mutex:
            self._trials, self._epochs = self._load(self.folder)
            self._index()

    # ---- paths -------------------------------------------------------------------------

    @property
    def trials_path(self) -> Path:
        """``<folder>/trials.parquet``."""
        return self.folder / TRIALS_FILE

    @property
    def epochs_path(self) -> Path:
        """``<folder>/epochs.parquet``."""
        return self.folder / EPOCHS_FILE

    @property
    def study_path(self) -> Path:
        """``<folder>/study.yaml``."""
        return self.folder / STUDY_FILE

    def study_yaml(self) -> str:
        """The text of ``study.yaml``."""
        return self.study_path.read_text(encoding="utf-8")

    # ---- writing -----------------------------------------------------------------------

    def record_trial(self, row: Mapping[str, Any], epochs: Sequence[Mapping[str, Any]]) -> bool:
        """Record one finished trial and its epochs; False (nothing written) if already recorded.

        ``row`` holds the fixed trial columns (:data:`TRIAL_SCHEMA`; ``study``, ``arm``,
        ``phase``, ``trial_id``, ``seed``, ``status`` required), ``param.<key>`` and
        ``metric.<name>`` entries. Timestamps are aware datetimes, epoch seconds (UTC) or ISO
        text with an offset. ``epochs`` holds one dict per epoch: ``epoch`` plus ``train.<term>``
        and ``val.<term>`` floats (``study``/``arm``/``trial_id`` are taken from ``row``).

        Order of writes: ``epochs.parquet`` first (replacing any earlier, orphan, epoch rows of
        this trial), then ``trials.parquet``; the folder is fsync-ed before returning, so a
        recorded trial is durable. Raises :class:`RowError` for malformed input and
        :class:`SchemaConflictError` for a type clash, in both cases before writing anything.
        """
        with self._mutex:
            trial_id = row.get("trial_id")
            if isinstance(trial_id, str) and trial_id in self._recorded:
                return False
            where = f"trial {trial_id!r}"
            new_trial = _trial_table(row)
            study = new_trial.column("study")[0].as_py()
            if self._trials.num_rows:
                known = self._trials.column("study")[0].as_py()
                if study != known:
                    raise RowError(f"study: {where} says {study!r} but this store holds {known!r}")
            new_epochs = _epoch_table(row, epochs)
            # Build both tables before writing, so a schema conflict writes nothing at all.
            trials = _append(self._trials, new_trial, TRIAL_SCHEMA, where)
            epoch_table = self._epochs
            if trial_id in self._epoch_ids:
                keep = pc.not_equal(epoch_table.column("trial_id"), trial_id)
                epoch_table = epoch_table.filter(keep)
            if new_epochs.num_rows:
                epoch_table = _append(epoch_table, new_epochs, EPOCH_SCHEMA, where)

            if epoch_table is not self._epochs:
                _write_table(self.epochs_path, epoch_table, sync_dir=False)
                self._epochs = epoch_table
                if new_epochs.num_rows:
                    self._epoch_ids.add(trial_id)
                else:
                    self._epoch_ids.discard(trial_id)
            _write_table(self.trials_path, trials, sync_dir=False)
            self._trials = trials
            self._recorded.add(trial_id)
            # One folder sync for both renames (a folder fsync costs more than the file
            # fsyncs on ext4: it commits the journal): the record is durable on return.
            _fsync_dir(self.folder)
            return True

    # ---- reading -----------------------------------------------------------------------

    def trials_table(self) -> pa.Table:
        """The trials as an Arrow table (the in-memory copy; do not mutate)."""
        return self._trials

    def epochs_table(self, recorded_only: bool = True) -> pa.Table:
        """The epochs as an Arrow table, by default only those of recorded trials."""
        with self._mutex:
            table = self._epochs
            if recorded_only and not self._epoch_ids <= self._recorded:
                recorded = pa.array(sorted(self._recorded), type=pa.string())
                mask = pc.is_in(table.column("trial_id"), value_set=recorded)
                table = table.filter(mask)
            return table

    def trials(self) -> pd.DataFrame:
        """One row per recorded trial, columns as in ``trials.parquet``."""
        return self._trials.to_pandas()

    def epochs(self, recorded_only: bool = True) -> pd.DataFrame:
        """One row per (trial, epoch); ``recorded_only`` hides orphans of unrecorded trials."""
        return self.epochs_table(recorded_only).to_pandas()

    def recorded_trial_ids(self) -> set[str]:
        """Ids of every trial with a row in ``trials.parquet`` (any status)."""
        with self._mutex:
            return set(self._recorded)

    def completed_trial_ids(self) -> set[str]:
        """Ids of the recorded trials with ``status == 'completed'``."""
        with self._mutex:
            mask = pc.equal(self._trials.column("status"), "completed")
            return set(self._trials.filter(mask).column("trial_id").to_pylist())

    def __len__(self) -> int:
        return self._trials.num_rows

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.folder)!r}, trials={self._trials.num_rows})"

    # ---- single writer -----------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[ResultsStore]:
        """Hold the study's single-writer lock (``fcntl.flock`` on ``<folder>/.lock``).

        Raises :class:`StudyLockedError` at once (no waiting) when another open file
        description holds it, e.g. a second driver running the same study. On entry, leftover
        temp files of a crashed writer are removed and the tables are re-read from disk, so
        the store sees every row written before the lock was taken. The lock is released on
        exit (and by the OS if the process dies).
        """
        path = self.folder / LOCK_FILE
        handle = open(path, "a+")  # held open for the lock's lifetime
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown process"
            handle.close()
            raise StudyLockedError(
                f"{self.folder}: study is in use by another driver ({holder}); "
                f"wait for it to finish or stop it (lock file {path})"
            ) from None
        except BaseException:
            handle.close()
            raise
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
            handle.flush()
            self._lock_handle = handle
            self._remove_temp_files()
            self.reload()
            yield self
        finally:
            self._lock_handle = None
            with contextlib.suppress(OSError):
                handle.seek(0)
                handle.truncate()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()

    def _remove_temp_files(self) -> None:
        for path in self.folder.glob(f"{_TMP_PREFIX}*{_TMP_SUFFIX}"):
            with contextlib.suppress(OSError):
                path.unlink()


# --------------------------------------------------------------------------------------------
# Listing


@dataclass(frozen=True)
class StudySummary:
    """One study folder as ``infovae-sweep ls`` shows it.

    ``by_status``/``by_phase`` count trials per status/phase; ``by_phase_status`` maps
    ``(phase, status)`` to a count. ``updated_at`` is the latest ``ended_at`` (UTC) or None.
    ``error`` is set (and the counts are empty) when the folder's files cannot be read.
    """

    name: str
    path: Path
    n_trials: int
    by_status: dict[str, int]
    by_phase: dict[str, int]
    by_phase_status: dict[tuple[str, str], int]
    arms: tuple[str, ...]
    updated_at: dt.datetime | None = None
    error: str | None = None


def _summarise(path: Path) -> StudySummary:
    columns = ["arm", "phase", "status", "ended_at"]
    trials_path = path / TRIALS_FILE
    try:
        table = (
            _read_table(trials_path, TRIAL_SCHEMA, columns)
            if trials_path.exists()
            else _empty(TRIAL_SCHEMA).select(columns)
        )
    except StoreCorruptError as exc:
        return StudySummary(path.name, path, 0, {}, {}, {}, (), None, str(exc))
    arms = table.column("arm").to_pylist()
    phases = table.column("phase").to_pylist()
    statuses = table.column("status").to_pylist()
    by_status: dict[str, int] = {}
    by_phase: dict[str, int] = {}
    by_pair: dict[tuple[str, str], int] = {}
    for phase, status in zip(phases, statuses, strict=True):
        by_status[status] = by_status.get(status, 0) + 1
        by_phase[phase] = by_phase.get(phase, 0) + 1
        by_pair[(phase, status)] = by_pair.get((phase, status), 0) + 1
    ended = [t for t in table.column("ended_at").to_pylist() if t is not None]
    return StudySummary(
        name=path.name,
        path=path,
        n_trials=table.num_rows,
        by_status=by_status,
        by_phase=by_phase,
        by_phase_status=by_pair,
        arms=tuple(dict.fromkeys(arms)),
        updated_at=max(ended) if ended else None,
    )


def list_studies(root: Path | str) -> list[StudySummary]:
    """Summaries of the study folders directly under ``root``, sorted by name.

    Folders without ``study.yaml`` are skipped; a missing ``root`` gives an empty list. A study
    whose ``trials.parquet`` is unreadable is listed with ``error`` set rather than raising, so
    one broken folder does not hide the others.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    return [
        _summarise(path)
        for path in sorted(root.iterdir(), key=lambda p: p.name)
        if is_study_folder(path)
    ]
