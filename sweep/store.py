"""Results store: a folder per study with ``trials.parquet``, ``epochs.parquet``, ``study.yaml``.

Layout of ``results/<study>/`` (docs/results.md)::

    study.yaml        the study spec as run (written once, atomically)
    trials.parquet    one row per trial
    epochs.parquet    one row per (trial, epoch)
    .lock             single-writer guard (``fcntl.flock``), see :meth:`ResultsStore.lock`
    .parts/           trials recorded since the last compaction (see "Recording" below)

``trials.parquet`` columns, in this order:

* fixed (:data:`TRIAL_SCHEMA`): ``study``, ``arm``, ``phase`` (``search``/``confirm``),
  ``trial_id``, ``attempt``, ``resumed_from_epoch``, ``seed``, ``status``
  (``completed``/``failed``/``stopped``), ``error``, ``started_at``, ``ended_at``
  (``timestamp[us, tz=UTC]``), ``train_seconds``,
  ``eval_seconds`` (float64 seconds), ``host``, ``node_id``, ``device``, ``copy_of``
  (null, or the ``trial_id`` of the completed trial whose configuration, seed included, this
  search trial repeated: it was not trained again, its metrics and epochs are the original's,
  its ``train_seconds``/``eval_seconds`` are 0);
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

Recording and compaction. Rewriting both files on every recorded trial made the cost of a
record grow with the number of trials already recorded (the square of the trial count over a
study). Instead, :meth:`ResultsStore.record_trial` appends each trial as two small part files,
``.parts/epochs-<seq>.parquet`` then ``.parts/trials-<seq>.parquet`` (``seq`` increasing), and
:meth:`ResultsStore.compact` folds the parts into ``trials.parquet`` and ``epochs.parquet``
lazily: when the writer's lock is taken and released (so both files hold every row whenever
no driver runs), on demand, and from recording at most every ``COMPACT_INTERVAL_S`` seconds.
Each main file carries, in its schema metadata (``infovae.parts_through``), the last part
number folded into it; readers through :class:`ResultsStore` read the main files plus the parts
above that number, so they always see every recorded row exactly once. Direct readers of the
Parquet files (pandas, pyarrow, DuckDB, Polars) see the rows up to the last compaction.

Every write is atomic (:func:`sweep.files.atomic_write`: temp file, fsync, rename, folder
fsync). Why no row is lost or written twice whatever dies when:

* killed before the trial part's rename: the record did not happen (the runner trains that
  trial again on resume); an epochs part without its trial part is an orphan that readers
  ignore and the next lock removes;
* killed after it: the part is durable and read by every reader;
* killed during compaction before a main file's rename: the old main file and the parts stand;
* killed after the renames, before the parts are unlinked: the parts are at or below the main
  files' number, so readers skip them (and the next lock removes them).

A trial is recorded at most once. Leftover temp files of a killed writer are removed by
:meth:`ResultsStore.lock`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import math
import numbers
import os
import re
import socket
import threading
import time
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

from sweep import names
from sweep.files import TMP_PREFIX, atomic_write, atomic_write_bytes, fsync_dir, remove_temp_files

__all__ = [
    "EPOCH_SCHEMA",
    "EPOCHS_FILE",
    "LOCK_FILE",
    "PARTS_DIR",
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

# File names and columns are defined once in sweep.names (re-exported here for callers).
STUDY_FILE = names.STUDY_FILE
TRIALS_FILE = names.TRIALS_FILE
EPOCHS_FILE = names.EPOCHS_FILE
LOCK_FILE = names.LOCK_FILE
#: Folder of the part files (one pair per recorded trial) not yet folded into the main files.
PARTS_DIR = names.PARTS_DIR
_PART_RE = re.compile(r"^(trials|epochs)-(\d{10})\.parquet$")
#: Schema metadata key of a main file: the last part sequence number folded into it.
_THROUGH_KEY = b"infovae.parts_through"
#: Least seconds between compactions triggered by recording (see ResultsStore).
COMPACT_INTERVAL_S = 10.0
#: A compaction waits at least this many times its own last duration after it, so compaction
#: (O(rows)) takes at most about 1/COMPACT_SPACING of a long study's wall time.
COMPACT_SPACING = 50.0

PHASES: tuple[str, ...] = names.PHASES
STATUSES: tuple[str, ...] = names.STATUSES

_UTC_US = pa.timestamp("us", tz="UTC")

#: Fixed columns of ``trials.parquet``, in file order. ``study``, ``arm``, ``phase``,
#: ``trial_id``, ``seed`` and ``status`` are required in every row; the rest may be omitted
#: (null). ``attempt`` counts retries of the same trial (the runner decides the base);
#: ``resumed_from_epoch`` is the epoch of the checkpoint a retried trial resumed from, 0 when it
#: started fresh (also for rows and files that lack it: :data:`_ZERO_WHEN_MISSING`);
#: ``copy_of`` names the original of a search trial that repeated a completed configuration.
TRIAL_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field(names.STUDY, pa.string(), nullable=False),
        pa.field(names.ARM, pa.string(), nullable=False),
        pa.field(names.PHASE, pa.string(), nullable=False),
        pa.field(names.TRIAL_ID, pa.string(), nullable=False),
        pa.field(names.ATTEMPT, pa.int64()),
        pa.field(names.RESUMED_FROM_EPOCH, pa.int64()),
        pa.field(names.SEED, pa.int64(), nullable=False),
        pa.field(names.STATUS, pa.string(), nullable=False),
        pa.field(names.ERROR, pa.string()),
        pa.field(names.STARTED_AT, _UTC_US),
        pa.field(names.ENDED_AT, _UTC_US),
        pa.field(names.TRAIN_SECONDS, pa.float64()),
        pa.field(names.EVAL_SECONDS, pa.float64()),
        pa.field(names.HOST, pa.string()),
        pa.field(names.NODE_ID, pa.string()),
        pa.field(names.DEVICE, pa.string()),
        pa.field(names.COPY_OF, pa.string()),
    ]
)
_TRIAL_REQUIRED = (
    names.STUDY,
    names.ARM,
    names.PHASE,
    names.TRIAL_ID,
    names.SEED,
    names.STATUS,
)
_TRIAL_PREFIXES = (names.PARAM, names.METRIC)
#: Optional columns whose absence (a row without it, a file written before the column existed)
#: means 0 rather than unknown.
_ZERO_WHEN_MISSING = (names.RESUMED_FROM_EPOCH,)

#: Fixed columns of ``epochs.parquet``, in file order. ``study``, ``arm`` and ``trial_id`` are
#: filled from the trial row when an epoch row omits them.
EPOCH_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field(names.STUDY, pa.string(), nullable=False),
        pa.field(names.ARM, pa.string(), nullable=False),
        pa.field(names.TRIAL_ID, pa.string(), nullable=False),
        pa.field(names.EPOCH, pa.int64(), nullable=False),
    ]
)
_EPOCH_PREFIXES = (names.TRAIN, names.VAL)

_JSON_KEY = b"infovae.encoding"
_JSON_META = {_JSON_KEY: b"json"}


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
    for name in (names.STUDY, names.ARM, names.PHASE, names.TRIAL_ID, names.STATUS):
        values[name] = _text(name, row[name], required=True)
    for name in (names.ERROR, names.HOST, names.NODE_ID, names.DEVICE, names.COPY_OF):
        values[name] = _text(name, row.get(name), required=False)
    if values[names.PHASE] not in PHASES:
        raise RowError(f"phase: must be one of {list(PHASES)}, got {values['phase']!r}")
    if values[names.STATUS] not in STATUSES:
        raise RowError(f"status: must be one of {list(STATUSES)}, got {values['status']!r}")
    values[names.SEED] = _int_value(names.SEED, row[names.SEED], required=True)
    values[names.ATTEMPT] = _int_value(names.ATTEMPT, row.get(names.ATTEMPT), required=False)
    resumed = _int_value(
        names.RESUMED_FROM_EPOCH, row.get(names.RESUMED_FROM_EPOCH), required=False
    )
    if resumed is not None and resumed < 0:
        raise RowError(f"{names.RESUMED_FROM_EPOCH}: must be >= 0, got {resumed}")
    values[names.RESUMED_FROM_EPOCH] = resumed or 0
    for name in (names.STARTED_AT, names.ENDED_AT):
        values[name] = _timestamp(name, row.get(name))
    for name in (names.TRAIN_SECONDS, names.EVAL_SECONDS):
        values[name] = _float_value(name, row.get(name))

    fields = list(TRIAL_SCHEMA)
    arrays = [pa.array([values[f.name]], type=f.type) for f in fields]
    for name in sorted(k for k in row if k.startswith(_TRIAL_PREFIXES)):
        if name in _TRIAL_PREFIXES:
            raise RowError(f"{name!r}: column name needs a key after the prefix")
        if name.startswith(names.METRIC):
            value, typ, is_json = _float_value(name, row[name]), pa.float64(), False
        else:
            value, typ, is_json = _param_value(name, row[name])
        fields.append(pa.field(name, typ, metadata=_JSON_META if is_json else None))
        arrays.append(pa.array([value], type=typ))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _epoch_table(trial: Mapping[str, Any], epochs: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Validate the epoch rows of one trial and return them as a table."""
    ident = {name: trial[name] for name in (names.STUDY, names.ARM, names.TRIAL_ID)}
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
        if names.EPOCH not in rec:
            raise RowError(f"epochs[{index}]: lacks required column epoch")
        epoch = _int_value(f"epochs[{index}].epoch", rec["epoch"], required=True)
        if epoch in seen:
            raise RowError(f"epochs[{index}].epoch: epoch {epoch} appears twice for this trial")
        seen.add(epoch)
        columns[names.EPOCH].append(epoch)
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


