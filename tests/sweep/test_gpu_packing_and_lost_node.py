"""Placement on a simulated multi-node cluster (``ray.cluster_utils.Cluster``, fake GPUs).

- GPU packing: trials asking for ``gpu: 0.25`` share one GPU four at a time, and no more.
- A lost node: a worker node removed while a trial trains on it; Ray Tune's FailureConfig
  retries the trial on the remaining node, the study completes, and the store shows the retry
  (``attempt >= 1``).

The GPUs are Ray resources only: torch sees no CUDA device and trains on the CPU, which is all
placement needs. Each test starts its own cluster on this machine (no dashboard, localhost) and
shuts it down in teardown.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from sweep.run.events import StudyEvents
from sweep.run.runner import run_study
from sweep.spec import load_study
from tests.sweep.studies import write_study

pytestmark = pytest.mark.slow

TINY_RESOURCES = "resources: {cpu: 1, gpu: 0}"


def _study(folder: Path, name: str, *, trials: int, epochs: int, gpu: float, concurrent: int):
    """The tiny test study with per-trial GPU fraction, concurrency and a Ray Tune storage
    folder given as a shared mount, ``file:///...``, as a multi-node run needs (every simulated
    node is this host, so a local folder is shared)."""
    path = write_study(folder, name, trials=trials, seeds=0, epochs=epochs)
    text = path.read_text()
    assert TINY_RESOURCES in text and "max_concurrent: 2" in text, "the tiny template changed"
    text = text.replace(TINY_RESOURCES, f"resources: {{cpu: 1, gpu: {gpu}}}")
    text = text.replace("max_concurrent: 2", f"max_concurrent: {concurrent}")
    text += f"storage: {(folder / 'ray-storage').as_uri()}\n"
    path.write_text(text)
    return load_study(path)


def _max_overlap(trials: pd.DataFrame) -> int:
    """Largest number of trials whose [started_at, ended_at] intervals share an instant."""
    events = [(t, +1) for t in trials["started_at"]] + [(t, -1) for t in trials["ended_at"]]
    running = peak = 0
    # At equal times an end sorts before a start: touching intervals do not overlap.
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        running += step
        peak = max(peak, running)
    return peak


@pytest.fixture
def cluster():
    """A head with no resources for trials; each test adds its worker nodes."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "num_gpus": 0, "include_dashboard": False},
    )
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def _connect(cluster) -> None:
    import ray

    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)


def test_quarter_gpu_trials_run_four_at_a_time_on_one_gpu(tmp_path, cluster):
    # Eight CPUs but one GPU: CPUs alone would allow eight trials at once, so four at a time
    # can only come from the 0.25-GPU fractions.
    gpu_node = cluster.add_node(num_cpus=8, num_gpus=1)
    _connect(cluster)
    spec = _study(tmp_path, "packing", trials=4, epochs=60, gpu=0.25, concurrent=8)

    outcome = run_study(spec, tmp_path / "results" / "packing", address=cluster.address)

    trials = pq.read_table(outcome.folder / "trials.parquet").to_pandas()
    assert len(trials) == 8 and (trials["status"] == "completed").all()
    assert set(trials["node_id"]) == {gpu_node.node_id}
    assert _max_overlap(trials) == 4


def test_trial_on_a_removed_node_is_retried_and_the_study_completes(tmp_path, cluster):
    import ray

    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    _connect(cluster)
    spec = _study(tmp_path, "lost", trials=2, epochs=150, gpu=0, concurrent=2)
    folder = tmp_path / "results" / "lost"

    both_running = threading.Event()

    def watch(events: StudyEvents) -> None:
        if sum(arm.running for arm in events.arms.values()) >= 2:
            both_running.set()

    outcome: dict[str, object] = {}

    def drive() -> None:
        try:
            outcome["run"] = run_study(spec, folder, address=cluster.address, listeners=[watch])
        except BaseException as error:  # noqa: BLE001 - re-raised in the test thread
            outcome["error"] = error

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    # One trial per worker node (1 CPU each): once two run, each node trains one of them.
    assert both_running.wait(timeout=90), "two trials never ran at once"
    time.sleep(2.0)  # well inside the first trial's epochs
    lost = workers[0]
    cluster.remove_node(lost)
    driver.join(timeout=300)
    assert not driver.is_alive(), "the study did not finish after the node was removed"
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]

    trials = pq.read_table(folder / "trials.parquet").to_pandas()
    assert len(trials) == 4 and trials["trial_id"].is_unique
    assert (trials["status"] == "completed").all(), trials[["trial_id", "status", "error"]]
    retried = trials[trials["attempt"] >= 1]
    assert len(retried) >= 1
    # The retried trial finished on the surviving node.
    assert set(retried["node_id"]) == {workers[1].node_id}
    assert lost.node_id not in set(trials["node_id"])
    alive = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    assert lost.node_id not in alive
    # Its epochs were recorded once, from the attempt that finished (epochs are 1-based).
    epochs = pq.read_table(folder / "epochs.parquet").to_pandas()
    for _, row in retried.iterrows():
        recorded = epochs.loc[epochs["trial_id"] == row["trial_id"], "epoch"]
        assert sorted(recorded) == list(range(1, spec.arm_config(row["arm"]).train.epochs + 1))
