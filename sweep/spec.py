"""Study files: one YAML file validated into one frozen :class:`StudySpec`.

A study compares *arms* (families of objectives such as the ELBO and InfoVAE-MMD), giving every
arm the same search budget over its own space, then re-trains the best configurations of each
arm with fresh seeds (the *confirm* phase). ``load_study(path)`` reads and checks a file; after
that the spec is the only source of truth for the runner, the CLI and the report.

The format (every key is checked; unknown keys are refused)::

    name: digits                 # study name = results folder name; [A-Za-z0-9_.-]+
    description: free text       # optional
    data:                        # -> TrialConfig.data (data.* keys are set here, except that
                                 #    an arm may fix or search data.train_size, see below)
      dataset: digits            # digits | mnist                                   (required)
      binarize: dynamic          # dynamic | static | none                 (default dynamic)
      seed: 0                    # split, static-binarisation and train_size-subset seed
      data_dir: null             # null: $INFOVAE_DATA_DIR, else the per-user cache
      train_size: null           # null: the whole training split; N: a subset of N training
                                 # images chosen by data.seed (the same for every arm and
                                 # train.seed; validation and test whole). 2 <= N <= the split
                                 # (digits 1,258; mnist 50,000)
    defaults:                    # TrialConfig settings shared by every arm, nested or dotted:
      model: {latent_dim: 8, encoder: {kind: mlp, width: 256, depth: 2}}
      train.epochs: 20           # (see infovae_core/config.py for every key)
      eval: {iwae_samples: 100, probe_labels: [100]}
    arms:                        # at least one; names [A-Za-z0-9_-]+; order = arm index
      elbo:
        fixed: {objective.alpha: 0, objective.lambda: 1}     # dotted (or nested) settings
        search:                                              # dotted key -> distribution
          model.decoder.width: {choice: [64, 128, 256]}
      infovae-mmd:
        fixed: {objective.divergence: mmd}
        search:
          objective.lambda: {log_uniform: {low: 1, high: 10000}}
          objective.alpha: {uniform: {low: 0, high: 1}}
          objective.kernel: {choice: [rbf, imq]}
          objective.scales: {choice: [[1.0], [0.5, 1.0, 2.0]]}
    search:
      sampler: tpe               # tpe | random | cmaes | grid | nsga2                (default tpe)
      trials_per_arm: 12         # search trials per arm (grid: may be left out, see below)
      max_concurrent: 2          # trials running at once                            (default 1)
      seed: 0                    # sampler seed; each arm derives its own            (default 0)
      seed_policy: fixed         # fixed: every search trial trains with train.seed;
                                 # per_trial: train.seed + trial index
      objectives:                # one or more; metric.<name> from docs/metrics.md
        - {metric: metric.mmd, direction: minimize}
      early_stopping:            # optional, single-objective only
        {scheduler: asha, metric: val.loss, mode: min, grace_period: 2, reduction_factor: 3}
    confirm:                     # optional; default {top_k: 1, seeds: 3}
      top_k: 1                   # best configurations per arm re-trained ...
      seeds: 3                   # ... with this many seeds (0 disables the confirm phase)
      seed_start: 1000           # confirm seeds are seed_start, seed_start + 1, ...
      rank_by: null              # objective metric that ranks trials (default: the first)
    resources: {cpu: 1, gpu: 0}  # per trial; fractions allowed, gpu > 1 must be whole
    storage: null                # Ray Tune storage (bucket URI or shared mount) for clusters
    convergence:                 # optional: how the report and `show` judge each trial's
      metric: val.elbo           # curve (sweep.convergence); val.<term> or train.<term>
      tolerance: 0.005           # converged when the relative change of the metric's mean over
                                 # the last tenth of the epochs is <= this (> 0)

``data.train_size`` is the one data setting an arm may also set, in ``fixed`` or ``search``
(``{grid: [100, 300, 1258]}`` with ``sampler: grid`` for the paper's small-data experiment): it
does not change the dataset the runner loads once per study, only the subset each trial trains
on. An arm's value overrides ``data.train_size`` of the ``data:`` block, like ``fixed`` overrides
``defaults``. Every other data.* key is refused in ``defaults``, ``fixed`` and ``search``.

Distributions (see :mod:`sweep.space`): ``{uniform: {low, high}}``, ``{log_uniform: {low, high}}``
(``low > 0``), ``{int: {low, high, step: 1, log: false}}``, ``{choice: [values]}``,
``{grid: [values]}`` (grid axes need ``sampler: grid``).

Rules checked at load, each error naming the file, line and YAML path of the offending key
(``studies/x.yaml:14: arms.infovae.search.objective.lambda.log_uniform.low: must be > 0 ...``):

- every arm's TrialConfig is *built* from ``data`` + ``defaults`` + ``fixed`` at every corner
  of its search space (low and high of each range, every choice/grid value, all combinations up
  to 4096 points, else one key at a time), so e.g. a lambda range where
  ``alpha + lambda - 1 < 0`` or a width of 0 is refused with the searched key named;
- a key is fixed or searched in an arm, not both; integer settings take ``int``/``choice``
  ranges only; ``uniform``/``log_uniform`` need numeric settings;
- objectives: ``metric.{mmd, log_det_cov, mutual_info, nll_iwae, elbo, recon, kl,
  active_units}`` or ``metric.probe_acc_<n>`` with n in every arm's ``eval.probe_labels``;
  directions ``minimize``/``maximize``; no metric twice;
- ``data.train_size`` (in ``data:`` or an arm) is an integer >= 2, at most the training split
  of the dataset, at every corner of a searched range;
- ``convergence.metric`` is ``val.<term>`` or ``train.<term>`` with term in ``loss, recon, kl,
  divergence, elbo``; ``convergence.tolerance > 0``;
- samplers: ``nsga2`` needs >= 2 objectives; several objectives need ``tpe``, ``random``,
  ``grid`` or ``nsga2`` (``cmaes`` is single-objective); ASHA early stopping is
  single-objective; its metric is ``val.<term>`` or ``train.<term>`` with term in
  ``loss, recon, kl, divergence, elbo``; ``mode`` (min/max) may be left out and is then implied
  (max for elbo, min otherwise); its grace period must be below every arm's ``train.epochs``;
- the grid sampler takes only ``grid``/``choice`` distributions; ``grid`` needs the grid
  sampler. Each arm runs its whole grid: ``trials_per_arm`` may be left out, and when given it
  must equal every arm's grid size (a mismatch is refused rather than silently truncated);
- an arm with no search space needs ``seed_policy: per_trial`` (or the grid sampler), else
  every trial would train the same configuration; ``per_trial`` cannot be combined with a
  searched ``train.seed``;
- ``confirm.top_k`` is at most the number of search trials per arm; ``rank_by`` is one of the
  objectives; ``max_concurrent >= 1``; ``cpu > 0``; ``gpu >= 0``.

Numbers like ``1e-3`` are read as floats (plain PyYAML would read a string); otherwise the file
is read with ``yaml.SafeLoader`` (no tags that build objects). Duplicate keys are refused.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints

import optuna
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from infovae_core.config import Binarization, DatasetName, TrialConfig
from sweep.convergence import DEFAULT_CONVERGENCE_METRIC, DEFAULT_CONVERGENCE_TOLERANCE
from sweep.space import (
    Distribution,
    cmaes_available,
    grid_size,
    make_sampler,
    to_optuna_distributions,
)

__all__ = [
    "EPOCH_TERMS",
    "EVAL_METRICS",
    "ArmPlan",
    "ArmSpec",
    "ConfirmSpec",
    "ConvergenceSpec",
    "DataSpec",
    "EarlyStoppingSpec",
    "ObjectiveSpec",
    "ResourcesSpec",
    "SearchSpec",
    "StudyIssue",
    "StudyPlan",
    "StudySpec",
    "StudySpecError",
    "format_plan",
    "load_study",
    "plan_study",
]

EVAL_METRICS: tuple[str, ...] = (
    "mmd",
    "log_det_cov",
    "mutual_info",
    "nll_iwae",
    "elbo",
    "recon",
    "kl",
    "active_units",
)
"""Evaluation metrics (``metric.<name>``) an objective may name; plus ``probe_acc_<n>``."""

EPOCH_TERMS: tuple[str, ...] = ("loss", "recon", "kl", "divergence", "elbo")
"""Per-epoch loss terms (``train.<term>``, ``val.<term>``) early stopping may watch."""

_LARGER_IS_BETTER_TERMS = frozenset({"elbo"})
_PROBE_RE = re.compile(r"probe_acc_([0-9]+)")
_STUDY_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_ARM_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")
_MULTI_OBJECTIVE_SAMPLERS = ("tpe", "random", "grid", "nsga2")
#: Data settings an arm may fix or search: they select what a trial trains on from the dataset
#: the runner loads once per study, without changing that dataset.
ARM_DATA_KEYS: frozenset[str] = frozenset({"data.train_size"})
_MAX_CORNERS = 4096  # full product of extremes up to this many TrialConfig builds (~ms each)
# The weight check of ObjectiveConfig names the whole section; these are the keys behind it.
_SECTION_CULPRITS = {"objective": ("objective.lambda", "objective.alpha")}

StrictFloat = Annotated[float, Field(strict=True)]
StrictInt = Annotated[int, Field(strict=True)]
Sampler = Literal["tpe", "random", "cmaes", "grid", "nsga2"]
Direction = Literal["minimize", "maximize"]


# --------------------------------------------------------------------------------------------
# Errors


@dataclass(frozen=True)
class StudyIssue:
    """One problem in a study file: where (file, 1-based line, dotted YAML path) and what."""

    source: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class StudySpecError(ValueError):
    """A study file is unreadable or invalid. ``str()`` lists one issue per line as
    ``<file>:<line>: <yaml.path>: <what is wrong>``; ``issues`` holds them as data."""

    def __init__(self, issues: Sequence[StudyIssue]) -> None:
        self.issues: tuple[StudyIssue, ...] = tuple(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


class _Issues(ValueError):
    """Raised inside validators: (path relative to the validated object, message) pairs.

    Pydantic keeps the exception in the error's context, so the loader can report each pair at
    its own YAML path and line instead of one message at the enclosing object.
    """

    def __init__(self, issues: Sequence[tuple[str, str]]) -> None:
        self.issues = tuple(issues)
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in self.issues))


# --------------------------------------------------------------------------------------------
# The spec


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataSpec(_Frozen):
    """The dataset and its options (``TrialConfig.data``)."""

    dataset: DatasetName
    binarize: Binarization = "dynamic"
    seed: StrictInt = 0
    data_dir: str | None = None
    train_size: StrictInt | None = None  # checked (>= 2, <= the split) by TrialConfig

    def as_settings(self) -> dict[str, Any]:
        """Dotted TrialConfig settings: ``{"data.dataset": ..., ...}``."""
        return {f"data.{key}": value for key, value in self.model_dump().items()}


class ArmSpec(_Frozen):
    """One family compared: fixed TrialConfig settings and its own search space."""

    fixed: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, Distribution] = Field(default_factory=dict)

    @property
    def fixed_settings(self) -> dict[str, Any]:
        """``fixed`` flattened to dotted keys."""
        return _flatten(self.fixed)


class ObjectiveSpec(_Frozen):
    """One optimisation objective: an evaluation metric and its direction."""

    metric: str
    direction: Direction

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        name = metric.removeprefix("metric.")
        if metric.startswith("metric.") and (name in EVAL_METRICS or _PROBE_RE.fullmatch(name)):
            return metric
        allowed = ", ".join(f"metric.{m}" for m in EVAL_METRICS)
        raise ValueError(f"unknown metric {metric!r} (allowed: {allowed}, metric.probe_acc_<n>)")

    @property
    def mode(self) -> Literal["min", "max"]:
        """Ray Tune's word for the direction."""
        return "min" if self.direction == "minimize" else "max"


