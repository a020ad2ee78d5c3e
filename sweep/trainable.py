"""The Ray Tune trainable: a thin layer over :func:`infovae_core.trainer.fit`.

It builds the trial's :class:`TrialConfig` from the arm's settings and the sampled parameters,
cuts the trial's ``data.train_size`` subset from the whole splits the runner shared, runs the
core trainer, reports epochs' terms with ``ray.tune.report`` (every epoch, or the last of
those closer together than ``TrialContext.epoch_report_seconds``) and, at the end, one
:class:`~sweep.run.trial.TrialResult` holding the evaluation metrics (``metric.<name>``), the
trial's status, timings and host. The trial's epoch rows and its artefacts for the report
(latents, image grids) never travel in a result: they are files of the checkpoint reported
with the final result (:func:`~sweep.run.trial.write_trial_files`), which Ray Tune copies to
the run's storage path, where the driver reads them. Errors inside the trial (a
non-finite loss, a bad configuration, any exception of the training code) are *reported* as a
``failed`` result with the error text rather than raised, so the driver records them and
tells Optuna; only infrastructure failures (a dead worker) reach Ray, whose FailureConfig
retries them.

Checkpoints: every ``train.checkpoint_every`` epochs the trainer's :class:`TrainState` is saved
(``torch.save``, read back ``weights_only``) into a directory reported with that epoch's result
through ``ray.tune.report(..., checkpoint=ray.tune.Checkpoint.from_directory(...))``, so Ray Tune
keeps it under the run's storage path, with the epoch rows up to that epoch. A trial that Ray
retries after its worker or node died finds its last checkpoint with
``ray.tune.get_checkpoint()`` and continues from it (its epoch rows carried on); every result
of that attempt carries ``resumed_from_epoch`` (0 for a fresh start).

No model or loss logic lives here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from infovae_core.data import DatasetSplits, apply_train_size
from sweep import names
from sweep.images import encode_png, image_grid
from sweep.run.checkpoint_index import trial_checkpoint
from sweep.run.trial import (
    TrialArtifacts,
    TrialContext,
    TrialResult,
    epoch_report,
    read_trial_files,
    trial_config,
    write_trial_files,
)

#: The file holding the trainer's state inside a Ray Tune checkpoint directory.
CHECKPOINT_FILE = "train_state.pt"
LATENTS_TO_REPORT = 300


# Datasets already fetched by this worker process, by key: reused actors skip the object store.
_DATA_CACHE: dict[str, DatasetSplits] = {}


def _dataset(key: str, refs: dict[str, Any]) -> DatasetSplits:
    if key not in _DATA_CACHE:
        import ray

        _DATA_CACHE.clear()  # one dataset per worker at a time
        _DATA_CACHE[key] = ray.get(refs["splits"])
    return _DATA_CACHE[key]


def _png(images: np.ndarray, scale: int) -> bytes:
    return encode_png(image_grid(images), scale=scale)


def _host() -> tuple[str, str | None]:
    """This worker's host name and, inside Ray, its node id."""
    node_id = None
    try:
        import ray

        # Only inside Ray: asking for the runtime context would otherwise start a local Ray
        # (a trial function called directly, as in tests, must leave no Ray behind).
        if ray.is_initialized():
            node_id = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - bookkeeping only
        pass
    return socket.gethostname(), node_id


