"""The driver's record of trials: a Ray Tune callback that writes every finished trial, its
epochs and artefacts into the study's :class:`~sweep.store.ResultsStore` as it ends, keeps the
arms' progress, and records a repeated configuration as a copy of its original
(:func:`duplicate_index`). A trial that Ray failed is recorded with Ray's own error text.

A trial's epoch rows and artefacts come from its last checkpoint under Ray Tune's storage
path (:func:`~sweep.run.trial.read_trial_files`), not from its results; once the trial is
recorded, its folder there and Tune's statistics of its results are dropped
(:func:`_forget_trial`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from sweep import names
from sweep.analysis.ranking import better
from sweep.atomic_files import atomic_write_bytes, fsync_dir
from sweep.run.events import ArmProgress, StudyEvents
from sweep.run.searcher import (
    DuplicateIndex,
)
from sweep.run.trial import (
    TrialArtifacts,
    TrialContext,
    TrialMeta,
    TrialResult,
    read_trial_files,
    reported_epochs,
    trial_config,
    trial_phase,
)
from sweep.spec import ObjectiveSpec
from sweep.store import ResultsStore, json_columns

#: Longest recorded error text of a trial that Ray failed (its last characters are kept).
ERROR_CHARS = 2000


def clip_error(text: str, limit: int = ERROR_CHARS) -> str:
    """``text`` cut to its last ``limit`` characters, starting at a line where it can (the
    end of a traceback says what failed)."""
    text = text.strip()
    if len(text) <= limit:
        return text
    tail = text[-(limit - 4) :]
    newline = tail.find("\n")
    if 0 <= newline < len(tail) // 2:
        tail = tail[newline + 1 :]
    return "...\n" + tail


def ray_trial_error(trial) -> str:
    """Ray Tune's own text of why ``trial`` failed (the exception, the dead actor or lost
    node), from the trial's error file (``Trial.error_file``, written by Ray before it calls
    the callbacks; ``Trial.get_error()`` reads the copy at the storage path). Each failure
    appends its ``Failure # n`` block: the last one is kept by :func:`clip_error`."""
    text = None
    path = getattr(trial, "error_file", None)
    if path:
        with contextlib.suppress(OSError):
            text = Path(path).read_text(encoding="utf-8", errors="replace")
    if not text:
        with contextlib.suppress(Exception):
            text = trial.get_error()
    if not text:
        return "the trial's worker failed (Ray recorded no error text)"
    return clip_error(str(text))


@functools.cache
def _store_callback_class() -> type:
    # Subclass Tune's Callback on first use so importing this module does not import Ray.
    from ray.tune import Callback

    return type("StoreCallback", (_StoreCallbackMixin, Callback), {})


def StoreCallback(*args: Any, **kwargs: Any):  # noqa: N802 - used like the class it builds
    """Tune callback on the driver: collects each trial's epochs, records finished trials."""
    return _store_callback_class()(*args, **kwargs)


