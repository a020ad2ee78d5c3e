"""Faults of the machine (a full disk, a read-only mount, a failing mirror) and signals to the
driver, each made real where the machine allows: small tmpfs mounts (as root), real SIGTERM and
SIGINT to a real driver process and to its process group. Where mounting is not allowed, the
fault is injected at the write instead."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from sweep import names
from sweep.atomic_files import atomic_write_text
from sweep.run.checkpoint_index import CHECKPOINT_INDEX_FILE, trial_key
from sweep.run.faults import (
    EnvironmentFault,
    check_storage_uri,
    check_writable_folder,
    environment_fault,
)
from sweep.run.mirror import BEHIND_MARKER, StudyMirror, mirror_is_behind
from sweep.run.trial import TrialContext, TrialMeta
from tests.sweep.studies import write_study

REPO = Path(__file__).resolve().parents[3]


# --------------------------------------------------------------------------------------------
# Helpers


def _can_mount() -> bool:
    return sys.platform.startswith("linux") and os.geteuid() == 0


@contextlib.contextmanager
def _tmpfs(where: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (unmounted in the end, whatever happens)."""
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sweep.cli", *args]


def _env() -> dict[str, str]:
    return dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONPATH=str(REPO),
        COLUMNS="400",
    )


def _study(folder: Path, name: str, epochs: int = 30) -> Path:
    """A tiny digits study whose trials checkpoint every epoch (2 search trials and 1 confirm
    trial per arm, a fraction of a second per epoch)."""
    path = write_study(folder, name, trials=2, seeds=1, epochs=epochs)
    text = path.read_text().replace(
        f"train: {{epochs: {epochs}, batch_size: 256}}",
        f"train: {{epochs: {epochs}, batch_size: 256, checkpoint_every: 1, "
        "checkpoint_min_seconds: 0}",
    )
    assert "checkpoint_every: 1" in text
    path.write_text(text)
    return path


PLANNED = 6  # 2 arms x (2 search + 1 confirm)


def _trials(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder / names.TRIALS_FILE)


def _last_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _wait_for_checkpoint(driver: subprocess.Popen, folder: Path, timeout: float = 120) -> None:
    """Return once a trial in flight has reported a checkpoint (it is mid-way)."""
    deadline = time.monotonic() + timeout
    index = folder / CHECKPOINT_INDEX_FILE
    while time.monotonic() < deadline:
        assert driver.poll() is None, "the driver ended before any trial checkpointed"
        with contextlib.suppress(OSError):
            if '"' in index.read_text():
                return
        time.sleep(0.05)
    raise AssertionError("no trial checkpointed in time")


