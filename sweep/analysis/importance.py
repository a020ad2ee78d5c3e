"""Hyperparameter importances of a study: fANOVA on each arm's Optuna study, read from the
study's Optuna storage (never written)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sweep import names

#: fANOVA settings: fewer, shallower trees than Optuna's default keep thousands of trials fast.
FANOVA_TREES = 16
FANOVA_DEPTH = 8
#: fANOVA's cost grows faster than linearly with trials; past this many completed trials per
#: arm a seeded random subset is used (importances of 500 trials are already stable).
MAX_IMPORTANCE_TRIALS = 500


@dataclass(frozen=True)
class Importances:
    """``frame``: one row per arm and searched parameter (``arm, param, importance``; an arm's
    importances sum to 1), empty when none could be computed. ``problem``: why nothing could be
    read at all (empty otherwise). ``notes``: per arm, why its importances are missing."""

    frame: pd.DataFrame
    problem: str = ""
    notes: tuple[str, ...] = ()


def hyperparameter_importances(study_dir, arms) -> Importances:
    """fANOVA importances (first objective) of each arm's Optuna study in ``study_dir``."""
    import optuna

    from sweep.optuna_storage import close_optuna_storage, open_optuna_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    empty = pd.DataFrame(columns=["arm", "param", "importance"])
    try:
        # A reader (the study folder's storage.yaml names the storage; optuna.db by default):
        # no table creation (never writes to the runner's database) and no schema migration
        # check (saves importing Alembic).
        storage = open_optuna_storage(study_dir, read_only=True)
    except Exception as exc:
        return Importances(
            empty,
            f"the Optuna storage could not be opened ({type(exc).__name__}: {exc})",
        )
    if storage is None:
        return Importances(
            empty,
            f"no {names.OPTUNA_FILE} (nor the Optuna journal that {names.STORAGE_FILE} names) "
            "in the study folder",
        )
    notes: list[str] = []
    rows: list[dict[str, object]] = []
    try:
        for arm in arms:
            try:
                importances = _fanova(optuna, storage, arm)
            except Exception as exc:  # Optuna raises several types for "cannot evaluate"
                notes.append(f"{arm}: importance not available ({type(exc).__name__}: {exc}).")
                continue
            if not importances:
                notes.append(f"{arm}: importance not available (no searched parameter varies).")
            for param, value in importances.items():
                rows.append({"arm": arm, "param": param, "importance": float(value)})
    finally:
        close_optuna_storage(storage)
    return Importances(pd.DataFrame(rows) if rows else empty, "", tuple(notes))


def _fanova(optuna: Any, storage: Any, arm: str) -> dict[str, float]:
    """fANOVA importances of the Optuna study named ``arm``, first objective.

    The completed trials are read from SQLite once and copied into an in-memory study:
    Optuna's evaluator re-reads the trial list several times, which against SQLite costs
    seconds for a few thousand trials.
    """
    stored = optuna.load_study(study_name=arm, storage=storage)
    complete = stored.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        raise ValueError(f"{len(complete)} completed trial(s) in the Optuna study; need at least 2")
    if len(complete) > MAX_IMPORTANCE_TRIALS:
        keep = np.random.default_rng(0).choice(len(complete), MAX_IMPORTANCE_TRIALS, replace=False)
        complete = [complete[i] for i in sorted(keep)]
    memory = optuna.create_study(directions=stored.directions)
    memory.add_trials(complete)
    return optuna.importance.get_param_importances(
        memory,
        evaluator=optuna.importance.FanovaImportanceEvaluator(
            n_trees=FANOVA_TREES, max_depth=FANOVA_DEPTH, seed=0
        ),
        target=lambda t: t.values[0],
    )
