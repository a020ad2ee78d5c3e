"""The results store's errors, in one module so that every part of the store can raise them."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of the results store's errors."""


class NotAStudyFolderError(StoreError):
    """The path is not a study folder (no such directory, or no ``study.yaml`` in it)."""


class StudyExistsError(StoreError):
    """``create`` met a folder that already holds a different study (or other files)."""


class StudyLockedError(StoreError):
    """Another driver holds the study's lock."""


class StoreCorruptError(StoreError):
    """A store file cannot be read or does not have the store's schema; names the file."""


class DamagedStudyError(StoreCorruptError):
    """A study folder holds damaged files; the message names each one and what is wrong."""


class RowError(StoreError, ValueError):
    """A trial or epoch row is malformed; the message names the column."""


class SchemaConflictError(RowError):
    """A column received a value whose type conflicts with the column's type."""
