"""Read a study file's YAML safely, with the line of every key.

:func:`parse_yaml` builds the document with ``yaml.SafeLoader`` (no tags that build objects),
reading numbers like ``1e-3`` as floats and refusing duplicate keys, and records a
:class:`LineIndex` (dotted YAML path -> 1-based line) that error messages cite. Problems with
the text itself (bad YAML, control characters, an empty file) come back as issues with a line.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

__all__ = ["TOO_DEEP", "LineIndex", "RawIssue", "parse_yaml"]


#: The message for a file nested beyond what PyYAML's parser (or pydantic) can recurse through.
TOO_DEEP = (
    "invalid YAML: lists or mappings nested too deeply to read (a study nests a few levels; "
    "is this a generated or corrupted file?)"
)


class _StudyLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.2 style; YAML 1.1 wants 1.0e-3)."""


_StudyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


class LineIndex:
    """Dotted YAML path -> 1-based line of its key (or list item)."""

    def __init__(self) -> None:
        self.lines: dict[str, int] = {}

    def line_for(self, path: str) -> int | None:
        """Line of ``path``, else of its nearest recorded ancestor (e.g. for a missing key)."""
        parts = path.split(".") if path else []
        while parts:
            found = self.lines.get(".".join(parts))
            if found is not None:
                return found
            parts.pop()
        return self.lines.get("", 1)


def _index_node(
    node: yaml.Node,
    path: str,
    index: LineIndex,
    issues: list[tuple[str, int, str]],
    visited: set[int],
) -> None:
    # Aliases share nodes: index each collection once (also stops recursive anchors).
    if id(node) in visited:
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            child = f"{path}.{key}" if path else key
            line = key_node.start_mark.line + 1
            if child in index.lines and key != "<<":
                issues.append((child, line, f"duplicate key (first at line {index.lines[child]})"))
            index.lines.setdefault(child, line)
            _index_node(value_node, child, index, issues, visited)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = f"{path}.{i}" if path else str(i)
            index.lines.setdefault(child, item.start_mark.line + 1)
            _index_node(item, child, index, issues, visited)


RawIssue = tuple[str, int | None, str]  # (YAML path, line, message)


def parse_yaml(text: str) -> tuple[dict[str, Any] | None, LineIndex, list[RawIssue]]:
    """YAML text -> (top-level mapping or None when unusable, line index, issues)."""
    index = LineIndex()
    issues: list[RawIssue] = []
    try:
        loader = _StudyLoader(text)  # the reader refuses non-printable characters (NUL, ...) here
    except yaml.reader.ReaderError as err:
        return None, index, [_reader_issue(text, err)]
    try:
        node = loader.get_single_node()
        if node is None:
            return None, index, [("", 1, "the study file is empty")]
        index.lines[""] = node.start_mark.line + 1
        if not isinstance(node, yaml.MappingNode):
            kind = "a list" if isinstance(node, yaml.SequenceNode) else f"{node.value!r}"
            return (
                None,
                index,
                [
                    (
                        "",
                        node.start_mark.line + 1,
                        "the top level must be a mapping of study settings (name, data, arms, "
                        f"search, ...), got {kind}",
                    )
                ],
            )
        duplicates: list[tuple[str, int, str]] = []
        _index_node(node, "", index, duplicates, set())
        issues.extend(duplicates)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(part for part in (err.context, err.problem) if part)
        if err.context_mark is not None and err.problem_mark is not None:
            if err.context_mark.line != err.problem_mark.line:
                what += f" (the construct began at line {err.context_mark.line + 1})"
        return None, index, [("", line, f"invalid YAML: {what}")]
    except yaml.reader.ReaderError as err:
        return None, index, [_reader_issue(text, err)]
    except yaml.YAMLError as err:
        return None, index, [("", None, f"invalid YAML: {err}")]
    except (ValueError, OverflowError) as err:  # a scalar PyYAML resolved but cannot build:
        # an integer of more than 4300 digits, a timestamp such as 2024-13-45
        return None, index, [("", None, f"invalid YAML value: {err}")]
    finally:
        loader.dispose()
    if issues:
        return None, index, issues
    return data, index, issues


def _reader_issue(text: str, err: yaml.reader.ReaderError) -> RawIssue:
    """A character YAML refuses (NUL, other control characters) as an issue with its line and
    column, computed from the reader's character offset."""
    position = max(0, min(int(err.position), len(text)))
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    code = err.character if isinstance(err.character, int) else ord(str(err.character)[:1] or " ")
    return (
        "",
        line,
        f"invalid YAML: character U+{code:04X} at line {line}, column {column} "
        f"(character offset {position}): {err.reason}; YAML allows only printable characters, "
        "tabs and line breaks (is this a binary or corrupted file?)",
    )