def _epoch_metric(metric: str) -> str:
    """``metric`` if it is a per-epoch column (``val.<term>``/``train.<term>``), else an error
    listing the allowed ones."""
    split, _, term = metric.partition(".")
    if split in ("train", "val") and term in EPOCH_TERMS:
        return metric
    allowed = ", ".join(f"{s}.{t}" for s in ("val", "train") for t in EPOCH_TERMS)
    raise ValueError(f"unknown per-epoch metric {metric!r} (allowed: {allowed})")


class EarlyStoppingSpec(_Frozen):
    """ASHA on a per-epoch metric: trials below the top 1/reduction_factor at a rung stop."""

    scheduler: Literal["asha"] = "asha"
    metric: str
    mode: Literal["min", "max"] | None = None
    grace_period: Annotated[int, Field(strict=True, ge=1)] = 1
    reduction_factor: Annotated[float, Field(strict=True, gt=1)] = 3.0

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        return _epoch_metric(metric)

    @model_validator(mode="after")
    def _consistent_mode(self) -> EarlyStoppingSpec:
        if self.mode is not None and self.mode != self.implied_mode:
            raise _Issues(
                [
                    (
                        "mode",
                        f"{self.metric} is better when {self.implied_mode}imised, not "
                        f"{self.mode}imised; use mode: {self.implied_mode}",
                    )
                ]
            )
        return self

    @property
    def implied_mode(self) -> Literal["min", "max"]:
        """``max`` for the ELBO (larger is better), ``min`` for losses."""
        return "max" if self.metric.partition(".")[2] in _LARGER_IS_BETTER_TERMS else "min"

    @property
    def resolved_mode(self) -> Literal["min", "max"]:
        """``mode`` as given, else the implied one."""
        return self.mode or self.implied_mode


