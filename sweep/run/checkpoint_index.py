"""The last checkpoint of each trial in flight, so that a resumed study continues it from there.

Ray Tune continues a trial from its last checkpoint when it retries it within one run (a dead
worker). A trial interrupted with its driver (a signal, a lost machine) is run again by
``resume`` in a new Tune run, which knows nothing of the old one's checkpoints. The driver
therefore keeps, in the study folder's :data:`CHECKPOINT_INDEX_FILE`, the path of each running
trial's last checkpoint under Ray Tune's storage path, keyed by the trial's whole configuration
(arm, phase, every setting, seed): a trial of the resumed run with the same configuration
starts from that checkpoint, replays the epochs it holds, and is recorded with
``resumed_from_epoch``. A trial's entry goes when the trial is recorded.

A different configuration never starts from another's checkpoint: a search trial that the
resumed run samples afresh, or gives another seed, starts from epoch 0.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sweep.atomic_files import atomic_write_text
from sweep.run.trial import TrialContext, TrialMeta, trial_config, trial_phase

__all__ = [
    "CHECKPOINT_INDEX_FILE",
    "CheckpointIndex",
    "earlier_checkpoint",
    "read_index",
    "trial_checkpoint",
]

#: ``{trial key: checkpoint path or URI}`` of the trials in flight; never needed by readers.
CHECKPOINT_INDEX_FILE = ".checkpoints.json"

#: The key under which a run's trials find the index (in the trainable's shared data).
DATA_KEY = "checkpoints"


def trial_key(context: TrialContext, config: Mapping[str, Any]) -> str:
    """One trial's whole configuration as a short stable key."""
    settings = trial_config(context, config).to_flat_dict()
    whole = {
        "arm": TrialMeta.of(config).arm,
        "phase": trial_phase(context, config),
        "settings": settings,
    }
    text = json.dumps(whole, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def read_index(folder: Path) -> dict[str, str]:
    """The study folder's index (empty when it has none or it cannot be read)."""
    try:
        index = json.loads((Path(folder) / CHECKPOINT_INDEX_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(index, dict):
        return {}
    return {str(k): str(v) for k, v in index.items() if isinstance(v, str)}


def _location(checkpoint) -> str:
    """Where a Ray Tune checkpoint lies: a local path, else ``<scheme>://<path>``."""
    filesystem = getattr(checkpoint, "filesystem", None)
    kind = getattr(filesystem, "type_name", "local")
    if kind == "local":
        return str(checkpoint.path)
    return f"{'gs' if kind == 'gcs' else kind}://{checkpoint.path}"


def earlier_checkpoint(context: TrialContext, config: Mapping[str, Any], data: Mapping[str, Any]):
    """The checkpoint an earlier run left for this trial's configuration, as a
    ``ray.tune.Checkpoint`` (None: none, or it is gone)."""
    from ray import tune

    location = (data.get(DATA_KEY) or {}).get(trial_key(context, config))
    if location is None:
        return None
    if "://" not in location and not Path(location).is_dir():
        return None  # cleared since (or another machine's path)
    try:
        return tune.Checkpoint(location)
    except (OSError, ValueError):
        return None


def _tune_callback_class():
    from ray.tune import Callback

    class _CheckpointIndex(Callback):
        """Keeps :data:`CHECKPOINT_INDEX_FILE` up to date as trials checkpoint and end."""

        def __init__(self, folder: Path, context: TrialContext) -> None:
            self.folder = Path(folder)
            self.context = context
            self.index = read_index(self.folder)

        def __getstate__(self) -> dict[str, Any]:
            # Tune pickles callbacks with its experiment state; resume rebuilds this one.
            return {"folder": self.folder, "context": self.context, "index": {}}

        def _write(self) -> None:
            text = json.dumps(self.index, sort_keys=True, indent=0)
            # An index that cannot be written (a full disk) only costs a resumed trial its
            # head start; the store's own writes report the fault.
            with contextlib.suppress(OSError):
                atomic_write_text(self.folder / CHECKPOINT_INDEX_FILE, text, sync_dir=False)

        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
            self.index[trial_key(self.context, trial.config)] = _location(checkpoint)
            self._write()

        def _forget(self, trial) -> None:
            try:
                key = trial_key(self.context, trial.config)
            except Exception:  # noqa: BLE001 - a trial whose config fails never checkpointed
                return
            if self.index.pop(key, None) is not None:
                self._write()

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._forget(trial)

        def on_trial_error(self, iteration, trials, trial, **info):
            self._forget(trial)

    return _CheckpointIndex


def CheckpointIndex(folder: Path, context: TrialContext):  # noqa: N802 - a class, made lazily
    """The Tune callback that keeps the study folder's checkpoint index (Ray imported late)."""
    return _tune_callback_class()(folder, context)


def trial_checkpoint(context: TrialContext, config: Mapping[str, Any], data: Mapping[str, Any]):
    """The checkpoint a trial starts from: Ray Tune's own (a retry within this run), else the
    one an earlier run of the study left for the same configuration, else None."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    return checkpoint if checkpoint is not None else earlier_checkpoint(context, config, data)
