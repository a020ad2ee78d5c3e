"""What a resumed run finds already done: the trials the store recorded per arm (with their
rows), and the size of each arm's Optuna history (its sampler is re-seeded by it)."""

from __future__ import annotations

from typing import Any

from sweep import names
from sweep.store import ResultsStore


def recorded_by_arm(store: ResultsStore) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """Every recorded trial, by phase and arm: ``recorded[phase][arm]`` maps each
    ``trial_id`` to its store row (column -> value), from which a resumed run tells Optuna
    what a killed driver did not. Every phase is a key, empty when nothing was recorded."""
    recorded: dict[str, dict[str, dict[str, dict[str, Any]]]] = {p: {} for p in names.PHASES}
    for row in store.trials().to_dict("records"):
        by_arm = recorded.setdefault(row[names.PHASE], {})
        by_arm.setdefault(row[names.ARM], {})[row[names.TRIAL_ID]] = row
    return recorded


def optuna_trials(storage, arm: str) -> int:
    """Trials the arm's Optuna study holds already (0: a new search)."""
    import optuna

    try:
        return len(optuna.load_study(study_name=arm, storage=storage).get_trials(deepcopy=False))
    except KeyError:
        return 0
