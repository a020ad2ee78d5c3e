"""What a study will run: arms x trials x phases, its epoch and gradient-step budget.

:func:`plan_study` resolves a validated :class:`~sweep.spec.StudySpec` into per-arm search and
confirm trial counts, epochs and gradient steps; :func:`format_plan` prints it for
``infovae-sweep validate``; :func:`calibrate` times a few training steps of each arm's network
for a rough wall-time estimate; :func:`trials_left` counts the trials of the plan a study folder
has not recorded yet.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# Only types: sweep.spec re-exports this module's functions, so a run-time import would be a cycle.
if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from sweep.spec import EarlyStoppingSpec, ObjectiveSpec, StudySpec

__all__ = [
    "ArmPlan",
    "Calibration",
    "StudyPlan",
    "calibrate",
    "format_plan",
    "plan_study",
    "trials_left",
]

#: The settings that fix how long a trial trains: a search over them gives trials of their own
#: lengths (a ``data.train_size`` grid with ``train.steps``: more epochs on fewer images).
_LENGTH_KEYS = ("train.epochs", "train.steps", "train.batch_size", "data.train_size")

#: Training seconds a calibration may spend per arm (after one untimed warm-up step).
CALIBRATION_SECONDS = 0.5
CALIBRATION_MAX_STEPS = 20

_IMAGE_SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28)}


@dataclass(frozen=True)
class ArmPlan:
    """What one arm will run.

    ``trial_epochs`` and ``trial_steps``: epochs and gradient steps of each search trial, in
    grid order when the arm searches a grid over the settings that fix a trial's length
    (``data.train_size``, ``train.epochs``, ``train.steps``, ``train.batch_size``), else each
    the longest the space allows (``exact`` is False); ``steps`` are None when the training
    set's size is known only from the data file. Confirm trials re-train a searched
    configuration: each is counted at the longest. ``distinct``: the configurations the search
    space holds (None: a continuous range, unbounded).
    """

    arm: str
    searched: tuple[str, ...]
    search_trials: int
    confirm_trials: int
    trial_epochs: tuple[int, ...]
    trial_steps: tuple[int, ...] | None
    exact: bool
    fixed: tuple[tuple[str, str], ...]
    distinct: int | None

    @property
    def epochs(self) -> int:
        """The most epochs any one trial of the arm trains for."""
        return max(self.trial_epochs, default=0)

    @property
    def total_trials(self) -> int:
        return self.search_trials + self.confirm_trials

    @property
    def epoch_budget(self) -> int:
        """Training epochs of every trial (an upper bound: early stopping can only lower it)."""
        return sum(self.trial_epochs) + self.confirm_trials * self.epochs

    @property
    def steps_per_trial(self) -> tuple[int, int] | None:
        """The fewest and most gradient steps of one trial (None when not known)."""
        if not self.trial_steps:
            return None
        return min(self.trial_steps), max(self.trial_steps)

    @property
    def step_budget(self) -> int | None:
        """Gradient steps of every trial (an upper bound, like :attr:`epoch_budget`)."""
        if self.trial_steps is None:
            return None
        return sum(self.trial_steps) + self.confirm_trials * max(self.trial_steps, default=0)

    @property
    def repeats(self) -> bool:
        """More search trials than the space has configurations: some train one twice."""
        return self.distinct is not None and self.distinct < self.search_trials


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

    @property
    def step_budget(self) -> int | None:
        budgets = [arm.step_budget for arm in self.arms]
        return None if None in budgets else sum(budgets)  # type: ignore[arg-type]


def _distinct(search) -> int | None:
    """Configurations a search space holds; None when a range is continuous."""
    count = 1
    for dist in search.values():
        if dist.is_categorical:
            count *= len({repr(v) for v in dist.values})
        elif dist.int_ is not None and not dist.int_.log:
            count *= len(range(dist.int_.low, dist.int_.high + 1, dist.int_.step))
        elif dist.int_ is not None:
            count *= dist.int_.high - dist.int_.low + 1
        else:
            return None
    return count


def _length(config, n_train: int | None) -> tuple[int, int | None]:
    """Epochs and gradient steps of one trial (steps None when the training set's size is
    known only from the data file); the trainer runs whole epochs."""
    try:
        n = config.train_images()
    except ValueError:  # ConfigError: an array file without data.train_size
        if n_train is None:
            return config.train.epochs, None
        n = n_train
    epochs = config.planned_epochs(n)
    return epochs, epochs * config.batches_per_epoch(n)


def _trial_lengths(spec: StudySpec, name: str, n_train: int | None):
    """Per search trial (epochs, steps) and whether they are exact (see :class:`ArmPlan`)."""
    arm = spec.arms[name]
    trials = spec.trials_for(name)
    keys = [key for key in _LENGTH_KEYS if key in arm.search]
    if not keys:
        return [_length(spec.arm_config(name), n_train)] * trials, True
    if all(arm.search[key].is_categorical for key in keys):
        points = [
            dict(zip(keys, values, strict=True))
            for values in itertools.product(*(arm.search[key].values for key in keys))
        ]
        lengths = [_length(spec.arm_config(name, point), n_train) for point in points]
        if spec.search.sampler == "grid":
            # The grid visits its points in turn: every value of these keys equally often.
            return [lengths[i % len(lengths)] for i in range(trials)], True
        return [max(lengths, key=lambda length: length[0])] * trials, False
    corners = [
        dict(zip(keys, values, strict=True))
        for values in itertools.product(*(arm.search[key].extremes() for key in keys))
    ]
    lengths = [_length(spec.arm_config(name, corner), n_train) for corner in corners]
    return [max(lengths, key=lambda length: length[0])] * trials, False


def _fixed_text(value: Any) -> str:
    return str(value) if not isinstance(value, float) else f"{value:g}"


def plan_study(spec: StudySpec, n_train: int | None = None) -> StudyPlan:
    """Per-arm and total trial counts, epochs and gradient steps of a validated study.

    Confirm trials per arm = ``top_k * seeds``; search trials = :meth:`StudySpec.trials_for`.
    ``n_train``: the training split's size when only the data file knows it (``array``).
    """
    arms = []
    for name, arm in spec.arms.items():
        lengths, exact = _trial_lengths(spec, name, n_train)
        steps = [s for _, s in lengths]
        confirm = spec.confirm.top_k * spec.confirm.seeds
        arms.append(
            ArmPlan(
                name,
                tuple(arm.search),
                spec.trials_for(name),
                confirm,
                trial_epochs=tuple(e for e, _ in lengths),
                trial_steps=None if None in steps else tuple(steps),  # type: ignore[arg-type]
                exact=exact,
                fixed=tuple((k, _fixed_text(v)) for k, v in arm.fixed_settings.items()),
                distinct=_distinct(arm.search),
            )
        )
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


@dataclass(frozen=True)
class Calibration:
    """Seconds per gradient step of each arm's network, timed on this machine's CPU."""

    step_seconds: dict[str, float]
    steps_timed: int
    threads: int
    concurrent: int

    def wall_seconds(self, plan: StudyPlan) -> float | None:
        """Training time of the whole plan, ``concurrent`` trials at a time (None when the
        step budget is not known)."""
        if plan.step_budget is None:
            return None
        work = sum(self.step_seconds[arm.arm] * (arm.step_budget or 0) for arm in plan.arms)
        return work / self.concurrent


def calibrate(
    spec: StudySpec, image_shape: tuple[int, int, int] | None = None, cpus: int | None = None
) -> Calibration:
    """Time a few training steps (forward, divergence, backward, Adam) of each arm's network at
    its fixed settings on random binary images of the study's shape, on this CPU with the
    threads one trial gets (``resources.cpu``): one untimed step, then steps until
    :data:`CALIBRATION_SECONDS` (at most :data:`CALIBRATION_MAX_STEPS`). Arms of one network
    and divergence are timed once. Trials at a time: ``max_concurrent``, at most as many as
    this machine's ``cpus`` hold at ``resources.cpu`` each."""
    import torch

    from infovae_core.models import build_model
    from infovae_core.objective import build_divergence, infovae_loss

    shape = image_shape or _IMAGE_SHAPES[spec.data.dataset]
    threads = max(1, math.floor(spec.resources.cpu))
    cpus = cpus or os.cpu_count() or 1
    concurrent = max(1, min(spec.search.max_concurrent, cpus // threads))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    timed: dict[str, tuple[float, int]] = {}
    seconds: dict[str, float] = {}
    try:
        for arm in spec.arm_names:
            config = spec.arm_config(arm)
            key = repr((config.model, config.objective.divergence, config.train.batch_size))
            if key not in timed:
                timed[key] = _time_steps(config, shape, torch, build_model, build_divergence,
                                         infovae_loss)
            seconds[arm] = timed[key][0]
    finally:
        torch.set_num_threads(before)
    steps = min(count for _, count in timed.values())
    return Calibration(seconds, steps, threads, concurrent)


def _time_steps(config, shape, torch, build_model, build_divergence, infovae_loss):
    """(seconds per step, steps timed) of one network."""
    generator = torch.Generator().manual_seed(0)
    model = build_model(config.model, shape)
    divergence = build_divergence(config.objective, config.model.latent_dim)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    weighted = config.objective.divergence_weight > 0
    batch = min(config.train.batch_size, config.data.train_size or config.train.batch_size)
    x = torch.bernoulli(torch.full((batch, *shape), 0.5), generator=generator)

    def step() -> None:
        output = model(x)
        estimate = divergence(output.z) if weighted else torch.zeros(())
        terms = infovae_loss(output, estimate, config.objective)
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        optimizer.step()
        if weighted:
            divergence.update(output.z.detach())

    model.train()
    step()  # the first step allocates; it is not timed
    count, start = 0, time.perf_counter()
    while count < CALIBRATION_MAX_STEPS and (
        count < 1 or time.perf_counter() - start < CALIBRATION_SECONDS
    ):
        step()
        count += 1
    return (time.perf_counter() - start) / count, count


def _span(values: tuple[int, ...] | None) -> str:
    if not values:
        return "?"
    low, high = min(values), max(values)
    return f"{low:,}" if low == high else f"{low:,}-{high:,}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def format_plan(plan: StudyPlan, calibration: Calibration | None = None) -> str:
    """A readable multi-line summary of a plan (for ``infovae-sweep validate``), with a rough
    wall-time estimate when a ``calibration`` is given."""
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
    header = ("search", "confirm", "trials", "epochs/trial", "steps/trial", "epochs", "steps")
    cells_of = [
        (
            f"{arm.search_trials}",
            f"{arm.confirm_trials}",
            f"{arm.total_trials}",
            _span(arm.trial_epochs),
            _span(arm.trial_steps),
            f"{arm.epoch_budget:,}",
            "?" if arm.step_budget is None else f"{arm.step_budget:,}",
        )
        for arm in plan.arms
    ]
    total_steps = "?" if plan.step_budget is None else f"{plan.step_budget:,}"
    totals = (
        f"{plan.search_trials}",
        f"{plan.confirm_trials}",
        f"{plan.total_trials}",
        "",
        "",
        f"{plan.epoch_budget:,}",
        total_steps,
    )
    widths = [
        max(len(h), *(len(c[i]) for c in [*cells_of, totals])) for i, h in enumerate(header)
    ]
    rows = [("arm", header), *((a.arm, c) for a, c in zip(plan.arms, cells_of, strict=True))]
    for name, cells in [*rows, ("total", totals)]:
        lines.append(
            f"  {name:<{width}}  "
            + "  ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))
        )
    if not all(arm.exact for arm in plan.arms):
        lines.append(
            "  (epochs and steps: at most; a searched length is counted at its longest)"
        )
    if plan.step_budget is None:
        lines.append("  (steps: ? until the data file's training split is known)")
    if calibration is not None and (wall := calibration.wall_seconds(plan)) is not None:
        per_arm = ", ".join(
            f"{arm} {1000 * s:.1f} ms" for arm, s in calibration.step_seconds.items()
        )
        lines.append(
            f"  estimated wall time on this machine: about {_duration(wall)} (a rough "
            f"estimate: each arm's network timed over at least {calibration.steps_timed} "
            f"training steps on this CPU with {calibration.threads} thread(s), {per_arm} per "
            f"step, times the steps above, {calibration.concurrent} trial(s) at a time; "
            "evaluation, data "
            "loading and Ray's start are not counted, and a GPU trains faster)"
        )
    lines.append("")
    spaces = dict(plan.search_spaces)
    for arm in plan.arms:
        fixed = ", ".join(f"{key}={value}" for key, value in arm.fixed) or "nothing"
        lines.append(f"  {arm.arm} fixes: {fixed}")
        space = spaces.get(arm.arm, ())
        lines.append(f"  {arm.arm} searches:" + ("" if space else " nothing (fixed settings only)"))
        lines.extend(f"    {key}: {text}" for key, text in space)
        if arm.repeats:
            lines.append(
                f"  warning: {arm.arm}'s search space holds {arm.distinct} distinct "
                f"configuration(s) for {arm.search_trials} search trials: some trials will "
                "train a configuration again (widen the space or lower search.trials_per_arm)"
            )
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
