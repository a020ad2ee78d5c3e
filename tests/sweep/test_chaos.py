"""Chaos: a study whose driver is killed with SIGKILL at five random moments (at the latest when
it records a trial) and resumed each time ends with every planned trial exactly once and the
report of an uninterrupted run."""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sweep import names
from sweep.spec import load_study
from tests.sweep.studies import write_study
from tests.sweep.test_resume_and_cluster import _kill_tree

pytestmark = pytest.mark.slow

KILLS = 5
SEED = 20261202
EPOCHS = 2
#: Seconds after a driver takes the study's lock at which it is killed, at the latest: from Ray
#: still starting up (5-40 s on 2 busy cores) into the trials. A driver is also killed as soon
#: as it has recorded a trial (:func:`_wait_for_moment`), so that on a fast idle machine the
#: study cannot finish before it has been killed three times.
DELAY_RANGE = (0.0, 20.0)
_SECTION_RE = re.compile(r'<section id="([^"]+)"><h2>([^<]*)</h2>')


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sweep.cli", *args]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1", RAY_USAGE_STATS_ENABLED="0")


def _holds_lock(driver: subprocess.Popen, folder: Path) -> bool:
    """Wait until ``driver`` holds the study's lock (its imports done, the folder made); False
    when it exits first."""
    deadline = time.monotonic() + 180
    while driver.poll() is None:
        with contextlib.suppress(OSError):
            if f"pid {driver.pid} " in (folder / names.LOCK_FILE).read_text():
                return True
        assert time.monotonic() < deadline, "the driver took no lock in 180 s"
        time.sleep(0.1)
    return False


def _recorded(folder: Path) -> int:
    """Trials recorded in the study folder: rows of trials.parquet plus trial part files not
    yet folded in (a compaction under way may count some twice: the kill only comes sooner)."""
    count = len(list((folder / names.PARTS_DIR).glob("trials-*.parquet")))
    with contextlib.suppress(OSError, pa.ArrowException):
        count += pq.ParquetFile(folder / names.TRIALS_FILE).metadata.num_rows
    return count


def _wait_for_moment(driver: subprocess.Popen, folder: Path, delay: float) -> None:
    """Return after ``delay`` seconds, when the driver has recorded one more trial, or when it
    has exited, whichever comes first."""
    before = _recorded(folder)
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline and driver.poll() is None:
        if _recorded(folder) > before:
            return
        time.sleep(0.05)


def _kill_group(driver: subprocess.Popen) -> list[psutil.Process]:
    """SIGKILL the driver, every process it started (Ray's) and its process group."""
    try:
        family = _kill_tree(psutil.Process(driver.pid))
    except psutil.NoSuchProcess:
        family = []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(driver.pid, signal.SIGKILL)  # the driver leads its own session
    driver.wait(timeout=30)
    return family


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _sections(report: Path) -> list[tuple[str, str]]:
    """(id, heading) of every top-level section of a report, in order."""
    return _SECTION_RE.findall(report.read_text(encoding="utf-8"))


def _planned(spec) -> dict[tuple[str, str], int]:
    planned = {}
    for arm in spec.arm_names:
        planned[(arm, "search")] = spec.trials_for(arm)
        planned[(arm, "confirm")] = spec.confirm.top_k * spec.confirm.seeds
    return planned


def test_driver_killed_five_times_ends_with_every_trial_once_and_the_same_report(tmp_path):
    study = write_study(tmp_path, "chaos", trials=3, seeds=1, epochs=EPOCHS)
    spec = load_study(study)
    chaos_root, calm_root = tmp_path / "chaos", tmp_path / "calm"
    folder = chaos_root / "chaos"
    rng = random.Random(SEED)
    started: list[psutil.Process] = []
    kills = 0
    # The uninterrupted run of the same study runs meanwhile (its own embedded Ray).
    calm = subprocess.Popen(
        _cli("run", str(study), "--results", str(calm_root)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        start_new_session=True,
    )
    try:
        for attempt in range(KILLS):
            # Resume once the study file is written; before that the study is started again.
            command = (
                _cli("resume", str(folder))
                if (folder / names.STUDY_FILE).is_file()
                else _cli("run", str(study), "--results", str(chaos_root))
            )
            driver = subprocess.Popen(
                command,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=_env(),
                start_new_session=True,
            )
            if _holds_lock(driver, folder):
                _wait_for_moment(driver, folder, rng.uniform(*DELAY_RANGE))
            if driver.poll() is not None:  # finished (or failed) before its moment came
                assert driver.returncode == 0, f"driver {attempt} exited {driver.returncode}"
                break
            started += _kill_group(driver)
            kills += 1
        assert kills >= 3, "the study finished before it could be killed three times"
        final = subprocess.run(
            _cli("resume", str(folder)), capture_output=True, text=True, env=_env(), timeout=600
        )
        assert final.returncode == 0, final.stderr[-3000:]
        _, calm_errors = calm.communicate(timeout=600)
        assert calm.returncode == 0, calm_errors[-3000:]
    finally:
        if calm.poll() is None:
            started += _kill_group(calm)
        left = [process for process in started if _alive(process)]
        for process in left:  # never expected: kill what a killed driver left, by its id
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()

    assert not left, f"processes of killed drivers still running: {left}"
    trials = pq.read_table(folder / names.TRIALS_FILE).to_pandas()
    assert trials[names.TRIAL_ID].is_unique
    assert (trials[names.STATUS] == "completed").all(), trials[[names.TRIAL_ID, names.ERROR]]
    counts = trials.groupby([names.ARM, names.PHASE]).size().to_dict()
    assert counts == _planned(spec)
    epochs = pq.read_table(folder / names.EPOCHS_FILE).to_pandas()
    assert not epochs.duplicated([names.TRIAL_ID, names.EPOCH]).any()
    assert set(epochs[names.TRIAL_ID]) == set(trials[names.TRIAL_ID])
    assert (epochs.groupby(names.TRIAL_ID)[names.EPOCH].nunique() == EPOCHS).all()
    sections = _sections(folder / names.REPORT_FILE)
    assert sections == _sections(calm_root / "chaos" / names.REPORT_FILE)
    assert len(sections) >= 3
