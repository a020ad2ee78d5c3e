"""Run a study: Optuna search and the confirm phase in one Ray Tune run; resume after a crash.

Flow of :func:`run_study` (the CLI's ``run`` and ``resume`` are thin calls of it):

1. The study folder is created (or re-entered) and locked: one driver per study.
2. Ray starts embedded on this machine (``address=None``: a local instance, no dashboard) or
   attaches to a cluster (``address="auto"`` / ``"HOST:PORT"``).
3. The dataset is loaded once on the driver and put in the object store once; reused trial
   actors fetch it once per worker process.
4. For each arm, in file order, the search phase: ``trials_per_arm`` trials sampled by Optuna
   (:mod:`sweep.run.searcher`, Optuna's public ask/tell with the arm's seeded sampler and the
   study's Optuna storage, :mod:`sweep.optuna_storage`: ``optuna.db`` by default, one Optuna study
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
   every trial too (:mod:`sweep.run.trackers`).

With a storage URI the study folder is mirrored to ``<storage>/<study>/`` as trials are
recorded (:mod:`sweep.run.mirror`); ``resume`` from that URI pulls it into a fresh folder first.

Resume: completed (and failed or stopped) trials are in the store and are never run
again. An Optuna trial still marked RUNNING whose trial the store recorded (the driver died
between the two) is told the recorded outcome, and recorded trials of arms without a search
space or of the confirm phase that Optuna lacks are added to it. The others belonged to
trials interrupted with the driver: they are failed in Optuna with
``Study.tell(number, state=FAIL)`` (their numbers listed in the study's user attribute
``interrupted_trials``) and their parameters are enqueued, so the same configurations run
again; the sampler keeps every earlier trial as history. Each arm runs only the trials still
missing from the plan.

The pieces live beside this module in :mod:`sweep.run` (what to run, where it runs, what is
recorded); this module composes them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep import names
from sweep.optuna_storage import (
    OptunaStorageError,
    StorageRecord,
    open_optuna_storage,
    optuna_choice,
    read_record,
    write_record,
)
from sweep.run.checkpoint_index import DATA_KEY, CheckpointIndex, read_index
from sweep.run.confirm_planner import ConfirmPlanner
from sweep.run.events import StudyEvents, count_recorded
from sweep.run.faults import check_run_environment, fault_guard
from sweep.run.graceful_stop import GracefulStop, StopRequested
from sweep.run.mirror import MirrorError, StudyMirror, final_sync, mirror_listener, open_mirror
from sweep.run.optuna_record import add_recorded_unsearched, confirm_recorder, recover_interrupted
from sweep.run.ray_environment import quiet_loggers, start_ray, tune_environment
from sweep.run.ray_storage import StorageError, check_storage, storage_path
from sweep.run.resume import optuna_trials, recorded_by_arm
from sweep.run.run_record import RunRecorder, RunStatus
from sweep.run.scheduler import per_arm_scheduler_class
from sweep.run.searcher import ArmSearch, FixedArm, arms_searcher
from sweep.run.store_callback import StoreCallback, duplicate_index
from sweep.run.trackers import Tracker, check_trackers, tracker_callbacks
from sweep.run.trial import TrialContext
from sweep.spec import StudySpec
from sweep.store import ResultsStore
from sweep.trainable import run_trial

__all__ = ["RunOutcome", "StudyInterrupted", "run_study"]


class StudyInterrupted(RuntimeError):
    """The driver was stopped (SIGINT, SIGTERM: :mod:`sweep.run.graceful_stop`); what finished
    is recorded and the study resumes. ``exit_code``: 128 + the signal."""

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@contextlib.contextmanager
def _storage_errors(prefix: str = "") -> Iterator[None]:
    """A storage that cannot serve the run (its Optuna storage, its mirror) as one
    :class:`StorageError`, which the CLI reports in a line."""
    try:
        yield
    except (OptunaStorageError, MirrorError) as error:
        raise StorageError(f"{prefix}{error}") from None


# --------------------------------------------------------------------------------------------
# The study's one Tuner


#: Checkpoints Ray Tune keeps per running trial (see :func:`_run_config`).
TRIAL_CHECKPOINTS_KEPT = 2


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
        # Trials report a checkpoint every train.checkpoint_every epochs and one with their
        # final result; a retry needs only the last. Tune also rewrites its whole experiment
        # state (every trial of the study) each num_to_keep checkpoints of one trial: with 1,
        # after every trial's final checkpoint, which made a study's rate fall with its size.
        # With 2, a trial's final checkpoint alone never forces it, and the state is written
        # on Tune's own adaptive period (about 5 % of the driver's time); a running trial keeps
        # at most two checkpoints, and a finished trial's are deleted once it is recorded.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=TRIAL_CHECKPOINTS_KEPT),
        log_to_file=False,
    )


def _trainable(spec: StudySpec, context: TrialContext, data_refs: dict[str, Any]):
    from ray import tune

    resources = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    return tune.with_resources(
        tune.with_parameters(run_trial, context=context, data=data_refs), resources
    )


#: Least seconds between two reports of a trial's epochs, when nothing needs every epoch as it
#: ends: each report costs the trial milliseconds and the driver a result to process, which
#: add up over many short epochs, while the live view and the store need no finer grain.
EPOCH_REPORT_SECONDS = 5.0


def _context(
    spec: StudySpec, phase: str, data_key: str, every_epoch: bool = True
) -> TrialContext:
    """The trials' shared context; ``every_epoch``: each epoch reported as it ends (ASHA
    counts reports as its time, trackers log each report), else epochs are reported together
    at most every :data:`EPOCH_REPORT_SECONDS`."""
    return TrialContext(
        study=spec.name,
        phase=phase,
        settings={arm: spec.arm_settings(arm) for arm in spec.arm_names},
        threads=max(1, int(spec.resources.cpu)),
        data_key=data_key,
        epoch_report_seconds=0.0 if every_epoch else EPOCH_REPORT_SECONDS,
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
        (:mod:`sweep.run.trackers`)."""
        phases = (names.SEARCH, names.CONFIRM) if self.spec.confirm_seeds else (names.SEARCH,)
        trackers = tracker_callbacks(self.trackers, context, self.store.folder, phases)
        return [store_callback, *trackers]


