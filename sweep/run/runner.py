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
from sweep.run.confirm_planner import ConfirmPlanner
from sweep.run.events import StudyEvents, count_recorded
from sweep.run.mirror import MirrorError, StudyMirror, final_sync, mirror_listener, open_mirror
from sweep.run.optuna_record import add_recorded_unsearched, confirm_recorder, recover_interrupted
from sweep.run.ray_environment import quiet_loggers, start_ray, tune_environment
from sweep.run.ray_storage import StorageError, check_storage, storage_path
from sweep.run.resume import optuna_trials, recorded_by_arm
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
    """The driver was interrupted (Ctrl-C); what finished is recorded and the study resumes."""


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


#: Least seconds between two reports of a trial's epochs, when nothing needs every epoch as it
#: ends: a report costs about 4.5 ms in the trial (0.17-0.23 s over a 45-epoch digits trial,
#: timed inside the trial) and a result for the driver to process.
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
    recorded_phases = recorded_by_arm(store)
    recorded = recorded_phases[names.SEARCH]
    every_epoch = spec.search.early_stopping is not None or bool(run.trackers)
    context = _context(spec, names.SEARCH, data_key, every_epoch)
    duplicates = duplicate_index(store, events, spec.confirm_rank, context)
    searchers: dict[str, ArmSearch | FixedArm] = {}
    budgets: dict[str, int] = {}
    for arm in spec.arm_names:
        # Optuna learns what a killed driver recorded but did not tell it.
        recover_interrupted(storage, arm, recorded.get(arm, {}), spec.search.metrics)
        if not spec.arms[arm].search and arm in recorded:
            add_recorded_unsearched(
                storage, arm, recorded[arm], spec.search.metrics, spec.search.directions
            )
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
                metrics=spec.search.metrics,
                directions=spec.search.directions,
            )
            continue
        searchers[arm] = ArmSearch(
            arm=arm,
            storage=storage,
            sampler=spec.sampler(arm, restart=optuna_trials(storage, arm)),
            space=spec.optuna_space(arm),
            metrics=spec.search.metrics,
            directions=spec.search.directions,
            seed_for=_SeedPolicy(spec, arm),
        )
    planner = ConfirmPlanner(spec, store) if spec.confirm_seeds else None
    confirm_arms = list(spec.arm_names) if planner is not None else []
    # Optuna records the confirm trials too (optuna-dashboard then shows every trial).
    recorder = (
        [confirm_recorder(storage, spec.search.metrics, spec.search.directions)]
        if planner is not None
        else []
    )
    if planner is not None:  # confirm trials a killed driver recorded but did not add
        for arm, rows in recorded_phases[names.CONFIRM].items():
            recorder[0].add_recorded(planner.planned(arm), rows)
    if not budgets and not any(planner(arm) for arm in confirm_arms if planner is not None):
        return
    scheduler = None
    early = spec.search.early_stopping
    if early is not None:
        scheduler = per_arm_scheduler_class()(
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


@tune_environment()  # Tune's variables for this run only, restored after it
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

    from infovae_core.data import load_dataset

    folder = Path(folder)
    with _storage_errors():
        record = read_record(folder) if resume else None
    storage = storage or (record.storage if record is not None else None) or spec.storage
    # Refused before anything is started or written.
    check_storage(storage, address=address, single_node=single_node)
    check_trackers(trackers, spec.name)
    store = ResultsStore.open(folder) if resume else None
    concurrency = max_concurrent or spec.search.max_concurrent
    events = StudyEvents(spec=spec, listeners=list(listeners or []))
    with _storage_errors():
        chosen_optuna = optuna_choice(folder, record, optuna_storage, resume)
    with _storage_errors(prefix="storage: "):
        mirror = open_mirror(folder, storage, spec.name, resume)
    if mirror is not None:
        events.listeners.append(mirror_listener(mirror))
    started_ray = start_ray(address, verbose, num_cpus=num_cpus)
    quiet_loggers(verbose)
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
            write_record(folder, StorageRecord(storage=storage, optuna_storage=chosen_optuna))
        with store.lock():
            count_recorded(spec, store, events)
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
                    storage_path(folder, storage),
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
            final_sync(mirror)
    except KeyboardInterrupt:
        if mirror is not None:
            final_sync(mirror)
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
