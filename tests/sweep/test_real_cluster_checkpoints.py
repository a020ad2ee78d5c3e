"""A study on a real multi-process Ray cluster loses its worker node after a checkpoint.

Head and worker are separate ``ray start --block`` processes on 127.0.0.1 with token
authentication (``RAY_AUTH_MODE=token``, as Ray 2.60 requires for a multi-process cluster); the
head has no CPUs, so every trial lands on the worker. The driver is the real CLI
(``infovae-sweep run --address ... --storage file:///...``) in its own process. Once the first
trial has written its checkpoints to the storage path, the whole worker node (its ``ray start``,
raylet and trial processes) is killed with SIGKILL and a fresh worker joins: Ray Tune retries the
trial there from its last checkpoint, and the study completes with every planned trial recorded
once, the interrupted one with ``resumed_from_epoch > 0`` and each epoch once.

Every process is started here and stopped here by its id.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from sweep import names
from sweep.trainable import CHECKPOINT_FILE
from tests.sweep.studies import write_study
from tests.sweep.test_resume_and_cluster import _kill_tree

pytestmark = pytest.mark.slow

EPOCHS = 40
CHECKPOINT_EVERY = 5


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ray_env() -> dict[str, str]:
    return dict(
        os.environ,
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=secrets.token_hex(16),  # this cluster's own token, not ~/.ray's
        RAY_USAGE_STATS_ENABLED="0",
        # Notice the lost node within seconds rather than the default tens of seconds.
        RAY_health_check_period_ms="500",
        RAY_health_check_failure_threshold="3",
        PYTHONUNBUFFERED="1",
    )


def _ray_start(args: list[str], env: dict[str, str], log: Path) -> psutil.Process:
    """``ray start --block`` on 127.0.0.1 in its own session: the process and its children
    (GCS or raylet, workers) are one tree, killed by their ids."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--block",
            "--node-ip-address=127.0.0.1",
            "--disable-usage-stats",
            f"--dashboard-agent-listen-port={_free_port()}",
            f"--metrics-export-port={_free_port()}",
            f"--runtime-env-agent-port={_free_port()}",
            *args,
        ],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    return psutil.Process(process.pid)


def _wait_for(condition, timeout: float, what: str, alive: dict[str, psutil.Process]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for name, process in alive.items():
            assert process.is_running() and process.status() != psutil.STATUS_ZOMBIE, (
                f"the {name} ended while waiting for {what}"
            )
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _checkpoints(storage: Path) -> list[Path]:
    return sorted(storage.glob(f"*/*/checkpoint_*/{CHECKPOINT_FILE}"))


def test_trial_on_a_killed_worker_node_resumes_from_its_checkpoint(tmp_path):
    study = write_study(tmp_path, "lost", trials=1, seeds=0, epochs=EPOCHS)
    text = study.read_text().replace(
        "train: {epochs:",
        f"train: {{checkpoint_every: {CHECKPOINT_EVERY}, checkpoint_min_seconds: 0, epochs:",
    )
    assert "checkpoint_every" in text, "the tiny study template changed"
    study.write_text(text)
    storage = tmp_path / "storage"
    results = tmp_path / "results"
    # Ray's socket paths must stay short: its temporary folders go under /tmp, not tmp_path.
    temp = Path(tempfile.mkdtemp(prefix="ivs-", dir="/tmp"))
    env = _ray_env()
    port = _free_port()
    address = f"127.0.0.1:{port}"
    logs = tmp_path / "ray.log"
    worker_args = [f"--address={address}", "--num-cpus=1", "--num-gpus=0"]
    started: list[psutil.Process] = []
    try:
        head = _ray_start(
            [
                "--head",
                f"--port={port}",
                "--num-cpus=0",
                "--num-gpus=0",
                "--include-dashboard=false",
                f"--temp-dir={temp / 'head'}",
            ],
            env,
            logs,
        )
        started.append(head)
        worker = _ray_start([*worker_args, f"--temp-dir={temp / 'w1'}"], env, logs)
        started.append(worker)
        driver_process = subprocess.Popen(
            [sys.executable, "-m", "sweep.cli", "run", str(study), "--results", str(results)]
            + ["--address", address, "--storage", storage.as_uri()],
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "driver.log").open("wb"),
            env=env,
        )
        driver = psutil.Process(driver_process.pid)
        started.append(driver)

        # Two checkpoints of the first trial: the first one is surely registered by then.
        _wait_for(
            lambda: (
                len(_checkpoints(storage)) >= 1
                and any(p.parent.name != "checkpoint_000000" for p in _checkpoints(storage))
            ),
            timeout=120,
            what="the first trial's second checkpoint",
            alive={"head": head, "worker": worker, "driver": driver},
        )
        _kill_tree(worker)
        started.append(_ray_start([*worker_args, f"--temp-dir={temp / 'w2'}"], env, logs))

        assert driver_process.wait(timeout=240) == 0, (tmp_path / "driver.log").read_text()[-3000:]
    finally:
        for process in reversed(started):
            _kill_tree(process)
        shutil.rmtree(temp, ignore_errors=True)

    folder = results / "lost"
    trials = pq.read_table(folder / names.TRIALS_FILE).to_pandas()
    assert sorted(trials[names.TRIAL_ID]) == ["elbo-0000", "infovae-0000"]
    assert (trials[names.STATUS] == names.COMPLETED).all(), trials[[names.TRIAL_ID, names.ERROR]]
    resumed = trials[trials[names.RESUMED_FROM_EPOCH] > 0]
    assert len(resumed) == 1, trials[[names.TRIAL_ID, names.ATTEMPT, names.RESUMED_FROM_EPOCH]]
    assert resumed[names.ATTEMPT].iloc[0] >= 1
    assert resumed[names.RESUMED_FROM_EPOCH].iloc[0] % CHECKPOINT_EVERY == 0
    # Each trial's epochs once: those before the checkpoint from the first attempt, the rest
    # from the retry.
    epochs = pq.read_table(folder / names.EPOCHS_FILE).to_pandas()
    for trial_id, rows in epochs.groupby(names.TRIAL_ID):
        assert sorted(rows[names.EPOCH]) == list(range(1, EPOCHS + 1)), trial_id
    # Every trial ran on a worker node (the head has no CPUs): its artefacts reached the study
    # folder through its final checkpoint under the shared storage.
    for trial_id in trials[names.TRIAL_ID]:
        files = {p.name for p in (folder / names.ARTIFACTS_DIR / trial_id).iterdir()}
        assert files == {"latents.npy", "samples.png", "reconstructions.png"}, trial_id