class _StoreCallbackMixin:
    def __init__(
        self,
        store: ResultsStore,
        context: TrialContext,
        events: StudyEvents,
        rank_metric: str,
        rank_direction: str,
        duplicates: DuplicateIndex | None = None,
    ) -> None:
        self.store = store
        self.context = context
        self.events = events
        self.rank_metric = rank_metric
        self.rank_direction = rank_direction
        self.duplicates = duplicates
        self.epochs: dict[str, list[dict[str, Any]]] = {}
        #: Tune's ids of the trials recorded by this run, whose Ray folders go at its end.
        self.recorded: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment state; the driver-side store and
        # events are not state to restore (resume rebuilds them from the study folder).
        return {"context": self.context, "epochs": {}, "duplicates": None, "recorded": set()}

    def _progress(self, trial) -> ArmProgress:
        return self.events.arms[TrialMeta.of(trial.config).arm]

    def on_trial_start(self, iteration, trials, trial, **info):
        # Also called when a recovered trial starts again: its earlier epochs are kept.
        self._progress(trial).running += 1
        # Search and confirm share one Tuner: the live view shows the phase trials enter.
        self.events.phase = trial_phase(self.context, trial.config)
        self.epochs.setdefault(trial.trial_id, [])
        self.events.changed()

    def on_trial_restore(self, iteration, trials, trial, **info):
        self.epochs[trial.trial_id] = []

    def on_trial_recover(self, iteration, trials, trial, **info):
        # A worker died; Ray retries the trial, from its last checkpoint when it has one (else
        # from epoch 1). The epochs before it stay: the retry's epochs replace the rest as
        # they arrive (on_trial_result), so each epoch is recorded once.
        progress = self._progress(trial)
        progress.running = max(0, progress.running - 1)  # on_trial_start counts it again
        self.events.changed()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        # The reported epochs, kept for a trial that ends without a checkpoint holding them.
        for row in reported_epochs(result):
            self._add_epoch(trial, row)

    def _add_epoch(self, trial, result: Mapping[str, Any]) -> None:
        row = _epoch_row(result)
        epoch = row[names.EPOCH]
        rows = self.epochs.setdefault(trial.trial_id, [])
        if rows and rows[-1][names.EPOCH] >= epoch:
            # A retry that went back to a checkpoint (or to the start), or a result seen
            # twice: drop what it redoes.
            rows[:] = [r for r in rows if r[names.EPOCH] < epoch]
        rows.append(row)

    def on_experiment_end(self, trials, **info):
        # Tune makes a finished trial's (empty) folder again after the trial is recorded.
        for trial in trials:
            if trial.trial_id in self.recorded:
                _forget_trial(trial)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._record(trial, _trial_result(trial), error=None)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._record(trial, _trial_result(trial), error=ray_trial_error(trial))

    def _record(self, trial, result: TrialResult, error: str | None) -> None:
        meta = TrialMeta.of(trial.config)
        arm = meta.arm
        study_trial_id = meta.trial_id or f"{arm}-{trial.trial_id}"
        progress = self._progress(trial)
        progress.running = max(0, progress.running - 1)
        status = result.status
        if error is not None:
            status, message = names.FAILED, error
        elif status is None:
            status, message = names.STOPPED, "stopped early by the scheduler"
        else:
            message = result.error
        try:
            config = trial_config(self.context, trial.config)
            params = {names.param(k): v for k, v in config.to_flat_dict().items()}
            seed = config.train.seed
        except Exception as problem:  # noqa: BLE001 - a config error is the trial's failure
            params, seed = {}, int(meta.seed or 0)
            status, message = names.FAILED, message or f"{type(problem).__name__}: {problem}"
        now = dt.datetime.now(dt.timezone.utc)
        row: dict[str, Any] = {
            names.STUDY: self.context.study,
            names.ARM: arm,
            names.PHASE: trial_phase(self.context, trial.config),
            names.TRIAL_ID: study_trial_id,
            names.ATTEMPT: int(getattr(trial, "num_failures", 0) or 0),
            names.RESUMED_FROM_EPOCH: result.resumed_from_epoch,
            names.SEED: seed,
            names.STATUS: status,
            names.ERROR: message,
            names.STARTED_AT: result.started_at or now,
            names.ENDED_AT: result.ended_at or now,
            names.TRAIN_SECONDS: result.train_seconds,
            names.EVAL_SECONDS: result.eval_seconds,
            names.HOST: result.host,
            names.NODE_ID: result.node_id,
            names.DEVICE: result.device,
            **params,
        }
        if status == names.COMPLETED:
            row.update(result.metrics)
        epochs = _merged_epochs(result.epochs, self.epochs.pop(trial.trial_id, []))
        recorded = self.store.record_trial(row, epochs)
        if recorded and status == names.COMPLETED:
            write_artifacts(self.store.folder, study_trial_id, result.artifacts)
        _forget_trial(trial)
        self.recorded.add(trial.trial_id)
        if recorded:
            if status == names.COMPLETED:
                if self.duplicates is not None and params:
                    key = DuplicateIndex.canonical(_unprefixed(params))
                    self.duplicates.add(key, study_trial_id)
            _count(progress, status, result, self.rank_metric, self.rank_direction)
        self.events.changed()


