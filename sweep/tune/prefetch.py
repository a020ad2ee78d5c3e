"""Driver work that runs while Ray starts: the dataset and Ray Tune's import of its tracker
integrations.

``ray.init`` spends most of its ~3 s waiting for the processes it starts, and Ray Tune, when a
run has callbacks (ours always does: the store's), imports its MLflow, W&B, Comet and Aim
integration modules to count callback types; with MLflow and W&B installed that is about a
second of imports before the first trial can start. Both that import and the dataset load
(a second for the bundled digits, which imports scikit-learn) run in one background thread
started before Ray, so their time hides behind Ray's start-up instead of adding to it.
"""

from __future__ import annotations

import importlib
from concurrent.futures import Future, ThreadPoolExecutor

from infovae_core.config import DataConfig
from infovae_core.data import DatasetSplits

#: What ``ray.air._internal.usage.tag_callbacks`` imports on every ``Tuner.fit`` with
#: callbacks (Ray 2.60); importing them earlier only fills ``sys.modules`` sooner.
TUNE_CALLBACK_MODULES = (
    "ray.air.integrations.mlflow",
    "ray.air.integrations.wandb",
    "ray.air.integrations.comet",
    "ray.tune.logger.aim",
)


def _import_tune_callback_modules() -> None:
    for name in TUNE_CALLBACK_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - Tune imports it again later and reports any error
            continue


def _load(data: DataConfig) -> DatasetSplits:
    from infovae_core.data import load_dataset

    return load_dataset(data)


class DriverPrefetch:
    """The dataset of ``data`` and Tune's callback imports, loaded in a background thread.

    :meth:`splits` waits for the dataset and raises what loading it raised (a missing or
    corrupt data file), at the point where the driver would have loaded it itself."""

    def __init__(self, data: DataConfig) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sweep-prefetch")
        self._splits: Future[DatasetSplits] = self._pool.submit(_load, data)
        self._pool.submit(_import_tune_callback_modules)
        # No further work: the thread ends after these two, the driver never waits for the
        # imports (Tune would do them itself).
        self._pool.shutdown(wait=False)

    def splits(self) -> DatasetSplits:
        return self._splits.result()
