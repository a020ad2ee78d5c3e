"""The one-driver-per-study lock: ``fcntl.flock`` on ``<study folder>/.lock``.

The lock file holds the holder's ``pid <n> on <host>`` while it is held, so a second driver is
told who runs the study. The OS releases the lock when the holder dies, so a crashed driver
never leaves a study locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from sweep import names
from sweep.store.store_errors import StudyLockedError

__all__ = ["is_study_running", "study_lock"]


def _try_lock(handle: IO[str]) -> bool:
    """Take the lock on ``handle`` without waiting; False when another holder has it."""
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def is_study_running(folder: Path) -> bool:
    """True when a driver holds the lock of the study in ``folder`` (it is running). Probes
    with the same lock a driver takes, released at once; writes nothing."""
    path = Path(folder) / names.LOCK_FILE
    if not path.exists():
        return False
    with open(path) as handle:
        if not _try_lock(handle):
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return False


@contextlib.contextmanager
def study_lock(folder: Path) -> Iterator[IO[str]]:
    """Hold the lock of the study in ``folder``; yields the open lock file.

    Raises :class:`StudyLockedError` at once (no waiting) when another open file description
    holds it, e.g. a second driver running the same study. On exit the holder line is cleared
    and the lock released.
    """
    path = folder / names.LOCK_FILE
    handle = open(path, "a+")  # held open for the lock's lifetime
    try:
        acquired = _try_lock(handle)
    except BaseException:
        handle.close()
        raise
    if not acquired:
        handle.seek(0)
        holder = handle.read().strip() or "unknown process"
        handle.close()
        raise StudyLockedError(
            f"{folder}: study is in use by another driver ({holder}); "
            f"wait for it to finish or stop it (lock file {path})"
        )
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        yield handle
    finally:
        with contextlib.suppress(OSError):
            handle.seek(0)
            handle.truncate()
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()
