"""The study's pydantic models: one frozen, validated :class:`StudySpec` per study file.

Each section of the YAML format (see :mod:`sweep.spec`) is a frozen model that refuses unknown
keys; field validators check each value, model validators the rules between the fields of a
section, and :class:`StudySpec` the rules across sections (:func:`sweep.spec.checks.study_issues`).
:meth:`StudySpec.from_yaml_text` and :func:`load_study` read a file into a spec; its methods
give what the runner needs per arm (settings, TrialConfig, seeds, Optuna space and sampler).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import optuna
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from infovae_core.config import Binarization, DatasetName, TrialConfig
from sweep.analysis.convergence import DEFAULT_CONVERGENCE_METRIC, DEFAULT_CONVERGENCE_TOLERANCE
from sweep.names import CLAIM_IDS, METRIC, METRIC_NAMES, PROBE_ACC, TRAIN, VAL
from sweep.space import (
    Distribution,
    cmaes_available,
    grid_size,
    make_sampler,
    to_optuna_distributions,
)
from sweep.spec.checks import flatten_settings, study_issues
from sweep.spec.spec_errors import StudyIssue, StudySpecError, ValidatorIssues, spec_error
from sweep.spec.yaml import TOO_DEEP, parse_yaml

# mutual_info_cap is log N of the evaluation set: fixed by the data, nothing a search can move.
EVAL_METRICS: tuple[str, ...] = tuple(name for name in METRIC_NAMES if name != "mutual_info_cap")
"""Evaluation metrics (``metric.<name>``) an objective may name; plus ``probe_acc_<n>``."""

# infovae_core.objective.TERM_NAMES, written out so that loading a study never imports torch
# (``validate`` stays fast); tests/sweep/spec/test_spec.py keeps the two equal.
EPOCH_TERMS: tuple[str, ...] = ("loss", "recon", "kl", "divergence", "elbo")
"""Per-epoch loss terms (``train.<term>``, ``val.<term>``) early stopping and the convergence
rule may watch."""

_LARGER_IS_BETTER_TERMS = frozenset({"elbo"})
_PROBE_RE = re.compile(re.escape(PROBE_ACC) + r"([0-9]+)")
_STUDY_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_ARM_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")
_MULTI_OBJECTIVE_SAMPLERS = ("tpe", "random", "grid", "nsga2")

StrictFloat = Annotated[float, Field(strict=True)]
StrictInt = Annotated[int, Field(strict=True)]
Sampler = Literal["tpe", "random", "cmaes", "grid", "nsga2"]
Direction = Literal["minimize", "maximize"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataSpec(_Frozen):
    """The dataset and its options (``TrialConfig.data``)."""

    dataset: DatasetName
    binarize: Binarization = "dynamic"
    seed: StrictInt = 0
    data_dir: str | None = None
    # Whether this run may fetch missing MNIST files (run/resume --no-download): a choice of
    # the machine that runs the study, so never written to the study folder's study.yaml.
    download: bool = Field(default=True, exclude=True)
    train_size: StrictInt | None = None  # checked (>= 2, <= the split) by TrialConfig
    # dataset array: the file, and the seeded split of a file without its own splits (checked
    # by TrialConfig; the file itself is read at validate and run, never when a spec loads).
    path: str | None = None
    val_fraction: StrictFloat = 0.1
    test_fraction: StrictFloat = 0.2

    def as_settings(self) -> dict[str, Any]:
        """Dotted TrialConfig settings: ``{"data.dataset": ..., ...}``."""
        settings = {f"data.{key}": value for key, value in self.model_dump().items()}
        return {**settings, "data.download": self.download}


class ArmSpec(_Frozen):
    """One family compared: fixed TrialConfig settings and its own search space."""

    fixed: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, Distribution] = Field(default_factory=dict)

    @property
    def fixed_settings(self) -> dict[str, Any]:
        """``fixed`` flattened to dotted keys."""
        return flatten_settings(self.fixed)


class ObjectiveSpec(_Frozen):
    """One optimisation objective: an evaluation metric and its direction."""

    metric: str
    direction: Direction

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        name = metric.removeprefix(METRIC)
        probe = _PROBE_RE.fullmatch(name)
        if metric.startswith(METRIC) and probe and probe.group(1) != str(int(probe.group(1))):
            # The evaluation names its column probe_acc_<int>: 0100 would never be found.
            raise ValueError(
                f"{metric!r}: write the number of labels without leading zeros "
                f"({METRIC}{PROBE_ACC}{int(probe.group(1))}), as the evaluation names the metric"
            )
        if metric.startswith(METRIC) and (name in EVAL_METRICS or probe):
            return metric
        allowed = ", ".join(METRIC + m for m in EVAL_METRICS)
        raise ValueError(f"unknown metric {metric!r} (allowed: {allowed}, {METRIC}{PROBE_ACC}<n>)")

    @property
    def mode(self) -> Literal["min", "max"]:
        """Ray Tune's word for the direction."""
        return "min" if self.direction == "minimize" else "max"

    @property
    def probe_labels(self) -> str | None:
        """``<n>`` of ``metric.probe_acc_<n>`` as written (the labelled training latents its
        probe needs in ``eval.probe_labels``); None for other metrics."""
        probe = _PROBE_RE.fullmatch(self.metric.removeprefix(METRIC))
        return probe.group(1) if probe else None


