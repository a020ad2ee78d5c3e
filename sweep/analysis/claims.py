"""The paper's claims (Zhao, Song, Ermon 2017), checked on one study's numbers.

Each arm is first given a role: *ELBO-like* (alpha = 0, lambda = 1: the plain VAE), *InfoVAE-like*
(divergence weight alpha + lambda - 1 > 0) or *other* (e.g. a beta-VAE with no divergence term).
Then, for every (InfoVAE-like, ELBO-like) pair of arms, on the confirm-phase seeds the verdict
uses:

1. InfoVAE has a lower MMD between q(z) and p(z) than the ELBO;
2. its log det Cov[z] is nearer 0 (compared on |log det Cov| per seed);
3. it keeps more mutual information I(x; z);
4. its latents give a better linear-probe accuracy (one claim per labelled-set size n).

A pair claim *holds* when the InfoVAE arm is better on average and Welch's t-test gives
p < 0.05; it *does not hold* otherwise; it is *not measured* when either arm has fewer than two
completed confirm seeds with that metric. Across all arms, one more claim: the mutual-information
advantage is largest with the most expressive decoder (descriptive: the gap per decoder level,
which needs at least two decoder levels each run by both families).
Every claim carries the numbers it rests on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from sweep import names
from sweep.analysis.descriptive import capacity_label, capacity_levels
from sweep.analysis.formatting import format_number as _fmt
from sweep.analysis.load import flatten_mapping
from sweep.analysis.stats import SIGNIFICANCE_LEVEL, bootstrap_diff_ci, goal_values
from sweep.analysis.verdict import MetricSpec, Verdict, compare, verdict_metrics

LAMBDA_COLUMN = names.param("objective.lambda")
ALPHA_COLUMN = names.param("objective.alpha")

ArmRole = Literal["elbo", "infovae", "other"]
ClaimStatus = Literal["holds", "does not hold", "not measured"]

_ATOL = 1e-9


@dataclass(frozen=True)
class ArmClassification:
    """The role of one arm in the claims and why it was given."""

    arm: str
    role: ArmRole
    reason: str


def _role_from_weights(alpha: float, lam: float) -> ArmRole:
    if abs(alpha) <= _ATOL and abs(lam - 1) <= _ATOL:
        return "elbo"
    if alpha + lam - 1 > _ATOL:
        return "infovae"
    return "other"


def _searched(search: Any, key: str) -> bool:
    if not isinstance(search, Mapping):
        return False
    if key in search:
        return True
    head, _, tail = key.partition(".")
    return isinstance(search.get(head), Mapping) and tail in search[head]


def classify_arm(arm: str, arm_spec: Mapping[str, Any], trials: pd.DataFrame) -> ArmClassification:
    """Give ``arm`` a role from, in order: its trials' ``param.objective.alpha`` and
    ``param.objective.lambda`` (when every trial agrees), the spec's fixed and searched keys,
    then its name ('elbo' / 'info')."""
    rows = trials[trials[names.ARM] == arm] if names.ARM in trials.columns else trials.iloc[0:0]
    if {ALPHA_COLUMN, LAMBDA_COLUMN} <= set(rows.columns) and len(rows):
        weights = rows[[ALPHA_COLUMN, LAMBDA_COLUMN]].astype(float).dropna()
        roles = {_role_from_weights(a, lam) for a, lam in weights.itertuples(index=False)}
        if len(roles) == 1:
            role = roles.pop()
            if role == "elbo":
                return ArmClassification(arm, role, "alpha = 0 and lambda = 1 in every trial")
            if role == "infovae":
                return ArmClassification(arm, role, "alpha + lambda - 1 > 0 in every trial")
            return ArmClassification(arm, role, "alpha + lambda - 1 = 0 (no divergence term)")
    fixed_raw = arm_spec.get("fixed")
    fixed = flatten_mapping(fixed_raw) if isinstance(fixed_raw, Mapping) else {}
    search = arm_spec.get("search")
    if _searched(search, "objective.lambda") or _searched(search, "objective.alpha"):
        return ArmClassification(arm, "infovae", "searches the objective weights")
    if "objective.alpha" in fixed or "objective.lambda" in fixed:
        try:
            alpha = float(fixed.get("objective.alpha", 0.0))
            lam = float(fixed.get("objective.lambda", 1.0))
        except (TypeError, ValueError):
            alpha, lam = math.nan, math.nan
        if not (math.isnan(alpha) or math.isnan(lam)):
            role = _role_from_weights(alpha, lam)
            return ArmClassification(
                arm, role, f"fixed alpha = {alpha:g}, lambda = {lam:g} in the study file"
            )
    lowered = arm.lower()
    if "elbo" in lowered:
        return ArmClassification(arm, "elbo", "name contains 'elbo'")
    if "info" in lowered:
        return ArmClassification(arm, "infovae", "name contains 'info'")
    return ArmClassification(arm, "other", "neither ELBO (alpha=0, lambda=1) nor InfoVAE-like")


@dataclass(frozen=True)
class Claim:
    """One claim checked on this study: a statement, its status and the numbers behind it."""

    statement: str
    status: ClaimStatus
    numbers: str
    infovae_arm: str | None = None
    elbo_arm: str | None = None


def _fmt_p(p: float) -> str:
    if math.isnan(p):
        return "= n/a"
    return "< 1e-6" if p < 1e-6 else f"= {p:.3g}"


_PAIR_CLAIMS: tuple[tuple[str, str], ...] = (
    ("mmd", "InfoVAE has a lower MMD between q(z) and p(z) than the ELBO"),
    ("log_det_cov", "InfoVAE's log det Cov[z] is nearer 0 than the ELBO's"),
    ("mutual_info", "InfoVAE keeps more mutual information I(x; z) than the ELBO"),
)


def _pair_claim(
    statement: str,
    metric: MetricSpec,
    info_arm: str,
    info: np.ndarray,
    elbo_arm: str,
    elbo: np.ndarray,
    mi_cap: float | None = None,
) -> Claim:
    if info.size < 2 or elbo.size < 2:
        return Claim(
            statement,
            "not measured",
            f"{metric.label}: {info_arm} has {info.size} and {elbo_arm} has {elbo.size} "
            "completed confirm seed(s) with this metric; the test needs at least 2 each",
            info_arm,
            elbo_arm,
        )
    result = compare(info_arm, info, elbo_arm, elbo, metric.goal)
    gi, ge = goal_values(info, metric.goal), goal_values(elbo, metric.goal)
    shown = "|log det Cov|" if metric.goal == "zero" else metric.label
    direction = "higher" if metric.goal == "max" else "lower"
    holds = result.better == info_arm and result.significant
    diff = result.difference
    numbers = (
        f"{shown}: {info_arm} {_fmt(float(gi.mean()))} vs {elbo_arm} {_fmt(float(ge.mean()))} "
        f"(n = {info.size}, {elbo.size}); difference {_fmt(diff.estimate)} "
        f"[95% CI {_fmt(diff.low)}, {_fmt(diff.high)}]; Welch p {_fmt_p(result.test.welch_p)}, "
        f"Mann-Whitney p {_fmt_p(result.test.mannwhitney_p)}, "
        f"Hedges' g = {_fmt(result.test.hedges_g)}"
    )
    if metric.key == "mutual_info" and mi_cap is not None:
        top = max(float(info.mean()), float(elbo.mean()))
        if top >= mi_cap - MI_CAP_MARGIN:
            numbers += (
                f"; the estimator's cap is log N = {_fmt(mi_cap)} nats and an arm sits within "
                f"{MI_CAP_MARGIN:g} of it: differences near the cap are invisible to it"
            )
    if not holds:
        if result.better == info_arm:
            numbers += f"; {direction} on average but not significant at {SIGNIFICANCE_LEVEL}"
        elif result.better == elbo_arm:
            numbers += f"; the ELBO arm is {direction}"
        else:
            numbers += "; no difference"
    return Claim(statement, "holds" if holds else "does not hold", numbers, info_arm, elbo_arm)


def check_claims(
    verdict: Verdict | None,
    roles: Sequence[ArmClassification],
    trials: pd.DataFrame,
) -> tuple[Claim, ...]:
    """Check every claim for every (InfoVAE-like, ELBO-like) pair of arms, on the verdict's
    confirm seeds, plus the decoder-expressiveness claim over all completed trials."""
    info_arms = [r.arm for r in roles if r.role == "infovae"]
    elbo_arms = [r.arm for r in roles if r.role == "elbo"]
    metrics = {m.key: m for m in verdict_metrics(trials.columns)}
    probe_keys = [k for k in metrics if k.startswith("probe_acc_")]
    templates: list[tuple[str, str]] = list(_PAIR_CLAIMS[:3]) + [
        (
            key,
            f"InfoVAE's latents give a better linear-probe accuracy than the ELBO's "
            f"({metrics[key].label})",
        )
        for key in probe_keys
    ]
    if not probe_keys:
        templates.append(("probe_acc", "InfoVAE's latents give a better linear-probe accuracy"))
    claims: list[Claim] = []
    missing = _missing_roles(info_arms, elbo_arms)
    cap = _mutual_info_cap(trials)
    for key, statement in templates[:3]:
        claims.extend(
            _claims_for(key, statement, metrics, verdict, info_arms, elbo_arms, missing, cap)
        )
    claims.append(expressive_decoder_claim(trials, roles))
    for key, statement in templates[3:]:
        claims.extend(
            _claims_for(key, statement, metrics, verdict, info_arms, elbo_arms, missing, cap)
        )
    return tuple(claims)


MI_CAP_MARGIN = 0.1  # nats: an arm's mean mutual information this close to log N is "at the cap"


def _mutual_info_cap(trials: pd.DataFrame) -> float | None:
    """The smallest ``metric.mutual_info_cap`` (log N) of the completed trials, if recorded."""
    if names.metric("mutual_info_cap") not in trials.columns:
        return None
    caps = pd.to_numeric(trials[names.metric("mutual_info_cap")], errors="coerce").dropna()
    return float(caps.min()) if len(caps) else None


def _missing_roles(info_arms: list[str], elbo_arms: list[str]) -> str | None:
    if not elbo_arms and not info_arms:
        return "no ELBO-like (alpha = 0, lambda = 1) and no InfoVAE-like arm in this study"
    if not elbo_arms:
        return "no ELBO-like arm (alpha = 0, lambda = 1) in this study"
    if not info_arms:
        return "no InfoVAE-like arm (alpha + lambda - 1 > 0) in this study"
    return None


def _claims_for(
    key: str,
    statement: str,
    metrics: Mapping[str, MetricSpec],
    verdict: Verdict | None,
    info_arms: list[str],
    elbo_arms: list[str],
    missing: str | None,
    mi_cap: float | None = None,
) -> list[Claim]:
    if missing is not None:
        return [Claim(statement, "not measured", missing)]
    if key not in metrics:
        return [
            Claim(statement, "not measured", f"{names.metric(key)} is not in {names.TRIALS_FILE}")
        ]
    metric = metrics[key]
    return [
        _pair_claim(
            statement,
            metric,
            info,
            _samples(verdict, info, metric),
            elbo,
            _samples(verdict, elbo, metric),
            mi_cap,
        )
        for info in info_arms
        for elbo in elbo_arms
    ]


def _samples(verdict: Verdict | None, arm: str, metric: MetricSpec) -> np.ndarray:
    return verdict.samples(arm, metric) if verdict is not None else np.empty(0)


def expressive_decoder_claim(trials: pd.DataFrame, roles: Sequence[ArmClassification]) -> Claim:
    """ "InfoVAE's mutual-information advantage is largest with the most expressive decoder".

    Per decoder level (kind, width, depth; see :func:`capacity_levels`) run by both families,
    gap = mean I(x; z) of InfoVAE-like trials - mean of ELBO-like trials (completed trials;
    confirm phase when it spans two levels, else all phases). Holds when the most expressive
    level has the largest gap and that gap is positive. Descriptive: no test across levels.
    """
    statement = "InfoVAE's mutual-information advantage is largest with the most expressive decoder"
    role_of = {r.arm: r.role for r in roles}
    if names.metric("mutual_info") not in trials.columns:
        return Claim(
            statement,
            "not measured",
            f"{names.metric('mutual_info')} is not in {names.TRIALS_FILE}",
        )
    done = trials[
        (trials[names.STATUS] == names.COMPLETED) & trials[names.metric("mutual_info")].notna()
    ]
    done = done.assign(role=done[names.ARM].map(role_of), level=capacity_levels(done))
    done = done[done["role"].isin(["elbo", "infovae"])]

    def shared_levels(frame: pd.DataFrame) -> list[Any]:
        both = frame.groupby("level")["role"].nunique()
        return sorted(both[both == 2].index)

    pool = done[done[names.PHASE] == names.CONFIRM]
    levels = shared_levels(pool)
    if len(levels) < 2:
        pool = done
        levels = shared_levels(pool)
    if len(levels) < 2:
        return Claim(
            statement,
            "not measured",
            "needs at least two decoder levels (kind / width / depth) each run by both an "
            f"ELBO-like and an InfoVAE-like arm; found {len(levels)}",
        )
    gaps: list[tuple[Any, float, str]] = []
    for level in levels:
        rows = pool[pool["level"] == level]
        info = rows.loc[rows["role"] == "infovae", names.metric("mutual_info")].to_numpy()
        elbo = rows.loc[rows["role"] == "elbo", names.metric("mutual_info")].to_numpy()
        ci = bootstrap_diff_ci(info, elbo, n_resamples=2_000)
        gaps.append(
            (
                level,
                ci.estimate,
                f"{capacity_label(level)}: gap {_fmt(ci.estimate)} "
                f"[95% CI {_fmt(ci.low)}, {_fmt(ci.high)}] (n = {info.size}, {elbo.size})",
            )
        )
    top_gap = gaps[-1][1]
    holds = top_gap > 0 and all(top_gap > g for _, g, _ in gaps[:-1])
    numbers = "MI gap (InfoVAE - ELBO) per decoder level, least to most expressive: " + "; ".join(
        text for _, _, text in gaps
    )
    return Claim(statement, "holds" if holds else "does not hold", numbers)


def reference_arm(roles: Sequence[ArmClassification], arms: Sequence[str]) -> str | None:
    """The arm others are compared to in the verdict: the first ELBO-like arm, else the first."""
    for role in roles:
        if role.role == "elbo":
            return role.arm
    return arms[0] if arms else None


__all__ = [
    "ArmClassification",
    "ArmRole",
    "Claim",
    "ClaimStatus",
    "check_claims",
    "classify_arm",
    "expressive_decoder_claim",
    "reference_arm",
]
