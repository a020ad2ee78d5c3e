"""Damaged files of a study folder, found by reading only (nothing is ever written or repaired).

The CLI's readers (``show``, ``report``, ``export``, ``summary``) and ``resume`` call
:func:`damaged_files` before doing anything, and refuse a folder with a damaged file (exit 2),
naming each file and what is wrong with it; ``ls`` flags such a study and lists the others.

Checked: ``study.yaml`` (UTF-8 YAML mapping), ``trials.parquet``, ``epochs.parquet`` and the
part files under ``.parts/`` (readable Parquet, the fixed columns, no trial recorded twice), and
``optuna.db`` (an SQLite database as long as its header says, passing SQLite's
``quick_check``). A ``thorough=False`` check reads only the Parquet footers and the SQLite
header, for ``ls`` over many studies.

A file that a live driver is replacing is never seen half-written (every store write is atomic,
:mod:`sweep.atomic_files`); an ``optuna.db`` with a hot journal beside it (a writer killed mid
transaction) is judged by its header only: SQLite rolls the journal back on the next write.
"""

from __future__ import annotations

import os
import sqlite3
import struct
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from sweep import names
from sweep.store import ResultsStore, StoreCorruptError, StoreError

__all__ = ["damaged_files", "describe_damage"]

_SQLITE_MAGIC = b"SQLite format 3\x00"
_SQLITE_HEADER = 100


def _parquet_problem(path: Path) -> str | None:
    """What is wrong with a Parquet file's size and footer (a truncated, overwritten or emptied
    file fails here; damage inside the data pages is found by reading it whole)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None  # compacted away meanwhile (a part) or never written
    if size == 0:
        return "empty file (0 bytes)"
    try:
        pq.read_metadata(path)
    except FileNotFoundError:
        return None
    except (pa.ArrowException, OSError, ValueError) as exc:
        return f"not a readable Parquet file, truncated or overwritten ({size} bytes; {exc})"
    return None


def _optuna_problem(path: Path, trials_recorded: bool, thorough: bool) -> str | None:
    try:
        with open(path, "rb") as handle:
            header = handle.read(_SQLITE_HEADER)
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size == 0:
        # SQLite reads an empty file as an empty database: sound before the first trial (a
        # driver killed as it created the file), damaged once trials were recorded.
        return "empty file (0 bytes), but trials are recorded" if trials_recorded else None
    if len(header) < _SQLITE_HEADER or not header.startswith(_SQLITE_MAGIC):
        return f"not an SQLite database ({size} bytes; no SQLite header)"
    journals = [Path(f"{path}{suffix}") for suffix in ("-journal", "-wal")]
    if any(journal.exists() for journal in journals):
        return None  # a writer was interrupted: SQLite recovers the file from the journal
    page_size = struct.unpack(">H", header[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    pages, valid_for = struct.unpack(">I", header[28:32])[0], header[92:96]
    if valid_for == header[24:28] and pages and size < page_size * pages:
        return f"truncated SQLite database ({size} bytes; its header says {page_size * pages})"
    if not thorough:
        return None
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            rows = connection.execute("PRAGMA quick_check").fetchall()
        finally:
            connection.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            return None  # a live driver is writing: not judged now
        return f"not a readable SQLite database ({exc})"
    except sqlite3.DatabaseError as exc:
        return f"not a readable SQLite database ({exc})"
    if rows != [("ok",)]:
        return "SQLite integrity check failed: " + "; ".join(str(r[0]) for r in rows[:3])
    return None


def _study_problem(path: Path) -> str | None:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return "not UTF-8 text"
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        return f"not valid YAML ({' '.join(str(exc).split())[:300]})"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not isinstance(loaded, dict):
        return f"not a study (a YAML {type(loaded).__name__}, expected a mapping)"
    return None


def damaged_files(
    folder: Path | str,
    *,
    thorough: bool = True,
    open_store: Callable[[Path], ResultsStore] = ResultsStore.open,
) -> list[str]:
    """``"<path>: <what is wrong>"`` for every damaged file of a study folder (empty: sound).

    Reads only. ``thorough`` also reads the Parquet files whole (through ``open_store``, which
    a reader that goes on to use the store passes so that the files are read once) and runs
    SQLite's ``quick_check``; otherwise only the Parquet footers and the SQLite header are read.
    """
    folder = Path(folder)
    problems: list[str] = []
    study = folder / names.STUDY_FILE
    if study.is_file() and (problem := _study_problem(study)) is not None:
        problems.append(f"{study}: {problem}")
    parquet = [folder / names.TRIALS_FILE, folder / names.EPOCHS_FILE]
    parts = folder / names.PARTS_DIR
    parquet += sorted(parts / n for n in _listing(parts) if n.endswith(".parquet"))
    for path in parquet:
        if (problem := _parquet_problem(path)) is not None:
            problems.append(f"{path}: {problem}")
    trials_recorded = True
    if not problems and thorough and study.is_file():
        try:  # every page readable, the fixed columns, no trial twice (main files and parts)
            trials_recorded = len(open_store(folder)) > 0
        except StoreCorruptError as exc:
            problems.append(str(exc))
        except StoreError:
            pass  # not a study folder, or the files kept changing: not damage
    elif not problems:
        trials_recorded = _any_trial(folder)
    optuna_db = folder / names.OPTUNA_FILE
    if (problem := _optuna_problem(optuna_db, trials_recorded, thorough)) is not None:
        problems.append(f"{optuna_db}: {problem}")
    return problems


def _any_trial(folder: Path) -> bool:
    try:
        if pq.read_metadata(folder / names.TRIALS_FILE).num_rows > 0:
            return True
    except (pa.ArrowException, OSError, ValueError):
        pass
    return any(n.startswith("trials-") for n in _listing(folder / names.PARTS_DIR))


def _listing(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []


def describe_damage(folder: Path | str, problems: list[str]) -> str:
    """The message of a command refusing a damaged study folder."""
    lines = [f"{folder}: damaged study folder; nothing was read further or changed:"]
    lines += [f"  {problem}" for problem in problems]
    lines.append(
        "Restore the damaged file(s) from a copy (or move the study folder aside and run the "
        "study again)."
    )
    return "\n".join(lines)
