"""Optuna search for Ray Tune through Optuna's public ask/tell interface.

Ray's ``OptunaSearch`` can only be told a trial's outcome explicitly (a failure as FAIL, a
scheduler stop as PRUNED, a metric read from the final result only) by reaching into its
private attributes, and those change between Ray releases. This module drives Optuna directly
instead, with public calls only:

* :class:`ArmSearch`: one arm's search, one Optuna study per arm in the study's Optuna storage
  (:mod:`sweep.storages`; named after the arm, ``load_if_exists`` so that a resumed search
  keeps its history, its metric names set to the objectives for optuna-dashboard),
  ``Study.ask(fixed_distributions=...)`` for each suggestion and ``Study.tell`` for each outcome
  (single or several objectives);
* :func:`arms_searcher`: the Ray Tune ``Searcher`` that interleaves the arms in one Tuner,
  skips configurations already trained (:class:`DuplicateIndex`) and, as each arm's search
  ends, suggests that arm's confirm trials in the same Tuner;
* :func:`recover_interrupted`: Optuna trials left RUNNING by a killed driver are told the
  outcome the store recorded for them, or, when it recorded none, failed with
  ``Study.tell(number, state=FAIL)`` and their parameters enqueued again;
* :class:`FixedArm` and :func:`confirm_recorder`: the trials Optuna does not sample (arms
  without a search space, the confirm phase) are added to the storage as finished trials
  (``Study.add_trial``), so that optuna-dashboard shows every trial of the study: an arm
  without a search space in the study named after it, the confirm trials of an arm in the
  study :func:`confirm_study_name` (``<arm>/confirm``), with the parameters of the search trial
  they confirm.

Every Optuna study carries the objectives' metric names (``Study.set_metric_names``, for
example ``metric.mmd``), which the dashboard shows instead of "Objective 0".

Importing this module does not import Ray.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from sweep import names
from sweep.run.trial import TrialMeta, TrialResult

__all__ = [
    "ArmSearch",
    "ConfirmPlanner",
    "DuplicateIndex",
    "INTERRUPTED_ATTR",
    "add_recorded_unsearched",
    "arms_searcher",
    "confirm_recorder",
    "confirm_study_name",
    "objective_study",
    "recover_interrupted",
    "study_trial_id",
]

#: Study-level user attribute listing the Optuna trial numbers failed by
#: :func:`recover_interrupted` (a trial's own attributes cannot be set once its process died
#: without a private handle on it).
INTERRUPTED_ATTR = "interrupted_trials"
_ERROR_CHARS = 1000


def study_trial_id(arm: str, number: int) -> str:
    """The store's ``trial_id`` of Optuna trial ``number`` of ``arm``'s search."""
    return f"{arm}-{number:04d}"


def confirm_study_name(arm: str) -> str:
    """The Optuna study holding ``arm``'s confirm trials (arm names never hold a slash)."""
    return f"{arm}/{names.CONFIRM}"


def objective_study(
    storage: optuna.storages.BaseStorage | str,
    name: str,
    metrics: Sequence[str],
    directions: Sequence[str],
    sampler: optuna.samplers.BaseSampler | None = None,
) -> optuna.Study:
    """Create or load the Optuna study ``name`` with the study's objectives, their metric
    names set (``Study.set_metric_names``, experimental in Optuna, so its warning is
    silenced)."""
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=sampler,
        directions=list(directions),
        load_if_exists=True,
    )
    if study.metric_names != list(metrics):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(metrics))
    return study


def _outcome(
    result: TrialResult, metrics: Sequence[str], error: bool
) -> tuple[TrialState, list[float] | None]:
    """How Optuna should see a finished trial: COMPLETE with its objective values, FAIL (an
    error, or a missing or non-finite value), or PRUNED (stopped early by the scheduler)."""
    status = result.status
    values = [result.metrics.get(m) for m in metrics]
    finite = all(isinstance(v, int | float) and math.isfinite(v) for v in values)
    if status == names.COMPLETED and finite and not error:
        return TrialState.COMPLETE, [float(v) for v in values]
    if status in (names.COMPLETED, names.FAILED) or error:
        return TrialState.FAIL, None
    return TrialState.PRUNED, None