def _arm_searches(
    spec: StudySpec, storage: Any, recorded: dict[str, dict[str, dict[str, Any]]]
) -> tuple[dict[str, ArmSearch | FixedArm], dict[str, int]]:
    """Each arm's search of the trials it still lacks, and how many those are (arms with none
    left are absent). Optuna first learns what a killed driver recorded but did not tell it."""
    searchers: dict[str, ArmSearch | FixedArm] = {}
    budgets: dict[str, int] = {}
    metrics, directions = spec.search.metrics, spec.search.directions
    for arm in spec.arm_names:
        recover_interrupted(storage, arm, recorded.get(arm, {}), metrics)
        if not spec.arms[arm].search and arm in recorded:
            add_recorded_unsearched(storage, arm, recorded[arm], metrics, directions)
        remaining = spec.trials_for(arm) - len(recorded.get(arm, ()))
        if remaining <= 0:
            continue
        budgets[arm] = remaining
        if not spec.arms[arm].search:
            searchers[arm] = FixedArm(
                arm,
                _SeedPolicy(spec, arm),
                recorded.get(arm, {}),
                storage=storage,
                metrics=metrics,
                directions=directions,
            )
            continue
        searchers[arm] = ArmSearch(
            arm=arm,
            storage=storage,
            sampler=spec.sampler(arm, restart=optuna_trials(storage, arm)),
            space=spec.optuna_space(arm),
            metrics=metrics,
            directions=directions,
            seed_for=_SeedPolicy(spec, arm),
        )
    return searchers, budgets


def _confirm_phase(
    spec: StudySpec,
    store: ResultsStore,
    storage: Any,
    recorded: dict[str, dict[str, dict[str, Any]]],
) -> tuple[ConfirmPlanner | None, list]:
    """The confirm planner (None without confirm seeds) and the callback that records confirm
    trials in Optuna, so that optuna-dashboard shows every trial; the confirm trials a killed
    driver recorded but did not add to Optuna are added first (``recorded``: by arm)."""
    if not spec.confirm_seeds:
        return None, []
    planner = ConfirmPlanner(spec, store)
    recorder = confirm_recorder(storage, spec.search.metrics, spec.search.directions)
    for arm, rows in recorded.items():
        recorder.add_recorded(planner.planned(arm), rows)
    return planner, [recorder]


def _early_stopping(spec: StudySpec, arms: Sequence[str]):
    """ASHA per arm (:mod:`sweep.run.scheduler`) when the study asks for early stopping."""
    from ray.tune.schedulers import ASHAScheduler

    early = spec.search.early_stopping
    if early is None:
        return None
    epochs = {arm: spec.arm_config(arm).planned_epochs() for arm in arms}
    return per_arm_scheduler_class()(
        {
            arm: ASHAScheduler(
                metric=early.metric,
                mode=early.resolved_mode,
                time_attr="training_iteration",
                max_t=epochs[arm],
                grace_period=early.grace_period,
                reduction_factor=early.reduction_factor,
            )
            for arm in arms
        },
        epochs,
    )