def _completed(fitted) -> TrialResult:
    scale = max(1, 56 // fitted.samples.shape[-1])
    return TrialResult(
        status=names.COMPLETED,
        train_seconds=fitted.train_seconds,
        eval_seconds=fitted.eval_seconds,
        device=fitted.device,
        metrics={names.metric(name): float(value) for name, value in fitted.metrics.items()},
        artifacts=TrialArtifacts(
            latents=fitted.latents[:LATENTS_TO_REPORT].astype(np.float32),
            samples_png=_png(fitted.samples, scale),
            reconstructions_png=_png(np.concatenate(list(fitted.reconstructions[:, :32])), scale),
        ),
    )


def _failed(error: Exception) -> TrialResult:
    from infovae_core.trainer import NonFiniteLossError

    if isinstance(error, NonFiniteLossError):
        return TrialResult(status=names.FAILED, error=f"NonFiniteLossError: {error}")
    tail = "".join(traceback.format_exception(error)[-3:]).strip()
    return TrialResult(status=names.FAILED, error=f"{type(error).__name__}: {error}\n{tail}")


def run_trial(config: dict[str, Any], context: TrialContext, data: dict[str, Any]) -> None:
    """Ray Tune function trainable (wrapped with ``tune.with_parameters``)."""
    import torch
    from ray import tune

    from infovae_core.trainer import TrainState, fit

    torch.set_num_threads(max(1, context.threads))
    started_at = dt.datetime.now(dt.timezone.utc).isoformat()
    host, node_id = _host()

    resumed_from = 0
    pending: list[TrainState] = []  # the checkpoint of the epoch about to be reported
    history: list[dict[str, Any]] = []  # every epoch row of the trial, oldest first
    unreported: list[dict[str, Any]] = []  # epochs not reported yet, oldest first
    last_report = time.monotonic()

    def on_checkpoint(state: TrainState) -> None:
        pending.append(state)

    def on_epoch(record) -> None:
        nonlocal last_report
        row = {names.EPOCH: record.epoch, names.RESUMED_FROM_EPOCH: resumed_from}
        row.update({names.TRAIN + k: v for k, v in record.train.items()})
        row.update({names.VAL + k: v for k, v in record.val.items()})
        history.append(row)
        unreported.append(row)
        # A checkpoint is reported with its epoch at once (a retry resumes from it).
        due = time.monotonic() - last_report >= context.epoch_report_seconds
        if not (pending or due):
            return
        result = epoch_report(unreported)
        unreported.clear()
        last_report = time.monotonic()
        if not pending:
            tune.report(result)
            return
        state = pending.pop()
        with tempfile.TemporaryDirectory(prefix="infovae-checkpoint-") as directory:
            state.save(Path(directory) / CHECKPOINT_FILE)
            write_trial_files(Path(directory), history)
            # Ray Tune copies the directory to the storage path before report returns.
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(directory))

    try:
        cfg = trial_config(context, config)
        resume, history[:] = _last_checkpoint(trial_checkpoint(context, config, data))
        if resume is not None:
            resumed_from = resume.epoch
        splits = apply_train_size(_dataset(context.data_key, data), cfg.data)
        fitted = fit(cfg, splits, callback=on_epoch, resume_from=resume, checkpoint=on_checkpoint)
    except Exception as error:  # noqa: BLE001 - recorded as the trial's error, study goes on
        final = _failed(error)
    else:
        final = _completed(fitted)
    final = dataclasses.replace(
        final,
        started_at=started_at,
        host=host,
        node_id=node_id,
        resumed_from_epoch=resumed_from,
        ended_at=dt.datetime.now(dt.timezone.utc).isoformat(),
    )
    # The epochs, artefacts, times and host travel as files of a last checkpoint: the result
    # holds only what the searcher, the scheduler and the trackers read.
    with tempfile.TemporaryDirectory(prefix="infovae-trial-") as directory:
        write_trial_files(Path(directory), history, final)
        tune.report(final.to_report(), checkpoint=tune.Checkpoint.from_directory(directory))


def _last_checkpoint(checkpoint) -> tuple[Any, list[dict[str, Any]]]:
    """The :class:`TrainState` in a Ray Tune checkpoint (None: the trial starts fresh) and the
    epoch rows up to it."""
    from infovae_core.trainer import TrainState

    if checkpoint is None:
        return None, []
    with checkpoint.as_directory() as directory:
        path = Path(directory) / CHECKPOINT_FILE
        if not path.is_file():  # the checkpoint of a finished trial: nothing to resume
            return None, []
        epochs = read_trial_files(Path(directory), TrialResult(status=None)).epochs
        return TrainState.load(path), [dict(row) for row in epochs]