class ConvergenceSpec(_Frozen):
    """How each trial's convergence is judged from its per-epoch curve
    (:func:`sweep.convergence.judge_curve`): the curve of ``metric`` and the ``tolerance`` on
    its relative change over the last tenth of training."""

    metric: str = DEFAULT_CONVERGENCE_METRIC
    tolerance: Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)] = (
        DEFAULT_CONVERGENCE_TOLERANCE
    )

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        return _epoch_metric(metric)


class SearchSpec(_Frozen):
    """How each arm is searched: sampler, budget, objectives and early stopping."""

    sampler: Sampler = "tpe"
    trials_per_arm: Annotated[int, Field(strict=True, ge=1)] | None = None
    max_concurrent: Annotated[int, Field(strict=True, ge=1)] = 1
    seed: Annotated[int, Field(strict=True, ge=0)] = 0
    seed_policy: Literal["fixed", "per_trial"] = "fixed"
    objectives: tuple[ObjectiveSpec, ...]
    early_stopping: EarlyStoppingSpec | None = None

    @field_validator("objectives")
    @classmethod
    def _at_least_one(cls, objectives: tuple[ObjectiveSpec, ...]) -> tuple[ObjectiveSpec, ...]:
        # Checked here, not with min_length: pydantic would also report an empty tuple when
        # an item fails, a confusing second error for the same mistake.
        if not objectives:
            raise ValueError("needs at least one objective ({metric: ..., direction: ...})")
        return objectives

    @model_validator(mode="after")
    def _consistent(self) -> SearchSpec:
        issues: list[tuple[str, str]] = []
        n = len(self.objectives)
        if self.sampler == "cmaes" and not cmaes_available():
            issues.append(("sampler", "cmaes needs the cmaes package: pip install cmaes"))
        if self.trials_per_arm is None and self.sampler != "grid":
            issues.append(("trials_per_arm", f"required for sampler {self.sampler}"))
        if self.sampler == "nsga2" and n < 2:
            issues.append(
                (
                    "sampler",
                    "nsga2 is for several objectives (give >= 2 in search.objectives, "
                    "or use tpe for one)",
                )
            )
        if n >= 2 and self.sampler not in _MULTI_OBJECTIVE_SAMPLERS:
            issues.append(
                (
                    "sampler",
                    f"{self.sampler} is single-objective but {n} objectives are given; "
                    f"use one of {', '.join(_MULTI_OBJECTIVE_SAMPLERS)}",
                )
            )
        if n >= 2 and self.early_stopping is not None:
            issues.append(
                (
                    "early_stopping",
                    f"ASHA early stopping is single-objective but {n} objectives "
                    "are given; remove early_stopping or keep one objective",
                )
            )
        seen: dict[str, int] = {}
        for i, objective in enumerate(self.objectives):
            if objective.metric in seen:
                issues.append(
                    (
                        f"objectives.{i}.metric",
                        f"{objective.metric} is already objective {seen[objective.metric]}",
                    )
                )
            seen.setdefault(objective.metric, i)
        if issues:
            raise _Issues(issues)
        return self

    @property
    def metrics(self) -> tuple[str, ...]:
        """Objective metric names, in order (``metric.mmd``, ...)."""
        return tuple(o.metric for o in self.objectives)

    @property
    def directions(self) -> tuple[Direction, ...]:
        """Optuna directions, in the order of :attr:`metrics`."""
        return tuple(o.direction for o in self.objectives)

    @property
    def is_multi_objective(self) -> bool:
        return len(self.objectives) > 1