def _add_finished(
    study: optuna.Study,
    own_id: str,
    result: TrialResult,
    metrics: Sequence[str],
    error: bool,
    *,
    params: Mapping[str, Any] | None = None,
    distributions: Mapping[str, optuna.distributions.BaseDistribution] | None = None,
    user_attrs: Mapping[str, Any] | None = None,
) -> None:
    """Add a trial that ran outside Optuna's ask/tell as a finished trial (once per id)."""
    if any(t.user_attrs.get("trial_id") == own_id for t in study.get_trials(deepcopy=False)):
        return
    state, values = _outcome(result, metrics, error)
    attrs = {"trial_id": own_id, **(user_attrs or {})}
    if state == TrialState.FAIL and result.error:
        attrs["error"] = result.error[:_ERROR_CHARS]
    study.add_trial(
        optuna.trial.create_trial(
            state=state,
            values=values,
            params=dict(params or {}),
            distributions=dict(distributions or {}),
            user_attrs=attrs,
        )
    )


class ArmSearch:
    """One arm's Optuna study driven with ask/tell; suggestions keyed by Tune's trial id.

    ``metrics``/``directions`` list the objectives (``minimize``/``maximize``); a completed
    trial is told its final values, a failed one (or one with a missing or non-finite value)
    FAIL with its error as the user attribute ``error``, and one stopped by the scheduler
    PRUNED. Intermediate results are not told: ASHA, not Optuna, stops trials early.
    """

    def __init__(
        self,
        *,
        arm: str,
        storage: optuna.storages.BaseStorage | str,
        sampler: optuna.samplers.BaseSampler,
        space: Mapping[str, optuna.distributions.BaseDistribution],
        metrics: Sequence[str],
        directions: Sequence[str],
        seed_for: Callable[[int], int | None],
    ) -> None:
        self.arm = arm
        self.metrics = list(metrics)
        self._space = dict(space)
        self._seed_for = seed_for
        self.study = objective_study(storage, arm, metrics, directions, sampler)
        self._asked: dict[str, optuna.Trial] = {}

    def suggest(self, trial_id: str) -> dict[str, Any]:
        """A new configuration: the sampled parameters plus the runner's bookkeeping."""
        trial = self.study.ask(fixed_distributions=self._space)
        own_id = study_trial_id(self.arm, trial.number)
        trial.set_user_attr("trial_id", own_id)
        self._asked[trial_id] = trial
        meta = TrialMeta(self.arm, own_id, self._seed_for(trial.number))
        return meta.to_config(trial.params)

    def on_trial_complete(
        self, trial_id: str, result: TrialResult | None = None, error: bool = False
    ) -> None:
        """Tell Optuna the outcome of the trial suggested for ``trial_id`` (once)."""
        trial = self._asked.pop(trial_id, None)
        if trial is None:
            return
        result = result or TrialResult(status=None)
        state, values = _outcome(result, self.metrics, error)
        if state == TrialState.COMPLETE:
            assert values is not None
            self.study.tell(trial, values if len(values) > 1 else values[0])
        else:  # failed, or stopped early by the scheduler
            if state == TrialState.FAIL and result.error:
                trial.set_user_attr("error", result.error[:_ERROR_CHARS])
            self.study.tell(trial, state=state)

    def mark_copy(self, trial_id: str, original: str) -> None:
        """Note on the Optuna trial that it was not trained: it repeats ``original``."""
        trial = self._asked.get(trial_id)
        if trial is not None:
            trial.set_user_attr(names.COPY_OF, original)


class FixedArm:
    """An arm with no search space: every trial is the arm's fixed configuration, trained with
    the seed that ``search.seed_policy`` gives its index (Optuna has nothing to sample).

    With a ``storage``, each finished trial is added to the Optuna study named after the arm
    (no parameters; its values, seed and ``trial_id`` as for a searched arm), so that the
    dashboard shows it. ``recorded``: the ``trial_id`` of each trial of the arm recorded
    already (a set, or a mapping keyed by them); their indices are not suggested again."""

    def __init__(
        self,
        arm: str,
        seed_for: Callable[[int], int | None],
        recorded: Collection[str],
        *,
        storage: optuna.storages.BaseStorage | str | None = None,
        metrics: Sequence[str] = (),
        directions: Sequence[str] = (),
    ):
        self.arm = arm
        self._seed_for = seed_for
        self._taken = set(recorded)
        self._next = 0
        self.metrics = list(metrics)
        self.study = None
        if storage is not None:
            self.study = objective_study(storage, arm, metrics, directions)
        self._asked: dict[str, TrialMeta] = {}
        self._copy_of: dict[str, str] = {}  # Tune trial id -> the original it repeats

    def suggest(self, trial_id: str) -> dict[str, Any]:
        while study_trial_id(self.arm, self._next) in self._taken:
            self._next += 1
        index, self._next = self._next, self._next + 1
        own_id = study_trial_id(self.arm, index)
        self._taken.add(own_id)
        meta = TrialMeta(self.arm, own_id, self._seed_for(index))
        self._asked[trial_id] = meta
        return meta.to_config()

    def on_trial_complete(
        self, trial_id: str, result: TrialResult | None = None, error: bool = False
    ) -> None:
        meta = self._asked.pop(trial_id, None)
        original = self._copy_of.pop(trial_id, None)
        if meta is None or self.study is None:
            return
        attrs: dict[str, Any] = {"seed": meta.seed}
        if original:
            attrs[names.COPY_OF] = original
        result = result or TrialResult(status=None)
        _add_finished(self.study, meta.trial_id, result, self.metrics, error, user_attrs=attrs)

    def mark_copy(self, trial_id: str, original: str) -> None:
        if trial_id in self._asked:
            self._copy_of[trial_id] = original


