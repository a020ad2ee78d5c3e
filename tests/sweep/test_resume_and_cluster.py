"""Resume after the driver is killed with SIGKILL; a study on a simulated two-node cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pyarrow.parquet as pq
import pytest

from sweep.run.runner import run_study
from sweep.spec import load_study
from sweep.store import ResultsStore
from tests.sweep.studies import write_study

pytestmark = pytest.mark.slow


def _kill_tree(process: psutil.Process) -> list[psutil.Process]:
    """SIGKILL a driver and every process it started (its embedded Ray), by their ids.

    A process that already ended (and was reaped) is no error: its family is empty."""
    try:
        family = [process] + process.children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    for member in family:
        try:
            member.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=30)
    return family


def _rows(folder) -> int:
    """Trials recorded so far: main file plus the part files not compacted yet."""
    try:
        return len(ResultsStore.open(folder))
    except Exception:  # noqa: BLE001 - the folder may not exist yet
        return 0


def test_study_killed_with_sigkill_resumes_without_loss_or_duplicates(tmp_path):
    study = write_study(tmp_path, "killed", trials=5, seeds=1, epochs=3)
    spec = load_study(study)
    results = tmp_path / "results"
    folder = results / "killed"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    driver = subprocess.Popen(
        [sys.executable, "-m", "sweep.cli", "run", str(study), "--results", str(results)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    process = psutil.Process(driver.pid)
    deadline = time.monotonic() + 240
    try:
        while _rows(folder) < 3:
            assert driver.poll() is None, "the driver ended before it could be killed"
            assert time.monotonic() < deadline, "no trial recorded in time"
            time.sleep(0.2)
    finally:
        _kill_tree(process)
    recorded_before = _rows(folder)
    plan = sum(
        spec.trials_for(arm) + spec.confirm.top_k * spec.confirm.seeds for arm in spec.arm_names
    )
    assert 3 <= recorded_before < plan

    resumed = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "resume", str(folder)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = pq.read_table(folder / "trials.parquet").to_pandas()
    assert len(trials) == plan
    assert trials["trial_id"].is_unique
    search = trials[trials["phase"] == "search"]
    assert search.groupby("arm").size().to_dict() == {"elbo": 5, "infovae": 5}
    epochs = pq.read_table(folder / "epochs.parquet").to_pandas()
    assert not epochs.duplicated(["trial_id", "epoch"]).any()


@pytest.fixture
def two_node_cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
    )
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        yield cluster
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()


def test_study_on_two_node_cluster_places_trials_on_both_nodes_and_records_their_artefacts(
    tmp_path, two_node_cluster
):
    import ray

    study = write_study(tmp_path, "cluster", trials=3, seeds=0, epochs=2)
    spec = load_study(study)
    ray.init(address=two_node_cluster.address, include_dashboard=False, log_to_driver=False)
    shared = (tmp_path / "shared").as_uri()  # one machine: a local folder is a shared mount
    outcome = run_study(
        spec, tmp_path / "results" / "cluster", address=two_node_cluster.address, storage=shared
    )
    trials = pq.read_table(outcome.folder / "trials.parquet").to_pandas()
    assert len(trials) == 6 and (trials["status"] == "completed").all()
    node_ids = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    assert set(trials["node_id"]) == node_ids and len(node_ids) == 2
    # A trial on the worker node sends its artefacts and epochs through its checkpoint under
    # the shared storage, never in its result: the driver still records them.
    on_worker = trials[trials["node_id"] != two_node_cluster.head_node.node_id]
    assert len(on_worker) >= 1
    epochs = pq.read_table(outcome.folder / "epochs.parquet").to_pandas()
    for trial_id in on_worker["trial_id"]:
        artifacts = outcome.folder / "artifacts" / trial_id
        assert {p.name for p in artifacts.iterdir()} == {
            "latents.npy",
            "samples.png",
            "reconstructions.png",
        }
        assert sorted(epochs[epochs["trial_id"] == trial_id]["epoch"]) == [1, 2]


def test_multi_node_run_refuses_a_local_storage_path(tmp_path, two_node_cluster):
    import ray

    from sweep.run.ray_storage import StorageError

    study = write_study(tmp_path, "local", trials=1, seeds=0, epochs=1)
    ray.init(address=two_node_cluster.address, include_dashboard=False, log_to_driver=False)
    with pytest.raises(StorageError, match="attached to the Ray cluster.*--storage"):
        run_study(
            load_study(study), tmp_path / "results" / "local", address=two_node_cluster.address
        )
    assert not (tmp_path / "results" / "local").exists()