class ConfirmSpec(_Frozen):
    """Re-train the best ``top_k`` configurations of each arm with ``seeds`` fresh seeds."""

    top_k: Annotated[int, Field(strict=True, ge=1)] = 1
    seeds: Annotated[int, Field(strict=True, ge=0)] = 3
    seed_start: Annotated[int, Field(strict=True, ge=0)] = 1000
    rank_by: str | None = None

    @property
    def enabled(self) -> bool:
        return self.seeds > 0

    @property
    def seed_values(self) -> tuple[int, ...]:
        """The confirm seeds: ``seed_start, ..., seed_start + seeds - 1``."""
        return tuple(range(self.seed_start, self.seed_start + self.seeds))


class ResourcesSpec(_Frozen):
    """Ray resources per trial; fractional GPUs share one card between trials."""

    cpu: Annotated[float, Field(strict=True, gt=0)] = 1.0
    gpu: Annotated[float, Field(strict=True, ge=0)] = 0.0

    @field_validator("gpu")
    @classmethod
    def _whole_above_one(cls, gpu: float) -> float:
        if gpu > 1 and not float(gpu).is_integer():
            raise ValueError(f"a trial may use a fraction of one GPU or whole GPUs, got {gpu:g}")
        return gpu


class StudySpec(_Frozen):
    """A validated study (see the module docstring for the YAML format and the rules)."""

    name: str
    description: str = ""
    data: DataSpec
    defaults: dict[str, Any] = Field(default_factory=dict)
    arms: dict[str, ArmSpec]
    search: SearchSpec
    confirm: ConfirmSpec = Field(default_factory=ConfirmSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    storage: str | None = None
    convergence: ConvergenceSpec = Field(default_factory=ConvergenceSpec)

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name: str) -> str:
        if not _STUDY_NAME_RE.fullmatch(name) or name in (".", ".."):
            raise ValueError(
                f"must match [A-Za-z0-9_.-]+ (it names the results folder), got {name!r}"
            )
        return name

    @field_validator("arms")
    @classmethod
    def _arm_names(cls, arms: dict[str, ArmSpec]) -> dict[str, ArmSpec]:
        if not arms:
            raise ValueError("needs at least one arm")
        bad = [
            (name, f"arm names must match [A-Za-z0-9_-]+, got {name!r}")
            for name in arms
            if not _ARM_NAME_RE.fullmatch(name)
        ]
        if bad:
            raise _Issues(bad)
        return arms

    @model_validator(mode="after")
    def _cross_checks(self) -> StudySpec:
        issues = _study_issues(self)
        if issues:
            raise _Issues(issues)
        return self

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_yaml_text(cls, text: str, source: str = "<string>") -> StudySpec:
        """Parse and validate YAML text; ``source`` names it in error messages.

        Raises :class:`StudySpecError` listing every problem found with its line.
        """
        try:
            data, lines, issues = _parse_yaml(text)
        except RecursionError:  # PyYAML's parser and composer recurse once per nesting level
            raise StudySpecError([StudyIssue(source, None, "", _TOO_DEEP)]) from None
        if data is None:
            raise StudySpecError([StudyIssue(source, ln, path, msg) for path, ln, msg in issues])
        try:
            return cls.model_validate(data)
        except RecursionError:
            raise StudySpecError([StudyIssue(source, None, "", _TOO_DEEP)]) from None
        except ValidationError as err:
            found = [(path, lines.line_for(path), msg) for path, msg in _translate(err)]
            found.sort(key=lambda issue: (issue[1] or 0, issue[0]))
            raise StudySpecError(
                [StudyIssue(source, ln, path, msg) for path, ln, msg in found]
            ) from None

    def to_yaml(self) -> str:
        """The spec as YAML text; :func:`load_study` reads it back to an equal spec."""
        data = self.model_dump(mode="json", by_alias=True)
        header = f"# Study {self.name!r} as validated by infovae-sweep (sweep.spec.load_study).\n"
        return header + yaml.safe_dump(
            data, sort_keys=False, default_flow_style=None, allow_unicode=True, width=100
        )

    # -- arms --------------------------------------------------------------------------------

    @property
    def arm_names(self) -> tuple[str, ...]:
        """Arm names in file order (the arm index is the position here)."""
        return tuple(self.arms)

    def arm_index(self, arm: str) -> int:
        """Position of ``arm`` in the file (seeds its sampler)."""
        self._arm(arm)  # a clear error for an unknown arm
        return self.arm_names.index(arm)

    def arm_settings(self, arm: str) -> dict[str, Any]:
        """Dotted TrialConfig settings of an arm before sampling: data + defaults + fixed."""
        fixed = self._arm(arm).fixed_settings
        return {**self.data.as_settings(), **_flatten(self.defaults), **fixed}

    def arm_config(
        self, arm: str, overrides: Mapping[str, Any] | None = None, seed: int | None = None
    ) -> TrialConfig:
        """The TrialConfig of one trial of ``arm``: data + defaults + fixed + ``overrides``.

        ``overrides``: dotted keys, e.g. :func:`sweep.space.decode_params` of Optuna's params.
        ``seed`` (when not None) sets ``train.seed``. Raises ``ConfigError`` naming the key.
        """
        settings = self.arm_settings(arm)
        settings.update(_flatten(dict(overrides or {})))
        if seed is not None:
            settings["train.seed"] = seed
        return TrialConfig.from_dict(settings)

    def trials_for(self, arm: str) -> int:
        """Search trials of ``arm``: ``trials_per_arm``, or its grid size when left out."""
        if self.search.trials_per_arm is not None:
            return self.search.trials_per_arm
        return grid_size(self._arm(arm).search)

    def search_seed(self, arm: str, trial_index: int) -> int | None:
        """``train.seed`` for search trial ``trial_index`` (0-based) of ``arm`` under
        ``search.seed_policy``; None when the arm searches ``train.seed`` itself."""
        if "train.seed" in self._arm(arm).search:
            return None
        base = self.arm_config(arm).train.seed
        return base + trial_index if self.search.seed_policy == "per_trial" else base

    @property
    def confirm_seeds(self) -> tuple[int, ...]:
        """Seeds of the confirm phase (empty when it is disabled)."""
        return self.confirm.seed_values

    @property
    def confirm_rank(self) -> ObjectiveSpec:
        """The objective that ranks search trials for the confirm phase (``rank_by`` or the
        first objective). With several objectives, a runner ranks Pareto-optimal trials first."""
        wanted = self.confirm.rank_by or self.search.objectives[0].metric
        return next(o for o in self.search.objectives if o.metric == wanted)

    def optuna_space(self, arm: str) -> dict[str, optuna.distributions.BaseDistribution]:
        """The arm's search space as Optuna distributions (:func:`to_optuna_distributions`)."""
        return to_optuna_distributions(self._arm(arm).search)

    def sampler(self, arm: str, restart: int = 0) -> optuna.samplers.BaseSampler:
        """A fresh, seeded Optuna sampler for ``arm`` (:func:`sweep.space.make_sampler`);
        ``restart``: trials its Optuna study already holds (a resumed search)."""
        return make_sampler(self.search, self.arm_index(arm), self._arm(arm).search, restart)

    def _arm(self, arm: str) -> ArmSpec:
        try:
            return self.arms[arm]
        except KeyError:
            raise ValueError(f"unknown arm {arm!r} (arms: {', '.join(self.arms)})") from None


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study file. Raises :class:`StudySpecError` (a ``ValueError``)
    for a missing or unreadable file, bad YAML, or an invalid study; nothing is written."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise StudySpecError([StudyIssue(source, None, "", "not UTF-8 text")]) from None
    except OSError as err:
        reason = err.strerror or str(err)
        raise StudySpecError(
            [StudyIssue(source, None, "", f"cannot read the study file: {reason}")]
        ) from None
    return StudySpec.from_yaml_text(text, source=source)


