"""Run a study: Optuna search through Ray Tune trials, then the confirm phase; resume after a crash.

Flow of :func:`run_study` (the CLI's ``run`` and ``resume`` are thin calls of it):

1. The study folder is created (or re-entered) and locked: one driver per study.
2. Ray starts embedded on this machine (``address=None``: a local instance, no dashboard) or
   attaches to a cluster (``address="auto"`` / ``"HOST:PORT"``).
3. The dataset is loaded once on the driver and put in the object store once; reused trial
   actors fetch it once per worker process.
4. For each arm, in file order, the search phase: ``trials_per_arm`` trials sampled by Optuna
   (:mod:`sweep.searcher`, Optuna's public ask/tell with the arm's seeded sampler and the
   study's Optuna storage, :mod:`sweep.storages`: ``optuna.db`` by default, one Optuna study
   per arm, named after it), at most ``max_concurrent`` at a time, ASHA early stopping when
   configured. A suggestion whose full TrialConfig (seed included) equals a completed search
   trial's is not trained: it is recorded as a copy (``copy_of``) and Optuna is told the
   original's values.
5. The confirm phase of each arm, in the same Tuner: as soon as the arm's search is over, its
   best ``confirm.top_k`` completed search trials are trained again with each confirm seed
   (while other arms may still search). One Tuner for the whole study: Ray Tune starts once
   and its reused trial actors stay warm from the first trial to the last.
6. Every trial is recorded in the Parquet store by the driver as it finishes (a Tune callback),
   with its epochs and artefacts; a failed trial is recorded with its error and Optuna is told
   it failed. Trials Optuna did not sample (arms without a search space, confirm trials) are
   added to ``optuna.db`` as finished trials, so that optuna-dashboard shows every trial.
7. With ``trackers`` (``--log-to``), Ray Tune's MLflow, TensorBoard or W&B logger callbacks log
   every trial too (:mod:`sweep.trackers`).

With a storage URI the study folder is mirrored to ``<storage>/<study>/`` as trials are
recorded (:mod:`sweep.mirror`); ``resume`` from that URI pulls it into a fresh folder first.

Resume: completed (and failed or stopped) trials are in the store and are never run
again. Optuna trials still marked RUNNING belonged to trials interrupted with the driver: they
are failed in Optuna with ``Study.tell(number, state=FAIL)`` (their numbers listed in the
study's user attribute ``interrupted_trials``) and their parameters are enqueued, so the
same configurations run again; the sampler keeps every earlier trial as history. Each arm
runs only the trials still missing from the plan.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from sweep import names
from sweep.files import atomic_write, atomic_write_bytes, fsync_dir
from sweep.mirror import MirrorError, StudyMirror, is_uri, mirror_uri
from sweep.ranking import better, rank_trials
from sweep.searcher import (
    ArmSearch,
    DuplicateIndex,
    FixedArm,
    arms_searcher,
    confirm_recorder,
    recover_interrupted,
)
from sweep.spec import StudySpec
from sweep.storages import (
    OptunaStorageError,
    StorageRecord,
    check_optuna_storage,
    open_optuna_storage,
    read_record,
    write_record,
)
from sweep.store import ResultsStore, json_columns
from sweep.trackers import Tracker, check_trackers, tracker_callbacks
from sweep.trainable import (
    ARTIFACT_PREFIX,
    ERROR_KEY,
    STATUS_KEY,
    TRIAL_KEY,
    TrialContext,
    run_trial,
    trial_config,
    trial_phase,
)

#: Ray reads these when Tune starts: no auto loggers (the driver's store is the record), our
#: own Ctrl-C handling, no usage reporting; epoch results carry no final metric (the searcher
#: reads it from the final result only). Set by :func:`_tune_environment` for a run, never at
#: import: importing the runner must not change the environment of the importing program.
TUNE_ENVIRONMENT: dict[str, str] = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
}


@contextlib.contextmanager
def _tune_environment() -> Iterator[None]:
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


OPTUNA_FILE = names.OPTUNA_FILE
ARTIFACTS_DIR = names.ARTIFACTS_DIR


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


class StudyInterrupted(RuntimeError):
    """The driver was interrupted (Ctrl-C); what finished is recorded and the study resumes."""


@dataclass
class ArmProgress:
    planned: int
    done: int = 0
    failed: int = 0
    stopped: int = 0
    running: int = 0
    best: float | None = None


@dataclass
class StudyEvents:
    """What the driver observed, for the live view and the closing summary."""

    spec: StudySpec
    started: float = field(default_factory=time.monotonic)
    arms: dict[str, ArmProgress] = field(default_factory=dict)
    phase: str = names.SEARCH
    listeners: list[Callable[[StudyEvents], None]] = field(default_factory=list)

    def changed(self) -> None:
        for listener in self.listeners:
            listener(self)


# --------------------------------------------------------------------------------------------
# Optuna through Ray Tune


@functools.cache
def _per_arm_scheduler_class() -> type:
    """Ray's scheduler base class is imported on first use so importing this module stays
    light."""
    from ray.tune.schedulers import FIFOScheduler

    class PerArmScheduler(FIFOScheduler):
        """One scheduler per arm (ASHA compares a trial only with trials of its own arm: the
        arms' losses are on different scales, since each weighs its own divergence)."""

        def __init__(self, schedulers: dict[str, Any], epochs: dict[str, int]):
            super().__init__()
            self._schedulers = schedulers
            self._epochs = epochs

        def _of(self, trial):
            """The arm's scheduler; None for a confirm trial, which always trains to the end."""
            meta = trial.config[TRIAL_KEY]
            if meta.get(names.PHASE) == names.CONFIRM:
                return None
            return self._schedulers[meta["arm"]]

        def set_search_properties(self, metric, mode, **spec) -> bool:
            return True

        def on_trial_add(self, tune_controller, trial):
            if (scheduler := self._of(trial)) is not None:
                scheduler.on_trial_add(tune_controller, trial)

        def on_trial_error(self, tune_controller, trial):
            if (scheduler := self._of(trial)) is not None:
                scheduler.on_trial_error(tune_controller, trial)

        def on_trial_result(self, tune_controller, trial, result):
            scheduler = self._of(trial)
            if STATUS_KEY in result or scheduler is None:
                # The final result comes after the last epoch; confirm trials never stop early.
                return FIFOScheduler.CONTINUE
            decision = scheduler.on_trial_result(tune_controller, trial, result)
            arm = trial.config[TRIAL_KEY]["arm"]
            if result.get(names.EPOCH, 0) >= self._epochs[arm]:
                # Training is over: let the trial evaluate and report its metrics (ASHA
                # would stop every trial at max_t, before its evaluation).
                return FIFOScheduler.CONTINUE
            return decision

        def on_trial_complete(self, tune_controller, trial, result):
            if (scheduler := self._of(trial)) is not None:
                scheduler.on_trial_complete(tune_controller, trial, result)

        def on_trial_remove(self, tune_controller, trial):
            if (scheduler := self._of(trial)) is not None:
                scheduler.on_trial_remove(tune_controller, trial)

        def debug_string(self) -> str:
            return "per-arm ASHA"

    return PerArmScheduler


# --------------------------------------------------------------------------------------------
# The driver's record of trials


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

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment state; the driver-side store and
        # events are not state to restore (resume rebuilds them from the study folder).
        return {"context": self.context, "epochs": {}, "duplicates": None}

    def _progress(self, trial) -> ArmProgress:
        return self.events.arms[trial.config[TRIAL_KEY]["arm"]]

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
        if names.EPOCH in result and STATUS_KEY not in result:
            epoch = int(result[names.EPOCH])
            row = {names.EPOCH: epoch}
            row.update({k: v for k, v in result.items() if k.startswith((names.TRAIN, names.VAL))})
            rows = self.epochs.setdefault(trial.trial_id, [])
            if rows and rows[-1][names.EPOCH] >= epoch:
                # A retry that went back to a checkpoint (or to the start): drop what it redoes.
                rows[:] = [r for r in rows if r[names.EPOCH] < epoch]
            rows.append(row)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._record(trial, trial.last_result or {}, error=None)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._record(trial, trial.last_result or {}, error=ray_trial_error(trial))

    def _record(self, trial, result: dict[str, Any], error: str | None) -> None:
        meta = trial.config[TRIAL_KEY]
        arm = meta["arm"]
        study_trial_id = meta.get("trial_id") or f"{arm}-{trial.trial_id}"
        progress = self._progress(trial)
        progress.running = max(0, progress.running - 1)
        status = result.get(STATUS_KEY)
        if error is not None:
            status, message = names.FAILED, error
        elif status is None:
            status, message = names.STOPPED, "stopped early by the scheduler"
        else:
            message = result.get(ERROR_KEY)
        try:
            config = trial_config(self.context, trial.config)
            params = {names.param(k): v for k, v in config.to_flat_dict().items()}
            seed = config.train.seed
        except Exception as problem:  # noqa: BLE001 - a config error is the trial's failure
            params, seed = {}, int(meta.get("seed") or 0)
            status, message = names.FAILED, message or f"{type(problem).__name__}: {problem}"
        now = dt.datetime.now(dt.timezone.utc)
        row: dict[str, Any] = {
            names.STUDY: self.context.study,
            names.ARM: arm,
            names.PHASE: trial_phase(self.context, trial.config),
            names.TRIAL_ID: study_trial_id,
            names.ATTEMPT: int(getattr(trial, "num_failures", 0) or 0),
            names.RESUMED_FROM_EPOCH: int(result.get(names.RESUMED_FROM_EPOCH) or 0),
            names.SEED: seed,
            names.STATUS: status,
            names.ERROR: message,
            names.STARTED_AT: result.get(names.STARTED_AT) or now,
            names.ENDED_AT: result.get(names.ENDED_AT) or now,
            names.TRAIN_SECONDS: result.get(names.TRAIN_SECONDS),
            names.EVAL_SECONDS: result.get(names.EVAL_SECONDS),
            names.HOST: result.get(names.HOST) or result.get("hostname"),
            names.NODE_ID: result.get(names.NODE_ID) or result.get("node_ip"),
            names.DEVICE: result.get(names.DEVICE),
            **params,
        }
        if status == names.COMPLETED:
            row.update({k: v for k, v in result.items() if k.startswith(names.METRIC)})
        epochs = self.epochs.pop(trial.trial_id, [])
        if self.store.record_trial(row, epochs):
            if status == names.COMPLETED:
                _write_artifacts(self.store.folder, study_trial_id, result)
                if self.duplicates is not None and params:
                    key = DuplicateIndex.canonical(_unprefixed(params))
                    self.duplicates.add(key, study_trial_id)
            _count(progress, status, result, self.rank_metric, self.rank_direction)
        self.events.changed()


def _unprefixed(params: dict[str, Any]) -> dict[str, Any]:
    return {names.strip(k, names.PARAM): v for k, v in params.items() if k.startswith(names.PARAM)}


def _count(
    progress: ArmProgress, status: str, result: dict[str, Any], metric: str, direction: str
) -> None:
    """Count a recorded trial in its arm's progress and keep the best value so far."""
    progress.done += status == names.COMPLETED
    progress.failed += status == names.FAILED
    progress.stopped += status == names.STOPPED
    value = result.get(metric) if status == names.COMPLETED else None
    if isinstance(value, int | float) and better(float(value), progress.best, direction):
        progress.best = float(value)


def _duplicate_index(run: _StudyRun, context: TrialContext) -> DuplicateIndex:
    """The study's completed search configurations, and how a repeat is recorded as a copy."""
    store, events = run.store, run.events
    rank = run.spec.confirm_rank

    def key(config: dict[str, Any]) -> str | None:
        try:
            return DuplicateIndex.canonical(trial_config(context, config).to_flat_dict())
        except Exception:  # noqa: BLE001 - a config that cannot be built is never a repeat
            return None

    def copy(config: dict[str, Any], original: str) -> dict[str, Any]:
        meta = config[TRIAL_KEY]
        row = _stored_row(store, original)
        now = dt.datetime.now(dt.timezone.utc)
        row.update(
            {
                names.ARM: meta["arm"],  # the original may belong to another arm
                names.PHASE: names.SEARCH,
                names.TRIAL_ID: meta["trial_id"],
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
        result = {
            STATUS_KEY: names.COMPLETED,
            **{k: v for k, v in row.items() if k.startswith(names.METRIC)},
        }
        if store.record_trial(row, epochs):
            _copy_artifacts(store.folder, original, meta["trial_id"])
            _count(events.arms[meta["arm"]], names.COMPLETED, result, rank.metric, rank.direction)
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
    source = folder / ARTIFACTS_DIR / original
    if not source.is_dir():
        return
    target = folder / ARTIFACTS_DIR / trial_id
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file():
            atomic_write_bytes(target / path.name, path.read_bytes(), sync_dir=False)
    fsync_dir(target)


def _write_artifacts(folder: Path, trial_id: str, result: dict[str, Any]) -> None:
    """Latents (``latents.npy``) and image grids (PNG) of a finished trial, for the report."""
    target = folder / ARTIFACTS_DIR / trial_id
    target.mkdir(parents=True, exist_ok=True)
    latents = result.get(f"{ARTIFACT_PREFIX}latents")
    if latents:
        array = np.asarray(latents, dtype=np.float32)
        atomic_write(
            target / "latents.npy",
            lambda handle: np.save(handle, array, allow_pickle=False),
            sync_dir=False,
        )
    images = (("samples_png", "samples.png"), ("reconstructions_png", "reconstructions.png"))
    for key, name in images:
        encoded = result.get(f"{ARTIFACT_PREFIX}{key}")
        if encoded:
            atomic_write_bytes(target / name, base64.b64decode(encoded), sync_dir=False)
    fsync_dir(target)


# --------------------------------------------------------------------------------------------
# Phases


def _run_config(storage_path: str, name: str, callbacks: list, verbose: bool):
    from ray import tune

    return tune.RunConfig(
        name=name,
        storage_path=storage_path,
        callbacks=callbacks,
        verbose=1 if verbose else 0,
        # Infrastructure failures (a dead worker or node) are retried; errors of the training
        # code itself are reported by the trainable as failed trials and never retried.
        failure_config=tune.FailureConfig(max_failures=2),
        # Trials report a checkpoint every train.checkpoint_every epochs; a retry needs only
        # the last one.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        log_to_file=False,
    )


def _trainable(spec: StudySpec, context: TrialContext, data_refs: dict[str, Any]):
    from ray import tune

    resources = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    return tune.with_resources(
        tune.with_parameters(run_trial, context=context, data=data_refs), resources
    )


def _context(spec: StudySpec, phase: str, data_key: str) -> TrialContext:
    return TrialContext(
        study=spec.name,
        phase=phase,
        settings={arm: spec.arm_settings(arm) for arm in spec.arm_names},
        threads=max(1, int(spec.resources.cpu)),
        data_key=data_key,
    )


@dataclass(frozen=True)
class _StudyRun:
    """What every phase of one driver run shares."""

    spec: StudySpec
    store: ResultsStore
    storage_path: str
    data_refs: dict[str, Any]
    data_key: str
    events: StudyEvents
    max_concurrent: int
    verbose: bool
    trackers: tuple[Tracker, ...] = ()

    def callbacks(self, store_callback, context: TrialContext) -> list:
        """The store's callback, then one per ``--log-to`` tracker and phase
        (:mod:`sweep.trackers`)."""
        phases = (names.SEARCH, names.CONFIRM) if self.spec.confirm_seeds else (names.SEARCH,)
        trackers = tracker_callbacks(self.trackers, context, self.store.folder, phases)
        return [store_callback, *trackers]


def _recorded_by_arm(store: ResultsStore, phase: str) -> dict[str, set[str]]:
    trials = store.trials()
    recorded: dict[str, set[str]] = {}
    if len(trials):
        mine = trials[trials[names.PHASE] == phase]
        for arm, trial_id in zip(mine[names.ARM], mine[names.TRIAL_ID], strict=False):
            recorded.setdefault(arm, set()).add(trial_id)
    return recorded


def _optuna_trials(storage, arm: str) -> int:
    """Trials the arm's Optuna study holds already (0: a new search)."""
    import optuna

    try:
        return len(optuna.load_study(study_name=arm, storage=storage).get_trials(deepcopy=False))
    except KeyError:
        return 0


def _run_trials(run: _StudyRun) -> None:
    """Every trial still missing from the study's plan, search and confirm, in one Tuner:
    one Tune start, one set of warm trial actors (``reuse_actors``) for the whole study.
    Each arm's confirm trials are planned the moment its search is over
    (:class:`ConfirmPlanner`), while other arms may still be searching."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    spec, store, events = run.spec, run.store, run.events
    storage_path, data_refs, data_key = run.storage_path, run.data_refs, run.data_key
    max_concurrent, verbose = run.max_concurrent, run.verbose

    storage = open_optuna_storage(store.folder)  # as the folder's storage.yaml names it
    recorded = _recorded_by_arm(store, names.SEARCH)
    context = _context(spec, names.SEARCH, data_key)
    duplicates = _duplicate_index(run, context)
    searchers: dict[str, ArmSearch | FixedArm] = {}
    budgets: dict[str, int] = {}
    for arm in spec.arm_names:
        recover_interrupted(storage, arm, recorded.get(arm, set()))
        remaining = spec.trials_for(arm) - len(recorded.get(arm, ()))
        if remaining <= 0:
            continue
        budgets[arm] = remaining
        if not spec.arms[arm].search:
            searchers[arm] = FixedArm(
                arm,
                _SeedPolicy(spec, arm),
                recorded.get(arm, set()),
                storage=storage,
                metrics=spec.search.metrics,
                directions=spec.search.directions,
            )
            continue
        searchers[arm] = ArmSearch(
            arm=arm,
            storage=storage,
            sampler=spec.sampler(arm, restart=_optuna_trials(storage, arm)),
            space=spec.optuna_space(arm),
            metrics=spec.search.metrics,
            directions=spec.search.directions,
            seed_for=_SeedPolicy(spec, arm),
        )
    planner = _ConfirmPlanner(spec, store) if spec.confirm_seeds else None
    confirm_arms = list(spec.arm_names) if planner is not None else []
    if not budgets and not any(planner(arm) for arm in confirm_arms if planner is not None):
        return
    scheduler = None
    early = spec.search.early_stopping
    if early is not None:
        scheduler = _per_arm_scheduler_class()(
            {
                arm: ASHAScheduler(
                    metric=early.metric,
                    mode=early.resolved_mode,
                    time_attr="training_iteration",
                    max_t=spec.arm_config(arm).planned_epochs(),
                    grace_period=early.grace_period,
                    reduction_factor=early.reduction_factor,
                )
                for arm in budgets
            },
            {arm: spec.arm_config(arm).planned_epochs() for arm in budgets},
        )
    rank = spec.confirm_rank
    callback = StoreCallback(store, context, events, rank.metric, rank.direction, duplicates)
    # Optuna records the confirm trials too (optuna-dashboard then shows every trial).
    recorder = (
        [confirm_recorder(storage, spec.search.metrics, spec.search.directions)]
        if planner is not None
        else []
    )
    tuner = tune.Tuner(
        _trainable(spec, context, data_refs),
        tune_config=tune.TuneConfig(
            search_alg=arms_searcher(searchers, budgets, duplicates, planner, confirm_arms),
            scheduler=scheduler,
            num_samples=-1,  # the searcher says when the study is done (confirm counts vary)
            max_concurrent_trials=max_concurrent,
            reuse_actors=True,
        ),
        run_config=_run_config(
            storage_path,
            f"study-{_stamp()}",
            [*run.callbacks(callback, context), *recorder],
            verbose,
        ),
    )
    tuner.fit()


@dataclass(frozen=True)
class _SeedPolicy:
    """``train.seed`` of search trial ``index`` of ``arm`` (a picklable callable)."""

    spec: StudySpec
    arm: str

    def __call__(self, index: int) -> int | None:
        return self.spec.search_seed(self.arm, index)


def confirm_candidates(spec: StudySpec, store: ResultsStore, arm: str) -> list[dict[str, Any]]:
    """The best ``confirm.top_k`` search trials of ``arm`` by :func:`sweep.ranking.rank_trials`
    (the study's objectives, Pareto-first when there are several, ``confirm_rank`` within a
    front, ties by trial id), as dotted settings of their searched keys."""
    trials = store.trials()
    if not len(trials):
        return []
    mine = trials[(trials[names.ARM] == arm) & (trials[names.PHASE] == names.SEARCH)]
    objectives = [(o.metric, o.direction) for o in spec.search.objectives]
    done = rank_trials(mine, objectives, rank_by=spec.confirm_rank.metric)
    done = done.head(spec.confirm.top_k)
    encoded = set(json_columns(store.trials_table().schema))
    candidates = []
    for _, row in done.iterrows():
        params = {}
        for key in spec.arms[arm].search:
            value = row.get(names.param(key))
            if names.param(key) in encoded and isinstance(value, str):
                value = json.loads(value)
            if isinstance(value, np.generic):
                value = value.item()
            params[key] = value
        candidates.append({"source": row[names.TRIAL_ID], "params": params})
    return candidates


@dataclass(frozen=True)
class _ConfirmPlanner:
    """The confirm trials of one arm still to run: each of the arm's best ``confirm.top_k``
    search trials (:func:`confirm_candidates`) with each confirm seed, minus those recorded."""

    spec: StudySpec
    store: ResultsStore

    def __call__(self, arm: str) -> list[dict[str, Any]]:
        recorded = self.store.recorded_trial_ids()
        todo = []
        for rank, candidate in enumerate(confirm_candidates(self.spec, self.store, arm), start=1):
            for seed in self.spec.confirm_seeds:
                trial_id = f"{arm}-confirm{rank}-seed{seed}"
                if trial_id not in recorded:
                    todo.append(
                        {
                            names.ARM: arm,
                            names.TRIAL_ID: trial_id,
                            names.SEED: seed,
                            "params": candidate["params"],
                            "source": candidate["source"],
                        }
                    )
        return todo


def _stamp() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S")


# --------------------------------------------------------------------------------------------
# Ray


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
    with _tune_environment():  # the raylet and its workers inherit the environment
        if address is None:
            # No private node-address argument: Ray resolves "127.0.0.1" to the node's
            # address anyway (Ray 2.60: the same listening sockets with or without it).
            ray.init(address="local", num_cpus=num_cpus, **common)
        else:
            ray.init(address=address, **common)
    return True


def _quiet_loggers(verbose: bool) -> None:
    level = logging.INFO if verbose else logging.ERROR
    for name in ("ray", "ray.tune", "ray.train", "optuna"):
        logging.getLogger(name).setLevel(level)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)


# --------------------------------------------------------------------------------------------
# Entry point


@dataclass(frozen=True)
class RunOutcome:
    folder: Path
    counts: dict[str, int]
    seconds: float
    #: The study folder's mirror under the storage URI (None without one); the CLI syncs it
    #: again after writing the report.
    mirror: StudyMirror | None = None


@_tune_environment()  # Tune's variables for this run only, restored after it
def run_study(
    spec: StudySpec,
    folder: Path,
    *,
    address: str | None = None,
    max_concurrent: int | None = None,
    verbose: bool = False,
    resume: bool = False,
    storage: str | None = None,
    optuna_storage: str | None = None,
    num_cpus: int | None = None,
    listeners: list[Callable[[StudyEvents], None]] | None = None,
    trackers: Sequence[Tracker] = (),
    single_node: bool = False,
) -> RunOutcome:
    """Run (or resume) ``spec`` into ``folder``; see the module docstring.

    ``storage`` overrides the study's ``storage`` (Ray Tune's storage path); the Parquet store
    and the report are written by the driver into ``folder`` either way, and with a storage
    URI the folder is mirrored to ``<storage>/<study>/`` (:mod:`sweep.mirror`).
    ``optuna_storage``: ``sqlite`` (default), ``journal`` or an RDB URL (:mod:`sweep.storages`).
    Both are recorded in the folder's ``storage.yaml``; ``resume`` reopens what it records
    (an explicit ``storage`` still overrides Ray Tune's storage path and the mirror).
    ``trackers`` (from :func:`sweep.trackers.parse_tracker`) add MLflow, TensorBoard or W&B
    logging.
    With an ``address`` it must be shared storage unless ``single_node``
    (:func:`check_storage`).

    Raises :class:`StudyInterrupted` on Ctrl-C after recording what finished,
    :class:`StorageError` for a local storage path on a multi-node cluster, an Optuna storage
    that cannot be opened or a storage URI that cannot be used, and
    :class:`~sweep.trackers.TrackerError` for a tracker that cannot log (all before any trial).
    """
    import ray

    from infovae_core.data import load_dataset

    folder = Path(folder)
    record = _read_record(folder) if resume else None
    storage = storage or (record.storage if record is not None else None) or spec.storage
    # Refused before anything is started or written.
    check_storage(storage, address=address, single_node=single_node)
    check_trackers(trackers, spec.name)
    store = ResultsStore.open(folder) if resume else None
    concurrency = max_concurrent or spec.search.max_concurrent
    events = StudyEvents(spec=spec, listeners=list(listeners or []))
    optuna_choice = _optuna_choice(folder, record, optuna_storage, resume)
    mirror = _open_mirror(folder, storage, spec.name, resume)
    if mirror is not None:
        events.listeners.append(_mirror_listener(mirror))
    storage_path = storage or str((folder / names.RAY_DIR).resolve())
    started_ray = start_ray(address, verbose, num_cpus=num_cpus)
    _quiet_loggers(verbose)
    try:
        # Everything that can refuse the run does so before the study folder is written.
        alive = len([n for n in ray.nodes() if n.get("Alive")])
        check_storage(storage, alive, address=address, single_node=single_node)
        # The whole splits, once: each trial cuts its own data.train_size from them (arms may
        # fix or search it), so every size shares this one copy in the object store.
        data_config = dataclasses.replace(spec.arm_config(spec.arm_names[0]).data, train_size=None)
        splits = load_dataset(data_config)
        if store is None:
            store = ResultsStore.create(folder, spec.to_yaml())
        if record is None or record.storage != storage:
            write_record(folder, StorageRecord(storage=storage, optuna_storage=optuna_choice))
        with store.lock():
            _count_recorded(spec, store, events)
            data_key = json.dumps(
                {
                    "dataset": data_config.dataset,
                    names.SEED: data_config.seed,
                    "data_dir": data_config.data_dir,
                },
                sort_keys=True,
            )
            data_refs = {"splits": ray.put(splits)}
            events.phase = names.SEARCH
            events.changed()
            _run_trials(
                _StudyRun(
                    spec,
                    store,
                    storage_path,
                    data_refs,
                    data_key,
                    events,
                    concurrency,
                    verbose,
                    tuple(trackers),
                )
            )
            store.reload()
            counts = store.trials()["status"].value_counts().to_dict() if len(store) else {}
        if mirror is not None:  # after the lock's release folded the part files in
            _final_sync(mirror)
    except KeyboardInterrupt:
        if mirror is not None:
            _final_sync(mirror)
        raise StudyInterrupted(
            f"interrupted; finished trials are recorded in {folder}. "
            f"Continue with: infovae-sweep resume {folder}"
        ) from None
    finally:
        if started_ray:
            ray.shutdown()
    return RunOutcome(
        folder=folder, counts=counts, seconds=time.monotonic() - events.started, mirror=mirror
    )


def _read_record(folder: Path) -> StorageRecord | None:
    try:
        return read_record(folder)
    except OptunaStorageError as error:
        raise StorageError(str(error)) from None


def _final_sync(mirror: StudyMirror) -> None:
    """The last copy of a run; a failure is logged (the study folder itself is complete)."""
    try:
        mirror.sync(force=True)
    except (OSError, ValueError) as error:
        logging.getLogger(__name__).warning("mirror %s: copy failed: %s", mirror.uri, error)


def _optuna_choice(
    folder: Path, record: StorageRecord | None, optuna_storage: str | None, resume: bool
) -> str:
    """The Optuna storage of this run: the recorded one on resume (a different explicit choice
    is refused), else ``optuna_storage``, checked (an RDB URL is opened once) before anything
    is written."""
    try:
        if resume:
            recorded = record.optuna_storage if record is not None else check_optuna_storage(None)
            if optuna_storage is not None and check_optuna_storage(optuna_storage) != recorded:
                raise StorageError(
                    f"--optuna-storage: the study in {folder} uses the Optuna storage "
                    f"{recorded!r} (its {names.STORAGE_FILE}); resume reopens it"
                )
            return recorded
        choice = check_optuna_storage(optuna_storage)
    except OptunaStorageError as error:
        raise StorageError(str(error)) from None
    if "://" in choice:
        import optuna

        try:
            optuna.storages.RDBStorage(choice).engine.dispose()
        except Exception as error:  # noqa: BLE001 - SQLAlchemy and drivers raise many types
            raise StorageError(
                f"--optuna-storage: cannot open {choice}: {type(error).__name__}: {error}"
            ) from None
    return choice


def _open_mirror(folder: Path, storage: str | None, study: str, resume: bool):
    """The study folder's mirror under a storage URI (None for a local storage path).

    A new study is refused when the mirror already holds one of the same name: resume that one
    from its URI, or choose another name or storage."""
    if storage is None or "://" not in storage:
        return None
    uri = mirror_uri(storage, study)
    try:
        mirror = StudyMirror(folder, uri)
        if mirror.is_same_folder():
            return None
        if not resume:
            from pyarrow import fs

            marker = mirror.fs.get_file_info(f"{mirror.root}/{names.STUDY_FILE}")
            if marker.type == fs.FileType.File:
                raise StorageError(
                    f"storage: {uri} already holds a study named {study!r}. Continue it with "
                    f"`infovae-sweep resume {uri}`, or give the study another name or "
                    "another --storage"
                )
    except (MirrorError, OSError) as error:
        raise StorageError(f"storage: {error}") from None
    return mirror


def _mirror_listener(mirror: StudyMirror) -> Callable[[StudyEvents], None]:
    """Sync the mirror whenever a trial has been recorded (the listener runs on the driver's
    Tune loop, as the recording does); a failed copy is logged and retried next time."""
    seen: list[int] = [-1]

    def on_change(events: StudyEvents) -> None:
        recorded = sum(p.done + p.failed + p.stopped for p in events.arms.values())
        if recorded == seen[0]:
            return
        seen[0] = recorded
        try:
            mirror.sync(force=recorded == 0)
        except (OSError, ValueError) as error:  # pyarrow's errors; the study goes on
            logging.getLogger(__name__).warning("mirror %s: copy failed: %s", mirror.uri, error)

    return on_change


def _count_recorded(spec: StudySpec, store: ResultsStore, events: StudyEvents) -> None:
    trials = store.trials()
    for arm in spec.arm_names:
        planned = spec.trials_for(arm) + spec.confirm.top_k * len(spec.confirm_seeds)
        progress = ArmProgress(planned=planned)
        if len(trials):
            mine = trials[trials[names.ARM] == arm]
            progress.done = int((mine[names.STATUS] == names.COMPLETED).sum())
            progress.failed = int((mine[names.STATUS] == names.FAILED).sum())
            progress.stopped = int((mine[names.STATUS] == names.STOPPED).sum())
        events.arms[arm] = progress
    events.changed()