#: A column of the union schema: its field and whether every row so far is null in it (a
#: null-only column takes the type of its first value, see the module docstring).
_Column = tuple[pa.Field, bool]


def _merge_field(
    name: str, old: pa.Field, old_null: bool, new: pa.Field, new_null: bool, where: str
) -> pa.Field:
    """Resolve the type of a column present on both sides (see the module docstring)."""
    if old.type == new.type and _is_json(old) == _is_json(new):
        return old
    if new_null:
        return old
    if old_null:
        return new
    if {old.type, new.type} == {pa.int64(), pa.float64()}:
        return pa.field(name, pa.float64())
    raise SchemaConflictError(
        f"{name}: {where} has a {_kind(new)} value but the column holds {_kind(old)} values; "
        "a column must keep one type"
    )


def _columns_of(table: pa.Table) -> dict[str, _Column]:
    return {f.name: (f, _all_null(table, f.name)) for f in table.schema}


def _union(columns: Mapping[str, _Column], table: pa.Table, where: str) -> dict[str, _Column]:
    """The union schema of ``columns`` and ``table``'s columns; O(columns), not O(rows).

    Raises :class:`SchemaConflictError` for a type clash, so a record is refused before
    anything is written."""
    merged = dict(columns)
    for field in table.schema:
        null = _all_null(table, field.name)
        if field.name in merged:
            old, old_null = merged[field.name]
            merged[field.name] = (
                _merge_field(field.name, old, old_null, field, null, where),
                old_null and null,
            )
        else:
            merged[field.name] = (field, null)
    return merged


