"""A study folder mirrored under a storage URI, so that the study outlives its driver's machine.

With a storage URI (``--storage s3://BUCKET/path``, ``gs://...``, ``file:///mount/path``), the
driver copies its study folder to ``<storage>/<study>/`` through pyarrow's file systems
(``pyarrow.fs.FileSystem.from_uri``): after each recorded trial, and at the end of the run (after
the report). ``infovae-sweep resume <storage>/<study>`` pulls the mirror into a fresh results
folder with :func:`pull` and carries on (mirroring again); ``report``, ``ls``, ``show``,
``export`` and ``summary`` read a URI through a temporary pulled copy (:func:`pulled`).

What a sync copies, and in which order:

* every file of the study folder except the writer's lock, temp files, Ray Tune's local
  storage (``ray/``), lock files of Optuna's journal, SQLite's rollback journal and the
  mirror's own state (``.mirror.json``);
* only the files whose size or modification time changed since they were last copied
  (recorded in ``.mirror.json``, which :func:`pull` also writes, so a resumed driver does not
  copy the study again); and at most one sync per ``MIRROR_SPACING`` times the duration of
  the last one (the final sync always runs), so mirroring takes a bounded share of a study;
* the Optuna storage first, then the artefacts, then the part files (each trial's epochs part
  before its trials part, which commits the trial), then the main Parquet files and the rest;
  files gone from the study folder (part files folded into the main files) are deleted from
  the mirror last. Whatever moment a copy stops, the mirror holds each recorded trial's rows
  at most once (readers skip part files at or below the main files' ``parts_through``), and
  its Optuna storage knows every trial that its Parquet files record: a resumed search never
  asks Optuna for a trial number (and so a trial id) that is already recorded. A trial that
  Optuna knows and the Parquet files do not is run again under a new number on resume.

A mirror being updated holds an empty marker file, :data:`BEHIND_MARKER`, written before the
first copy of a sync and removed after its last: a sync that failed (the storage is full, or
cannot be reached) leaves it, and ``ls``, ``show`` and the other readers of the URI say that
the mirror is behind its study folder (:func:`mirror_is_behind`). A failed copy is retried with
backoff, at the next recorded trial and at the end of the run (:func:`final_sync`); a mirror
still behind at the end makes ``run`` and ``resume`` end on a line that says so, with exit code
:data:`MIRROR_BEHIND_EXIT`.

No file in the mirror is ever half-written: on a file system with renames (local, NFS,
HDFS) a file is written to a temp name (``.tmp-<name>.<random>.partial``, as
:mod:`sweep.atomic_files` names them) and moved over the target; on an object store (S3, GCS) an
upload becomes visible only when it completes. SQLite files are copied through SQLite's backup
API (a consistent snapshot); the driver writes its Optuna storage on the thread that syncs,
so the other files do not change during a sync.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from sweep import names
from sweep.atomic_files import TMP_PREFIX, TMP_SUFFIX, atomic_write, atomic_write_text

if TYPE_CHECKING:
    from sweep.run.events import StudyEvents

__all__ = [
    "BEHIND_MARKER",
    "MIRROR_BEHIND_EXIT",
    "MIRROR_SPACING",
    "MirrorError",
    "NotAStudyMirrorError",
    "StudyMirror",
    "final_sync",
    "is_uri",
    "mirror_is_behind",
    "mirror_listener",
    "mirror_uri",
    "open_mirror",
    "pull",
    "pulled",
    "split_study_uri",
]

log = logging.getLogger(__name__)

#: A sync (other than the final one) waits at least this many times the last sync's duration.
MIRROR_SPACING = 10.0
#: The empty file a mirror holds while a sync is under way or after one failed.
BEHIND_MARKER = ".mirror-behind"
#: The exit code of a run whose study folder is complete but whose mirror is behind it.
MIRROR_BEHIND_EXIT = 3
#: Waits in seconds before each retry of the final sync (then it gives up for this run).
FINAL_SYNC_RETRIES = (1.0, 3.0, 9.0)
#: Longest wait before a failed copy is tried again during a run (doubling from 1 s).
MAX_RETRY_SECONDS = 60.0
_OBJECT_STORES = ("s3", "gcs")
_CHUNK = 1 << 20


class MirrorError(ValueError):
    """A storage URI that pyarrow cannot open, or a mirror that cannot be read."""


class NotAStudyMirrorError(MirrorError):
    """The URI exists but holds no study (no ``study.yaml``)."""


def is_uri(path: str) -> bool:
    """``s3://...``, ``gs://...``, ``file:///...``: a storage URI rather than a local path."""
    return "://" in str(path)


