"""What a study runs: Optuna's suggestions for Ray Tune through Optuna's public ask/tell.

Ray's ``OptunaSearch`` can only be told a trial's outcome explicitly (a failure as FAIL, a
scheduler stop as PRUNED, a metric read from the final result only) by reaching into its
private attributes, and those change between Ray releases. This module drives Optuna directly
instead, with public calls only:

* :class:`ArmSearch`: one arm's search, one Optuna study per arm in the study's Optuna storage
  (:mod:`sweep.optuna_storage`; named after the arm, ``load_if_exists`` so that a resumed
  search keeps its history), ``Study.ask(fixed_distributions=...)`` for each suggestion and
  ``Study.tell`` for each outcome (single or several objectives);
* :class:`FixedArm`: an arm without a search space, each trial its fixed configuration with
  its own seed, added to its arm's Optuna study once finished
  (:mod:`sweep.run.optuna_record`);
* :func:`arms_searcher`: the Ray Tune ``Searcher`` that interleaves the arms in one Tuner,
  skips configurations already trained (:class:`DuplicateIndex`) and, as each arm's search
  ends, suggests that arm's confirm trials (planned by
  :class:`~sweep.run.confirm_planner.ConfirmPlanner`) in the same Tuner.

Importing this module does not import Ray.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from sweep import names
from sweep.run.optuna_record import ERROR_CHARS, add_finished, objective_study, outcome
from sweep.run.trial import TrialMeta, TrialResult

__all__ = [
    "ArmSearch",
    "ConfirmPlanner",
    "DuplicateIndex",
    "FixedArm",
    "arms_searcher",
    "study_trial_id",
]


def study_trial_id(arm: str, number: int) -> str:
    """The store's ``trial_id`` of Optuna trial ``number`` of ``arm``'s search."""
    return f"{arm}-{number:04d}"


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
        state, values = outcome(result, self.metrics, error)
        if state == TrialState.COMPLETE:
            assert values is not None
            self.study.tell(trial, values if len(values) > 1 else values[0])
        else:  # failed, or stopped early by the scheduler
            if state == TrialState.FAIL and result.error:
                trial.set_user_attr("error", result.error[:ERROR_CHARS])
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
        add_finished(self.study, meta.trial_id, result, self.metrics, error, user_attrs=attrs)

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


class _ArmsSearcherMixin:
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
                return None if self._confirm_waiting else self.FINISHED
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


@functools.cache
def _arms_searcher_class() -> type:
    # Subclass Tune's Searcher on first use so importing this module does not import Ray.
    from ray.tune.search import Searcher

    return type("ArmsSearcher", (_ArmsSearcherMixin, Searcher), {})


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

