"""The store's Parquet files on disk: writing them atomically, appending one recorded trial as
part files, reading the main files and the parts not yet folded into them, and compaction's
writes.

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

Every write is atomic (:func:`sweep.atomic_files.atomic_write`: temp file, fsync, rename, folder
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
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sweep import names
from sweep.atomic_files import atomic_write, fsync_dir, remove_temp_files
from sweep.store.arrow_schema import (
    EPOCH_SCHEMA,
    TRIAL_REQUIRED,
    TRIAL_SCHEMA,
    ZERO_WHEN_MISSING,
    columns_of,
    concat,
    schema_of,
    union_columns,
)
from sweep.store.store_errors import StoreCorruptError, StoreError

__all__ = [
    "Parts",
    "Snapshot",
    "append_part",
    "read_snapshot",
    "read_trial_columns",
    "remove_leftover_temp_files",
    "remove_parts",
    "write_main_files",
    "write_table",
]

_PART_RE = re.compile(r"^(trials|epochs)-(\d{10})\.parquet$")
#: Schema metadata key of a main file: the last part sequence number folded into it.
_THROUGH_KEY = b"infovae.parts_through"


# --------------------------------------------------------------------------------------------
# One file


def write_table(path: Path, table: pa.Table, *, sync_dir: bool = True) -> None:
    """Write ``table`` to ``path`` as Parquet, atomically
    (:func:`sweep.atomic_files.atomic_write`)."""
    # Dictionary-encode only the string columns: float columns (losses, metrics) rarely repeat
    # a value, so a dictionary there costs time on every rewrite of the epochs file and saves
    # no space.
    strings = [f.name for f in table.schema if pa.types.is_string(f.type)]
    atomic_write(
        path,
        lambda handle: pq.write_table(table, handle, use_dictionary=strings),
        sync_dir=sync_dir,
    )


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
    column_names = table.column_names
    # Files rewritten by other tools (pandas writes large_string) are read back to our types.
    for index, name in enumerate(column_names):
        if pa.types.is_large_string(table.schema.field(name).type):
            field = table.schema.field(name).with_type(pa.string())
            table = table.set_column(index, field, table.column(name).cast(pa.string()))
    for field in fixed:
        if columns is not None and field.name not in columns:
            continue
        if field.name not in column_names:
            if field.nullable and field.name not in TRIAL_REQUIRED:
                # An optional column (e.g. attempt, node_id) absent from a file written
                # elsewhere to the schema of docs/results.md, or before the column existed:
                # read as nulls (as 0 for resumed_from_epoch: those trials started fresh).
                if field.name in ZERO_WHEN_MISSING:
                    filler = pa.array([0] * table.num_rows, type=field.type)
                else:
                    filler = pa.nulls(table.num_rows, field.type)
                table = table.append_column(field, filler)
                column_names = table.column_names
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
            position = column_names.index(field.name)
            table = table.set_column(position, field.with_nullable(True), converted)
    if columns is None:
        # Restore the canonical column order (fixed first, dynamic sorted).
        order = fixed.names + sorted(n for n in column_names if n not in fixed.names)
        table = table.select(order)
        fields = [fixed.field(n) if n in fixed.names else table.schema.field(n) for n in order]
        table = pa.Table.from_arrays(table.columns, schema=pa.schema(fields))
    return table, through


# --------------------------------------------------------------------------------------------
# Part files


@dataclass(frozen=True)
class Parts:
    """The part files of a study folder, classified against the main files' ``through``."""

    trials: dict[int, Path]  # seq -> part not yet folded into trials.parquet
    epochs: dict[int, Path]  # seq -> part not yet folded into epochs.parquet, with its trial
    orphans: dict[int, Path]  # epochs parts whose trial part was never written (a crash)
    stale: list[Path]  # parts already folded into the main files (a crash before their unlink)
    last_seq: int


def _list_parts(folder: Path) -> list[tuple[str, int, Path]]:
    """``(kind, seq, path)`` of every part file, kind ``trials`` or ``epochs``."""
    parts_dir = folder / names.PARTS_DIR
    try:
        entries = sorted(os.listdir(parts_dir))
    except FileNotFoundError:
        return []
    found = []
    for name in entries:
        match = _PART_RE.match(name)
        if match is not None:
            found.append((match.group(1), int(match.group(2)), parts_dir / name))
    return found


def _classify_parts(
    listing: Sequence[tuple[str, int, Path]], trials_through: int, epochs_through: int
) -> Parts:
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
    return Parts(trials, epochs, orphans, stale, last)


def _part_path(folder: Path, kind: str, seq: int) -> Path:
    return folder / names.PARTS_DIR / f"{kind}-{seq:010d}.parquet"


# --------------------------------------------------------------------------------------------
# Reading a folder


@dataclass
class Snapshot:
    """Everything :class:`ResultsStore` loads from a folder, read in a race-free order."""

    trials: pa.Table
    epochs: pa.Table
    parts: Parts
    trials_through: int
    epochs_through: int