# --------------------------------------------------------------------------------------------
# YAML with line numbers


class _StudyLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.2 style; YAML 1.1 wants 1.0e-3)."""


_TOO_DEEP = (
    "invalid YAML: lists or mappings nested too deeply to read (a study nests a few levels; "
    "is this a generated or corrupted file?)"
)

_StudyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


class _LineIndex:
    """Dotted YAML path -> 1-based line of its key (or list item)."""

    def __init__(self) -> None:
        self.lines: dict[str, int] = {}

    def line_for(self, path: str) -> int | None:
        """Line of ``path``, else of its nearest recorded ancestor (e.g. for a missing key)."""
        parts = path.split(".") if path else []
        while parts:
            found = self.lines.get(".".join(parts))
            if found is not None:
                return found
            parts.pop()
        return self.lines.get("", 1)


def _index_node(
    node: yaml.Node,
    path: str,
    index: _LineIndex,
    issues: list[tuple[str, int, str]],
    visited: set[int],
) -> None:
    # Aliases share nodes: index each collection once (also stops recursive anchors).
    if id(node) in visited:
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            child = f"{path}.{key}" if path else key
            line = key_node.start_mark.line + 1
            if child in index.lines and key != "<<":
                issues.append((child, line, f"duplicate key (first at line {index.lines[child]})"))
            index.lines.setdefault(child, line)
            _index_node(value_node, child, index, issues, visited)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = f"{path}.{i}" if path else str(i)
            index.lines.setdefault(child, item.start_mark.line + 1)
            _index_node(item, child, index, issues, visited)


_RawIssue = tuple[str, int | None, str]  # (YAML path, line, message)


def _parse_yaml(text: str) -> tuple[dict[str, Any] | None, _LineIndex, list[_RawIssue]]:
    """YAML text -> (top-level mapping or None when unusable, line index, issues)."""
    index = _LineIndex()
    issues: list[_RawIssue] = []
    try:
        loader = _StudyLoader(text)  # the reader refuses non-printable characters (NUL, ...) here
    except yaml.reader.ReaderError as err:
        return None, index, [_reader_issue(text, err)]
    try:
        node = loader.get_single_node()
        if node is None:
            return None, index, [("", 1, "the study file is empty")]
        index.lines[""] = node.start_mark.line + 1
        if not isinstance(node, yaml.MappingNode):
            kind = "a list" if isinstance(node, yaml.SequenceNode) else f"{node.value!r}"
            return (
                None,
                index,
                [
                    (
                        "",
                        node.start_mark.line + 1,
                        "the top level must be a mapping of study settings (name, data, arms, "
                        f"search, ...), got {kind}",
                    )
                ],
            )
        duplicates: list[tuple[str, int, str]] = []
        _index_node(node, "", index, duplicates, set())
        issues.extend(duplicates)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(part for part in (err.context, err.problem) if part)
        if err.context_mark is not None and err.problem_mark is not None:
            if err.context_mark.line != err.problem_mark.line:
                what += f" (the construct began at line {err.context_mark.line + 1})"
        return None, index, [("", line, f"invalid YAML: {what}")]
    except yaml.reader.ReaderError as err:
        return None, index, [_reader_issue(text, err)]
    except yaml.YAMLError as err:
        return None, index, [("", None, f"invalid YAML: {err}")]
    except (ValueError, OverflowError) as err:  # a scalar PyYAML resolved but cannot build:
        # an integer of more than 4300 digits, a timestamp such as 2024-13-45
        return None, index, [("", None, f"invalid YAML value: {err}")]
    finally:
        loader.dispose()
    if issues:
        return None, index, issues
    return data, index, issues


def _reader_issue(text: str, err: yaml.reader.ReaderError) -> _RawIssue:
    """A character YAML refuses (NUL, other control characters) as an issue with its line and
    column, computed from the reader's character offset."""
    position = max(0, min(int(err.position), len(text)))
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    code = err.character if isinstance(err.character, int) else ord(str(err.character)[:1] or " ")
    return (
        "",
        line,
        f"invalid YAML: character U+{code:04X} at line {line}, column {column} "
        f"(character offset {position}): {err.reason}; YAML allows only printable characters, "
        "tabs and line breaks (is this a binary or corrupted file?)",
    )