def _sweep(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``infovae-sweep ARGS`` run to its end, its output captured."""
    return subprocess.run(_cli(*args), env=_env(), capture_output=True, text=True, timeout=timeout)


def _resume(folder: Path) -> subprocess.CompletedProcess:
    return _sweep("resume", str(folder))


# --------------------------------------------------------------------------------------------
# The words of a fault


def test_a_full_disk_error_becomes_one_line_naming_the_file():
    error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/study/trials.parquet")
    fault = environment_fault(error)
    assert str(fault) == "/data/study/trials.parquet: no space left on the device"


def test_sqlite_full_disk_raised_through_other_errors_is_a_fault_of_the_folder():
    try:
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError as inner:
            raise RuntimeError("An exception is raised during the commit") from inner
    except RuntimeError as outer:
        fault = environment_fault(outer, "/data/study")
    assert str(fault) == "/data/study: no space left on the device"


def test_an_error_of_the_program_is_not_a_fault_of_the_machine():
    assert environment_fault(ValueError("bad value")) is None
    assert environment_fault(OSError(errno.EBADF, "Bad file descriptor")) is None


# --------------------------------------------------------------------------------------------
# The checkpoint a resumed trial starts from


def _key(trial_id: str, seed: int, width: int = 8) -> str:
    context = TrialContext(
        study="s", phase=names.SEARCH, settings={"elbo": {}}, threads=1, data_key="k"
    )
    config = TrialMeta("elbo", trial_id=trial_id, seed=seed).to_config(
        {"model.decoder.width": width}
    )
    return trial_key(context, config)


def test_a_trial_run_again_under_another_id_finds_its_checkpoint():
    assert _key("elbo-0000", seed=0) == _key("elbo-0004", seed=0)


def test_another_seed_or_setting_never_starts_from_the_checkpoint():
    assert _key("elbo-0000", seed=0) != _key("elbo-0000", seed=1)
    assert _key("elbo-0000", seed=0) != _key("elbo-0000", seed=0, width=16)


# --------------------------------------------------------------------------------------------
# The umask


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_results_files_get_the_mode_the_umask_allows(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "trials.parquet", "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "trials.parquet").stat().st_mode) == mode


# --------------------------------------------------------------------------------------------
# Checks before a run


def test_a_read_only_folder_is_refused_naming_it(tmp_path):
    with _tmpfs(tmp_path / "ro", "1m", read_only=True) as mount:
        with pytest.raises(EnvironmentFault, match=r"/ro\S*: read-only file system"):
            check_writable_folder(mount)


def test_a_folder_without_room_for_a_trial_is_refused(tmp_path):
    with _tmpfs(tmp_path / "small", "8k") as mount:
        with pytest.raises(EnvironmentFault, match="no space left on the device"):
            check_writable_folder(mount)
        assert not list(mount.iterdir()), "the check left its probe file behind"


def test_a_storage_uri_that_cannot_be_written_is_refused(tmp_path):
    with _tmpfs(tmp_path / "ro", "1m", read_only=True) as mount:
        with pytest.raises(EnvironmentFault, match=r"file://\S*: cannot be written"):
            check_storage_uri(f"file://{mount}")


def test_a_read_only_results_folder_is_refused_before_ray_starts(tmp_path):
    study = _study(tmp_path, "ro")
    with _tmpfs(tmp_path / "results", "1m", read_only=True) as mount:
        done = _sweep("run", str(study), "--results", str(mount), timeout=120)
        assert not list(mount.iterdir())
    assert done.returncode == 2, done.stderr
    output = (done.stdout + done.stderr).strip()
    assert "Traceback" not in output
    assert output.count("\n") == 0, output  # one line, before anything of Ray
    assert f"{mount}" in output and "read-only file system" in output


# --------------------------------------------------------------------------------------------
# The mirror


def test_a_failed_mirror_copy_leaves_it_marked_behind_until_a_copy_succeeds(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / names.STUDY_FILE).write_text("name: study\n")
    (folder / names.TRIALS_FILE).write_bytes(os.urandom(256 * 1024))
    with _tmpfs(tmp_path / "mirror", "64k") as mount:
        mirror = StudyMirror(folder, f"file://{mount}/study")
        with pytest.raises(OSError):
            mirror.sync(force=True)
        assert mirror.behind and mirror_is_behind(f"file://{mount}/study")
        (folder / names.TRIALS_FILE).write_bytes(b"small now")
        mirror.sync(force=True)
        assert not mirror.behind
        assert not (mount / "study" / BEHIND_MARKER).exists()
        assert (mount / "study" / names.TRIALS_FILE).read_bytes() == b"small now"


# --------------------------------------------------------------------------------------------
# Signals, without Ray: the bound and the second signal

_STOPPING = """
import signal, sys, time, threading
sys.path.insert(0, {repo!r})
from sweep.run.graceful_stop import graceful_stop
held = threading.Lock()
held.acquire()  # a lock the interrupted main thread holds
def stuck():
    held.acquire()
def broken():
    raise RuntimeError("an action that fails")
def mark():
    print("marked", flush=True)
with graceful_stop(seconds={seconds}, resume="infovae-sweep resume here") as stop:
    for action in (broken, mark, stuck):
        stop.before_exit(action)
    # A Tune run whose stop never ends: its stop handler (SIGUSR1) does nothing.
    signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
"""


def _stopping(tmp_path: Path, seconds: float) -> subprocess.Popen:
    script = tmp_path / "stopping.py"
    script.write_text(textwrap.dedent(_STOPPING.format(repo=str(REPO), seconds=seconds)))
    process = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "ready"
    return process


def _sigterm_twice(tmp_path: Path) -> tuple[str, str]:
    """The stdout after "ready" and the stderr of a driver sent SIGTERM twice; exit 143."""
    process = _stopping(tmp_path, seconds=60)
    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 143, err
    return out, err


def test_a_second_sigterm_ends_the_driver_at_once_with_143(tmp_path):
    _, err = _sigterm_twice(tmp_path)
    assert "stopping at once" in err and "infovae-sweep resume here" in err


def test_ending_at_once_runs_the_before_exit_actions_past_a_failing_or_stuck_one(tmp_path):
    out, _ = _sigterm_twice(tmp_path)
    assert out.split() == ["marked"]


def test_a_stop_past_its_bound_ends_the_driver_with_130_after_sigint(tmp_path):
    process = _stopping(tmp_path, seconds=1)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=20)
    assert process.returncode == 130, err
    assert time.monotonic() - started < 10
    assert "took over 1 s" in err


# --------------------------------------------------------------------------------------------
# Real runs


def _run_and_signal(
    tmp_path: Path, name: str, signum: int, group: bool
) -> tuple[subprocess.CompletedProcess, Path, float]:
    study = _study(tmp_path, name)
    folder = tmp_path / "results" / name
    driver = subprocess.Popen(
        _cli("run", str(study), "--results", str(tmp_path / "results")),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_for_checkpoint(driver, folder)
        signalled = time.monotonic()
        if group:
            os.killpg(driver.pid, signum)
        else:
            driver.send_signal(signum)
        out, err = driver.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
    took = time.monotonic() - signalled
    done = subprocess.CompletedProcess(driver.args, driver.returncode, out, err)
    return done, folder, took


def _resume_command(output: str) -> list[str]:
    line = next(line for line in output.splitlines() if "infovae-sweep resume" in line)
    return line.split("infovae-sweep resume", 1)[1].split()[:1]


def _run_statuses(folder: Path) -> list[str]:
    record = json.loads((folder / names.RUN_RECORD_FILE).read_text())
    return [run["status"] for run in record["runs"]]


def _check_resumed(folder: Path, output: str) -> pd.DataFrame:
    (where,) = _resume_command(output)
    assert Path(where) == folder
    resumed = _resume(Path(where))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = _trials(folder)
    assert len(trials) == PLANNED
    assert not trials[names.TRIAL_ID].duplicated().any()
    assert (trials[names.STATUS] == names.COMPLETED).all()
    return trials


@pytest.mark.slow
def test_sigterm_stops_the_driver_gracefully_and_resume_continues_from_checkpoints(tmp_path):
    done, folder, took = _run_and_signal(tmp_path, "term", signal.SIGTERM, group=False)
    assert done.returncode == 143, done.stderr[-3000:]
    assert took < 25
    last = _last_line(done.stderr)
    assert "stopped:" in last and "trials recorded" in last and "infovae-sweep resume" in last
    assert "SIGTERM received" in done.stderr
    assert "*** SIGTERM received at time" not in done.stderr  # no C-level dump
    assert (folder / names.REPORT_FILE).is_file()
    assert _run_statuses(folder) == ["interrupted"]
    trials = _check_resumed(folder, done.stderr)
    assert (trials[names.RESUMED_FROM_EPOCH] > 0).any()


@pytest.mark.slow
def test_sigint_stops_the_driver_with_130_and_resume_continues_from_checkpoints(tmp_path):
    done, folder, _ = _run_and_signal(tmp_path, "int", signal.SIGINT, group=False)
    assert done.returncode == 130, done.stderr[-3000:]
    trials = _check_resumed(folder, done.stderr)
    assert (trials[names.RESUMED_FROM_EPOCH] > 0).any()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGTERM, 143), (signal.SIGINT, 130)],  # timeout, Slurm, systemd; Ctrl-C
    ids=["sigterm", "sigint"],
)
def test_a_signal_to_the_whole_process_group_exits_its_code_and_resume_completes(
    tmp_path, signum, code
):
    done, folder, took = _run_and_signal(tmp_path, "group", signum, group=True)
    assert done.returncode == code, done.stderr[-3000:]
    assert took < 30
    assert _run_statuses(folder) == ["interrupted"]
    trials = _check_resumed(folder, done.stderr)
    assert (trials[names.RESUMED_FROM_EPOCH] > 0).any()
    assert _run_statuses(folder) == ["interrupted", "finished"]


@pytest.mark.slow
def test_a_disk_that_fills_mid_run_stops_it_in_a_line_and_resume_completes(tmp_path):
    study = _study(tmp_path, "full")  # its checkpoints fill 600 KB within the first trials
    with _tmpfs(tmp_path / "small", "600k") as mount:
        done = _sweep("run", str(study), "--results", str(mount), timeout=240)
        moved = tmp_path / "big" / "full"  # the study moved to a disk with room
        shutil.copytree(mount / "full", moved, symlinks=True)
    assert done.returncode == 2, done.stderr[-3000:]
    last = _last_line(done.stderr)
    # the store's folder, or Ray Tune's storage path in it where a checkpoint was saved
    assert f"{mount}/full" in last and "no space left on the device" in last
    assert f"infovae-sweep resume {mount}/full" in last
    resumed = _resume(moved)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = _trials(moved)
    assert len(trials) == PLANNED and not trials[names.TRIAL_ID].duplicated().any()
    assert (trials[names.STATUS] == names.COMPLETED).all()


@pytest.mark.slow
def test_a_mirror_on_a_full_mount_ends_the_run_with_3_and_ls_says_it_is_behind(tmp_path):
    study = _study(tmp_path, "mirrored", epochs=2)
    with _tmpfs(tmp_path / "storage", "64m") as storage, _tmpfs(storage / "mirrored", "64k"):
        done = _sweep(
            "run",
            str(study),
            "--results",
            str(tmp_path / "results"),
            "--storage",
            f"file://{storage}",
            timeout=240,
        )
        listed = _sweep("ls", f"file://{storage}", timeout=120)
    assert done.returncode == 3, done.stderr[-3000:]
    last = _last_line(done.stderr)
    assert f"mirror file://{storage}/mirrored is behind" in last
    assert len(_trials(tmp_path / "results" / "mirrored")) == PLANNED
    assert "is behind its study folder" in listed.stderr