def _schema(columns: Mapping[str, _Column], fixed: pa.Schema) -> pa.Schema:
    """Fixed columns first (with their declared fields), then the dynamic ones sorted."""
    dynamic = [columns[name][0] for name in sorted(set(columns) - set(fixed.names))]
    return pa.schema(list(fixed) + dynamic)


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


def _concat(tables: Sequence[pa.Table], schema: pa.Schema) -> pa.Table:
    """One contiguous table of ``tables`` under ``schema`` (rewriting a table made of
    thousands of one-trial chunks is much slower than one chunk)."""
    if len(tables) == 1:
        return _conform(tables[0], schema)
    return pa.concat_tables([_conform(t, schema) for t in tables]).combine_chunks()


# --------------------------------------------------------------------------------------------
# Files


def _write_table(path: Path, table: pa.Table, *, sync_dir: bool = True) -> None:
    # Dictionary-encode only the string columns: on float columns (losses, metrics) dictionary
    # encoding rarely pays and made rewriting a 100k-row epochs file about 3x slower.
    strings = [f.name for f in table.schema if pa.types.is_string(f.type)]
    atomic_write(
        path,
        lambda handle: pq.write_table(table, handle, use_dictionary=strings),
        sync_dir=sync_dir,
    )


def _write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _read_table(path: Path, fixed: pa.Schema, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a store file and check its fixed columns; any failure names the file."""
    return _read_main(path, fixed, columns)[0]


def _read_main(
    path: Path, fixed: pa.Schema, columns: Sequence[str] | None = None
) -> tuple[pa.Table, int]:
    """:func:`_read_table` and the last part sequence number folded into that file (0: none or
    unknown, e.g. a file rewritten by pandas), both from one read of one version of the file.

    A missing file raises :class:`FileNotFoundError` (a compaction may have replaced it)."""
    try:
        table = pq.read_table(path, columns=list(columns) if columns else None)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise StoreCorruptError(f"{path}: not a readable Parquet file ({exc})") from exc
    try:
        through = int((table.schema.metadata or {}).get(_THROUGH_KEY, b"0"))
    except ValueError:
        through = 0
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
                # elsewhere to the schema of docs/results.md, or before the column existed:
                # read as nulls (as 0 for resumed_from_epoch: those trials started fresh).
                if field.name in _ZERO_WHEN_MISSING:
                    filler = pa.array([0] * table.num_rows, type=field.type)
                else:
                    filler = pa.nulls(table.num_rows, field.type)
                table = table.append_column(field, filler)
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
    return table, through


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
# Part files


@dataclass(frozen=True)
class _Parts:
    """The part files of a study folder, classified against the main files' ``through``."""

    trials: dict[int, Path]  # seq -> part not yet folded into trials.parquet
    epochs: dict[int, Path]  # seq -> part not yet folded into epochs.parquet, with its trial
    orphans: dict[int, Path]  # epochs parts whose trial part was never written (a crash)
    stale: list[Path]  # parts already folded into the main files (a crash before their unlink)
    last_seq: int


def _list_parts(folder: Path) -> list[tuple[str, int, Path]]:
    """``(kind, seq, path)`` of every part file, kind ``trials`` or ``epochs``."""
    parts_dir = folder / PARTS_DIR
    try:
        names = sorted(os.listdir(parts_dir))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        match = _PART_RE.match(name)
        if match is not None:
            found.append((match.group(1), int(match.group(2)), parts_dir / name))
    return found


def _classify_parts(
    listing: Sequence[tuple[str, int, Path]], trials_through: int, epochs_through: int
) -> _Parts:
    trials: dict[int, Path] = {}
    epochs: dict[int, Path] = {}
    stale: list[Path] = []
    last = max(trials_through, epochs_through)
    for kind, seq, path in listing:
        last = max(last, seq)
        if seq <= (trials_through if kind == "trials" else epochs_through):
            stale.append(path)
        else:
            (trials if kind == "trials" else epochs)[seq] = path
    orphans = {
        seq: path for seq, path in epochs.items() if seq not in trials and seq > trials_through
    }
    for seq in orphans:
        del epochs[seq]
    return _Parts(trials, epochs, orphans, stale, last)


def _part_path(folder: Path, kind: str, seq: int) -> Path:
    return folder / PARTS_DIR / f"{kind}-{seq:010d}.parquet"


@dataclass
class _Snapshot:
    """Everything :class:`ResultsStore` loads from a folder, read in a race-free order."""

    trials: pa.Table
    epochs: pa.Table
    parts: _Parts
    trials_through: int
    epochs_through: int


def _snapshot(folder: Path) -> _Snapshot:
    """Main files plus the part files not yet folded into them.

    The order makes a snapshot consistent while a writer compacts (main files first, then the
    parts unlinked): the parts are listed first, then each main file is read with the
    ``through`` it carries, then the listed parts above it; a listed part that has vanished
    by then was folded into a main file newer than the one read, so the snapshot is retaken.
    """
    trials_path, epochs_path = folder / TRIALS_FILE, folder / EPOCHS_FILE
    for _ in range(50):
        try:
            listing = _list_parts(folder)
            trials, trials_through = (
                _read_main(trials_path, TRIAL_SCHEMA)
                if trials_path.exists()
                else (_empty(TRIAL_SCHEMA), 0)
            )
            epochs, epochs_through = (
                _read_main(epochs_path, EPOCH_SCHEMA)
                if epochs_path.exists()
                else (_empty(EPOCH_SCHEMA), 0)
            )
            parts = _classify_parts(listing, trials_through, epochs_through)
            trial_parts = [_read_table(p, TRIAL_SCHEMA) for _, p in sorted(parts.trials.items())]
            epoch_parts = [_read_table(p, EPOCH_SCHEMA) for _, p in sorted(parts.epochs.items())]
        except FileNotFoundError:
            continue  # a compaction replaced a file or removed a part meanwhile: read again
        columns = _columns_of(trials)
        for part in trial_parts:
            columns = _union(columns, part, str(trials_path))
        trials = _concat([trials, *trial_parts], _schema(columns, TRIAL_SCHEMA))
        columns = _columns_of(epochs)
        for part in epoch_parts:
            columns = _union(columns, part, str(epochs_path))
        epochs = _concat([epochs, *epoch_parts], _schema(columns, EPOCH_SCHEMA))
        ids = trials.column(names.TRIAL_ID).to_pylist()
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise StoreCorruptError(f"{trials_path}: trial_id(s) recorded twice: {dup[:5]}")
        return _Snapshot(trials, epochs, parts, trials_through, epochs_through)
    raise StoreError(f"{folder}: the files kept changing while being read; try again")


# --------------------------------------------------------------------------------------------
# The store


class ResultsStore:
    """Trials and epochs of one study folder: recorded as small part files, compacted lazily.

    Build with :meth:`create` (new study, or the same study again) or :meth:`open` (existing).
    :meth:`record_trial` writes the trial's rows as part files under ``.parts/`` (a cost that
    does not grow with the number of trials already recorded); :meth:`compact` folds the parts
    into ``trials.parquet``/``epochs.parquet``. Compaction runs when the single-writer
    :meth:`lock` is taken and released, on demand, and from :meth:`record_trial` at most every
    :attr:`compact_interval_s` seconds and never more often than keeps it under
    ``1 / COMPACT_SPACING`` of the wall time (so its O(rows) cost stays a small, bounded share).
    :meth:`open` always sees every recorded row (main files + parts). Only one process should
    write a study: hold :meth:`lock` while recording. Methods are thread-safe within one
    process.
    """

    #: Least seconds between two compactions triggered by :meth:`record_trial`; external
    #: readers of ``trials.parquet`` during a run lag the store by about this much.
    compact_interval_s: float = COMPACT_INTERVAL_S

    def __init__(self, folder: Path, snapshot: _Snapshot) -> None:
        """Use :meth:`create` or :meth:`open`."""
        self.folder = folder
        self._mutex = threading.RLock()
        self._lock_handle: Any = None
        self._install(snapshot)
        self._last_compaction = time.monotonic()
        self._compaction_seconds = 0.0

    def _install(self, snapshot: _Snapshot) -> None:
        # Tables are kept as a list of chunks (the first one the base) and concatenated only
        # when read, so that recording stays O(1) in memory too.
        self._trial_chunks = [snapshot.trials]
        self._epoch_chunks = [snapshot.epochs]
        self._trial_columns = _columns_of(snapshot.trials)
        self._epoch_columns = _columns_of(snapshot.epochs)
        self._parts = snapshot.parts
        self._pending: dict[int, list[Path]] = {}  # parts written since the snapshot
        self._seq = snapshot.parts.last_seq
        self._recorded = set(snapshot.trials.column(names.TRIAL_ID).to_pylist())
        self._epoch_ids = set(snapshot.epochs.column(names.TRIAL_ID).to_pylist())
        studies = snapshot.trials.column(names.STUDY)
        self._study = studies[0].as_py() if len(studies) else None

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
            # A temp file is what a driver killed while creating the folder left behind.
            others = [
                p.name
                for p in folder.iterdir()
                if p.name != LOCK_FILE and not p.name.startswith(TMP_PREFIX)
            ]
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
        """Open an existing study folder, reading every recorded row (main files and parts).

        Raises :class:`NotAStudyFolderError` (naming the path) when ``folder`` does not exist
        or has no ``study.yaml``, and :class:`StoreCorruptError` (naming the file) when a
        Parquet file cannot be read or lacks the fixed columns. Opening writes nothing, so a
        reader may open a study while its driver runs.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise NotAStudyFolderError(f"{folder}: no such study folder")
        if not (folder / STUDY_FILE).is_file():
            raise NotAStudyFolderError(f"{folder}: not a study folder (no {STUDY_FILE} in it)")
        return cls(folder, _snapshot(folder))

    def reload(self) -> None:
        """Re-read the folder from disk (e.g. after another process wrote it)."""
        with self._mutex:
            self._install(_snapshot(self.folder))

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

        Writes ``.parts/epochs-<seq>.parquet`` (when there are epochs) and then
        ``.parts/trials-<seq>.parquet``, each atomically, then fsyncs the folder: the trial
        part is the commit, so a crash before it leaves an epochs part that every reader
        ignores (and the next lock removes), and the record is durable on return. Raises
        :class:`RowError` for malformed input and :class:`SchemaConflictError` for a type
        clash, in both cases before writing anything.
        """
        with self._mutex:
            trial_id = row.get(names.TRIAL_ID)
            if isinstance(trial_id, str) and trial_id in self._recorded:
                return False
            where = f"trial {trial_id!r}"
            new_trial = _trial_table(row)
            study = new_trial.column(names.STUDY)[0].as_py()
            if self._study is not None and study != self._study:
                raise RowError(
                    f"study: {where} says {study!r} but this store holds {self._study!r}"
                )
            new_epochs = _epoch_table(row, epochs)
            # Resolve both schemas before writing, so a schema conflict writes nothing at all.
            trial_columns = _union(self._trial_columns, new_trial, where)
            epoch_columns = (
                _union(self._epoch_columns, new_epochs, where)
                if new_epochs.num_rows
                else self._epoch_columns
            )
            seq = self._seq + 1
            (self.folder / PARTS_DIR).mkdir(exist_ok=True)
            written: list[Path] = []
            try:
                if new_epochs.num_rows:
                    path = _part_path(self.folder, "epochs", seq)
                    _write_table(path, new_epochs, sync_dir=False)
                    written.append(path)
                path = _part_path(self.folder, "trials", seq)
                _write_table(path, new_trial, sync_dir=False)
                written.append(path)
            except BaseException:
                for path in written:  # an epochs part without its trial part is an orphan
                    with contextlib.suppress(OSError):
                        path.unlink()
                raise
            fsync_dir(self.folder / PARTS_DIR)

            self._seq = seq
            self._pending[seq] = written
            self._trial_chunks.append(new_trial)
            self._trial_columns = trial_columns
            if trial_id in self._epoch_ids:
                # Orphan epoch rows of this trial in an epochs.parquet written by an earlier
                # version of the store: the new record replaces them.
                self._epoch_chunks = [self._drop_epochs_of(trial_id)]
            if new_epochs.num_rows:
                self._epoch_chunks.append(new_epochs)
                self._epoch_columns = epoch_columns
                self._epoch_ids.add(trial_id)
            self._recorded.add(trial_id)
            if self._study is None:
                self._study = study
            self._maybe_compact()
            return True

    def _drop_epochs_of(self, trial_id: str) -> pa.Table:
        table = self._epochs_all()
        self._epoch_ids.discard(trial_id)
        return table.filter(pc.not_equal(table.column(names.TRIAL_ID), trial_id))

    def _maybe_compact(self) -> None:
        since = time.monotonic() - self._last_compaction
        if since >= max(self.compact_interval_s, COMPACT_SPACING * self._compaction_seconds):
            self.compact()

    def compact(self) -> bool:
        """Fold the part files into ``trials.parquet`` and ``epochs.parquet``; True if it did.

        Each main file is written atomically carrying the last part sequence number it holds
        (``infovae.parts_through`` in its schema metadata), ``epochs.parquet`` first; the
        folded parts are unlinked only after both renames are durable. A crash at any step
        leaves every row exactly once: parts at or below a main file's number are skipped by
        readers (and removed by the next lock), parts above it are still read.
        """
        with self._mutex:
            parts, locked = self._parts, self._lock_handle is not None
            work = parts.trials or parts.epochs or parts.stale or self._pending
            if not (work or (locked and parts.orphans)):
                return False
            started = time.monotonic()
            through = str(self._seq).encode()
            epochs = self._epochs_all()
            trials = self.trials_table()
            for path, table in ((self.epochs_path, epochs), (self.trials_path, trials)):
                meta = dict(table.schema.metadata or {})
                meta[_THROUGH_KEY] = through
                _write_table(path, table.replace_schema_metadata(meta), sync_dir=False)
            fsync_dir(self.folder)
            folded = [*parts.trials.values(), *parts.epochs.values(), *parts.stale]
            folded += [p for paths in self._pending.values() for p in paths]
            if locked:
                folded += parts.orphans.values()  # only the lock holder may judge a part dead
            for path in folded:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            orphans = {} if locked else dict(parts.orphans)
            self._parts = _Parts({}, {}, orphans, [], self._seq)
            self._pending = {}
            self._last_compaction = time.monotonic()
            self._compaction_seconds = self._last_compaction - started
            return True

    # ---- reading -----------------------------------------------------------------------

    def trials_table(self) -> pa.Table:
        """The trials as an Arrow table (the in-memory copy; do not mutate)."""
        with self._mutex:
            if len(self._trial_chunks) > 1:
                schema = _schema(self._trial_columns, TRIAL_SCHEMA)
                self._trial_chunks = [_concat(self._trial_chunks, schema)]
            return self._trial_chunks[0]

    def _epochs_all(self) -> pa.Table:
        with self._mutex:
            if len(self._epoch_chunks) > 1:
                schema = _schema(self._epoch_columns, EPOCH_SCHEMA)
                self._epoch_chunks = [_concat(self._epoch_chunks, schema)]
            return self._epoch_chunks[0]

    def epochs_table(self, recorded_only: bool = True) -> pa.Table:
        """The epochs as an Arrow table, by default only those of recorded trials."""
        with self._mutex:
            table = self._epochs_all()
            if recorded_only and not self._epoch_ids <= self._recorded:
                recorded = pa.array(sorted(self._recorded), type=pa.string())
                mask = pc.is_in(table.column(names.TRIAL_ID), value_set=recorded)
                table = table.filter(mask)
            return table

    def trials(self) -> pd.DataFrame:
        """One row per recorded trial, columns as in ``trials.parquet``."""
        return self.trials_table().to_pandas()

    def epochs(self, recorded_only: bool = True) -> pd.DataFrame:
        """One row per (trial, epoch); ``recorded_only`` hides orphans of unrecorded trials."""
        return self.epochs_table(recorded_only).to_pandas()

    def recorded_trial_ids(self) -> set[str]:
        """Ids of every recorded trial (any status)."""
        with self._mutex:
            return set(self._recorded)

    def completed_trial_ids(self) -> set[str]:
        """Ids of the recorded trials with ``status == 'completed'``."""
        with self._mutex:
            table = self.trials_table()
            mask = pc.equal(table.column(names.STATUS), names.COMPLETED)
            return set(table.filter(mask).column(names.TRIAL_ID).to_pylist())

    def __len__(self) -> int:
        return len(self._recorded)

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.folder)!r}, trials={len(self)})"

    # ---- single writer -----------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[ResultsStore]:
        """Hold the study's single-writer lock (``fcntl.flock`` on ``<folder>/.lock``).

        Raises :class:`StudyLockedError` at once (no waiting) when another open file
        description holds it, e.g. a second driver running the same study. On entry, leftover
        temp files of a crashed writer are removed, the store is re-read from disk (so it sees
        every row written before the lock was taken) and compacted (which removes the parts a
        crash left behind). On exit the parts are compacted into the main files, so that
        ``trials.parquet`` and ``epochs.parquet`` hold every row once the driver is done, and
        the lock is released (and by the OS if the process dies).
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
            self.compact()
            try:
                yield self
            finally:
                self.compact()
        finally:
            self._lock_handle = None
            with contextlib.suppress(OSError):
                handle.seek(0)
                handle.truncate()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()

    def _remove_temp_files(self) -> None:
        remove_temp_files(self.folder)
        if (self.folder / PARTS_DIR).is_dir():
            remove_temp_files(self.folder / PARTS_DIR)


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


def _trial_columns(path: Path, columns: Sequence[str]) -> pa.Table:
    """``columns`` of every recorded trial (main file and parts), reading no epochs."""
    trials_path = path / TRIALS_FILE
    for _ in range(50):
        try:
            listing = _list_parts(path)
            if trials_path.exists():
                main, through = _read_main(trials_path, TRIAL_SCHEMA, columns)
            else:
                main, through = _empty(TRIAL_SCHEMA).select(list(columns)), 0
            parts = _classify_parts(
                listing, through, max((seq for _, seq, _ in listing), default=0)
            )
            tables = [main]
            tables += [
                _read_table(p, TRIAL_SCHEMA, columns) for _, p in sorted(parts.trials.items())
            ]
        except FileNotFoundError:
            continue  # compacted meanwhile: read again
        # promote: a main file written by another tool (pandas) has nullable fields where the
        # store's parts have not-null ones; the values are the same types.
        return pa.concat_tables(
            [t.select(list(columns)) for t in tables], promote_options="default"
        )
    raise StoreError(f"{path}: the files kept changing while being read; try again")


def _summarise(path: Path) -> StudySummary:
    columns = [names.ARM, names.PHASE, names.STATUS, names.ENDED_AT]
    try:
        table = _trial_columns(path, columns)
    except StoreCorruptError as exc:
        return StudySummary(path.name, path, 0, {}, {}, {}, (), None, str(exc))
    arms = table.column(names.ARM).to_pylist()
    phases = table.column(names.PHASE).to_pylist()
    statuses = table.column(names.STATUS).to_pylist()
    by_status: dict[str, int] = {}
    by_phase: dict[str, int] = {}
    by_pair: dict[tuple[str, str], int] = {}
    for phase, status in zip(phases, statuses, strict=True):
        by_status[status] = by_status.get(status, 0) + 1
        by_phase[phase] = by_phase.get(phase, 0) + 1
        by_pair[(phase, status)] = by_pair.get((phase, status), 0) + 1
    ended = [t for t in table.column(names.ENDED_AT).to_pylist() if t is not None]
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