# --------------------------------------------------------------------------------------------
# Pydantic errors -> (path, message)


def _join(*parts: str) -> str:
    return ".".join(part for part in parts if part)


def _translate(err: ValidationError) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for error in err.errors():
        loc = tuple(part for part in error["loc"] if part != "[key]")
        base = ".".join(str(part) for part in loc)
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, _Issues):
            found.extend((_join(base, rel), message) for rel, message in cause.issues)
        else:
            found.append((base, _message(error, loc)))
    return found


def _message(error: Any, loc: tuple[Any, ...]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        return f"unknown key ({hint}allowed: {', '.join(allowed)})" if allowed else "unknown key"
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if kind in ("value_error", "assertion_error"):
        return message
    message = message.replace("Input should be", "must be").replace("Input ", "")
    if kind == "literal_error" and isinstance(error.get("input"), bool):
        message += " (YAML reads yes/no/on/off as true/false: quote the word)"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        message = "must be a mapping"
    given = repr(error.get("input"))
    return f"{message}, got {given if len(given) <= 60 else given[:57] + '...'}"


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``X | None`` down to the one type a value must have."""
    while True:
        origin = get_origin(annotation)
        args = [a for a in get_args(annotation) if a is not type(None)]
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif args and origin is not None and type(None) in get_args(annotation) and len(args) == 1:
            annotation = args[0]
        else:
            return annotation


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """Keys the model at ``loc`` (a pydantic location below StudySpec) accepts."""
    current: Any = StudySpec
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {f.alias or name: f for name, f in current.model_fields.items()}
            if part not in fields:
                return []
            current = fields[part].annotation
        elif get_origin(current) in (dict, tuple, list):
            current = get_args(current)[-1] if get_origin(current) is dict else get_args(current)[0]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


# --------------------------------------------------------------------------------------------
# Cross-checks against TrialConfig


def _config_fields(cls: type = TrialConfig, prefix: str = "") -> dict[str, Any]:
    """Every TrialConfig leaf as dotted key -> annotation (``lambda_`` is ``lambda``)."""
    hints = get_type_hints(cls)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = prefix + ("lambda" if f.name == "lambda_" else f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            fields.update(_config_fields(hints[f.name], key + "."))
        else:
            fields[key] = hints[f.name]
    return fields


_CONFIG_FIELDS = _config_fields()
_CONFIG_SECTIONS = frozenset(
    ".".join(key.split(".")[:i]) for key in _CONFIG_FIELDS for i in range(1, key.count(".") + 1)
)


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested and dotted settings -> dotted keys (``{"model": {"latent_dim": 8}}`` ->
    ``{"model.latent_dim": 8}``)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _key_problem(key: str, *, in_arm: bool = False) -> tuple[str, str] | None:
    """Why a dotted key cannot be set in defaults/fixed/search, as (the key to report, what is
    wrong), or None when it is a settable TrialConfig leaf. A mapping under a leaf (for example
    a distribution written in ``defaults``) is reported once, at the leaf. ``in_arm``: the key
    is in an arm's ``fixed``/``search``, where :data:`ARM_DATA_KEYS` are allowed too."""
    if key in _CONFIG_FIELDS:
        if key.startswith("data.") and not (in_arm and key in ARM_DATA_KEYS):
            where = " (or, for data.train_size, in an arm)" if key in ARM_DATA_KEYS else ""
            return key, f"data settings belong in the top-level data: section{where}"
        return None
    parts = key.split(".")
    for i in range(1, len(parts)):
        leaf = ".".join(parts[:i])
        if leaf in _CONFIG_FIELDS:
            return (
                leaf,
                f"{leaf} takes a single value, not a mapping (searches go in an arm's search:)",
            )
    if key in _CONFIG_SECTIONS:
        example = next(k for k in _CONFIG_FIELDS if k.startswith(key + "."))
        return key, f"{key} is a section; set its keys (e.g. {example})"
    close = difflib.get_close_matches(key, list(_CONFIG_FIELDS), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return key, f"unknown config key {key!r}{hint}; see infovae_core/config.py"


def _number_kind(annotation: Any) -> str | None:
    annotation = _unwrap(annotation)
    return {int: "int", float: "float"}.get(annotation) if annotation is not bool else None


def _distribution_problem(key: str, dist: Distribution, sampler: str) -> str | None:
    number = _number_kind(_CONFIG_FIELDS[key])
    if dist.kind in ("uniform", "log_uniform") and number != "float":
        use = "int {low, high} or choice" if number == "int" else "choice"
        return (
            f"{key} is {'an integer' if number == 'int' else 'not a real-valued'} setting; "
            f"{dist.kind} would give it fractions: use {use}"
        )
    if dist.kind == "int" and number is None:
        return f"{key} is not a numeric setting; use choice"
    if dist.kind == "grid" and sampler != "grid":
        return f"grid needs search.sampler: grid (with sampler {sampler}, use choice)"
    if sampler == "grid" and not dist.is_categorical:
        return f"the grid sampler needs grid or choice values, not {dist.kind}"
    return None


def _corners(search: Mapping[str, Distribution]) -> list[dict[str, Any]]:
    """Points the study is validated at: all combinations of each key's extremes, or each key's
    extremes one at a time when there are more than ``_MAX_CORNERS`` combinations."""
    keys = list(search)
    extremes = [search[key].extremes() for key in keys]
    if math.prod(len(e) for e in extremes) <= _MAX_CORNERS:
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*extremes)]
    return [{key: value} for key, values in zip(keys, extremes, strict=True) for value in values]


