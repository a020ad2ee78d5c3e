"""Faults of the machine rather than of the study: a full disk, a read-only or forbidden folder,
an unreadable data directory, a storage URI that cannot be reached or written.

Each becomes an :class:`EnvironmentFault`, whose message is one line naming the path and what is
wrong, and which the command line reports with exit code :data:`ENVIRONMENT_EXIT` (2). The
checks here run before Ray starts, so that a run that cannot write its results is refused
before any trial trains; a fault that appears later (the disk fills mid-run) is the same kind
of line, followed by the ``resume`` command to run once it is fixed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from pathlib import Path

from sweep.atomic_files import TMP_PREFIX, TMP_SUFFIX

__all__ = [
    "ENVIRONMENT_EXIT",
    "EnvironmentFault",
    "check_data_dir",
    "check_run_environment",
    "check_storage_uri",
    "check_writable_folder",
    "environment_fault",
    "fault_guard",
]

#: The exit code of a run refused or stopped by a fault of the machine (as for bad input).
ENVIRONMENT_EXIT = 2

#: What each errno of the machine means to a user, in words.
_WORDS: dict[int, str] = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "does not exist",
    errno.ENOTDIR: "a path component is not a folder",
    errno.EIO: "input/output error (a failing disk or a lost network mount)",
    errno.ESTALE: "stale file handle (the network mount was lost)",
    errno.ENOTCONN: "not connected (the network mount was lost)",
}

#: The errnos that are the machine's fault, not the program's: reported in a line, never a
#: traceback.
ENVIRONMENT_ERRNOS = frozenset(_WORDS) - {errno.ENOENT, errno.ENOTDIR}


class EnvironmentFault(OSError):
    """A fault of the machine (disk, permissions, mounts, storage): one line naming the path."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _errno_of(error: OSError) -> int | None:
    """The machine's errno of ``error``: its own, or (pyarrow's file systems raise plain
    ``OSError``s whose text holds the system's message) the one its text names."""
    if error.errno in ENVIRONMENT_ERRNOS:
        return error.errno
    return _errno_in(str(error))


def _errno_in(text: str) -> int | None:
    """The machine's errno that ``text`` names (the system's message or this module's)."""
    for code in sorted(ENVIRONMENT_ERRNOS):
        if os.strerror(code) in text or _WORDS[code] in text:
            return code
    return None


#: What SQLite (Optuna's storage) says for the same faults, which carry no errno.
_SQLITE_WORDS: dict[str, int] = {
    "database or disk is full": errno.ENOSPC,
    "attempt to write a readonly database": errno.EROFS,
    "unable to open database file": errno.EACCES,
    "disk i/o error": errno.EIO,
}


def _chain(error: BaseException):
    """``error`` and the errors it was raised from or while handling, outermost first."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def environment_fault(error: BaseException, where: Path | str | None = None):
    """``error`` as an :class:`EnvironmentFault` when it, or an error it was raised from, is
    the machine's fault (a full disk, a read-only mount, a permission), else None. ``where``
    names the path when the error does not (SQLite's errors never do)."""
    for link in _chain(error):
        if isinstance(link, EnvironmentFault):
            return link
        if isinstance(link, OSError):
            code = _errno_of(link)
            if code is None:
                continue
            if link.filename is not None:
                path = link.filename
            elif where is not None:
                path = where
            else:
                path = str(link).splitlines()[0]
            return EnvironmentFault(f"{path}: {_WORDS[code]}")
        text = str(link).lower()
        for words, code in _SQLITE_WORDS.items():
            if words in text:
                return EnvironmentFault(f"{where or 'the Optuna storage'}: {_WORDS[code]}")
    return None


def _probe_name() -> str:
    return f"{TMP_PREFIX}write-check.{uuid.uuid4().hex[:12]}{TMP_SUFFIX}"


def check_writable_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) if needed, and write, sync and remove a small file
    in it; a folder that cannot be created or written raises :class:`EnvironmentFault`."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fault = environment_fault(error)
        if fault is None:
            raise EnvironmentFault(f"{folder}: cannot be created ({error.strerror})") from None
        raise fault from None
    if not folder.is_dir():
        raise EnvironmentFault(f"{folder}: not a folder")
    probe = folder / _probe_name()
    try:
        # A few kilobytes: a disk with less free than that cannot take one trial's rows.
        with open(probe, "wb") as handle:
            handle.write(b"\0" * 16384)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        fault = environment_fault(error)
        raise (fault or EnvironmentFault(f"{folder}: cannot be written ({error})")) from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def check_data_dir(data_dir: Path | None) -> None:
    """A data directory that exists but cannot be read raises :class:`EnvironmentFault`
    (one that does not exist yet is the loader's to create and fill)."""
    if data_dir is None:
        return
    data_dir = Path(data_dir).expanduser()
    if data_dir.exists() and not os.access(data_dir, os.R_OK | os.X_OK):
        raise EnvironmentFault(f"{data_dir}: the data directory cannot be read (permission denied)")


