"""The Ray Tune trainable: a thin layer over :func:`infovae_core.trainer.fit`.

It builds the trial's :class:`TrialConfig` from the arm's settings and the sampled parameters,
cuts the trial's ``data.train_size`` subset from the whole splits the runner shared, runs the
core trainer, reports every epoch's terms with ``ray.tune.report`` (epochs closer together
than ``TrialContext.epoch_report_seconds`` in one report) and, at the end, one final result
holding the evaluation metrics (``metric.<name>``), the trial's status, timings,
host and small artefacts for the report. Errors inside the trial (a non-finite loss, a bad
configuration, any exception of the training code) are *reported* as ``trial_status = failed``
with the error text rather than raised, so the driver records them and tells Optuna; only
infrastructure failures (a dead worker) reach Ray, whose FailureConfig retries them.

Checkpoints: every ``train.checkpoint_every`` epochs the trainer's :class:`TrainState` is saved
(``torch.save``, read back ``weights_only``) into a directory reported with that epoch's result
through ``ray.tune.report(..., checkpoint=ray.tune.Checkpoint.from_directory(...))``, so Ray Tune
keeps it under the run's storage path. A trial that Ray retries after its worker or node died
finds its last checkpoint with ``ray.tune.get_checkpoint()`` and continues from it; every
result of that attempt carries ``resumed_from_epoch`` (0 for a fresh start).

No model or loss logic lives here.
"""

from __future__ import annotations

import base64
import datetime as dt
import socket
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from infovae_core.config import TrialConfig
from infovae_core.data import DatasetSplits, apply_train_size
from sweep import names
from sweep.images import encode_png, image_grid
from sweep.space import decode_params

#: Key of the runner's bookkeeping in a trial's config (never a TrialConfig setting).
TRIAL_KEY = "_trial"
#: Final-result keys (besides ``metric.*``).
STATUS_KEY = "trial_status"
ERROR_KEY = "trial_error"
#: Epochs reported together: the earlier epochs of a batched report (its own epoch is at the
#: top level, as in a report of one epoch) or, in the final result, those not reported yet.
EPOCH_ROWS_KEY = "epoch_rows"
ARTIFACT_PREFIX = "artifact."
#: The file holding the trainer's state inside a Ray Tune checkpoint directory.
CHECKPOINT_FILE = "train_state.pt"
LATENTS_TO_REPORT = 300


@dataclass(frozen=True)
class TrialContext:
    """What every trial of one Tuner shares: each arm's dotted settings (data + defaults +
    fixed), the default phase, and torch threads per trial. A trial's own arm, id, seed, phase
    (when it is not the default) and (confirm phase) parameters travel in its config under
    :data:`TRIAL_KEY`."""

    study: str
    phase: str
    settings: dict[str, dict[str, Any]]
    threads: int
    data_key: str
    #: Least seconds between two reports of epochs (0: a report every epoch). Each report costs
    #: milliseconds in the trial and a result for the driver, which add up over many short
    #: epochs; epochs between reports travel together (:data:`EPOCH_ROWS_KEY`). ASHA, which counts
    #: reports as its time, and the trackers, which log each report, need every epoch.
    epoch_report_seconds: float = 0.0


# Datasets already fetched by this worker process, by key: reused actors skip the object store.
_DATA_CACHE: dict[str, DatasetSplits] = {}


def _dataset(key: str, refs: dict[str, Any]) -> DatasetSplits:
    if key not in _DATA_CACHE:
        import ray

        _DATA_CACHE.clear()  # one dataset per worker at a time
        _DATA_CACHE[key] = ray.get(refs["splits"])
    return _DATA_CACHE[key]


def trial_phase(context: TrialContext, config: dict[str, Any]) -> str:
    """The phase of one trial (``search`` or ``confirm``): search and confirm trials share one
    Tuner, so a confirm trial names its phase in its bookkeeping."""
    return config.get(TRIAL_KEY, {}).get(names.PHASE) or context.phase


def trial_config(context: TrialContext, config: dict[str, Any]) -> TrialConfig:
    """The TrialConfig of one trial: arm settings + sampled params + the trial's seed."""
    meta = config[TRIAL_KEY]
    sampled = {k: v for k, v in config.items() if k != TRIAL_KEY}
    settings = dict(context.settings[meta["arm"]])
    settings.update(decode_params(sampled))
    settings.update(meta.get("params", {}))
    if meta.get("seed") is not None:
        settings["train.seed"] = meta["seed"]
    return TrialConfig.from_dict(settings)


