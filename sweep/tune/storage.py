"""Where a run keeps its files: the guard on Ray Tune's storage path for clusters, the
Optuna storage chosen (and recorded) for the study, and the study folder's mirror under a
storage URI."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from sweep import names
from sweep.mirror import MirrorError, StudyMirror, is_uri, mirror_uri
from sweep.storages import (
    OptunaStorageError,
    StorageRecord,
    check_optuna_storage,
    read_record,
)
from sweep.tune.events import StudyEvents


class StorageError(ValueError):
    """The Ray Tune storage path cannot serve this cluster (a local path on several nodes)."""


def check_storage(
    storage: str | None,
    n_nodes: int = 1,
    *,
    address: str | None = None,
    single_node: bool = False,
) -> None:
    """Refuse a local storage path for a run that may use several machines.

    Trials on other nodes write Ray Tune's experiment files and their checkpoints to the
    storage path, so it must be reachable from every node: a bucket URI, or a shared file
    system named explicitly as ``file:///mount/point`` (mounted at the same path on every
    node). A run attached to a cluster (``address``) needs one even while the cluster has a
    single node: an autoscaling cluster starts with its head alone and adds workers later. Only
    ``single_node`` (the user says the cluster is this one machine) lifts the rule; without an
    address (embedded Ray) the nodes are counted."""
    if single_node or (storage is not None and is_uri(storage)):
        return
    where = "the study folder (the default)" if storage is None else repr(storage)
    remedy = (
        "Give shared storage with --storage (or `storage:` in the study file): a bucket URI "
        "such as s3://BUCKET/infovae-sweep or gs://BUCKET/infovae-sweep, or a shared mount "
        "written as file:///mnt/shared/path"
    )
    if address is not None:
        raise StorageError(
            f"storage: this run is attached to the Ray cluster at {address!r}, whose nodes "
            f"(now or once it scales up) cannot reach Ray Tune's storage path {where}, local "
            f"to the driver's machine. {remedy}; or pass --single-node if the whole cluster "
            "is this one machine"
        )
    if n_nodes > 1:
        raise StorageError(
            f"storage: this Ray cluster has {n_nodes} nodes, and Ray Tune's storage path "
            f"{where} is local to the driver's machine. {remedy}"
        )


def read_storage_record(folder: Path) -> StorageRecord | None:
    try:
        return read_record(folder)
    except OptunaStorageError as error:
        raise StorageError(str(error)) from None


def optuna_choice(
    folder: Path, record: StorageRecord | None, optuna_storage: str | None, resume: bool
) -> str:
    """The Optuna storage of this run: the recorded one on resume (a different explicit choice
    is refused), else ``optuna_storage``, checked (an RDB URL is opened once) before anything
    is written."""
    try:
        if resume:
            recorded = record.optuna_storage if record is not None else check_optuna_storage(None)
            if optuna_storage is not None and check_optuna_storage(optuna_storage) != recorded:
                raise StorageError(
                    f"--optuna-storage: the study in {folder} uses the Optuna storage "
                    f"{recorded!r} (its {names.STORAGE_FILE}); resume reopens it"
                )
            return recorded
        choice = check_optuna_storage(optuna_storage)
    except OptunaStorageError as error:
        raise StorageError(str(error)) from None
    if "://" in choice and _has_password(choice):
        # The choice is written into storage.yaml, and so into the study's mirror and any
        # copy of the folder: a secret must not travel with the results.
        raise StorageError(
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
            raise StorageError(
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


def open_mirror(folder: Path, storage: str | None, study: str, resume: bool):
    """The study folder's mirror under a storage URI (None for a local storage path).

    A new study is refused when the mirror already holds one of the same name: resume that one
    from its URI, or choose another name or storage."""
    if storage is None or "://" not in storage:
        return None
    uri = mirror_uri(storage, study)
    try:
        mirror = StudyMirror(folder, uri)
        if mirror.is_same_folder():
            return None
        if not resume:
            from pyarrow import fs

            marker = mirror.fs.get_file_info(f"{mirror.root}/{names.STUDY_FILE}")
            if marker.type == fs.FileType.File:
                raise StorageError(
                    f"storage: {uri} already holds a study named {study!r}. Continue it with "
                    f"`infovae-sweep resume {uri}`, or give the study another name or "
                    "another --storage"
                )
    except (MirrorError, OSError) as error:
        raise StorageError(f"storage: {error}") from None
    return mirror


def mirror_listener(mirror: StudyMirror) -> Callable[[StudyEvents], None]:
    """Sync the mirror whenever a trial has been recorded (the listener runs on the driver's
    Tune loop, as the recording does); a failed copy is logged and retried next time."""
    seen: list[int] = [-1]

    def on_change(events: StudyEvents) -> None:
        recorded = sum(p.done + p.failed + p.stopped for p in events.arms.values())
        if recorded == seen[0]:
            return
        seen[0] = recorded
        try:
            mirror.sync(force=recorded == 0)
        except (OSError, ValueError) as error:  # pyarrow's errors; the study goes on
            logging.getLogger(__name__).warning("mirror %s: copy failed: %s", mirror.uri, error)

    return on_change


def final_sync(mirror: StudyMirror) -> None:
    """The last copy of a run; a failure is logged (the study folder itself is complete)."""
    try:
        mirror.sync(force=True)
    except (OSError, ValueError) as error:
        logging.getLogger(__name__).warning("mirror %s: copy failed: %s", mirror.uri, error)
