"""docs/cli.md is the command reference Typer generates from the app, and every
``infovae-sweep <command> --flag`` that README.md and docs/*.md name exists as named."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from sweep.cli import app

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "cli.md"
REGENERATE = "typer sweep.cli utils docs --name infovae-sweep --output docs/cli.md"


def _commands() -> dict[str, set[str]]:
    """Each command's option names (with negations), and the root's under ''."""
    group = typer.main.get_command(app)
    context = typer.Context(group)

    def names(command) -> set[str]:
        found = {"--help"}
        for param in command.params:
            found.update(getattr(param, "opts", ()))
            found.update(getattr(param, "secondary_opts", ()))
        return found

    commands = {name: names(group.commands[name]) for name in group.list_commands(context)}
    commands[""] = names(group)
    return commands


def test_docs_cli_md_is_what_typer_generates_from_the_app(tmp_path):
    out = tmp_path / "cli.md"
    args = [sys.executable, "-m", "typer", "sweep.cli", "utils", "docs"]
    subprocess.run(
        [*args, "--name", "infovae-sweep", "--output", str(out)],
        check=True, cwd=ROOT, capture_output=True,
    )
    assert out.read_text(encoding="utf-8") == REFERENCE.read_text(encoding="utf-8"), (
        f"docs/cli.md is out of date: run {REGENERATE}"
    )


_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A command line as the docs write it: up to the end of its code span, table cell or line.
_CALL = re.compile(r"infovae-sweep((?:\s+[^\s`|]+)*)")
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _calls(page: Path) -> list[tuple[int, str, list[str]]]:
    """(line, command, flags) of each ``infovae-sweep`` command line of a page."""
    calls = []
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        for match in _CALL.finditer(line):
            words = match.group(1).split()
            if not words:
                continue
            if words[0].startswith("-"):
                command = ""
            elif re.fullmatch(r"[a-z][a-z-]*", words[0]):
                command = words[0]
            else:  # a placeholder (COMMAND, [OPTIONS]) or output such as a version number
                continue
            calls.append((number, command, _FLAG.findall(" ".join(words))))
    return calls


@pytest.mark.parametrize("page", _PAGES, ids=lambda p: p.name)
def test_every_command_and_flag_a_page_names_exists(page):
    if not page.exists():
        pytest.skip(f"{page.name} is not there")
    commands = _commands()
    wrong = []
    for number, command, flags in _calls(page):
        if command not in commands:
            wrong.append(f"{page.name}:{number}: no command {command!r}")
            continue
        wrong += [
            f"{page.name}:{number}: {command or 'infovae-sweep'} has no {flag}"
            for flag in flags
            if flag not in commands[command]
        ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("command", ["", "report", "train"])
def test_flags_show_no_value_in_the_help(command):
    from typer.testing import CliRunner

    args = [command, "--help"] if command else ["--help"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "<bool>" not in result.output


def test_arguments_read_as_capitals_in_the_usage_lines():
    text = REFERENCE.read_text(encoding="utf-8")
    usages = re.findall(r"^\$ infovae-sweep (\w+) \[OPTIONS\] (.*)$", text, re.MULTILINE)
    assert dict(usages)["validate"] == "STUDY..."
    assert dict(usages)["report"] == "FOLDER"
    assert dict(usages)["ls"] == "[RESULTS]"
    assert not re.search(r"\{|\[[a-z]", " ".join(rest for _, rest in usages))