def read_snapshot(folder: Path) -> Snapshot:
    """Main files plus the part files not yet folded into them.

    The order makes a snapshot consistent while a writer compacts (main files first, then the
    parts unlinked): the parts are listed first, then each main file is read with the
    ``through`` it carries, then the listed parts above it; a listed part that has vanished
    by then was folded into a main file newer than the one read, so the snapshot is retaken.
    """
    trials_path, epochs_path = folder / names.TRIALS_FILE, folder / names.EPOCHS_FILE
    for _ in range(50):
        try:
            listing = _list_parts(folder)
            trials, trials_through = (
                _read_main(trials_path, TRIAL_SCHEMA)
                if trials_path.exists()
                else (TRIAL_SCHEMA.empty_table(), 0)
            )
            epochs, epochs_through = (
                _read_main(epochs_path, EPOCH_SCHEMA)
                if epochs_path.exists()
                else (EPOCH_SCHEMA.empty_table(), 0)
            )
            parts = _classify_parts(listing, trials_through, epochs_through)
            trial_parts = [_read_table(p, TRIAL_SCHEMA) for _, p in sorted(parts.trials.items())]
            epoch_parts = [_read_table(p, EPOCH_SCHEMA) for _, p in sorted(parts.epochs.items())]
        except FileNotFoundError:
            continue  # a compaction replaced a file or removed a part meanwhile: read again
        columns = columns_of(trials)
        for part in trial_parts:
            columns = union_columns(columns, part, str(trials_path))
        trials = concat([trials, *trial_parts], schema_of(columns, TRIAL_SCHEMA))
        columns = columns_of(epochs)
        for part in epoch_parts:
            columns = union_columns(columns, part, str(epochs_path))
        epochs = concat([epochs, *epoch_parts], schema_of(columns, EPOCH_SCHEMA))
        ids = trials.column(names.TRIAL_ID).to_pylist()
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise StoreCorruptError(f"{trials_path}: trial_id(s) recorded twice: {dup[:5]}")
        return Snapshot(trials, epochs, parts, trials_through, epochs_through)
    raise StoreError(f"{folder}: the files kept changing while being read; try again")


def read_trial_columns(path: Path, columns: Sequence[str]) -> pa.Table:
    """``columns`` of every recorded trial (main file and parts), reading no epochs."""
    trials_path = path / names.TRIALS_FILE
    for _ in range(50):
        try:
            listing = _list_parts(path)
            if trials_path.exists():
                main, through = _read_main(trials_path, TRIAL_SCHEMA, columns)
            else:
                main, through = TRIAL_SCHEMA.empty_table().select(list(columns)), 0
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


# --------------------------------------------------------------------------------------------
# Recording and compaction


def append_part(folder: Path, seq: int, trial: pa.Table, epochs: pa.Table) -> list[Path]:
    """Write one trial's rows as the part files numbered ``seq``; returns the paths written.

    ``.parts/epochs-<seq>.parquet`` first (only when there are epoch rows), then
    ``.parts/trials-<seq>.parquet``, each atomically, then one fsync of the folder: the trial
    part is the commit, so the record is durable on return. On failure the parts written so far
    are removed and the error raised.
    """
    (folder / names.PARTS_DIR).mkdir(exist_ok=True)
    written: list[Path] = []
    try:
        if epochs.num_rows:
            path = _part_path(folder, "epochs", seq)
            write_table(path, epochs, sync_dir=False)
            written.append(path)
        path = _part_path(folder, "trials", seq)
        write_table(path, trial, sync_dir=False)
        written.append(path)
    except BaseException:
        for path in written:  # an epochs part without its trial part is an orphan
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    fsync_dir(folder / names.PARTS_DIR)
    return written


def write_main_files(folder: Path, trials: pa.Table, epochs: pa.Table, *, through: int) -> None:
    """Replace ``epochs.parquet`` then ``trials.parquet`` (each atomically), each carrying
    ``through``, the last part number folded into it; one folder fsync then makes both renames
    durable, before the caller removes the folded parts."""
    through_value = str(through).encode()
    for path, table in ((folder / names.EPOCHS_FILE, epochs), (folder / names.TRIALS_FILE, trials)):
        meta = dict(table.schema.metadata or {})
        meta[_THROUGH_KEY] = through_value
        write_table(path, table.replace_schema_metadata(meta), sync_dir=False)
    fsync_dir(folder)


def remove_parts(paths: Iterable[Path]) -> None:
    """Unlink folded part files (one already gone is fine: its rows are in the main files)."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove_leftover_temp_files(folder: Path) -> None:
    """Delete the temp files a killed writer left in the study folder and in its parts folder."""
    remove_temp_files(folder)
    if (folder / names.PARTS_DIR).is_dir():
        remove_temp_files(folder / names.PARTS_DIR)