def _describe_point(point: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in point.items())


def _blame(
    err: Exception, sources: Mapping[str, str], point: Mapping[str, Any], arm_path: str
) -> tuple[str, str]:
    """Map a ConfigError (``"<dotted key>: what"``) raised at a search point to the YAML path
    that caused it: the searched key first, then where the setting was fixed or defaulted."""
    key, sep, what = str(err).partition(": ")
    if not sep:
        key, what = "", str(err)
    suffix = f" (at {_describe_point(point)})" if point else ""

    def related(keys: Sequence[str]) -> list[str]:
        hits = [k for k in keys if k == key or k.startswith(key + ".")] if key else []
        preferred = _SECTION_CULPRITS.get(key, ())
        return sorted(hits, key=lambda k: preferred.index(k) if k in preferred else len(preferred))

    searched = related(list(point))
    if searched:
        return f"{arm_path}.search.{searched[0]}", what + suffix
    given = related(list(sources))
    if given:
        return sources[given[0]], what + suffix
    return arm_path, str(err) + suffix


def _study_issues(spec: StudySpec) -> list[tuple[str, str]]:
    """Every cross-field problem of a structurally valid spec, as (YAML path, message)."""
    issues: list[tuple[str, str]] = []
    sampler = spec.search.sampler

    base = spec.data.as_settings()
    sources = {key: key for key in base}
    defaults = _flatten(spec.defaults)
    for key in defaults:
        problem = _key_problem(key)
        if problem:
            issues.append((f"defaults.{problem[0]}", problem[1]))
        sources[key] = f"defaults.{key}"
    if issues:
        return list(dict.fromkeys(issues))
    base.update(defaults)
    try:
        TrialConfig.from_dict(base)
    except (ValueError, TypeError) as err:
        return [_blame(err, sources, {}, "defaults")]

    for arm_name, arm in spec.arms.items():
        issues.extend(_arm_issues(spec, arm_name, arm, base, sources))
    if issues:
        return issues

    for arm_name in spec.arms:
        config = spec.arm_config(arm_name)
        for i, objective in enumerate(spec.search.objectives):
            probe = _PROBE_RE.fullmatch(objective.metric.removeprefix("metric."))
            if probe and int(probe.group(1)) not in config.eval.probe_labels:
                issues.append(
                    (
                        f"search.objectives.{i}.metric",
                        f"{objective.metric} needs {probe.group(1)} in eval.probe_labels, but arm "
                        f"{arm_name} has {list(config.eval.probe_labels)}",
                    )
                )
        stopping = spec.search.early_stopping
        searched = spec.arms[arm_name].search
        epochs = config.planned_epochs()
        if stopping and config.train.steps is not None:
            issues.append(
                (
                    "search.early_stopping",
                    f"arm {arm_name} sets train.steps: ASHA counts epochs, whose number then "
                    "depends on the training-set size; size the budget with train.epochs instead",
                )
            )
        elif stopping and "train.epochs" not in searched and stopping.grace_period >= epochs:
            issues.append(
                (
                    "search.early_stopping.grace_period",
                    f"{stopping.grace_period} >= train.epochs {config.train.epochs} of arm "
                    f"{arm_name}: ASHA could never stop a trial early",
                )
            )
        trials = spec.trials_for(arm_name)
        if sampler == "grid" and spec.search.trials_per_arm is not None:
            points = grid_size(searched)
            if points != spec.search.trials_per_arm:
                issues.append(
                    (
                        "search.trials_per_arm",
                        f"the grid of arm {arm_name} has {points} points but trials_per_arm is "
                        f"{spec.search.trials_per_arm}; set it to {points} or leave it out",
                    )
                )
        if spec.confirm.enabled and spec.confirm.top_k > trials:
            issues.append(
                (
                    "confirm.top_k",
                    f"{spec.confirm.top_k} is more than the {trials} search trials of arm "
                    f"{arm_name}",
                )
            )
    if spec.confirm.rank_by is not None and spec.confirm.rank_by not in spec.search.metrics:
        issues.append(
            (
                "confirm.rank_by",
                f"must be one of the objectives ({', '.join(spec.search.metrics)}), "
                f"got {spec.confirm.rank_by!r}",
            )
        )
    # Both loops may name the same path once per arm; keep the first.
    return list(dict.fromkeys(issues))