def _epoch_metric(metric: str) -> str:
    """``metric`` if it is a per-epoch column (``val.<term>``/``train.<term>``), else an error
    listing the allowed ones."""
    split, _, term = metric.partition(".")
    if f"{split}." in (TRAIN, VAL) and term in EPOCH_TERMS:
        return metric
    allowed = ", ".join(prefix + t for prefix in (VAL, TRAIN) for t in EPOCH_TERMS)
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
            raise ValidatorIssues(
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
    (:func:`sweep.analysis.convergence.judge_curve`): the curve of ``metric`` and the
    ``tolerance`` on its relative change over the last tenth of training."""

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
    #: ``tpe`` only: condition each suggestion on the arm's latest N trials (None: all). TPE's
    #: time per suggestion grows with the trials it conditions on; this bounds it.
    tpe_window: Annotated[int, Field(strict=True, ge=10)] | None = None
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
        if self.tpe_window is not None and self.sampler != "tpe":
            issues.append(("tpe_window", f"only for sampler tpe, not {self.sampler}"))
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
            raise ValidatorIssues(issues)
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
    """A validated study (see :mod:`sweep.spec` for the YAML format and the rules)."""

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
    #: The paper's claims this study tests (ids of sweep.names.CLAIM_IDS); None: every claim
    #: its arms allow, except small_data.
    claims: tuple[str, ...] | None = None

    @field_validator("claims")
    @classmethod
    def _known_claims(cls, claims: tuple[str, ...] | None) -> tuple[str, ...] | None:
        unknown = [c for c in claims or () if c not in CLAIM_IDS]
        if unknown:
            raise ValueError(
                f"unknown claim(s) {', '.join(map(repr, unknown))}; "
                f"choose from {', '.join(CLAIM_IDS)}"
            )
        if claims is not None and len(set(claims)) != len(claims):
            raise ValueError("a claim is listed twice")
        return claims

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
            raise ValidatorIssues(bad)
        return arms

    @model_validator(mode="after")
    def _cross_checks(self) -> StudySpec:
        issues = study_issues(self)
        if issues:
            raise ValidatorIssues(issues)
        return self

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_yaml_text(cls, text: str, source: str = "<string>") -> StudySpec:
        """Parse and validate YAML text; ``source`` names it in error messages.

        Raises :class:`StudySpecError` listing every problem found with its line.
        """
        try:
            data, lines, issues = parse_yaml(text)
        except RecursionError:  # PyYAML's parser and composer recurse once per nesting level
            raise StudySpecError([StudyIssue(source, None, "", TOO_DEEP)]) from None
        if data is None:
            raise StudySpecError([StudyIssue(source, ln, path, msg) for path, ln, msg in issues])
        try:
            return cls.model_validate(data)
        except RecursionError:
            raise StudySpecError([StudyIssue(source, None, "", TOO_DEEP)]) from None
        except ValidationError as err:
            raise spec_error(err, cls, lines, source) from None

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
        return {**self.data.as_settings(), **flatten_settings(self.defaults), **fixed}

    def arm_config(
        self, arm: str, overrides: Mapping[str, Any] | None = None, seed: int | None = None
    ) -> TrialConfig:
        """The TrialConfig of one trial of ``arm``: data + defaults + fixed + ``overrides``.

        ``overrides``: dotted keys, e.g. :func:`sweep.space.decode_params` of Optuna's params.
        ``seed`` (when not None) sets ``train.seed``. Raises ``ConfigError`` naming the key.
        """
        settings = self.arm_settings(arm)
        settings.update(flatten_settings(dict(overrides or {})))
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
