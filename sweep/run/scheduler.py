"""Early stopping per arm: ASHA compares a search trial only with trials of its own arm;
confirm trials always train to the end."""

from __future__ import annotations

import functools
from typing import Any

from sweep import names
from sweep.run.trial import TrialMeta, is_final_report


@functools.cache
def per_arm_scheduler_class() -> type:
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
            meta = TrialMeta.of(trial.config)
            if meta.phase == names.CONFIRM:
                return None
            return self._schedulers[meta.arm]

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
            if is_final_report(result) or scheduler is None:
                # The final result comes after the last epoch; confirm trials never stop early.
                return FIFOScheduler.CONTINUE
            decision = scheduler.on_trial_result(tune_controller, trial, result)
            arm = TrialMeta.of(trial.config).arm
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
