"""The driver's background prefetch: the same dataset as a direct load, its errors re-raised where
the driver asks for it, and the import list kept in step with what Ray Tune imports."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import numpy as np
import pytest

from infovae_core.config import DataConfig
from infovae_core.data import load_dataset
from sweep.tune.prefetch import TUNE_CALLBACK_MODULES, DriverPrefetch


def test_prefetched_splits_equal_a_direct_load() -> None:
    config = DataConfig(dataset="digits", seed=3)
    prefetched = DriverPrefetch(config).splits()
    direct = load_dataset(config)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(
            getattr(prefetched, name).images.numpy(), getattr(direct, name).images.numpy()
        )


def test_a_dataset_that_cannot_load_raises_when_the_splits_are_asked_for(tmp_path) -> None:
    missing = DataConfig(dataset="mnist", data_dir=str(tmp_path), download=False)
    prefetch = DriverPrefetch(missing)  # starting it raises nothing
    with pytest.raises(Exception, match="mnist"):
        prefetch.splits()


PROBE = """
import sys, time
from infovae_core.config import DataConfig
from sweep.tune.prefetch import TUNE_CALLBACK_MODULES, DriverPrefetch
assert not any(name in sys.modules for name in TUNE_CALLBACK_MODULES)
DriverPrefetch(DataConfig(dataset="digits")).splits()
deadline = time.monotonic() + 60
while time.monotonic() < deadline and not all(n in sys.modules for n in TUNE_CALLBACK_MODULES):
    time.sleep(0.05)
print(sorted(n for n in TUNE_CALLBACK_MODULES if n not in sys.modules))
"""


def test_prefetch_imports_every_module_tune_imports_to_count_callbacks() -> None:
    # A fresh interpreter: this one may have imported them already.
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_prefetch_list_matches_what_ray_tune_imports_to_count_callbacks() -> None:
    # Tune's own list (Ray 2.60): if an upgrade changes it, the prefetch list must follow.
    counting = importlib.import_module("ray.air._internal.usage")._count_callbacks
    source = inspect.getsource(counting)
    for name in TUNE_CALLBACK_MODULES:
        assert f"from {name} import" in source, name
