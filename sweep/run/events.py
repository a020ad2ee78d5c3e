"""What the driver observed while a study runs: per-arm progress, for the live view
(:mod:`sweep.progress`), the mirror and the closing summary."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sweep import names
from sweep.spec import StudySpec
from sweep.store import ResultsStore


@dataclass
class ArmProgress:
    planned: int
    done: int = 0
    failed: int = 0
    stopped: int = 0
    running: int = 0
    best: float | None = None


@dataclass
class StudyEvents:
    """What the driver observed, for the live view and the closing summary."""

    spec: StudySpec
    started: float = field(default_factory=time.monotonic)
    arms: dict[str, ArmProgress] = field(default_factory=dict)
    phase: str = names.SEARCH
    listeners: list[Callable[[StudyEvents], None]] = field(default_factory=list)

    def changed(self) -> None:
        for listener in self.listeners:
            listener(self)


def count_recorded(spec: StudySpec, store: ResultsStore, events: StudyEvents) -> None:
    trials = store.trials()
    for arm in spec.arm_names:
        planned = spec.trials_for(arm) + spec.confirm.top_k * len(spec.confirm_seeds)
        progress = ArmProgress(planned=planned)
        if len(trials):
            mine = trials[trials[names.ARM] == arm]
            progress.done = int((mine[names.STATUS] == names.COMPLETED).sum())
            progress.failed = int((mine[names.STATUS] == names.FAILED).sum())
            progress.stopped = int((mine[names.STATUS] == names.STOPPED).sum())
        events.arms[arm] = progress
    events.changed()
