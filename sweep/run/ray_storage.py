"""Ray Tune's storage path (experiment files and trial checkpoints) and its guard: a run that
may use several machines needs a path every node can reach.

Not to be confused with the study folder (:mod:`sweep.store`, the Parquet results) nor the
Optuna storage (:mod:`sweep.optuna_storage`)."""

from __future__ import annotations

from pathlib import Path

from sweep import names
from sweep.run.mirror import is_uri


class StorageError(ValueError):
    """The Ray Tune storage path cannot serve this cluster (a local path on several nodes)."""


def check_storage(
    storage: str | None,
    n_nodes: int = 1,
    *,
    address: str | None = None,
    single_node: bool = False,
) -> None:
    """Refuse a local storage path for a run that may use several machines.

    Trials on other nodes write Ray Tune's experiment files and their checkpoints to the
    storage path, so it must be reachable from every node: a bucket URI, or a shared file
    system named explicitly as ``file:///mount/point`` (mounted at the same path on every
    node). A run attached to a cluster (``address``) needs one even while the cluster has a
    single node: an autoscaling cluster starts with its head alone and adds workers later. Only
    ``single_node`` (the user says the cluster is this one machine) lifts the rule; without an
    address (embedded Ray) the nodes are counted."""
    if single_node or (storage is not None and is_uri(storage)):
        return
    where = "the study folder (the default)" if storage is None else repr(storage)
    remedy = (
        "Give shared storage with --storage (or `storage:` in the study file): a bucket URI "
        "such as s3://BUCKET/infovae-sweep or gs://BUCKET/infovae-sweep, or a shared mount "
        "written as file:///mnt/shared/path"
    )
    if address is not None:
        raise StorageError(
            f"storage: this run is attached to the Ray cluster at {address!r}, whose nodes "
            f"(now or once it scales up) cannot reach Ray Tune's storage path {where}, local "
            f"to the driver's machine. {remedy}; or pass --single-node if the whole cluster "
            "is this one machine"
        )
    if n_nodes > 1:
        raise StorageError(
            f"storage: this Ray cluster has {n_nodes} nodes, and Ray Tune's storage path "
            f"{where} is local to the driver's machine. {remedy}"
        )


def storage_path(folder: Path, storage: str | None) -> str:
    """Ray Tune's storage path of a run: ``storage``, else the study folder's ``ray/``."""
    return storage or str((Path(folder) / names.RAY_DIR).resolve())
