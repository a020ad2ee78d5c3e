"""The root command: --version and shell completion."""

from __future__ import annotations

from importlib import metadata

from typer.testing import CliRunner

from sweep.cli import app

runner = CliRunner()


def test_version_prints_the_installed_version_and_exits_zero():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"infovae-sweep {metadata.version('infovae-sweep')}"


def test_root_help_offers_shell_completion_and_version():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for option in ("--install-completion", "--show-completion", "--version"):
        assert option in result.stdout


def test_show_completion_prints_a_script_for_the_shell():
    # Typer finds the shell from $SHELL (unset in some CI environments): name it.
    result = runner.invoke(
        app, ["--show-completion"], prog_name="infovae-sweep", env={"SHELL": "/bin/bash"}
    )
    assert result.exit_code == 0, result.output
    assert "complete" in result.stdout and "infovae" in result.stdout.lower()