def _png_b64(images: np.ndarray, scale: int) -> str:
    return base64.b64encode(encode_png(image_grid(images), scale=scale)).decode("ascii")


def run_trial(config: dict[str, Any], context: TrialContext, data: dict[str, Any]) -> None:
    """Ray Tune function trainable (wrapped with ``tune.with_parameters``)."""
    import torch
    from ray import tune

    from infovae_core.trainer import NonFiniteLossError, TrainState, fit

    torch.set_num_threads(max(1, context.threads))
    started_at = dt.datetime.now(dt.timezone.utc)
    base = {names.STARTED_AT: started_at.isoformat(), names.HOST: socket.gethostname()}
    try:
        import ray

        # Only inside Ray: asking for the runtime context would otherwise start a local Ray
        # (a trial function called directly, as in tests, must leave no Ray behind).
        if ray.is_initialized():
            base[names.NODE_ID] = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - bookkeeping only
        pass

    resumed_from = 0
    pending: list[TrainState] = []  # the checkpoint of the epoch about to be reported
    unreported: list[dict[str, Any]] = []  # epochs not reported yet, oldest first
    last_report = time.monotonic()

    def on_checkpoint(state: TrainState) -> None:
        pending.append(state)

    def on_epoch(record) -> None:
        nonlocal last_report
        row = {names.EPOCH: record.epoch, names.RESUMED_FROM_EPOCH: resumed_from}
        row.update({names.TRAIN + k: v for k, v in record.train.items()})
        row.update({names.VAL + k: v for k, v in record.val.items()})
        unreported.append(row)
        # A checkpoint is reported with its epoch at once (a retry resumes from it).
        due = time.monotonic() - last_report >= context.epoch_report_seconds
        if not (pending or due):
            return
        result = dict(row)
        if len(unreported) > 1:
            result[EPOCH_ROWS_KEY] = unreported[:-1]
        unreported.clear()
        last_report = time.monotonic()
        if not pending:
            tune.report(result)
            return
        state = pending.pop()
        with tempfile.TemporaryDirectory(prefix="infovae-checkpoint-") as directory:
            state.save(Path(directory) / CHECKPOINT_FILE)
            # Ray Tune copies the directory to the storage path before report returns.
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(directory))

    try:
        cfg = trial_config(context, config)
        resume = _last_checkpoint(tune.get_checkpoint())
        if resume is not None:
            resumed_from = resume.epoch
        splits = apply_train_size(_dataset(context.data_key, data), cfg.data)
        fitted = fit(cfg, splits, callback=on_epoch, resume_from=resume, checkpoint=on_checkpoint)
    except NonFiniteLossError as error:
        final = {STATUS_KEY: names.FAILED, ERROR_KEY: f"NonFiniteLossError: {error}"}
    except Exception as error:  # noqa: BLE001 - recorded as the trial's error, study goes on
        tail = "".join(traceback.format_exception(error)[-3:]).strip()
        final = {STATUS_KEY: names.FAILED, ERROR_KEY: f"{type(error).__name__}: {error}\n{tail}"}
    else:
        scale = max(1, 56 // fitted.samples.shape[-1])
        final = {
            STATUS_KEY: names.COMPLETED,
            names.TRAIN_SECONDS: fitted.train_seconds,
            names.EVAL_SECONDS: fitted.eval_seconds,
            names.DEVICE: fitted.device,
            **{names.metric(name): float(value) for name, value in fitted.metrics.items()},
            f"{ARTIFACT_PREFIX}latents": fitted.latents[:LATENTS_TO_REPORT]
            .astype(np.float32)
            .tolist(),
            f"{ARTIFACT_PREFIX}samples_png": _png_b64(fitted.samples, scale),
            f"{ARTIFACT_PREFIX}reconstructions_png": _png_b64(
                np.concatenate(list(fitted.reconstructions[:, :32])), scale
            ),
        }
    final.update(base)
    if unreported:
        final[EPOCH_ROWS_KEY] = unreported
    final[names.RESUMED_FROM_EPOCH] = resumed_from
    final[names.ENDED_AT] = dt.datetime.now(dt.timezone.utc).isoformat()
    tune.report(final)


def _last_checkpoint(checkpoint):
    """The :class:`TrainState` in a Ray Tune checkpoint (None: the trial starts fresh)."""
    from infovae_core.trainer import TrainState

    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        return TrainState.load(Path(directory) / CHECKPOINT_FILE)
