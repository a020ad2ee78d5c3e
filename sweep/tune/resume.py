"""What a resumed run finds already done: the trials the store recorded per arm, and the
size of each arm's Optuna history (its sampler is re-seeded by it)."""

from __future__ import annotations

from sweep import names
from sweep.store import ResultsStore


def recorded_by_arm(store: ResultsStore, phase: str) -> dict[str, set[str]]:
    """The ``trial_id`` of every recorded trial of ``phase``, by arm."""
    trials = store.trials()
    recorded: dict[str, set[str]] = {}
    if len(trials):
        mine = trials[trials[names.PHASE] == phase]
        for arm, trial_id in zip(mine[names.ARM], mine[names.TRIAL_ID], strict=False):
            recorded.setdefault(arm, set()).add(trial_id)
    return recorded


def optuna_trials(storage, arm: str) -> int:
    """Trials the arm's Optuna study holds already (0: a new search)."""
    import optuna

    try:
        return len(optuna.load_study(study_name=arm, storage=storage).get_trials(deepcopy=False))
    except KeyError:
        return 0
