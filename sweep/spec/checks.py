"""A study's settings checked against TrialConfig, at every corner of each arm's search space.

``defaults``, each arm's ``fixed`` and ``search`` name dotted TrialConfig keys: each must be a
settable leaf of TrialConfig, and a searched one must take the distribution's kind of value.
Then every arm's TrialConfig is *built* from ``data`` + ``defaults`` + ``fixed`` at the corners
of its search space (the extremes of each key, all combinations up to ``_MAX_CORNERS``), so a
range TrialConfig refuses somewhere is reported at the YAML path of the key that causes it.
:func:`study_issues` also checks what needs every arm's config: probe sizes of the objectives,
early stopping against the epochs, the grid size against ``trials_per_arm``, ``confirm``.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, get_type_hints

from infovae_core.config import TrialConfig
from sweep.space import grid_size
from sweep.spec.spec_errors import unwrap_annotation

if TYPE_CHECKING:
    from sweep.space import Distribution
    from sweep.spec.study_spec import ArmSpec, StudySpec

__all__ = ["ARM_DATA_KEYS", "flatten_settings", "study_issues"]

#: Data settings an arm may fix or search: they select what a trial trains on from the dataset
#: the runner loads once per study, without changing that dataset.
ARM_DATA_KEYS: frozenset[str] = frozenset({"data.train_size"})
_MAX_CORNERS = 4096  # full product of extremes up to this many TrialConfig builds (~ms each)
# The weight check of ObjectiveConfig names the whole section; these are the keys behind it.
_SECTION_CULPRITS = {"objective": ("objective.lambda", "objective.alpha")}


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


def flatten_settings(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested and dotted settings -> dotted keys (``{"model": {"latent_dim": 8}}`` ->
    ``{"model.latent_dim": 8}``)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_settings(value, dotted + "."))
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
    annotation = unwrap_annotation(annotation)
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


def study_issues(spec: StudySpec) -> list[tuple[str, str]]:
    """Every cross-field problem of a structurally valid spec, as (YAML path, message)."""
    issues: list[tuple[str, str]] = []
    sampler = spec.search.sampler

    base = spec.data.as_settings()
    sources = {key: key for key in base}
    defaults = flatten_settings(spec.defaults)
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
            labels = objective.probe_labels
            if labels is not None and int(labels) not in config.eval.probe_labels:
                issues.append(
                    (
                        f"search.objectives.{i}.metric",
                        f"{objective.metric} needs {labels} in eval.probe_labels, but arm "
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