def _run_trials(run: _StudyRun) -> None:
    """Every trial still missing from the study's plan, search and confirm, in one Tuner:
    one Tune start, one set of warm trial actors (``reuse_actors``) for the whole study.
    Each arm's confirm trials are planned the moment its search is over
    (:class:`ConfirmPlanner`), while other arms may still be searching."""
    from ray import tune

    spec, store, events = run.spec, run.store, run.events
    storage = open_optuna_storage(store.folder)  # as the folder's storage.yaml names it
    recorded = recorded_by_arm(store)
    every_epoch = spec.search.early_stopping is not None or bool(run.trackers)
    context = _context(spec, names.SEARCH, run.data_key, every_epoch)
    duplicates = duplicate_index(store, events, spec.confirm_rank, context)
    searchers, budgets = _arm_searches(spec, storage, recorded[names.SEARCH])
    planner, recorder = _confirm_phase(spec, store, storage, recorded[names.CONFIRM])
    confirm_arms = list(spec.arm_names) if planner is not None else []
    if not budgets and not any(planner(arm) for arm in confirm_arms if planner is not None):
        return
    rank = spec.confirm_rank
    callback = StoreCallback(store, context, events, rank.metric, rank.direction, duplicates)
    tuner = tune.Tuner(
        _trainable(spec, context, run.data_refs),
        tune_config=tune.TuneConfig(
            search_alg=arms_searcher(searchers, budgets, duplicates, planner, confirm_arms),
            scheduler=_early_stopping(spec, list(budgets)),
            num_samples=-1,  # the searcher says when the study is done (confirm counts vary)
            max_concurrent_trials=run.max_concurrent,
            reuse_actors=True,
        ),
        run_config=_run_config(
            run.storage_path,
            f"study-{_stamp()}",
            [
                fault_guard(run.storage_path),  # before the store's: a fault is not a failure
                *run.callbacks(callback, context),
                *recorder,
                CheckpointIndex(store.folder, context),
            ],
            run.verbose,
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


def _stamp() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S")


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


def _ray_storage(
    spec: StudySpec,
    folder: Path,
    storage: str | None,
    resume: bool,
    address: str | None,
    single_node: bool,
) -> tuple[StorageRecord | None, str | None]:
    """The folder's ``storage.yaml`` (resume only) and Ray Tune's storage of this run: the
    explicit one, else the recorded one, else the study's; a path the cluster's nodes cannot
    reach is refused before anything starts."""
    with _storage_errors():
        record = read_record(folder) if resume else None
    storage = storage or (record.storage if record is not None else None) or spec.storage
    check_storage(storage, address=address, single_node=single_node)
    return record, storage


def _optuna_storage_and_mirror(
    spec: StudySpec,
    folder: Path,
    record: StorageRecord | None,
    storage: str | None,
    optuna_storage: str | None,
    resume: bool,
) -> tuple[str, StudyMirror | None]:
    """The run's Optuna storage choice and its mirror (None without a storage URI), both
    checked before anything is written."""
    with _storage_errors():
        chosen = optuna_choice(folder, record, optuna_storage, resume)
    with _storage_errors(prefix="storage: "):
        mirror = open_mirror(folder, storage, spec.name, resume)
    return chosen, mirror


def _whole_splits(spec: StudySpec) -> tuple[Any, str]:
    """The study's whole splits, loaded once, and the key under which trials cache them: each
    trial cuts its own ``data.train_size`` from them (arms may fix or search it), so every
    size shares this one copy in the object store."""
    from infovae_core.data import load_dataset

    data_config = dataclasses.replace(spec.arm_config(spec.arm_names[0]).data, train_size=None)
    data_key = json.dumps(
        {
            "dataset": data_config.dataset,
            names.SEED: data_config.seed,
            "data_dir": data_config.data_dir,
        },
        sort_keys=True,
    )
    return load_dataset(data_config), data_key


@contextlib.contextmanager
def _recorded_run(
    folder: Path, study: str, store: ResultsStore, stop: GracefulStop
) -> Iterator[None]:
    """This run's entry in the study's ``run.json`` (:mod:`sweep.run.run_record`): written as
    running, then finished, interrupted or failed with the trials recorded by then. A run a
    signal stopped is interrupted, whatever error Ray's ending processes raised after it, and
    also when the driver ends at once (:meth:`GracefulStop.before_exit`)."""
    recorder = RunRecorder(folder, study)
    recorder.start(len(store))
    # Ending at once: the count the driver holds, without the store's lock (the interrupted
    # main thread may hold it).
    stop.before_exit(lambda: recorder.finish("interrupted", len(store)))
    status: RunStatus = "failed"
    try:
        yield
        status = "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except Exception:
        if stop.signum is not None:
            status = "interrupted"
        raise
    finally:
        with contextlib.suppress(Exception):  # the record never hides why the run stopped
            store.reload()
            recorder.finish(status, len(store))


# Tune's variables for the whole run, restored after it. (On a context manager's factory the
# decorator would hold them only while the factory builds it, never while the run goes on.)
@tune_environment()
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
    URI the folder is mirrored to ``<storage>/<study>/`` (:mod:`sweep.run.mirror`).
    ``optuna_storage``: ``sqlite`` (default), ``journal`` or an RDB URL
    (:mod:`sweep.optuna_storage`).
    Both are recorded in the folder's ``storage.yaml``; ``resume`` reopens what it records
    (an explicit ``storage`` still overrides Ray Tune's storage path and the mirror).
    ``trackers`` (from :func:`sweep.run.trackers.parse_tracker`) add MLflow, TensorBoard or W&B
    logging.
    With an ``address`` it must be shared storage unless ``single_node``
    (:func:`check_storage`).

    Raises :class:`StudyInterrupted` on Ctrl-C after recording what finished,
    :class:`StorageError` for a local storage path on a multi-node cluster, an Optuna storage
    that cannot be opened or a storage URI that cannot be used, and
    :class:`~sweep.run.trackers.TrackerError` for a tracker that cannot log (all before any trial).
    """
    import ray

    folder = Path(folder)
    record, storage = _ray_storage(spec, folder, storage, resume, address, single_node)
    check_trackers(trackers, spec.name)
    store = ResultsStore.open(folder) if resume else None
    events = StudyEvents(spec=spec, listeners=list(listeners or []))
    chosen_optuna, mirror = _optuna_storage_and_mirror(
        spec, folder, record, storage, optuna_storage, resume
    )
    if mirror is not None:
        events.listeners.append(mirror_listener(mirror))
    check_run_environment(folder, storage, spec.arm_config(spec.arm_names[0]).data)
    started_ray = start_ray(address, verbose, num_cpus=num_cpus)
    quiet_loggers(verbose)
    # After Ray's start, whose signal handlers it replaces.
    stop = GracefulStop(resume=f"infovae-sweep resume {folder}").install()
    try:
        # Everything that can refuse the run does so before the study folder is written.
        alive = len([n for n in ray.nodes() if n.get("Alive")])
        check_storage(storage, alive, address=address, single_node=single_node)
        splits, data_key = _whole_splits(spec)
        if store is None:
            store = ResultsStore.create(folder, spec.to_yaml())
        if record is None or record.storage != storage:
            write_record(folder, StorageRecord(storage=storage, optuna_storage=chosen_optuna))
        with store.lock(), _recorded_run(folder, spec.name, store, stop):
            count_recorded(spec, store, events)
            run = _StudyRun(
                spec,
                store,
                storage_path(folder, storage),
                {"splits": ray.put(splits), DATA_KEY: read_index(folder)},
                data_key,
                events,
                max_concurrent or spec.search.max_concurrent,
                verbose,
                tuple(trackers),
            )
            events.phase = names.SEARCH
            events.changed()
            _run_trials(run)
            stop.raise_if_stopped()
            store.reload()
            counts = store.trials()["status"].value_counts().to_dict() if len(store) else {}
        if mirror is not None:  # after the lock's release folded the part files in
            final_sync(mirror)
    except (KeyboardInterrupt, Exception) as interrupt:
        if not isinstance(interrupt, KeyboardInterrupt) and stop.signum is None:
            raise
        # A signal stopped the run; any other error after it is Ray's own processes ending
        # with the same signal (sent to the whole process group): what is recorded stays.
        if mirror is not None:
            final_sync(mirror)
        code = 128 + stop.signum if stop.signum is not None else 130
        raise StudyInterrupted(
            f"interrupted; finished trials are recorded in {folder}. "
            f"Continue with: infovae-sweep resume {folder}",
            exit_code=interrupt.exit_code if isinstance(interrupt, StopRequested) else code,
        ) from None
    finally:
        try:
            if started_ray:
                ray.shutdown()
        finally:
            stop.close()
    return RunOutcome(
        folder=folder, counts=counts, seconds=time.monotonic() - events.started, mirror=mirror
    )