def _arm_issues(
    spec: StudySpec,
    arm_name: str,
    arm: ArmSpec,
    base: Mapping[str, Any],
    base_sources: Mapping[str, str],
) -> list[tuple[str, str]]:
    arm_path = f"arms.{arm_name}"
    sampler = spec.search.sampler
    issues: list[tuple[str, str]] = []
    fixed = arm.fixed_settings
    for key in fixed:
        problem = _key_problem(key, in_arm=True)
        if problem:
            issues.append((f"{arm_path}.fixed.{problem[0]}", problem[1]))
    for key, dist in arm.search.items():
        key_problem = _key_problem(key, in_arm=True)
        problem = (key_problem and key_problem[1]) or (
            f"{key} is also fixed in this arm; fix it or search it, not both"
            if key in fixed
            else _distribution_problem(key, dist, sampler)
        )
        if problem:
            issues.append((f"{arm_path}.search.{key}", problem))
    if not arm.search and sampler != "grid" and spec.search.seed_policy == "fixed":
        issues.append(
            (
                arm_path,
                "has no search space: with search.seed_policy fixed all its trials would train the "
                "same configuration; add a search space or use seed_policy: per_trial",
            )
        )
    if "train.seed" in arm.search and spec.search.seed_policy == "per_trial":
        issues.append(
            (
                f"{arm_path}.search.train.seed",
                "train.seed is searched, so search.seed_policy must be fixed",
            )
        )
    if issues:
        return list(dict.fromkeys(issues))

    settings = {**base, **fixed}
    sources = {**base_sources, **{key: f"{arm_path}.fixed.{key}" for key in fixed}}
    try:
        TrialConfig.from_dict(settings)
    except (ValueError, TypeError) as err:
        return [_blame(err, sources, {}, arm_path)]

    found: dict[str, str] = {}
    for point in _corners(arm.search):
        try:
            TrialConfig.from_dict({**settings, **point})
        except (ValueError, TypeError) as err:
            path, message = _blame(err, sources, point, arm_path)
            found.setdefault(path, message)  # the first failing point per key is enough
    return list(found.items())


# --------------------------------------------------------------------------------------------
# Plan


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