def _epoch_row(result: Mapping[str, Any]) -> dict[str, Any]:
    """An epoch's row as the store records it: its number and its terms."""
    row = {names.EPOCH: int(result[names.EPOCH])}
    row.update({k: v for k, v in result.items() if k.startswith((names.TRAIN, names.VAL))})
    return row


def _merged_epochs(
    stored: Sequence[Mapping[str, Any]], reported: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """A trial's epoch rows: those of its last checkpoint (every epoch up to it, each retry's
    own), then those reported after it (a trial that ended without a later checkpoint)."""
    rows = [_epoch_row(row) for row in stored]
    last = rows[-1][names.EPOCH] if rows else 0
    return rows + [row for row in reported if row[names.EPOCH] > last]


def _trial_result(trial) -> TrialResult:
    """``trial``'s outcome: its last Ray result, completed with the epoch rows, artefacts and
    details of its last checkpoint. The checkpoint lies under Ray Tune's storage path, local
    or remote: ``as_directory`` reads a local one in place and downloads a remote one."""
    result = TrialResult.from_report(trial.last_result)
    checkpoint = getattr(trial, "checkpoint", None)
    if checkpoint is None:
        return result
    try:
        with checkpoint.as_directory() as directory:
            return read_trial_files(Path(directory), result)
    except Exception:  # noqa: BLE001 - a checkpoint lost with its node: the reported epochs
        return result


def _delete_checkpoints(filesystem, trial_path: str) -> None:
    """Delete the ``checkpoint_*`` folders of a trial's folder on ``filesystem`` (pyarrow), then
    the folder if that left it empty."""
    import pyarrow.fs as pafs

    entries = filesystem.get_file_info(pafs.FileSelector(trial_path, allow_not_found=True))
    for entry in entries:
        if entry.type == pafs.FileType.Directory and entry.base_name.startswith("checkpoint_"):
            filesystem.delete_dir(entry.path)
    if all(e.base_name.startswith("checkpoint_") for e in entries):
        filesystem.delete_dir(trial_path)


def _forget_trial(trial) -> None:
    """Delete a recorded trial's checkpoints under Ray Tune's storage path (the folder itself
    when nothing else is left in it: a tracker's offline files, such as W&B's, stay) and Tune's
    own statistics of its results and record of that checkpoint, which Tune keeps
    in its experiment state (rewritten at each of its experiment checkpoints) to the end of
    the run. A finished trial is never restored: retries concern running trials only, and
    ``resume`` starts from the study folder. Tune reads these statistics only for
    ``ResultGrid.get_best_result``, which the runner never asks for."""
    storage = getattr(trial, "storage", None)
    if storage is None:
        return
    with contextlib.suppress(Exception):  # only storage space is at stake
        _delete_checkpoints(storage.storage_filesystem, storage.trial_fs_path)
    with contextlib.suppress(Exception):  # only the experiment state's size is at stake
        metadata = trial.run_metadata
        manager = metadata.checkpoint_manager
        metadata.checkpoint_manager = type(manager)(manager.checkpoint_config)
        metadata.metric_analysis = {}
        metadata.metric_n_steps = {}


def _unprefixed(params: dict[str, Any]) -> dict[str, Any]:
    return {names.strip(k, names.PARAM): v for k, v in params.items() if k.startswith(names.PARAM)}


def _count(
    progress: ArmProgress, status: str, result: TrialResult, metric: str, direction: str
) -> None:
    """Count a recorded trial in its arm's progress and keep the best value so far."""
    progress.done += status == names.COMPLETED
    progress.failed += status == names.FAILED
    progress.stopped += status == names.STOPPED
    value = result.metrics.get(metric) if status == names.COMPLETED else None
    if isinstance(value, int | float) and better(float(value), progress.best, direction):
        progress.best = float(value)


def duplicate_index(
    store: ResultsStore, events: StudyEvents, rank: ObjectiveSpec, context: TrialContext
) -> DuplicateIndex:
    """The study's completed search configurations, and how a repeat is recorded as a copy
    (counted in ``events`` by the ``rank`` objective, as a trained trial is)."""

    def key(config: Mapping[str, Any]) -> str | None:
        try:
            return DuplicateIndex.canonical(trial_config(context, config).to_flat_dict())
        except Exception:  # noqa: BLE001 - a config that cannot be built is never a repeat
            return None

    def copy(config: Mapping[str, Any], original: str) -> TrialResult:
        meta = TrialMeta.of(config)
        row = _stored_row(store, original)
        now = dt.datetime.now(dt.timezone.utc)
        row.update(
            {
                names.ARM: meta.arm,  # the original may belong to another arm
                names.PHASE: names.SEARCH,
                names.TRIAL_ID: meta.trial_id,
                names.COPY_OF: original,
                names.ATTEMPT: 0,
                names.RESUMED_FROM_EPOCH: 0,
                names.ERROR: None,
                names.STARTED_AT: now,
                names.ENDED_AT: now,
                names.TRAIN_SECONDS: 0.0,
                names.EVAL_SECONDS: 0.0,
            }
        )
        epochs = [
            {k: v for k, v in rec.items() if k not in ("study", "arm", "trial_id")}
            for rec in store.epochs_table()
            .filter(pc.equal(store.epochs_table().column("trial_id"), original))
            .to_pylist()
        ]
        result = TrialResult(
            status=names.COMPLETED,
            metrics={k: v for k, v in row.items() if k.startswith(names.METRIC)},
        )
        if store.record_trial(row, epochs):
            _copy_artifacts(store.folder, original, meta.trial_id)
            _count(events.arms[meta.arm], names.COMPLETED, result, rank.metric, rank.direction)
            events.changed()
        return result

    index = DuplicateIndex(key, copy)
    trials = store.trials_table()
    encoded = set(json_columns(trials.schema))
    for row in trials.to_pylist():
        if row[names.PHASE] == names.SEARCH and row[names.STATUS] == names.COMPLETED:
            params = {
                k: (json.loads(v) if k in encoded and isinstance(v, str) else v)
                for k, v in row.items()
                if k.startswith(names.PARAM)
            }
            index.add(DuplicateIndex.canonical(_unprefixed(params)), row[names.TRIAL_ID])
    return index


def _stored_row(store: ResultsStore, trial_id: str) -> dict[str, Any]:
    """A recorded trial row as :meth:`ResultsStore.record_trial` takes it (JSON decoded)."""
    table = store.trials_table()
    row = table.filter(pc.equal(table.column("trial_id"), trial_id)).to_pylist()[0]
    for name in json_columns(table.schema):
        if isinstance(row.get(name), str):
            row[name] = json.loads(row[name])
    return row


def _copy_artifacts(folder: Path, original: str, trial_id: str) -> None:
    source = folder / names.ARTIFACTS_DIR / original
    if not source.is_dir():
        return
    target = folder / names.ARTIFACTS_DIR / trial_id
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file():
            atomic_write_bytes(target / path.name, path.read_bytes(), sync_dir=False)
    fsync_dir(target)


def write_artifacts(folder: Path, trial_id: str, artifacts: TrialArtifacts | None) -> None:
    """Latents (``latents.npy``) and image grids (PNG) of a finished trial, for the report."""
    target = folder / names.ARTIFACTS_DIR / trial_id
    target.mkdir(parents=True, exist_ok=True)
    for name, data in (artifacts or TrialArtifacts()).files().items():
        atomic_write_bytes(target / name, data, sync_dir=False)
    fsync_dir(target)
