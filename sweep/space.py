"""Search spaces: the ``search:`` distributions of a study arm, and their Optuna form.

A study arm searches over dotted :class:`~infovae_core.config.TrialConfig` keys, each with one
distribution written as a one-key mapping in YAML::

    objective.lambda: {log_uniform: {low: 1, high: 10000}}  # log-uniform on [low, high], low > 0
    objective.alpha: {uniform: {low: 0, high: 1}}           # uniform on [low, high]
    model.latent_dim: {int: {low: 2, high: 32, log: true}}  # integers low..high (step, log: opt.)
    objective.kernel: {choice: [rbf, imq]}                  # one of the listed values
    objective.scales: {choice: [[1.0], [0.5, 1.0, 2.0]]}    # values may be lists of scalars
    train.seed: {grid: [0, 1, 2]}                           # grid axis (sampler: grid only)

Optuna's categorical and grid values must be hashable primitives, so list values travel through
Optuna as JSON strings (``"[0.5, 1.0, 2.0]"``); :func:`decode_params` turns sampled parameters
back into TrialConfig values. No TrialConfig string setting starts with ``[``, and string choice
values starting with ``[`` are refused, so the encoding is unambiguous.

Typical use by a runner::

    space = to_optuna_distributions(arm.search)          # dotted key -> optuna distribution
    sampler = make_sampler(spec.search, arm_index, arm.search)
    ...
    config = spec.arm_config(arm_name, decode_params(trial.params))
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import optuna
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

if TYPE_CHECKING:
    from sweep.spec import SearchSpec

__all__ = [
    "AskTellGridSampler",
    "Bounds",
    "Distribution",
    "DistributionKind",
    "IntBounds",
    "LogBounds",
    "cmaes_available",
    "decode_params",
    "decode_value",
    "encode_value",
    "grid_points",
    "grid_size",
    "grid_space",
    "make_sampler",
    "sampler_seed",
    "to_optuna_distributions",
]

DistributionKind = Literal["uniform", "log_uniform", "int", "choice", "grid"]
_KINDS: tuple[DistributionKind, ...] = ("uniform", "log_uniform", "int", "choice", "grid")

# YAML numbers are exact types: a float field accepts an int (1 -> 1.0) but no bool or string.
StrictFloat = Annotated[float, Field(strict=True)]
StrictInt = Annotated[int, Field(strict=True)]

Scalar = str | int | float | bool | None


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Bounds(_Frozen):
    """A closed interval ``[low, high]`` with ``low < high`` (for ``uniform``)."""

    low: StrictFloat
    high: StrictFloat

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("low and high must be finite")
        if not self.low < self.high:
            raise ValueError(
                f"low must be < high, got low={self.low:g}, high={self.high:g} "
                "(for a single value use the arm's fixed settings)"
            )
        return self


class LogBounds(Bounds):
    """``[low, high]`` sampled log-uniformly: density proportional to 1/x, so ``low > 0``."""

    @field_validator("low")
    @classmethod
    def _positive(cls, low: float) -> float:
        if not low > 0:
            raise ValueError(f"must be > 0 for a log scale, got {low:g}")
        return low


class IntBounds(_Frozen):
    """Integers ``low, low + step, ..., high``; ``log`` samples log-uniformly (needs
    ``low >= 1`` and ``step == 1``, as in Optuna's ``IntDistribution``)."""

    low: StrictInt
    high: StrictInt
    step: StrictInt = 1
    log: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> IntBounds:
        if not self.low < self.high:
            raise ValueError(
                f"low must be < high, got low={self.low}, high={self.high} "
                "(for a single value use the arm's fixed settings)"
            )
        if self.step < 1:
            raise ValueError(f"step must be >= 1, got {self.step}")
        if (self.high - self.low) % self.step:
            raise ValueError(
                f"high - low = {self.high - self.low} must be a multiple of step {self.step}"
            )
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError("log: true needs low >= 1 and step 1")
        return self


def _check_values(values: tuple[Any, ...]) -> tuple[Any, ...]:
    if len(values) == 0:
        raise ValueError("needs at least one value")
    normalised: list[Any] = []
    seen: set[str] = set()
    for value in values:
        if isinstance(value, (list, tuple)):
            if not all(_is_scalar(v) and v is not None for v in value):
                raise ValueError(f"a list value may hold only numbers or strings, got {value!r}")
            value = list(value)
        elif not _is_scalar(value):
            raise ValueError(f"values must be scalars or lists of scalars, got {value!r}")
        elif isinstance(value, str) and value.startswith("["):
            raise ValueError(f"string values may not start with '[', got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"values must be finite, got {value!r}")
        key = json.dumps(value)
        if key in seen:
            raise ValueError(f"duplicate value {value!r}")
        seen.add(key)
        normalised.append(value)
    return tuple(normalised)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


class Distribution(_Frozen):
    """One search distribution; exactly one of the fields is set (YAML: a one-key mapping).

    ``uniform``/``log_uniform`` give floats, ``int`` integers, ``choice``/``grid`` one of the
    listed values (scalars or lists of scalars). ``grid`` is an axis of the grid sampler.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    uniform: Bounds | None = None
    log_uniform: LogBounds | None = None
    int_: IntBounds | None = Field(default=None, alias="int")
    choice: tuple[Any, ...] | None = None
    grid: tuple[Any, ...] | None = None

    @field_validator("choice", "grid")
    @classmethod
    def _values(cls, values: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
        return None if values is None else _check_values(values)

    @model_validator(mode="after")
    def _exactly_one(self) -> Distribution:
        given = [kind for kind in _KINDS if self._field(kind) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one distribution of "
                + ", ".join(_KINDS)
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @model_serializer(mode="wrap")
    def _only_the_set_kind(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # The unset kinds are None; writing them would turn `{choice: [...]}` into five keys.
        return {key: value for key, value in handler(self).items() if value is not None}

    def _field(self, kind: str) -> Any:
        return getattr(self, "int_" if kind == "int" else kind)

    @property
    def kind(self) -> DistributionKind:
        """Which distribution: ``uniform``, ``log_uniform``, ``int``, ``choice`` or ``grid``."""
        return next(kind for kind in _KINDS if self._field(kind) is not None)

    @property
    def is_categorical(self) -> bool:
        """True for ``choice`` and ``grid`` (finite lists of values)."""
        return self.kind in ("choice", "grid")

    @property
    def values(self) -> tuple[Any, ...]:
        """The listed values of a ``choice``/``grid``; raises for numeric ranges."""
        if self.choice is not None:
            return self.choice
        if self.grid is not None:
            return self.grid
        raise ValueError(f"a {self.kind} distribution has no finite list of values")

    def extremes(self) -> tuple[Any, ...]:
        """The values a study is validated at: low and high of a range, else every value."""
        if self.uniform is not None:
            return (self.uniform.low, self.uniform.high)
        if self.log_uniform is not None:
            return (self.log_uniform.low, self.log_uniform.high)
        if self.int_ is not None:
            return (self.int_.low, self.int_.high)
        return self.values

    def describe(self) -> str:
        """Short text for plans, e.g. ``log_uniform[1, 1e+04]`` or ``choice{rbf, imq}``."""
        if self.uniform is not None:
            return f"uniform[{self.uniform.low:g}, {self.uniform.high:g}]"
        if self.log_uniform is not None:
            return f"log_uniform[{self.log_uniform.low:g}, {self.log_uniform.high:g}]"
        if self.int_ is not None:
            extra = (f", step {self.int_.step}" if self.int_.step != 1 else "") + (
                ", log" if self.int_.log else ""
            )
            return f"int[{self.int_.low}, {self.int_.high}{extra}]"
        shown = ", ".join(json.dumps(v) if isinstance(v, list) else str(v) for v in self.values)
        return f"{self.kind}{{{shown}}}"


def encode_value(value: Any) -> Scalar:
    """The Optuna-safe form of a choice/grid value: lists become JSON strings."""
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value))
    return value


def decode_value(value: Any) -> Any:
    """Inverse of :func:`encode_value`: a string starting with ``[`` is parsed as a JSON list."""
    if isinstance(value, str) and value.startswith("["):
        return json.loads(value)
    return value


def decode_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Optuna's sampled params (dotted key -> value) as TrialConfig overrides.

    >>> decode_params({"objective.scales": "[0.5, 1.0, 2.0]", "objective.lambda": 10.0})
    {'objective.scales': [0.5, 1.0, 2.0], 'objective.lambda': 10.0}
    """
    return {key: decode_value(value) for key, value in params.items()}


def to_optuna_distributions(
    search: Mapping[str, Distribution],
) -> dict[str, optuna.distributions.BaseDistribution]:
    """Each dotted key's distribution as an Optuna distribution (same keys, same order).

    ``uniform`` -> ``FloatDistribution(low, high)``, ``log_uniform`` -> ``FloatDistribution(low,
    high, log=True)``, ``int`` -> ``IntDistribution(low, high, log, step)``, ``choice``/``grid``
    -> ``CategoricalDistribution`` of the encoded values (:func:`encode_value`).
    """
    converted: dict[str, optuna.distributions.BaseDistribution] = {}
    for key, dist in search.items():
        if dist.uniform is not None:
            converted[key] = optuna.distributions.FloatDistribution(
                dist.uniform.low, dist.uniform.high
            )
        elif dist.log_uniform is not None:
            converted[key] = optuna.distributions.FloatDistribution(
                dist.log_uniform.low, dist.log_uniform.high, log=True
            )
        elif dist.int_ is not None:
            converted[key] = optuna.distributions.IntDistribution(
                dist.int_.low, dist.int_.high, log=dist.int_.log, step=dist.int_.step
            )
        else:
            converted[key] = optuna.distributions.CategoricalDistribution(
                [encode_value(v) for v in dist.values]
            )
    return converted


def _require_categorical(search: Mapping[str, Distribution]) -> None:
    numeric = [key for key, dist in search.items() if not dist.is_categorical]
    if numeric:
        raise ValueError(
            f"a grid needs choice/grid distributions only; not for {', '.join(numeric)}"
        )


def grid_space(search: Mapping[str, Distribution]) -> dict[str, list[Scalar]]:
    """The space for ``optuna.samplers.GridSampler``: dotted key -> encoded values."""
    _require_categorical(search)
    return {key: [encode_value(v) for v in dist.values] for key, dist in search.items()}


def grid_size(search: Mapping[str, Distribution]) -> int:
    """Number of grid points: the product of the value counts (1 for an empty space)."""
    _require_categorical(search)
    return math.prod(len(dist.values) for dist in search.values())


def grid_points(search: Mapping[str, Distribution]) -> list[dict[str, Any]]:
    """Every grid point (the cartesian product), as decoded dotted-key overrides.

    Keys keep the study's order and the last key varies fastest; an empty space has one point,
    ``{}``. Values are TrialConfig values (lists stay lists).
    """
    _require_categorical(search)
    keys = list(search)
    return [
        dict(zip(keys, combo, strict=True))
        for combo in itertools.product(*(search[key].values for key in keys))
    ]


def sampler_seed(study_seed: int, arm_index: int) -> int:
    """A 32-bit seed for one arm's sampler, derived from the study's ``search.seed``.

    ``numpy.random.SeedSequence([study_seed, arm_index])`` gives each arm an independent,
    reproducible stream (two arms never share a sequence of suggestions).
    """
    return int(np.random.SeedSequence([study_seed, arm_index]).generate_state(1)[0])


class AskTellGridSampler(optuna.samplers.GridSampler):
    """``GridSampler`` for ask/tell use, as Ray Tune's ``OptunaSearch`` drives it.

    Optuna's grid sampler calls ``Study.stop()`` once the grid is exhausted, which raises
    ``RuntimeError`` outside ``Study.optimize`` (the trial is still recorded, but ``tell``
    fails). Here the runner's trial count (the grid size) ends the search instead.
    """

    def after_trial(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        state: optuna.trial.TrialState,
        values: Sequence[float] | None,
    ) -> None:
        return None


class _RecentTrials:
    """A study as a sampler sees it: every attribute of ``study``, but ``_get_trials`` (through
    which Optuna's TPE reads the history it conditions on) gives the latest ``window`` trials
    only (by number; the trial being sampled is the latest)."""

    def __init__(self, study: optuna.Study, window: int) -> None:
        self._study = study
        self._window = window

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, *args: Any, **kwargs: Any) -> list[optuna.trial.FrozenTrial]:
        return list(self._study._get_trials(*args, **kwargs))[-self._window :]


class RecentTPESampler(optuna.samplers.TPESampler):
    """TPE conditioned on the arm's latest ``window`` trials (``search.tpe_window``).

    TPE's time per suggestion grows with the trials it conditions on (a Parzen estimator over
    each of them, for every suggestion); with a window it stops growing once the arm holds
    ``window`` trials. The window's trials include the best ones only while they are recent.
    """

    def __init__(self, window: int, **options: Any) -> None:
        super().__init__(**options)
        self.window = window

    def infer_relative_search_space(self, study, trial):
        return super().infer_relative_search_space(_RecentTrials(study, self.window), trial)

    def sample_relative(self, study, trial, search_space):
        return super().sample_relative(_RecentTrials(study, self.window), trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        recent = _RecentTrials(study, self.window)
        return super().sample_independent(recent, trial, param_name, param_distribution)


def cmaes_available() -> bool:
    """Whether the ``cmaes`` package that Optuna's ``CmaEsSampler`` imports is installed."""
    return importlib.util.find_spec("cmaes") is not None


def make_sampler(
    search_spec: SearchSpec,
    arm_index: int,
    space: Mapping[str, Distribution] | None = None,
    restart: int = 0,
) -> optuna.samplers.BaseSampler:
    """The seeded Optuna sampler for arm number ``arm_index`` (its position in ``arms``).

    ``space`` (the arm's ``search`` distributions) is required for the grid sampler and used to
    size the start-up phase of the others. Budgets are scaled to ``trials_per_arm`` so that a
    small study still leaves the random start-up phase:

    - ``tpe``: ``TPESampler(n_startup_trials=clip(trials // 4, 2, 10))``; supports several
      objectives. With ``search.tpe_window``: :class:`RecentTPESampler`, conditioned on the
      arm's latest ``tpe_window`` trials.
    - ``random``: ``RandomSampler``.
    - ``cmaes``: ``CmaEsSampler``; choice keys are sampled by a seeded ``RandomSampler``
      (CMA-ES is continuous), without a warning per trial.
    - ``grid``: :class:`AskTellGridSampler` (a ``GridSampler``) over :func:`grid_space`, visit
      order shuffled by the seed.
    - ``nsga2``: ``NSGAIISampler(population_size=clip(trials // 4, 4, 50))``.

    ``restart``: the number of trials the arm's Optuna study already holds when a resumed
    driver builds the sampler. A sampler seeded as at the start would replay its random stream
    from the first draw and suggest the configurations already tried again; a restart seeds it
    from ``(seed, arm, restart)`` instead (still reproducible). The grid sampler keeps its seed:
    it skips the grid points already visited.
    """
    seed = sampler_seed(search_spec.seed, arm_index)
    if restart and search_spec.sampler != "grid":
        entropy = [search_spec.seed, arm_index, restart]
        seed = int(np.random.SeedSequence(entropy).generate_state(1)[0])
    trials = search_spec.trials_per_arm
    if search_spec.sampler == "grid":
        if space is None:
            raise ValueError("the grid sampler needs the arm's search space (space=...)")
        return AskTellGridSampler(grid_space(space), seed=seed)
    if trials is None:  # only the grid sampler may leave trials_per_arm unset
        raise ValueError(f"sampler {search_spec.sampler} needs search.trials_per_arm")
    if search_spec.sampler == "tpe":
        startup = min(10, max(2, trials // 4))
        if search_spec.tpe_window is not None:
            return RecentTPESampler(search_spec.tpe_window, n_startup_trials=startup, seed=seed)
        return optuna.samplers.TPESampler(n_startup_trials=startup, seed=seed)
    if search_spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if search_spec.sampler == "cmaes":
        if not cmaes_available():
            raise ValueError("sampler cmaes needs the cmaes package: pip install cmaes")
        return optuna.samplers.CmaEsSampler(
            seed=seed,
            independent_sampler=optuna.samplers.RandomSampler(seed=seed),
            warn_independent_sampling=False,
        )
    if search_spec.sampler == "nsga2":
        population = min(50, max(4, trials // 4))
        return optuna.samplers.NSGAIISampler(population_size=population, seed=seed)
    raise ValueError(f"unknown sampler {search_spec.sampler!r}")
