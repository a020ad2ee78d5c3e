"""A study folder as a whole: :class:`ResultsStore` (create or open a folder, record trials,
compact, read them back, hold the writer's lock) and the listing of the study folders under a
root."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from sweep import names
from sweep.atomic_files import TMP_PREFIX, atomic_write_text
from sweep.store.arrow_schema import (
    EPOCH_SCHEMA,
    TRIAL_SCHEMA,
    columns_of,
    concat,
    epoch_table,
    schema_of,
    trial_table,
    union_columns,
)
from sweep.store.lock import study_lock
from sweep.store.parquet_files import (
    Parts,
    Snapshot,
    append_part,
    read_snapshot,
    read_trial_columns,
    remove_leftover_temp_files,
    remove_parts,
    write_main_files,
    write_table,
)
from sweep.store.store_errors import (
    NotAStudyFolderError,
    RowError,
    StoreCorruptError,
    StudyExistsError,
)

__all__ = [
    "COMPACT_INTERVAL_S",
    "COMPACT_SPACING",
    "ResultsStore",
    "StudySummary",
    "is_study_folder",
    "list_studies",
]

#: Least seconds between compactions triggered by recording (see ResultsStore).
COMPACT_INTERVAL_S = 10.0
#: A compaction waits at least this many times its own last duration after it, so compaction
#: (O(rows)) takes at most about 1/COMPACT_SPACING of a long study's wall time.
COMPACT_SPACING = 50.0


def _parse_yaml(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def is_study_folder(path: Path | str) -> bool:
    """True when ``path`` is a directory holding a ``study.yaml``."""
    path = Path(path)
    return path.is_dir() and (path / names.STUDY_FILE).is_file()


def require_study_folder(path: Path | str) -> Path:
    """``path`` as a :class:`~pathlib.Path`; raises :class:`NotAStudyFolderError` naming it
    when it is not a directory holding a ``study.yaml``."""
    path = Path(path)
    if not path.is_dir():
        raise NotAStudyFolderError(f"{path}: no such study folder (not a folder)")
    if not (path / names.STUDY_FILE).is_file():
        raise NotAStudyFolderError(
            f"{path}: not a study folder (no {names.STUDY_FILE} in it); "
            "pass the folder that `infovae-sweep run` wrote, e.g. results/<study>"
        )
    return path


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

    def __init__(self, folder: Path, snapshot: Snapshot) -> None:
        """Use :meth:`create` or :meth:`open`."""
        self.folder = folder
        self._mutex = threading.RLock()
        self._lock_handle: Any = None
        self._install(snapshot)
        self._last_compaction = time.monotonic()
        self._compaction_seconds = 0.0

    def _install(self, snapshot: Snapshot) -> None:
        # Tables are kept as a list of chunks (the first one the base) and concatenated only
        # when read, so that recording stays O(1) in memory too.
        self._trial_chunks = [snapshot.trials]
        self._epoch_chunks = [snapshot.epochs]
        self._trial_columns = columns_of(snapshot.trials)
        self._epoch_columns = columns_of(snapshot.epochs)
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
        study_file = folder / names.STUDY_FILE
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
                atomic_write_text(study_file, study_yaml_text)
        else:
            # A temp file is what a driver killed while creating the folder left behind.
            others = [
                p.name
                for p in folder.iterdir()
                if p.name != names.LOCK_FILE and not p.name.startswith(TMP_PREFIX)
            ]
            if others and not reuse:
                raise StudyExistsError(
                    f"{folder}: exists, is not empty ({', '.join(sorted(others)[:5])}) and has "
                    f"no {names.STUDY_FILE}; choose another output folder, or reuse it explicitly"
                )
            atomic_write_text(study_file, study_yaml_text)
        for name, schema in ((names.TRIALS_FILE, TRIAL_SCHEMA), (names.EPOCHS_FILE, EPOCH_SCHEMA)):
            if not (folder / name).exists():
                write_table(folder / name, schema.empty_table())
        return cls.open(folder)

    @classmethod
    def open(cls, folder: Path | str) -> ResultsStore:
        """Open an existing study folder, reading every recorded row (main files and parts).

        Raises :class:`NotAStudyFolderError` (naming the path) when ``folder`` does not exist
        or has no ``study.yaml``, and :class:`StoreCorruptError` (naming the file) when a
        Parquet file cannot be read or lacks the fixed columns. Opening writes nothing, so a
        reader may open a study while its driver runs.
        """
        folder = require_study_folder(folder)
        return cls(folder, read_snapshot(folder))

    def reload(self) -> None:
        """Re-read the folder from disk (e.g. after another process wrote it)."""
        with self._mutex:
            self._install(read_snapshot(self.folder))

    # ---- paths -------------------------------------------------------------------------

    @property
    def trials_path(self) -> Path:
        """``<folder>/trials.parquet``."""
        return self.folder / names.TRIALS_FILE

    @property
    def epochs_path(self) -> Path:
        """``<folder>/epochs.parquet``."""
        return self.folder / names.EPOCHS_FILE

    @property
    def study_path(self) -> Path:
        """``<folder>/study.yaml``."""
        return self.folder / names.STUDY_FILE

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
            new_trial = trial_table(row)
            study = new_trial.column(names.STUDY)[0].as_py()
            if self._study is not None and study != self._study:
                raise RowError(
                    f"{names.STUDY}: {where} says {study!r} but this store holds {self._study!r}"
                )
            new_epochs = epoch_table(row, epochs)
            # Resolve both schemas before writing, so a schema conflict writes nothing at all.
            trial_columns = union_columns(self._trial_columns, new_trial, where)
            epoch_columns = (
                union_columns(self._epoch_columns, new_epochs, where)
                if new_epochs.num_rows
                else self._epoch_columns
            )
            seq = self._seq + 1
            written = append_part(self.folder, seq, new_trial, new_epochs)

            self._seq = seq
            self._pending[seq] = written
            self._trial_chunks.append(new_trial)
            self._trial_columns = trial_columns
            if trial_id in self._epoch_ids:
                # Epoch rows of this trial in the main epochs file with no trial row (written
                # there without the trial ever being recorded): the new record replaces them,
                # so that each epoch is stored once.
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
            epochs = self._epochs_all()
            trials = self.trials_table()
            write_main_files(self.folder, trials, epochs, through=self._seq)
            folded = [*parts.trials.values(), *parts.epochs.values(), *parts.stale]
            folded += [p for paths in self._pending.values() for p in paths]
            if locked:
                folded += parts.orphans.values()  # only the lock holder may judge a part dead
            remove_parts(folded)
            orphans = {} if locked else dict(parts.orphans)
            self._parts = Parts({}, {}, orphans, [], self._seq)
            self._pending = {}
            self._last_compaction = time.monotonic()
            self._compaction_seconds = self._last_compaction - started
            return True

    # ---- reading -----------------------------------------------------------------------

    def trials_table(self) -> pa.Table:
        """The trials as an Arrow table (the in-memory copy; do not mutate)."""
        with self._mutex:
            if len(self._trial_chunks) > 1:
                schema = schema_of(self._trial_columns, TRIAL_SCHEMA)
                self._trial_chunks = [concat(self._trial_chunks, schema)]
            return self._trial_chunks[0]

    def _epochs_all(self) -> pa.Table:
        with self._mutex:
            if len(self._epoch_chunks) > 1:
                schema = schema_of(self._epoch_columns, EPOCH_SCHEMA)
                self._epoch_chunks = [concat(self._epoch_chunks, schema)]
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
        with study_lock(self.folder) as handle:
            try:
                self._lock_handle = handle
                remove_leftover_temp_files(self.folder)
                self.reload()
                self.compact()
                try:
                    yield self
                finally:
                    self.compact()
            finally:
                self._lock_handle = None


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
    columns = [names.ARM, names.PHASE, names.STATUS, names.ENDED_AT]
    try:
        table = read_trial_columns(path, columns)
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
