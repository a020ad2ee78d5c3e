"""What a study will run: arms x trials x phases, and its epoch budget.

:func:`plan_study` resolves a validated :class:`~sweep.spec.StudySpec` into per-arm search and
confirm trial counts and epochs; :func:`format_plan` prints it for ``infovae-sweep validate``;
:func:`trials_left` counts the trials of the plan a study folder has not recorded yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

# Only types: sweep.spec re-exports this module's functions, so a run-time import would be a cycle.
if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from sweep.spec import EarlyStoppingSpec, ObjectiveSpec, StudySpec

__all__ = ["ArmPlan", "StudyPlan", "format_plan", "plan_study", "trials_left"]


@dataclass(frozen=True)
class ArmPlan:
    """What one arm will run. ``epochs`` is per trial (the largest when it is searched)."""

    arm: str
    searched: tuple[str, ...]
    search_trials: int
    confirm_trials: int
    epochs: int

    @property
    def total_trials(self) -> int:
        return self.search_trials + self.confirm_trials

    @property
    def epoch_budget(self) -> int:
        """Upper bound on training epochs (early stopping can only lower it)."""
        return self.total_trials * self.epochs


@dataclass(frozen=True)
class StudyPlan:
    """The resolved plan of a study, as printed by ``infovae-sweep validate``."""

    study: str
    dataset: str
    sampler: str
    objectives: tuple[ObjectiveSpec, ...]
    early_stopping: EarlyStoppingSpec | None
    max_concurrent: int
    confirm_top_k: int
    confirm_seeds: tuple[int, ...]
    cpu_per_trial: float
    gpu_per_trial: float
    arms: tuple[ArmPlan, ...]
    search_spaces: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
    """Per arm: (arm, ((dotted key, distribution text), ...))."""

    @property
    def search_trials(self) -> int:
        return sum(arm.search_trials for arm in self.arms)

    @property
    def confirm_trials(self) -> int:
        return sum(arm.confirm_trials for arm in self.arms)

    @property
    def total_trials(self) -> int:
        return self.search_trials + self.confirm_trials

    @property
    def epoch_budget(self) -> int:
        return sum(arm.epoch_budget for arm in self.arms)


def plan_study(spec: StudySpec) -> StudyPlan:
    """Per-arm and total trial counts and epoch budget of a validated study.

    Confirm trials per arm = ``top_k * seeds``; search trials = :meth:`StudySpec.trials_for`.
    """
    arms = []
    for name, arm in spec.arms.items():
        config = spec.arm_config(name)
        epochs = config.planned_epochs()
        if "train.epochs" in arm.search:
            epochs = max(int(v) for v in arm.search["train.epochs"].extremes())
        if config.train.steps is not None and "data.train_size" in arm.search:
            # A step budget means more epochs on a smaller training set: plan for the smallest.
            sizes = [int(v) for v in arm.search["data.train_size"].extremes() if v is not None]
            if sizes:
                epochs = max(epochs, config.planned_epochs(min(sizes)))
        confirm = spec.confirm.top_k * spec.confirm.seeds
        arms.append(ArmPlan(name, tuple(arm.search), spec.trials_for(name), confirm, epochs))
    return StudyPlan(
        study=spec.name,
        dataset=spec.data.dataset,
        sampler=spec.search.sampler,
        objectives=spec.search.objectives,
        early_stopping=spec.search.early_stopping,
        max_concurrent=spec.search.max_concurrent,
        confirm_top_k=spec.confirm.top_k,
        confirm_seeds=spec.confirm_seeds,
        cpu_per_trial=spec.resources.cpu,
        gpu_per_trial=spec.resources.gpu,
        arms=tuple(arms),
        search_spaces=tuple(
            (name, tuple((key, dist.describe()) for key, dist in arm.search.items()))
            for name, arm in spec.arms.items()
        ),
    )


def format_plan(plan: StudyPlan) -> str:
    """A readable multi-line summary of a plan (for ``infovae-sweep validate``)."""
    objectives = ", ".join(f"{o.direction} {o.metric}" for o in plan.objectives)
    lines = [
        f"study {plan.study}: dataset {plan.dataset}, sampler {plan.sampler}, "
        f"{plan.max_concurrent} trial(s) at a time",
        f"  objective{'s' if len(plan.objectives) > 1 else ''}: {objectives}",
    ]
    if plan.early_stopping is not None:
        es = plan.early_stopping
        lines.append(
            f"  early stopping: ASHA on {es.metric} ({es.resolved_mode}), grace period "
            f"{es.grace_period} epoch(s), reduction factor {es.reduction_factor:g}"
        )
    if plan.confirm_seeds:
        seeds = plan.confirm_seeds
        lines.append(
            f"  confirm: best {plan.confirm_top_k} per arm x {len(seeds)} seed(s) "
            f"({seeds[0]}..{seeds[-1]})"
        )
    else:
        lines.append("  confirm: off")
    lines.append(f"  per trial: {plan.cpu_per_trial:g} CPU, {plan.gpu_per_trial:g} GPU")
    lines.append("")
    width = max([len("arm"), len("total")] + [len(a.arm) for a in plan.arms])
    header = ("search", "confirm", "trials", "epochs/trial", "epoch budget")
    lines.append(f"  {'arm':<{width}}  " + "  ".join(f"{h:>{len(h)}}" for h in header))
    for arm in plan.arms:
        cells = (
            arm.search_trials,
            arm.confirm_trials,
            arm.total_trials,
            arm.epochs,
            arm.epoch_budget,
        )
        lines.append(
            f"  {arm.arm:<{width}}  "
            + "  ".join(f"{c:>{len(h)}}" for c, h in zip(cells, header, strict=True))
        )
    totals = (plan.search_trials, plan.confirm_trials, plan.total_trials, "", plan.epoch_budget)
    lines.append(
        f"  {'total':<{width}}  "
        + "  ".join(f"{c:>{len(h)}}" for c, h in zip(totals, header, strict=True))
    )
    lines.append("")
    for arm, space in plan.search_spaces:
        lines.append(f"  {arm} searches:" + ("" if space else " nothing (fixed settings only)"))
        lines.extend(f"    {key}: {text}" for key, text in space)
    return "\n".join(lines)


def trials_left(
    spec: StudySpec, trials: pd.DataFrame, arms: Sequence[str] | None = None
) -> int:
    """Trials of the study's plan not recorded yet (0: the study is finished), as ``resume``
    would run them; of ``arms`` only when given.

    Per arm: its search trials (:meth:`StudySpec.trials_for`) minus those recorded, whatever
    their status; then its confirm trials, each of its best ``confirm.top_k`` search
    trials (:func:`sweep.analysis.ranking.rank_trials`, fewer when fewer are rankable) with
    each confirm seed, minus the confirm trials recorded. While an arm still searches, its
    confirm phase counts ``top_k x seeds``, the most it can run.
    """
    from sweep import names
    from sweep.analysis.ranking import rank_trials  # pandas: not for every importer of the spec

    objectives = [(o.metric, o.direction) for o in spec.search.objectives]
    seeds = len(spec.confirm_seeds)
    left = 0
    for arm in spec.arm_names if arms is None else arms:
        mine = trials[trials[names.ARM] == arm] if len(trials) else trials
        search = mine[mine[names.PHASE] == names.SEARCH] if len(mine) else mine
        confirmed = int((mine[names.PHASE] == names.CONFIRM).sum()) if len(mine) else 0
        search_left = max(0, spec.trials_for(arm) - len(search))
        if search_left or not seeds:
            configurations = spec.confirm.top_k if seeds else 0
        else:
            ranked = rank_trials(search, objectives, rank_by=spec.confirm_rank.metric)
            configurations = min(spec.confirm.top_k, len(ranked))
        left += search_left + max(0, configurations * seeds - confirmed)
    return left
