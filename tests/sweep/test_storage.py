"""Ray Tune storage for multi-node runs."""

from __future__ import annotations

import pytest

from sweep.runner import StorageError, check_storage


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