def _number(value: Any) -> Any:
    """Ints as floats, so that 10 (an int column) and 10.0 (a widened one) are one key."""
    if isinstance(value, list | tuple):
        return [_number(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


class DuplicateIndex:
    """Completed search configurations of a study, by their full TrialConfig (seed included).

    Training is deterministic given the TrialConfig and its seed, so a configuration that a
    sampler suggests again (TPE and random search repeat points of small choice spaces) would
    give the same numbers for the same compute. ``key`` is the canonical JSON of the trial's
    flat settings; ``copy`` (given by the runner) records the repeat as a copy of the original
    and returns the original's final result, which the searcher tells Optuna.
    """

    def __init__(
        self,
        key: Callable[[Mapping[str, Any]], str | None],
        copy: Callable[[Mapping[str, Any], str], TrialResult],
    ) -> None:
        self._key = key
        self._copy = copy
        self._originals: dict[str, str] = {}

    @staticmethod
    def canonical(settings: Mapping[str, Any]) -> str:
        """The key of a flat TrialConfig (``to_flat_dict()``): sorted JSON, None left out."""
        present = {k: _number(v) for k, v in settings.items() if v is not None}
        return json.dumps(present, sort_keys=True, default=str)

    def add(self, key: str, trial_id: str) -> None:
        """Note a completed trial; the first one recorded stays the original."""
        self._originals.setdefault(key, trial_id)

    def original_of(self, config: Mapping[str, Any]) -> str | None:
        """The trial id of the completed trial with the same configuration, if any."""
        key = self._key(config)
        return None if key is None else self._originals.get(key)

    def copy(self, config: Mapping[str, Any], original: str) -> TrialResult:
        return self._copy(config, original)


#: Plans the confirm trials of one arm once its search is over: ``arm`` -> the bookkeeping of
#: each confirm trial still to run.
ConfirmPlanner = Callable[[str], Sequence[TrialMeta]]


@functools.cache
def _arms_searcher_class() -> type:
    from ray.tune.search import Searcher

    class ArmsSearcher(Searcher):
        """Every trial of the study in one Tuner, search and confirm alike.

        Search: each suggestion comes from the arm with the most search trials still to run
        (file order breaks ties), so arms interleave and share the machine's conditions;
        results go back to the arm's own search. A suggestion that repeats a completed
        configuration is recorded as a copy (see :class:`DuplicateIndex`), told to Optuna
        with the original's result, and replaced by the next suggestion.

        Confirm: as soon as an arm has no search trial left to suggest or running, its
        confirm trials are planned (``confirm``, which ranks the arm's recorded search
        trials) and suggested before any further search trial; they carry ``phase:
        confirm`` in their bookkeeping. While an arm in ``confirm_arms`` still has search
        trials running and nothing else can be suggested, the searcher waits (``None``);
        it is finished when every search and confirm trial has been suggested.

        Tune calls :meth:`on_trial_complete` before its callbacks record the trial, and
        :meth:`suggest` only on a later step, so the planner sees every search trial of the
        arm in the store."""

        def __init__(
            self,
            searchers: Mapping[str, ArmSearch | FixedArm],
            budgets: Mapping[str, int],
            duplicates: DuplicateIndex | None,
            confirm: ConfirmPlanner | None = None,
            confirm_arms: Sequence[str] = (),
        ) -> None:
            super().__init__()
            self._searchers = dict(searchers)
            self._budgets = dict(budgets)
            self._duplicates = duplicates
            self._confirm = confirm
            self._confirm_waiting = list(confirm_arms) if confirm is not None else []
            self._confirm_queue: list[dict[str, Any]] = []
            self._arm_of: dict[str, str] = {}  # Tune trial id -> arm, search trials running

        def __getstate__(self) -> dict[str, Any]:
            # The Tuner pickles its search algorithm into tuner.pkl for Tuner.restore, which
            # the runner never uses (resume reads optuna.db and the store); the live Optuna
            # studies, the store behind the duplicate index and the planner are not state to
            # pickle.
            state = self.__dict__.copy()
            state["_searchers"], state["_duplicates"], state["_confirm"] = {}, None, None
            return state

        def set_search_properties(self, metric, mode, config, **spec) -> bool:
            return True

        def _plan_confirms(self) -> None:
            """Queue the confirm trials of every arm whose search is over."""
            running = set(self._arm_of.values())
            for arm in list(self._confirm_waiting):
                if self._budgets.get(arm, 0) > 0 or arm in running:
                    continue
                self._confirm_waiting.remove(arm)
                assert self._confirm is not None
                for meta in self._confirm(arm):
                    confirm = dataclasses.replace(meta, phase=names.CONFIRM)
                    self._confirm_queue.append(confirm.to_config())

        def suggest(self, trial_id: str):
            while True:
                self._plan_confirms()
                if self._confirm_queue:
                    return self._confirm_queue.pop(0)
                open_arms = [arm for arm, left in self._budgets.items() if left > 0]
                if not open_arms:
                    # Searches still running: their arms' confirm trials come later.
                    return None if self._confirm_waiting else Searcher.FINISHED
                arm = max(open_arms, key=lambda a: self._budgets[a])
                search = self._searchers[arm]
                config = search.suggest(trial_id)
                self._budgets[arm] -= 1
                original = (
                    self._duplicates.original_of(config) if self._duplicates is not None else None
                )
                if original is None:
                    self._arm_of[trial_id] = arm
                    return config
                search.mark_copy(trial_id, original)
                search.on_trial_complete(trial_id, self._duplicates.copy(config, original))

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            return None

        def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
            arm = self._arm_of.pop(trial_id, None)
            if arm is not None:
                outcome = TrialResult.from_report(result)
                self._searchers[arm].on_trial_complete(trial_id, result=outcome, error=error)

        def save(self, checkpoint_path: str) -> None:
            # The search's state lives in optuna.db; resume reads it from there, so nothing is
            # pickled into the study folder (and nothing has to be unpickled from it).
            return None

        def restore(self, checkpoint_path: str) -> None:
            raise NotImplementedError("resume reads the search history from optuna.db")

    return ArmsSearcher


def arms_searcher(
    searchers: Mapping[str, ArmSearch | FixedArm],
    budgets: Mapping[str, int],
    duplicates: DuplicateIndex | None = None,
    confirm: ConfirmPlanner | None = None,
    confirm_arms: Sequence[str] = (),
) -> Any:
    """The Ray Tune ``Searcher`` over the arms' searches and, with ``confirm``, the confirm
    trials of ``confirm_arms`` (class built on first use)."""
    return _arms_searcher_class()(searchers, budgets, duplicates, confirm, confirm_arms)


@functools.cache
def _confirm_recorder_class() -> type:
    from ray.tune import Callback

    class ConfirmRecorder(Callback):
        """Adds each finished confirm trial to its arm's confirm study (``<arm>/confirm``),
        with the parameters and distributions of the search trial it confirms (its
        ``source``), and its seed as a user attribute."""

        def __init__(
            self,
            storage: optuna.storages.BaseStorage | str,
            metrics: Sequence[str],
            directions: Sequence[str],
        ) -> None:
            self.storage = storage
            self.metrics = list(metrics)
            self.directions = list(directions)
            self._studies: dict[str, optuna.Study] = {}

        def __getstate__(self) -> dict[str, Any]:
            # Tune pickles its callbacks with the experiment state; the live storage is not
            # state to restore (resume reads optuna.db).
            return {"metrics": self.metrics, "directions": self.directions, "_studies": {}}

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._record(trial, error=False)

        def on_trial_error(self, iteration, trials, trial, **info):
            self._record(trial, error=True)

        def add_recorded(
            self, planned: Sequence[TrialMeta], rows: Mapping[str, Mapping[str, Any]]
        ) -> None:
            """Add the confirm trials the store recorded (``rows``: store rows by
            ``trial_id``) that their arm's confirm study lacks, a driver having died between
            recording one and adding it; ``planned``: the confirm trials as
            :meth:`ConfirmPlanner.planned` lists them (with their ``source``)."""
            for meta in planned:
                row = rows.get(meta.trial_id)
                if row is not None:
                    self._add(meta, TrialResult.from_row(row), error=False)

        def _record(self, trial, error: bool) -> None:
            meta = TrialMeta.of(trial.config)
            if meta.phase != names.CONFIRM:
                return  # search trials are told to Optuna by their arm's search
            self._add(meta, TrialResult.from_report(trial.last_result), error)

        def _add(self, meta: TrialMeta, result: TrialResult, error: bool) -> None:
            arm = meta.arm
            if arm not in self._studies:
                name = confirm_study_name(arm)
                self._studies[arm] = objective_study(
                    self.storage, name, self.metrics, self.directions
                )
            params, distributions = self._source(arm, meta.source)
            attrs = {"seed": meta.seed, "source": meta.source}
            _add_finished(
                self._studies[arm],
                meta.trial_id,
                result,
                self.metrics,
                error,
                params=params,
                distributions=distributions,
                user_attrs={k: v for k, v in attrs.items() if v is not None},
            )

        def _source(self, arm: str, source: str | None) -> tuple[dict, dict]:
            """The Optuna parameters of the search trial ``source`` (none when the arm has no
            search space or the trial is not in the storage)."""
            if source is None:
                return {}, {}
            try:
                search = optuna.load_study(study_name=arm, storage=self.storage)
            except KeyError:
                return {}, {}
            for found in search.get_trials(deepcopy=False):
                if found.user_attrs.get("trial_id") == source:
                    return dict(found.params), dict(found.distributions)
            return {}, {}

    return ConfirmRecorder


def confirm_recorder(
    storage: optuna.storages.BaseStorage | str,
    metrics: Sequence[str],
    directions: Sequence[str],
) -> Any:
    """The Ray Tune callback that records confirm trials in the Optuna storage (class built
    on first use)."""
    return _confirm_recorder_class()(storage, metrics, directions)


def add_recorded_unsearched(
    storage: optuna.storages.BaseStorage | str,
    arm: str,
    recorded: Mapping[str, Mapping[str, Any]],
    metrics: Sequence[str],
    directions: Sequence[str],
) -> int:
    """Add to the Optuna study of ``arm``, an arm without a search space, the recorded trials
    it lacks (a driver killed between recording a trial and adding it), as
    :class:`FixedArm` adds them. ``recorded``: the store's rows by ``trial_id``. Returns the
    number added."""
    study = objective_study(storage, arm, metrics, directions)
    known = {t.user_attrs.get("trial_id") for t in study.get_trials(deepcopy=False)}
    added = 0
    for trial_id, row in recorded.items():
        if trial_id in known:
            continue
        attrs: dict[str, Any] = {"seed": int(row[names.SEED])}  # numpy -> JSON
        if isinstance(row.get(names.COPY_OF), str):
            attrs[names.COPY_OF] = row[names.COPY_OF]
        _add_finished(study, trial_id, TrialResult.from_row(row), metrics, False, user_attrs=attrs)
        added += 1
    return added


def recover_interrupted(
    storage: optuna.storages.BaseStorage | str,
    arm: str,
    recorded: Mapping[str, Mapping[str, Any]],
    metrics: Sequence[str],
) -> int:
    """Settle the Optuna trials a dead driver left RUNNING.

    ``recorded``: the store's row of each recorded trial of the arm, by ``trial_id``. A
    RUNNING trial the store recorded (the driver died after recording it, before telling
    Optuna) is told the stored outcome with ``Study.tell``, so the sampler keeps it: its
    ``metrics`` values if it completed with finite ones, else FAIL (failed) or PRUNED (stopped
    early). Any other RUNNING trial was interrupted: it is failed
    (``Study.tell(number, state=FAIL)``, its number listed in the study's user attribute
    :data:`INTERRUPTED_ATTR`) and its parameters are enqueued again.
    Returns the number of configurations enqueued."""
    try:
        study = optuna.load_study(study_name=arm, storage=storage)
    except KeyError:
        return 0
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return 0
    interrupted = list(study.user_attrs.get(INTERRUPTED_ATTR, []))
    enqueued = 0
    for trial in running:
        row = recorded.get(trial.user_attrs.get("trial_id"))
        if row is not None:
            state, values = _outcome(TrialResult.from_row(row), list(metrics), error=False)
            if state == TrialState.COMPLETE:
                assert values is not None
                study.tell(trial.number, values if len(values) > 1 else values[0])
            else:
                study.tell(trial.number, state=state)
            continue
        study.tell(trial.number, state=TrialState.FAIL)
        interrupted.append(trial.number)
        study.enqueue_trial(trial.params, skip_if_exists=False)
        enqueued += 1
    study.set_user_attr(INTERRUPTED_ATTR, interrupted)
    return enqueued
