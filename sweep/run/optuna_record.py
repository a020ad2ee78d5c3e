"""What Optuna records of a study: every trial of every arm and phase, as optuna-dashboard shows it.

* :func:`objective_study`: one Optuna study per arm (named after it) and one per arm's confirm
  phase (:func:`confirm_study_name`, ``<arm>/confirm``), each with the objectives' metric names
  (``Study.set_metric_names``, for example ``metric.mmd``), which the dashboard shows instead
  of "Objective 0";
* :func:`outcome`: how Optuna sees a trial's :class:`~sweep.run.trial.TrialResult` (COMPLETE,
  FAIL or PRUNED);
* :func:`add_finished` and :func:`confirm_recorder`: the trials Optuna does not sample (arms
  without a search space, the confirm phase) are added as finished trials
  (``Study.add_trial``), the confirm trials with the parameters of the search trial they
  confirm;
* :func:`add_recorded_unsearched` and :func:`recover_interrupted`: on resume, what a killed
  driver recorded in the store but did not tell Optuna is told now; Optuna trials left
  RUNNING are failed with ``Study.tell(number, state=FAIL)`` and their parameters enqueued
  again.

Importing this module does not import Ray.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from sweep import names
from sweep.run.trial import TrialMeta, TrialResult

__all__ = [
    "ERROR_CHARS",
    "INTERRUPTED_ATTR",
    "add_finished",
    "add_recorded_unsearched",
    "confirm_recorder",
    "confirm_study_name",
    "objective_study",
    "outcome",
    "recover_interrupted",
]

#: Study-level user attribute listing the Optuna trial numbers failed by
#: :func:`recover_interrupted` (a trial's own attributes cannot be set once its process died
#: without a private handle on it).
INTERRUPTED_ATTR = "interrupted_trials"
#: Longest error text kept in an Optuna trial's ``error`` user attribute.
ERROR_CHARS = 1000

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


def outcome(
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


def add_finished(
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
    state, values = outcome(result, metrics, error)
    attrs = {"trial_id": own_id, **(user_attrs or {})}
    if state == TrialState.FAIL and result.error:
        attrs["error"] = result.error[:ERROR_CHARS]
    study.add_trial(
        optuna.trial.create_trial(
            state=state,
            values=values,
            params=dict(params or {}),
            distributions=dict(distributions or {}),
            user_attrs=attrs,
        )
    )

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
            add_finished(
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
        add_finished(study, trial_id, TrialResult.from_row(row), metrics, False, user_attrs=attrs)
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
            state, values = outcome(TrialResult.from_row(row), list(metrics), error=False)
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
