"""The study's Optuna storage, and ``storage.yaml``, which records it with Ray Tune's storage path.

Not to be confused with the study folder itself (:mod:`sweep.store`, the Parquet results) nor
Ray Tune's storage path (:mod:`sweep.run.ray_storage`, experiment files and checkpoints).
A study folder records the two storages in ``storage.yaml`` (written once, when the study is
created), so that ``resume`` reopens the same storages and the report reads the same Optuna
storage::

    storage: s3://bucket/infovae-sweep   # Ray Tune's storage path; null: the study folder
    optuna_storage: sqlite               # sqlite | journal | an RDB URL

Optuna storage, one Optuna study per arm (named after it) in each case:

* ``sqlite`` (the default): ``optuna.db`` in the study folder, through
  ``optuna.storages.RDBStorage``. One writer on a local disk; Optuna advises against SQLite
  on NFS.
* ``journal``: ``optuna.journal`` in the study folder, through Optuna's file journal
  (``optuna.storages.JournalStorage`` over ``optuna.storages.journal.JournalFileBackend``):
  an append-only log with file locks, meant for a study folder on a shared mount (NFS).
* an RDB URL (``postgresql://...``, ``mysql://...``, ``sqlite:///...``): that database, through
  ``RDBStorage``. The URL is written into ``storage.yaml`` as given, and so into the mirror,
  so ``run`` refuses a URL holding a password: give it through the driver's own settings
  (``~/.pgpass``, ``PGPASSWORD``, a MySQL option file).

Each is readable by optuna-dashboard (``optuna-dashboard sqlite:///.../optuna.db``,
``optuna-dashboard .../optuna.journal``, ``optuna-dashboard postgresql://...``); the searcher
sets each Optuna study's metric names to the study's objectives (``metric.*``).

A study folder without ``storage.yaml`` reads as ``optuna_storage: sqlite`` and the study
file's own ``storage``, so that a folder copied without it still opens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sweep import names
from sweep.atomic_files import atomic_write_text

__all__ = [
    "JOURNAL",
    "SQLITE",
    "OptunaStorageError",
    "StorageRecord",
    "check_optuna_storage",
    "close_optuna_storage",
    "open_optuna_storage",
    "optuna_choice",
    "read_record",
    "write_record",
]

SQLITE = "sqlite"
JOURNAL = "journal"
#: ``dialect[+driver]://``: what SQLAlchemy takes as a database URL.
_URL_RE = re.compile(r"^[a-z][a-z0-9]*(\+[a-z0-9_]+)?://", re.IGNORECASE)
_RDB_DIALECTS = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql")


class OptunaStorageError(ValueError):
    """``--optuna-storage`` names no storage that this tool can open."""


def check_optuna_storage(choice: str | None) -> str:
    """``sqlite`` (None), ``journal`` or an RDB URL, as recorded; anything else is refused."""
    if choice is None or choice == SQLITE:
        return SQLITE
    if choice == JOURNAL:
        return JOURNAL
    if _URL_RE.match(choice) and choice.split("://")[0].split("+")[0].lower() in _RDB_DIALECTS:
        return choice
    raise OptunaStorageError(
        f"--optuna-storage: {choice!r} is not a storage: give sqlite (optuna.db in the study "
        "folder, the default), journal (optuna.journal in the study folder, for a shared "
        "mount) or a database URL such as postgresql://user@host/db or mysql://user@host/db"
    )


@dataclass(frozen=True)
class StorageRecord:
    """``storage.yaml`` of a study folder."""

    storage: str | None
    optuna_storage: str = SQLITE


def write_record(folder: Path, record: StorageRecord) -> None:
    text = yaml.safe_dump(
        {"storage": record.storage, "optuna_storage": record.optuna_storage}, sort_keys=False
    )
    atomic_write_text(Path(folder) / names.STORAGE_FILE, text)


def read_record(folder: Path) -> StorageRecord | None:
    """The folder's ``storage.yaml``; None when it has none (it then reads as the defaults)."""
    path = Path(folder) / names.STORAGE_FILE
    if not path.is_file():
        return None
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise OptunaStorageError(f"{path}: not readable YAML ({error})") from None
    if not isinstance(loaded, dict):
        raise OptunaStorageError(f"{path}: expected a mapping with storage and optuna_storage")
    storage = loaded.get("storage")
    if storage is not None and not isinstance(storage, str):
        raise OptunaStorageError(f"{path}: storage: expected a path, a URI or null")
    try:
        optuna_storage = check_optuna_storage(loaded.get("optuna_storage"))
    except OptunaStorageError as error:
        raise OptunaStorageError(f"{path}: optuna_storage: {error}") from None
    return StorageRecord(storage=storage, optuna_storage=optuna_storage)


