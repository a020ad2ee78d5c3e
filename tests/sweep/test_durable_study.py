"""A study folder that outlives its machine: mirrored under a file:// storage URI as trials
finish, resumed from the URI into a fresh results folder (also after the driver's SIGKILL)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from sweep import names
from sweep.spec import load_study
from sweep.store import ResultsStore
from tests.sweep.studies import write_study
from tests.sweep.test_resume_and_cluster import _kill_tree, _rows

pytestmark = pytest.mark.slow

ENV = dict(os.environ, PYTHONUNBUFFERED="1")
#: Files of a study folder that are the driver's own and never mirrored.
LOCAL_ONLY = (names.LOCK_FILE, names.MIRROR_STATE_FILE)


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sweep.cli", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
    )


def _files(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).parts[0] not in LOCAL_ONLY
    }


def _planned(study: Path) -> int:
    spec = load_study(study)
    return sum(
        spec.trials_for(arm) + spec.confirm.top_k * spec.confirm.seeds for arm in spec.arm_names
    )


def _assert_each_planned_trial_once(folder: Path, planned: int) -> None:
    trials = pq.read_table(folder / names.TRIALS_FILE).to_pandas()
    assert len(trials) == planned
    assert trials[names.TRIAL_ID].is_unique
    assert (trials[names.STATUS] == names.COMPLETED).all()
    epochs = pq.read_table(folder / names.EPOCHS_FILE).to_pandas()
    assert not epochs.duplicated([names.TRIAL_ID, names.EPOCH]).any()


@pytest.fixture(scope="module")
def mirrored_run(tmp_path_factory):
    """A finished run of a tiny study with --storage file://... and the journal storage."""
    root = tmp_path_factory.mktemp("durable")
    study = write_study(root, "durable", trials=2, seeds=1, epochs=2)
    bucket = root / "bucket"
    done = _cli(
        "run",
        str(study),
        "--results",
        str(root / "results"),
        "--storage",
        bucket.as_uri(),
        "--optuna-storage",
        "journal",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return study, root / "results" / "durable", bucket


def test_mirror_after_a_run_equals_the_study_folder(mirrored_run):
    _, folder, bucket = mirrored_run
    local = _files(folder)
    assert names.REPORT_FILE in local and names.OPTUNA_JOURNAL_FILE in local
    assert names.OPTUNA_FILE not in local
    assert _files(bucket / "durable") == local


def test_show_reads_the_mirror_of_a_run(mirrored_run):
    _, _, bucket = mirrored_run
    shown = _cli("show", f"{bucket.as_uri()}/durable")
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert "elbo" in shown.stdout and "infovae" in shown.stdout


def test_resume_from_the_uri_into_a_fresh_folder_repeats_nothing(mirrored_run, tmp_path):
    study, folder, bucket = mirrored_run
    resumed = _cli("resume", f"{bucket.as_uri()}/durable", "--results", str(tmp_path))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_each_planned_trial_once(tmp_path / "durable", _planned(study))
    before = pq.read_table(folder / names.TRIALS_FILE).to_pandas()
    after = pq.read_table(tmp_path / "durable" / names.TRIALS_FILE).to_pandas()
    assert sorted(after[names.TRIAL_ID]) == sorted(before[names.TRIAL_ID])
    assert (tmp_path / "durable" / names.OPTUNA_JOURNAL_FILE).is_file()  # the recorded storage


def test_driver_killed_mid_study_resumes_from_the_uri_on_a_fresh_folder(tmp_path):
    study = write_study(tmp_path, "killed", trials=2, seeds=1, epochs=2)
    bucket = tmp_path / "bucket"
    mirror = bucket / "killed"
    args = ["run", str(study), "--results", str(tmp_path / "first"), "--storage", bucket.as_uri()]
    driver = subprocess.Popen(
        [sys.executable, "-m", "sweep.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    process = psutil.Process(driver.pid)
    deadline = time.monotonic() + 240
    try:
        while _rows(mirror) < 1:  # a trial recorded, and mirrored
            assert driver.poll() is None, "the driver ended before it could be killed"
            assert time.monotonic() < deadline, "no trial mirrored in time"
            time.sleep(0.2)
    finally:
        _kill_tree(process)
    planned = _planned(study)
    assert 1 <= _rows(mirror) < planned

    fresh = tmp_path / "second"
    resumed = _cli("resume", f"{bucket.as_uri()}/killed", "--results", str(fresh), timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_each_planned_trial_once(fresh / "killed", planned)
    assert len(ResultsStore.open(mirror)) == planned  # and it kept mirroring