def mirror_uri(storage: str, study: str) -> str:
    """``<storage>/<study>``: where the study folder is mirrored."""
    return f"{storage.rstrip('/')}/{study}"


def split_study_uri(uri: str) -> tuple[str, str]:
    """``(storage, study)`` of ``<storage>/<study>``."""
    storage, _, study = uri.rstrip("/").rpartition("/")
    scheme, _, rest = storage.partition("://")
    if not study or not scheme or not rest.strip("/") and not storage.startswith("file:///"):
        raise MirrorError(f"{uri}: expected <storage URI>/<study>, e.g. s3://bucket/path/digits")
    return storage, study


def _filesystem(uri: str) -> tuple[Any, str]:
    from pyarrow import fs

    try:
        filesystem, path = fs.FileSystem.from_uri(uri)
    except (OSError, ValueError) as error:
        raise MirrorError(f"{uri}: cannot open this storage URI ({error})") from None
    return filesystem, path.rstrip("/")


def _mirrored(rel: str) -> bool:
    """Whether a file of the study folder (relative POSIX path) belongs in the mirror."""
    parts = PurePosixPath(rel).parts
    name = parts[-1]
    if parts[0] in (names.LOCK_FILE, names.RAY_DIR, names.MIRROR_STATE_FILE, BEHIND_MARKER):
        return False
    if name.startswith(TMP_PREFIX) and name.endswith(TMP_SUFFIX):
        return False
    # Optuna's journal locks (optuna.journal.lock), SQLite's rollback journal (optuna.db-journal).
    return not name.endswith((".lock", "-journal", "-wal", "-shm"))


def _rank(rel: str) -> tuple[int, str]:
    """Copy order: Optuna storage, artefacts, epochs parts, trials parts, main files, the rest."""
    parts = PurePosixPath(rel).parts
    if rel in (names.OPTUNA_FILE, names.OPTUNA_JOURNAL_FILE):
        return 0, rel
    if parts[0] == names.ARTIFACTS_DIR:
        return 1, rel
    if parts[0] == names.PARTS_DIR:
        # epochs-<seq> before trials-<seq>: a trials part commits its trial.
        kind, _, seq = parts[-1].partition("-")
        return (2 if kind == "epochs" else 3), f"{seq}{kind}"
    if rel == names.EPOCHS_FILE:
        return 4, rel
    if rel == names.TRIALS_FILE:
        return 5, rel
    return 6, rel


def _local_files(folder: Path) -> dict[str, Path]:
    found = {}
    for path in folder.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        rel = path.relative_to(folder).as_posix()
        if _mirrored(rel):
            found[rel] = path
    return found


def _signature(stat: os.stat_result) -> list[int]:
    return [stat.st_size, stat.st_mtime_ns]


