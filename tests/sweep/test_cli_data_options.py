"""`run` and `resume` --data-dir / --no-download reach the trials as the study's data settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.cli import _with_data
from sweep.spec import load_study

STUDY = Path(__file__).resolve().parents[2] / "studies" / "mnist_cpu.yaml"


def test_data_dir_and_no_download_reach_every_arms_trial_config(tmp_path):
    spec = _with_data(load_study(STUDY), tmp_path, download=False)
    for arm in spec.arm_names:
        data = spec.arm_config(arm).data
        assert (data.data_dir, data.download) == (str(tmp_path), False)


def test_without_the_options_the_study_keeps_its_data_settings():
    spec = _with_data(load_study(STUDY), None, download=True)
    data = spec.arm_config(spec.arm_names[0]).data
    assert (data.data_dir, data.download) == (None, True)


def test_the_download_choice_is_not_written_to_the_study_folder(tmp_path):
    spec = _with_data(load_study(STUDY), None, download=False)
    assert "download" not in spec.to_yaml()


@pytest.mark.parametrize("command", ["run", "resume"])
def test_run_and_resume_offer_the_data_options(command):
    from typer.testing import CliRunner

    from sweep.cli import app

    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert "--data-dir" in result.output and "--no-download" in result.output
