"""Results store: a folder per study with ``trials.parquet``, ``epochs.parquet``, ``study.yaml``.

Layout of ``results/<study>/`` (docs/results.md)::

    study.yaml        the study spec as run (written once, atomically)
    trials.parquet    one row per trial
    epochs.parquet    one row per (trial, epoch)
    .lock             single-writer guard (``fcntl.flock``), see :meth:`ResultsStore.lock`
    .parts/           trials recorded since the last compaction (:mod:`sweep.store.parquet_files`)

The package, in the order a recorded trial moves through it:

* :mod:`sweep.store.arrow_schema`: rows -> Arrow (the columns, their types, how the schema grows);
* :mod:`sweep.store.parquet_files`: the Parquet files (part files, reading, compaction's writes,
  and why a crash at any step loses no row);
* :mod:`sweep.store.lock`: the one-driver-per-study lock;
* :mod:`sweep.store.folder`: :class:`ResultsStore` (create, open, record, compact, read) and
  the listing of study folders;
* :mod:`sweep.store.store_errors`: the errors all of them raise.

The names below are the public API; import them from ``sweep.store``.
"""

from __future__ import annotations

from sweep.names import (
    EPOCHS_FILE,
    LOCK_FILE,
    PARTS_DIR,
    PHASES,
    STATUSES,
    STUDY_FILE,
    TRIALS_FILE,
)
from sweep.store.arrow_schema import EPOCH_SCHEMA, TRIAL_SCHEMA, json_columns
from sweep.store.folder import (
    ResultsStore,
    StudySummary,
    is_study_folder,
    list_studies,
    require_study_folder,
)
from sweep.store.lock import is_study_running
from sweep.store.store_errors import (
    DamagedStudyError,
    NotAStudyFolderError,
    RowError,
    SchemaConflictError,
    StoreCorruptError,
    StoreError,
    StudyExistsError,
    StudyLockedError,
)

__all__ = [
    "DamagedStudyError",
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
    "is_study_running",
    "json_columns",
    "list_studies",
    "require_study_folder",
]
