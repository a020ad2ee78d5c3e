"""The one way ``sweep`` writes a file that readers may open at any moment: atomically.

A file is written to a temp file in the same folder, flushed, ``fsync``-ed, then moved over the
target with ``os.replace`` (atomic on POSIX within one file system), and the folder is
``fsync``-ed so that the rename itself survives a power cut. A reader therefore sees either the
old file or the new one, never a half-written one; a writer killed mid-way leaves only a temp
file named ``.tmp-<name>.<random>.partial``, which :func:`remove_temp_files` clears.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "TMP_PREFIX",
    "TMP_SUFFIX",
    "atomic_write",
    "atomic_write_bytes",
    "file_mode",
    "fsync_dir",
    "remove_temp_files",
]

TMP_PREFIX = ".tmp-"
TMP_SUFFIX = ".partial"


def _current_umask() -> int:
    """The process's umask: read from ``/proc`` on Linux (without changing it, which another
    thread could observe), else by setting it and setting it back."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file: 0666 less the umask.

    ``mkstemp`` creates its file 0600 whatever the umask, and the rename keeps that mode, so
    without this a study's files could be read by their owner only: not by a colleague on a
    shared mount, nor by a web server serving the report."""
    return 0o666 & ~_current_umask()


def fsync_dir(folder: Path) -> None:
    """Make the renames and unlinks done in ``folder`` durable (where the platform allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, write: Callable[[BinaryIO], object], *, sync_dir: bool = True) -> None:
    """Write ``path`` through a temp file: ``write(fileobj)``, flush, fsync, ``os.replace``.

    ``sync_dir=False`` leaves the folder's fsync to the caller, so that several files replaced
    together cost one folder sync (on ext4 a folder fsync commits the journal and costs more
    than the file fsyncs). The temp file is removed when ``write`` or the rename raises.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(
        dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}.", suffix=TMP_SUFFIX
    )
    tmp = Path(tmp_name)
    try:
        with contextlib.suppress(OSError):  # a file system without modes (some SMB mounts)
            os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if sync_dir:
        fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes, *, sync_dir: bool = True) -> None:
    """:func:`atomic_write` of a bytes payload."""
    atomic_write(path, lambda handle: handle.write(data), sync_dir=sync_dir)


def atomic_write_text(path: Path, text: str, *, sync_dir: bool = True) -> None:
    """:func:`atomic_write` of UTF-8 text, written as is (no newline translation)."""
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")), sync_dir=sync_dir)


def remove_temp_files(folder: Path) -> None:
    """Delete the temp files that a killed :func:`atomic_write` left in ``folder``."""
    for path in Path(folder).glob(f"{TMP_PREFIX}*{TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            path.unlink()
