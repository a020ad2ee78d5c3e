"""Study errors: :class:`StudySpecError` and the translation of pydantic's errors into it.

Every problem is reported as ``<file>:<line>: <yaml.path>: <what is wrong>``. Validators raise
:class:`ValidatorIssues` to report several problems at their own paths; :func:`spec_error`
turns a pydantic ``ValidationError`` into one :class:`StudySpecError`, each issue at the line
of its YAML path, with pydantic's wording made readable (``must be``, the allowed keys of a
mapping, a ``did you mean`` for a misspelt key).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from sweep.spec.yaml import LineIndex

__all__ = [
    "StudyIssue",
    "StudySpecError",
    "ValidatorIssues",
    "spec_error",
    "unwrap_annotation",
]


@dataclass(frozen=True)
class StudyIssue:
    """One problem in a study file: where (file, 1-based line, dotted YAML path) and what."""

    source: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class StudySpecError(ValueError):
    """A study file is unreadable or invalid. ``str()`` lists one issue per line as
    ``<file>:<line>: <yaml.path>: <what is wrong>``; ``issues`` holds them as data."""

    def __init__(self, issues: Sequence[StudyIssue]) -> None:
        self.issues: tuple[StudyIssue, ...] = tuple(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


class ValidatorIssues(ValueError):
    """Raised inside validators: (path relative to the validated object, message) pairs.

    Pydantic keeps the exception in the error's context, so the loader can report each pair at
    its own YAML path and line instead of one message at the enclosing object.
    """

    def __init__(self, issues: Sequence[tuple[str, str]]) -> None:
        self.issues = tuple(issues)
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in self.issues))


def spec_error(
    err: ValidationError, root: type[BaseModel], lines: LineIndex, source: str
) -> StudySpecError:
    """Every problem of ``err`` (raised validating ``root``, the study's model) as one error,
    each at the line of its YAML path in ``source``, in file order."""
    found = [(path, lines.line_for(path), msg) for path, msg in _translate(err, root)]
    found.sort(key=lambda issue: (issue[1] or 0, issue[0]))
    return StudySpecError([StudyIssue(source, ln, path, msg) for path, ln, msg in found])


def _join(*parts: str) -> str:
    return ".".join(part for part in parts if part)


def _translate(err: ValidationError, root: type[BaseModel]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for error in err.errors():
        loc = tuple(part for part in error["loc"] if part != "[key]")
        base = ".".join(str(part) for part in loc)
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, ValidatorIssues):
            found.extend((_join(base, rel), message) for rel, message in cause.issues)
        else:
            found.append((base, _message(error, loc, root)))
    return found


def _message(error: Any, loc: tuple[Any, ...], root: type[BaseModel]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(root, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        return f"unknown key ({hint}allowed: {', '.join(allowed)})" if allowed else "unknown key"
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if kind in ("value_error", "assertion_error"):
        return message
    message = message.replace("Input should be", "must be").replace("Input ", "")
    if kind == "literal_error" and isinstance(error.get("input"), bool):
        message += " (YAML reads yes/no/on/off as true/false: quote the word)"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        message = "must be a mapping"
    given = repr(error.get("input"))
    return f"{message}, got {given if len(given) <= 60 else given[:57] + '...'}"


def unwrap_annotation(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``X | None`` down to the one type a value must have."""
    while True:
        origin = get_origin(annotation)
        args = [a for a in get_args(annotation) if a is not type(None)]
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif args and origin is not None and type(None) in get_args(annotation) and len(args) == 1:
            annotation = args[0]
        else:
            return annotation


def _allowed_keys(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Keys the model at ``loc`` (a pydantic location below ``root``) accepts."""
    current: Any = root
    for part in loc:
        current = unwrap_annotation(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {f.alias or name: f for name, f in current.model_fields.items()}
            if part not in fields:
                return []
            current = fields[part].annotation
        elif get_origin(current) in (dict, tuple, list):
            current = get_args(current)[-1] if get_origin(current) is dict else get_args(current)[0]
        else:
            return []
    current = unwrap_annotation(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []
