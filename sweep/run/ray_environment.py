"""Ray for a study run: the environment Ray Tune reads, and starting (or attaching to) Ray.

:data:`TUNE_ENVIRONMENT` is set by :func:`tune_environment` for one run and restored after it,
never at import: importing the package must not change the environment of the importing
program. :func:`start_ray` starts embedded Ray on this machine or attaches to a cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

#: Ray reads these when Tune starts: no auto loggers (the driver's store is the record), our
#: own Ctrl-C handling, no usage reporting; epoch results carry no final metric (the searcher
#: reads it from the final result only). Set by :func:`tune_environment` for a run, never at
#: import: importing the runner must not change the environment of the importing program.
TUNE_ENVIRONMENT: dict[str, str] = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
}


@contextlib.contextmanager
def tune_environment() -> Iterator[None]:
    """Set :data:`TUNE_ENVIRONMENT`'s variables that the user left unset, for the duration of
    a run (Ray workers started meanwhile inherit them); restore the environment after."""
    saved = {name: os.environ.get(name) for name in TUNE_ENVIRONMENT}
    for name, value in TUNE_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def start_ray(address: str | None, verbose: bool, num_cpus: int | None = None) -> bool:
    """Start embedded Ray (address None) on this machine or attach to a cluster.

    Returns True when this call started (and so must stop) Ray."""
    import ray

    if ray.is_initialized():
        return False
    common: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": verbose,
        "logging_level": logging.INFO if verbose else logging.ERROR,
        "configure_logging": True,
    }
    with tune_environment():  # the raylet and its workers inherit the environment
        if address is None:
            # No private node-address argument: Ray resolves "127.0.0.1" to the node's
            # address anyway (Ray 2.60: the same listening sockets with or without it).
            ray.init(address="local", num_cpus=num_cpus, **common)
        else:
            ray.init(address=address, **common)
    return True


def quiet_loggers(verbose: bool) -> None:
    level = logging.INFO if verbose else logging.ERROR
    for name in ("ray", "ray.tune", "ray.train", "optuna"):
        logging.getLogger(name).setLevel(level)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)
