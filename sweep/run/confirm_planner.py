"""The confirm phase: which search trials each arm re-trains, and with which seeds.

As soon as an arm's search is over, :class:`ConfirmPlanner` ranks its recorded search trials
(:func:`confirm_candidates`, :func:`sweep.analysis.ranking.rank_trials`) and lists the confirm
trials still to run; the study's searcher (:mod:`sweep.run.searcher`) suggests them in the same
Tuner."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from sweep import names
from sweep.analysis.ranking import rank_trials
from sweep.run.trial import TrialMeta
from sweep.spec import StudySpec
from sweep.store import ResultsStore, json_columns


def confirm_candidates(spec: StudySpec, store: ResultsStore, arm: str) -> list[dict[str, Any]]:
    """The best ``confirm.top_k`` search trials of ``arm`` by
    :func:`sweep.analysis.ranking.rank_trials` (the study's objectives, Pareto-first when
    there are several, ``confirm_rank`` within a front, ties by trial id), as dotted settings
    of their searched keys."""
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
class ConfirmPlanner:
    """The confirm trials of one arm still to run: each of the arm's best ``confirm.top_k``
    search trials (:func:`confirm_candidates`) with each confirm seed (:meth:`planned`), minus
    those recorded."""

    spec: StudySpec
    store: ResultsStore

    def __call__(self, arm: str) -> list[TrialMeta]:
        recorded = self.store.recorded_trial_ids()
        return [meta for meta in self.planned(arm) if meta.trial_id not in recorded]

    def planned(self, arm: str) -> list[TrialMeta]:
        """Every confirm trial of ``arm``, recorded or not, in the order they run."""
        planned = []
        for rank, candidate in enumerate(confirm_candidates(self.spec, self.store, arm), start=1):
            for seed in self.spec.confirm_seeds:
                planned.append(
                    TrialMeta(
                        arm=arm,
                        trial_id=f"{arm}-confirm{rank}-seed{seed}",
                        seed=seed,
                        phase=names.CONFIRM,
                        params=candidate["params"],
                        source=candidate["source"],
                    )
                )
        return planned