def check_storage_uri(uri: str) -> None:
    """Write and remove a small file under ``uri`` through pyarrow's file systems; a storage
    that cannot be reached or written raises :class:`EnvironmentFault`."""
    from pyarrow import fs

    try:
        filesystem, root = fs.FileSystem.from_uri(uri)
    except (OSError, ValueError) as error:
        raise EnvironmentFault(f"{uri}: cannot be reached ({error})") from None
    probe = f"{root.rstrip('/')}/{_probe_name()}"
    try:
        filesystem.create_dir(root, recursive=True)
        with filesystem.open_output_stream(probe) as out:
            out.write(b"\0" * 16384)
    except (OSError, ValueError) as error:
        code = _errno_of(error) if isinstance(error, OSError) else None
        words = _WORDS[code] if code is not None else str(error).splitlines()[0]
        raise EnvironmentFault(f"{uri}: cannot be written ({words})") from None
    finally:
        with contextlib.suppress(OSError, ValueError):
            filesystem.delete_file(probe)


def _nearest_existing(folder: Path) -> Path:
    """``folder``, else its nearest ancestor that exists (where creating it would write)."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def check_run_environment(folder: Path, storage: str | None, data) -> None:
    """Everything of the machine a run needs, checked before Ray starts: the study folder (or,
    for a new study, the folder it will be created in) can be written, the storage URI can be
    reached and written, the data directory of an MNIST-like dataset can be read.
    ``data``: the study's :class:`~infovae_core.config.DataConfig`."""
    check_writable_folder(_nearest_existing(folder))
    if storage is not None and "://" in storage:
        check_storage_uri(storage)
    if data.dataset in ("mnist", "fashion_mnist"):
        from infovae_core.data import resolve_data_dir

        check_data_dir(resolve_data_dir(data.data_dir))


def fault_guard(where: str):
    """A Ray Tune callback, placed before the store's, that ends the run with an
    :class:`EnvironmentFault` when a trial failed for a fault of the machine (its checkpoint
    could not be written to Ray Tune's storage path ``where``, say): such a trial is not
    recorded as failed, and ``resume`` runs it again once the fault is fixed. The fault shows
    either as Ray's error (the trial's last report failed) or as the trial's own failed result
    (a checkpoint reported during training failed)."""
    from ray.tune import Callback

    from sweep import names
    from sweep.run.store_callback import ray_trial_error
    from sweep.run.trial import TrialResult

    def stop_for(text: str | None) -> None:
        code = _errno_in(text or "")
        if code is not None:
            raise EnvironmentFault(f"{where}: {_WORDS[code]} (a trial could not save its results)")

    class _FaultGuard(Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            result = TrialResult.from_report(trial.last_result)
            if result.status == names.FAILED:
                stop_for(result.error)

        def on_trial_error(self, iteration, trials, trial, **info):
            stop_for(ray_trial_error(trial))

    return _FaultGuard()
