"""Ray Tune storage for multi-node runs."""

from __future__ import annotations

import pytest

from sweep.run.ray_storage import StorageError, check_storage


def test_single_node_accepts_the_default_local_storage():
    check_storage(None, n_nodes=1)
    check_storage("/tmp/anything", n_nodes=1)


@pytest.mark.parametrize("storage", [None, "/mnt/results", "relative/dir"])
def test_several_nodes_refuse_a_local_path(storage):
    with pytest.raises(StorageError, match="storage: this Ray cluster has 3 nodes"):
        check_storage(storage, n_nodes=3)


@pytest.mark.parametrize("storage", ["s3://bucket/x", "gs://bucket/x", "file:///mnt/shared/x"])
def test_several_nodes_accept_uris(storage):
    check_storage(storage, n_nodes=3)


@pytest.mark.parametrize("storage", [None, "/mnt/results"])
def test_a_run_attached_to_a_cluster_refuses_a_local_path_even_on_one_node(storage):
    # An autoscaling cluster starts with its head alone: the node count says nothing.
    with pytest.raises(StorageError, match="attached to the Ray cluster.*--single-node"):
        check_storage(storage, n_nodes=1, address="auto")


def test_a_run_attached_to_a_cluster_accepts_a_storage_uri():
    check_storage("s3://bucket/x", n_nodes=1, address="auto")


def test_single_node_lifts_the_rule_for_a_cluster_on_this_machine():
    check_storage(None, n_nodes=2, address="auto", single_node=True)


def test_cli_run_on_a_cluster_without_shared_storage_exits_2_and_writes_nothing(tmp_path):
    from typer.testing import CliRunner

    from sweep.cli import app
    from tests.sweep.studies import write_study

    study = write_study(tmp_path, "guarded")
    results = tmp_path / "results"
    # No Ray is reached: the refusal comes before Ray starts (the address is never dialled).
    outcome = CliRunner().invoke(
        app, ["run", str(study), "--results", str(results), "--address", "127.0.0.1:9"]
    )
    assert outcome.exit_code == 2, outcome.output
    assert "--storage" in outcome.output and "--single-node" in outcome.output
    assert not results.exists()