def _choice(folder: Path) -> str:
    record = read_record(folder)
    return SQLITE if record is None else record.optuna_storage


def open_optuna_storage(folder: Path, *, read_only: bool = False) -> Any:
    """The study's Optuna storage as ``storage.yaml`` names it.

    ``read_only``: for readers (the report): None when the storage file does not exist, and
    no table creation or schema migration check against an RDB."""
    import optuna

    folder = Path(folder)
    choice = _choice(folder)
    if choice == JOURNAL:
        path = folder / names.OPTUNA_JOURNAL_FILE
        if read_only and not path.is_file():
            return None
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if choice == SQLITE:
        path = folder / names.OPTUNA_FILE
        if read_only and not path.is_file():
            return None
        url = f"sqlite:///{path.resolve()}"
    else:
        url = choice
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Wait for a lock rather than fail at once (a reader and the driver may overlap).
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 30}}
    if read_only:
        kwargs.update(skip_compatibility_check=True, skip_table_creation=True)
    return optuna.storages.RDBStorage(url, **kwargs)


def close_optuna_storage(storage: Any) -> None:
    """Release an RDB storage's connections (a journal holds none between calls)."""
    import optuna

    if isinstance(storage, optuna.storages.RDBStorage):
        storage.remove_session()
        storage.engine.dispose()


def optuna_choice(
    folder: Path, record: StorageRecord | None, optuna_storage: str | None, resume: bool
) -> str:
    """The Optuna storage of a run: the recorded one on resume (a different explicit choice
    is refused), else ``optuna_storage``, checked (an RDB URL is opened once) before anything
    is written. Raises :class:`OptunaStorageError`."""
    if resume:
        recorded = record.optuna_storage if record is not None else check_optuna_storage(None)
        if optuna_storage is not None and check_optuna_storage(optuna_storage) != recorded:
            raise OptunaStorageError(
                f"--optuna-storage: the study in {folder} uses the Optuna storage "
                f"{recorded!r} (its {names.STORAGE_FILE}); resume reopens it"
            )
        return recorded
    choice = check_optuna_storage(optuna_storage)
    if "://" in choice and _has_password(choice):
        # The choice is written into storage.yaml, and so into the study's mirror and any
        # copy of the folder: a secret must not travel with the results.
        raise OptunaStorageError(
            "--optuna-storage: the database URL holds a password, which would be written "
            f"into {folder / names.STORAGE_FILE} (and its mirror). Leave it out of the URL and "
            "give it through the database driver's own settings: PGPASSWORD or ~/.pgpass for "
            "PostgreSQL, an option file (?read_default_file=~/.my.cnf) for MySQL"
        )
    if "://" in choice:
        import optuna

        try:
            optuna.storages.RDBStorage(choice).engine.dispose()
        except Exception as error:  # noqa: BLE001 - SQLAlchemy and drivers raise many types
            raise OptunaStorageError(
                f"--optuna-storage: cannot open {choice}: {type(error).__name__}: {error}"
            ) from None
    return choice


def _has_password(url: str) -> bool:
    """Whether a database URL carries a password (``dialect://user:secret@host/db``)."""
    from urllib.parse import urlsplit

    try:
        return bool(urlsplit(url).password)
    except ValueError:  # a malformed netloc (an unmatched "[", a bad port): SQLAlchemy decides
        return False
