"""Rows -> Arrow: the store's table schemas, the checks and conversions of one trial's rows, and
how a table's schema grows as trials arrive.

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
"""

from __future__ import annotations

import datetime as dt
import json
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from sweep import names
from sweep.store.store_errors import RowError, SchemaConflictError

__all__ = [
    "EPOCH_SCHEMA",
    "TRIAL_REQUIRED",
    "TRIAL_SCHEMA",
    "ZERO_WHEN_MISSING",
    "columns_of",
    "concat",
    "epoch_table",
    "json_columns",
    "schema_of",
    "trial_table",
    "union_columns",
]

_UTC_US = pa.timestamp("us", tz="UTC")

#: Fixed columns of ``trials.parquet``, in file order. ``study``, ``arm``, ``phase``,
#: ``trial_id``, ``seed`` and ``status`` are required in every row; the rest may be omitted
#: (null). ``attempt`` counts retries of the same trial (the runner decides the base);
#: ``resumed_from_epoch`` is the epoch of the checkpoint a retried trial resumed from, 0 when it
#: started fresh (also for rows and files that lack it: :data:`ZERO_WHEN_MISSING`);
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
#: Columns every trial row holds (a file lacking one is not a results file).
TRIAL_REQUIRED = (
    names.STUDY,
    names.ARM,
    names.PHASE,
    names.TRIAL_ID,
    names.SEED,
    names.STATUS,
)
_TRIAL_PREFIXES = (names.PARAM, names.METRIC)
#: Optional columns whose absence (a row without it, a file that lacks the column) means 0
#: rather than unknown.
ZERO_WHEN_MISSING = (names.RESUMED_FROM_EPOCH,)

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


def trial_table(row: Mapping[str, Any]) -> pa.Table:
    """Validate one trial row and return it as a one-row table (fixed columns, then sorted)."""
    missing = [key for key in TRIAL_REQUIRED if key not in row]
    if missing:
        raise RowError(f"trial row lacks required column(s): {', '.join(missing)}")
    unknown = [
        key for key in row if key not in TRIAL_SCHEMA.names and not key.startswith(_TRIAL_PREFIXES)
    ]
    if unknown:
        raise RowError(
            f"trial row has unknown column(s) {', '.join(sorted(unknown))}; allowed: "
            f"{', '.join(TRIAL_SCHEMA.names)}, {names.PARAM}<key>, {names.METRIC}<name>"
        )
    values: dict[str, Any] = {}
    for name in (names.STUDY, names.ARM, names.PHASE, names.TRIAL_ID, names.STATUS):
        values[name] = _text(name, row[name], required=True)
    for name in (names.ERROR, names.HOST, names.NODE_ID, names.DEVICE, names.COPY_OF):
        values[name] = _text(name, row.get(name), required=False)
    if values[names.PHASE] not in names.PHASES:
        raise RowError(
            f"{names.PHASE}: must be one of {list(names.PHASES)}, got {values[names.PHASE]!r}"
        )
    if values[names.STATUS] not in names.STATUSES:
        raise RowError(
            f"{names.STATUS}: must be one of {list(names.STATUSES)}, got {values[names.STATUS]!r}"
        )
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


def epoch_table(trial: Mapping[str, Any], epochs: Sequence[Mapping[str, Any]]) -> pa.Table:
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
                f"{', '.join(EPOCH_SCHEMA.names)}, {names.TRAIN}<term>, {names.VAL}<term>"
            )
        for name, expected in ident.items():
            if name in rec and rec[name] != expected:
                raise RowError(
                    f"epochs[{index}].{name}: {rec[name]!r} differs from the trial's {expected!r}"
                )
            columns[name].append(expected)
        if names.EPOCH not in rec:
            raise RowError(f"epochs[{index}]: lacks required column {names.EPOCH}")
        epoch = _int_value(f"epochs[{index}].{names.EPOCH}", rec[names.EPOCH], required=True)
        if epoch in seen:
            raise RowError(
                f"epochs[{index}].{names.EPOCH}: epoch {epoch} appears twice for this trial"
            )
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


def columns_of(table: pa.Table) -> dict[str, _Column]:
    return {f.name: (f, _all_null(table, f.name)) for f in table.schema}


def union_columns(
    columns: Mapping[str, _Column], table: pa.Table, where: str
) -> dict[str, _Column]:
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


def schema_of(columns: Mapping[str, _Column], fixed: pa.Schema) -> pa.Schema:
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


def concat(tables: Sequence[pa.Table], schema: pa.Schema) -> pa.Table:
    """One contiguous table of ``tables`` under ``schema`` (rewriting a table made of
    thousands of one-trial chunks is much slower than one chunk)."""
    if len(tables) == 1:
        return _conform(tables[0], schema)
    return pa.concat_tables([_conform(t, schema) for t in tables]).combine_chunks()


def json_columns(schema: pa.Schema) -> list[str]:
    """Names of the ``param.*`` columns that hold JSON text (list-valued hyperparameters)."""
    return [field.name for field in schema if _is_json(field)]