class StudyMirror:
    """Copies a study folder to ``uri`` (``<storage>/<study>``); see the module docstring."""

    def __init__(self, folder: Path, uri: str) -> None:
        self.folder = Path(folder)
        self.uri = uri.rstrip("/")
        self.fs, self.root = _filesystem(self.uri)
        self.renames = self.fs.type_name not in _OBJECT_STORES
        self._sent: dict[str, list[int]] = self._load_state()
        self._remote: set[str] | None = None
        self._next = 0.0
        self.syncs = 0
        #: The mirror lacks changes of the study folder: its last sync failed.
        self.behind = False
        #: Syncs failed in a row (the wait before the next try doubles with each).
        self.failures = 0
        #: Why the last sync failed (None: it did not).
        self.last_error: str | None = None

    # ---- state ---------------------------------------------------------------------------

    def _state_path(self) -> Path:
        return self.folder / names.MIRROR_STATE_FILE

    def _load_state(self) -> dict[str, list[int]]:
        try:
            state = json.loads(self._state_path().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(state, dict) or state.get("uri") != self.uri:
            return {}
        files = state.get("files")
        return dict(files) if isinstance(files, dict) else {}

    def _save_state(self) -> None:
        text = json.dumps({"uri": self.uri, "files": self._sent}, sort_keys=True)
        atomic_write_text(self._state_path(), text, sync_dir=False)

    # ---- syncing ---------------------------------------------------------------------------

    def is_same_folder(self) -> bool:
        """True when the mirror would be the study folder itself (a local URI onto it)."""
        if self.fs.type_name != "local":
            return False
        with contextlib.suppress(OSError):
            return Path(self.root).resolve() == self.folder.resolve()
        return False

    def sync(self, *, force: bool = False) -> bool:
        """Copy what changed; returns False when skipped (spacing) or when nothing to do."""
        now = time.monotonic()
        if not force and now < self._next:
            return False
        if self.is_same_folder():
            return False
        started = time.monotonic()
        try:
            copied = self._sync()
        except BaseException as error:
            self.behind = True
            self.failures += 1
            self.last_error = str(error).splitlines()[0] if str(error) else type(error).__name__
            backoff = min(MAX_RETRY_SECONDS, 2.0 ** (self.failures - 1))
            self._next = time.monotonic() + backoff
            raise
        ended = time.monotonic()
        self._next = ended + MIRROR_SPACING * (ended - started)
        self.syncs += 1
        self.behind, self.failures, self.last_error = False, 0, None
        return copied

    def _mark_behind(self, behind: bool) -> None:
        """Write (or remove) the mirror's :data:`BEHIND_MARKER`. Writing an empty file needs
        no free block, so it succeeds on a full disk; when it cannot, the copy that follows
        fails too and the driver says so."""
        marker = f"{self.root}/{BEHIND_MARKER}"
        with contextlib.suppress(OSError):
            if behind:
                self.fs.create_dir(self.root, recursive=True)
                with self.fs.open_output_stream(marker):
                    pass
            else:
                self.fs.delete_file(marker)

    def _remote_files(self) -> set[str]:
        from pyarrow import fs

        found = set()
        selector = fs.FileSelector(self.root, recursive=True, allow_not_found=True)
        for info in self.fs.get_file_info(selector):
            if info.type != fs.FileType.File:
                continue
            rel = PurePosixPath(info.path).relative_to(PurePosixPath(self.root)).as_posix()
            if _mirrored(rel):
                found.add(rel)
            elif PurePosixPath(rel).name.startswith(TMP_PREFIX):
                # A temp file of a sync that was killed mid-copy.
                with contextlib.suppress(OSError):
                    self.fs.delete_file(info.path)
        return found

    def _sync(self) -> bool:
        if self._remote is None:
            self._remote = self._remote_files()
            self._sent = {rel: sig for rel, sig in self._sent.items() if rel in self._remote}
        local = _local_files(self.folder)
        copied = False
        marked = self.behind  # a failed sync left the marker in place
        for rel in sorted(local, key=_rank):
            path = local[rel]
            try:
                signature = _signature(path.stat())
            except FileNotFoundError:  # removed meanwhile (a compacted part file)
                continue
            if self._sent.get(rel) == signature and rel in self._remote:
                continue
            if not marked:
                self._mark_behind(True)
                marked = True
            try:
                signature = self._upload(rel, path)
            except FileNotFoundError:
                continue
            self._sent[rel] = signature
            self._remote.add(rel)
            copied = True
        for rel in sorted(self._remote - set(local), key=_rank):
            if not marked:
                self._mark_behind(True)
                marked = True
            with contextlib.suppress(FileNotFoundError):
                self.fs.delete_file(f"{self.root}/{rel}")
            self._remote.discard(rel)
            self._sent.pop(rel, None)
            copied = True
        if copied:
            self._save_state()
        if marked:
            self._mark_behind(False)
        return copied

    def _upload(self, rel: str, path: Path) -> list[int]:
        """Copy one file; returns the signature of the version copied."""
        target = f"{self.root}/{rel}"
        parent = target.rpartition("/")[0]
        self.fs.create_dir(parent, recursive=True)
        if self.renames:
            name = PurePosixPath(rel).name
            written = f"{parent}/{TMP_PREFIX}{name}.{uuid.uuid4().hex[:12]}{TMP_SUFFIX}"
        else:
            written = target
        try:
            with self._source(path) as (source, signature):
                with self.fs.open_output_stream(written) as out:
                    shutil.copyfileobj(source, out, _CHUNK)
            if written != target:
                self.fs.move(written, target)
        except BaseException:
            if written != target:
                with contextlib.suppress(OSError):
                    self.fs.delete_file(written)
            raise
        return signature

    @contextlib.contextmanager
    def _source(self, path: Path) -> Iterator[tuple[Any, list[int]]]:
        """The file to copy, opened, and the signature of that very version (``fstat``);
        a SQLite database is read through a backup snapshot."""
        if path.suffix == ".db":
            signature = _signature(path.stat())
            with tempfile.TemporaryDirectory(prefix="infovae-mirror-") as scratch:
                snapshot = Path(scratch) / path.name
                _sqlite_snapshot(path, snapshot)
                with open(snapshot, "rb") as handle:
                    yield handle, signature
            return
        with open(path, "rb") as handle:
            yield handle, _signature(os.fstat(handle.fileno()))


def _sqlite_snapshot(source: Path, target: Path) -> None:
    with contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src:
        with contextlib.closing(sqlite3.connect(target)) as dst:
            src.backup(dst)


# --------------------------------------------------------------------------------------------
# Pulling


def pull(
    uri: str, folder: Path, *, keep: Callable[[str], bool] | None = None, state: bool = True
) -> int:
    """Copy the mirror at ``uri`` into ``folder`` (created; files written atomically).

    ``keep(rel)`` selects files (default all); ``state`` writes ``.mirror.json`` so that a
    driver resuming in ``folder`` copies only what changes. Returns the number of files.
    Raises :class:`NotAStudyMirrorError` when ``uri`` holds no study, :class:`MirrorError`
    when it cannot be opened."""
    from pyarrow import fs

    filesystem, root = _filesystem(uri)
    try:
        study = filesystem.get_file_info(f"{root}/{names.STUDY_FILE}")
    except OSError as error:
        raise MirrorError(f"{uri}: cannot read it ({error})") from None
    if study.type != fs.FileType.File:
        raise NotAStudyMirrorError(
            f"{uri}: not a study (no {names.STUDY_FILE}); give <storage URI>/<study>, the "
            "folder that `infovae-sweep run --storage <storage URI>` mirrors each study to"
        )
    listing = filesystem.get_file_info(fs.FileSelector(root, recursive=True))
    files = []
    for info in listing:
        if info.type != fs.FileType.File:
            continue
        rel = PurePosixPath(info.path).relative_to(PurePosixPath(root)).as_posix()
        if _mirrored(rel) and (keep is None or keep(rel)):
            files.append(rel)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sent: dict[str, list[int]] = {}
    # Main files before the part files: a sync running meanwhile only adds part files above
    # the main files' number before it replaces the main files.
    for rel in sorted(files, key=lambda r: -_rank(r)[0]):
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with filesystem.open_input_stream(f"{root}/{rel}") as source:
                atomic_write(
                    target, lambda out, s=source: shutil.copyfileobj(s, out, _CHUNK), sync_dir=False
                )
        except FileNotFoundError:  # deleted by a sync meanwhile (a compacted part file)
            continue
        sent[rel] = _signature(target.stat())
    if state:
        text = json.dumps({"uri": uri.rstrip("/"), "files": sent}, sort_keys=True)
        atomic_write_text(folder / names.MIRROR_STATE_FILE, text)
    return len(sent)


def _without_artifacts(rel: str) -> bool:
    return PurePosixPath(rel).parts[0] != names.ARTIFACTS_DIR and rel not in (
        names.OPTUNA_FILE,
        names.OPTUNA_JOURNAL_FILE,
        names.REPORT_FILE,
    )


@contextlib.contextmanager
def pulled(uri: str, *, artifacts: bool = False) -> Iterator[Path]:
    """A read-only view of the study mirrored at ``uri``: a temporary pulled copy, its part
    files folded into the main Parquet files (so that direct readers see every trial),
    removed on exit. ``artifacts``: also the artefacts, the Optuna storage and the report."""
    from sweep.store import ResultsStore, StoreError

    _, study = split_study_uri(uri)
    with tempfile.TemporaryDirectory(prefix="infovae-pulled-") as scratch:
        folder = Path(scratch) / study
        pull(uri, folder, keep=None if artifacts else _without_artifacts, state=False)
        with contextlib.suppress(StoreError, OSError):
            with ResultsStore.open(folder).lock():
                pass  # taking and releasing the lock compacts the part files
        yield folder


def list_mirrored_studies(uri: str) -> list[str]:
    """Names of the studies mirrored directly under the storage URI ``uri``."""
    from pyarrow import fs

    filesystem, root = _filesystem(uri)
    try:
        listing = filesystem.get_file_info(fs.FileSelector(root, allow_not_found=True))
    except OSError as error:
        raise MirrorError(f"{uri}: cannot list it ({error})") from None
    found = []
    for info in listing:
        if info.type == fs.FileType.Directory:
            marker = filesystem.get_file_info(f"{info.path}/{names.STUDY_FILE}")
            if marker.type == fs.FileType.File:
                found.append(PurePosixPath(info.path).name)
    return sorted(found)


@contextlib.contextmanager
def pulled_root(uri: str) -> Iterator[Path]:
    """A temporary results folder holding the trials of every study mirrored under ``uri``
    (for ``ls``): study.yaml and the trials files of each, no epochs or artefacts."""

    def trials_only(rel: str) -> bool:
        if rel in (names.STUDY_FILE, names.TRIALS_FILE):
            return True
        parts = PurePosixPath(rel).parts
        return parts[0] == names.PARTS_DIR and parts[-1].startswith("trials-")

    with tempfile.TemporaryDirectory(prefix="infovae-pulled-") as scratch:
        for study in list_mirrored_studies(uri):
            pull(mirror_uri(uri, study), Path(scratch) / study, keep=trials_only, state=False)
        yield Path(scratch)


# --------------------------------------------------------------------------------------------
# A run's mirror


def open_mirror(
    folder: Path, storage: str | None, study: str, resume: bool
) -> StudyMirror | None:
    """A run's mirror of its study folder under a storage URI (None for a local storage path).

    A new study is refused (:class:`MirrorError`) when the mirror already holds one of the same
    name: resume that one from its URI, or choose another name or storage."""
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
                raise MirrorError(
                    f"{uri} already holds a study named {study!r}. Continue it with "
                    f"`infovae-sweep resume {uri}`, or give the study another name or "
                    "another --storage"
                )
    except OSError as error:
        raise MirrorError(str(error)) from None
    return mirror


def mirror_listener(mirror: StudyMirror) -> Callable[[StudyEvents], None]:
    """Sync the mirror whenever a trial has been recorded (the listener runs on the driver's
    Tune loop, as the recording does); a failed copy is logged, marks the mirror behind, and
    is tried again at a later recorded trial once its backoff (1, 2, 4, ... 60 s) has passed."""
    seen: list[int] = [-1]

    def on_change(events: StudyEvents) -> None:
        recorded = sum(p.done + p.failed + p.stopped for p in events.arms.values())
        if recorded == seen[0]:
            return
        seen[0] = recorded
        try:
            mirror.sync(force=recorded == 0)
        except (OSError, ValueError) as error:  # pyarrow's errors; the study goes on
            log.warning("mirror %s: copy failed: %s", mirror.uri, error)

    return on_change


def final_sync(mirror: StudyMirror, retries: tuple[float, ...] = ()) -> bool:
    """A copy of the whole mirror, tried again after each wait of ``retries`` (the command
    line's last copy: :data:`FINAL_SYNC_RETRIES`) when it fails;
    returns whether the mirror is up to date (a failure is logged: the study folder itself is
    complete, and :attr:`StudyMirror.last_error` says why)."""
    for wait in (*retries, None):
        try:
            mirror.sync(force=True)
        except (OSError, ValueError) as error:
            log.warning("mirror %s: copy failed: %s", mirror.uri, error)
            if wait is None:
                return False
            time.sleep(wait)
        else:
            return True
    return False


def mirror_is_behind(uri: str) -> bool:
    """Whether the study mirrored at ``uri`` holds the :data:`BEHIND_MARKER` (a sync failed
    or is under way)."""
    from pyarrow import fs

    try:
        filesystem, root = _filesystem(uri)
        return filesystem.get_file_info(f"{root}/{BEHIND_MARKER}").type == fs.FileType.File
    except (OSError, ValueError):
        return False
