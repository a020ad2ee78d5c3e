"""The paper's claims (Zhao, Song, Ermon 2017), each defined once (:data:`PAPER_CLAIMS`: its
statement and the rule that decides it) and checked on one study's numbers.

Each arm is first given a role: *ELBO-like* (alpha = 0, lambda = 1: the plain VAE),
*InfoVAE-like* (divergence weight alpha + lambda - 1 > 0) or *other* (e.g. a beta-VAE with no
divergence term). The pair claims are checked for every (InfoVAE-like, ELBO-like) pair of arms
on the confirm seeds the verdict uses: lower MMD, log det Cov[z] nearer 0, more mutual
information (on [estimate, rate] intervals), better probe accuracy. A pair claim *holds* when
the InfoVAE arm is better on average and Welch's t-test gives p < 0.05, *does not hold*
otherwise, and is *not measured* when either arm has fewer than two completed confirm seeds
with the metric. Across arms, the information-preference claim compares the MI gap per decoder
level, and the small-data claim the MMD at the smallest training set. A study file's
``claims:`` names the claims it tests. Every claim carries the numbers it rests on.
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
from sweep.analysis.formatting import format_interval, p_phrase
from sweep.analysis.formatting import format_number as _fmt
from sweep.analysis.load import flatten_mapping
from sweep.analysis.stats import (
    SIGNIFICANCE_LEVEL,
    Interval,
    bootstrap_diff_ci,
    bootstrap_mean_ci,
    goal_values,
)
from sweep.analysis.verdict import MetricSpec, Verdict, compare, verdict_metrics

LAMBDA_COLUMN = names.param("objective.lambda")
ALPHA_COLUMN = names.param("objective.alpha")

ArmRole = Literal["elbo", "infovae", "other"]
#: ``not measured``: the numbers a claim needs are missing; ``not measurable``: they are there
#: but cannot decide it (the mutual-information intervals overlap).
ClaimStatus = Literal["holds", "does not hold", "not measured", "not measurable"]

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


#: One of :data:`sweep.names.CLAIM_IDS` (what a study file's ``claims:`` lists).
ClaimId = str


@dataclass(frozen=True)
class PaperClaim:
    """A claim of the paper, defined once: its id (what a study file's ``claims:`` lists), the
    statement, and the rule that decides its verdict on one study, in words."""

    id: ClaimId
    statement: str
    rule: str


PAPER_CLAIMS: tuple[PaperClaim, ...] = (
    PaperClaim(
        "aggregate_mmd",
        "InfoVAE's aggregate posterior q(z) is closer to the prior p(z): a lower MMD",
        "on the confirm seeds, InfoVAE's mean MMD is lower than the ELBO's and Welch's "
        f"two-sided p < {SIGNIFICANCE_LEVEL}",
    ),
    PaperClaim(
        "log_det_cov",
        "InfoVAE's q(z) has the prior's spread: log det Cov[z] nearer 0",
        "on the confirm seeds, InfoVAE's mean |log det Cov[z]| is lower than the ELBO's and "
        f"Welch's two-sided p < {SIGNIFICANCE_LEVEL}",
    ),
    PaperClaim(
        "mutual_info",
        "InfoVAE keeps more information about x in z (mutual information)",
        "each arm's mutual information lies in [estimate, rate] (docs/metrics.md); holds when "
        "the low end of InfoVAE's estimate interval is above the high end of the ELBO's rate "
        "interval, does not hold in the mirror case, and is not measurable when they overlap "
        "(95% bootstrap intervals over the confirm seeds)",
    ),
    PaperClaim(
        "probe_accuracy",
        "InfoVAE's latents give a better linear-probe accuracy with few labels",
        "on the confirm seeds, InfoVAE's mean linear-probe accuracy (per labelled-set size) is "
        f"higher than the ELBO's and Welch's two-sided p < {SIGNIFICANCE_LEVEL}",
    ),
    PaperClaim(
        "information_preference",
        "With an expressive decoder the ELBO stops using z and InfoVAE does not: InfoVAE's "
        "mutual-information advantage is largest with the most expressive decoder",
        "the gap mean I(x; z) of InfoVAE - ELBO per decoder level is positive and largest at "
        "the most expressive level (two levels or more, each run by both)",
    ),
    PaperClaim(
        "small_data",
        "On a small training set InfoVAE's q(z) stays closer to the prior than the ELBO's "
        "(no exploding latent space)",
        "at the smallest data.train_size, InfoVAE's mean MMD over its seeds is lower than the "
        f"ELBO's and Welch's two-sided p < {SIGNIFICANCE_LEVEL}",
    ),
)
CLAIMS_BY_ID: dict[str, PaperClaim] = {claim.id: claim for claim in PAPER_CLAIMS}


@dataclass(frozen=True)
class Claim:
    """One claim checked on this study: a statement, its status and the numbers behind it.

    ``claim_id`` names the paper's claim (:data:`PAPER_CLAIMS`) it tests; ``effect`` is the
    size of the effect in words and numbers (e.g. ``MMD² difference -4.1e-04 [95% CI ...]``),
    empty when nothing was measured.
    """

    statement: str
    status: ClaimStatus
    numbers: str
    infovae_arm: str | None = None
    elbo_arm: str | None = None
    claim_id: ClaimId | None = None
    effect: str = ""


def _interval_text(estimate: float, low: float, high: float) -> str:
    return format_interval(estimate, low, high, template="{estimate} [95% CI {low}, {high}]")


def _pair_claim(
    claim_id: ClaimId,
    statement: str,
    metric: MetricSpec,
    info_arm: str,
    info: np.ndarray,
    elbo_arm: str,
    elbo: np.ndarray,
) -> Claim:
    if info.size < 2 or elbo.size < 2:
        return Claim(
            statement,
            "not measured",
            f"{metric.label}: {info_arm} has {info.size} and {elbo_arm} has {elbo.size} "
            "completed confirm seed(s) with this metric; the test needs at least 2 each",
            info_arm,
            elbo_arm,
            claim_id,
        )
    result = compare(info_arm, info, elbo_arm, elbo, metric.goal)
    gi, ge = goal_values(info, metric.goal), goal_values(elbo, metric.goal)
    shown = "|log det Cov|" if metric.goal == "zero" else metric.label
    direction = "higher" if metric.goal == "max" else "lower"
    holds = result.better == info_arm and result.significant
    diff = result.difference
    difference = _interval_text(diff.estimate, diff.low, diff.high)
    numbers = (
        f"{shown}: {info_arm} {_fmt(float(gi.mean()))} vs {elbo_arm} {_fmt(float(ge.mean()))} "
        f"(n = {info.size}, {elbo.size}); difference {difference}; "
        f"Welch p {p_phrase(result.test.welch_p)}, "
        f"Mann-Whitney p {p_phrase(result.test.mannwhitney_p)}, "
        f"Hedges' g = {_fmt(result.test.hedges_g)}"
    )
    if not holds:
        if result.better == info_arm:
            numbers += f"; {direction} on average but not significant at {SIGNIFICANCE_LEVEL}"
        elif result.better == elbo_arm:
            numbers += f"; the ELBO arm is {direction}"
        else:
            numbers += "; no difference"
    status: ClaimStatus = "holds" if holds else "does not hold"
    effect = f"{shown} difference {difference}, p {p_phrase(result.test.welch_p)}"
    return Claim(statement, status, numbers, info_arm, elbo_arm, claim_id, effect)


#: The rate E_x KL(q(z|x) || p(z)): the high end of each arm's mutual-information interval.
RATE = MetricSpec("kl", "rate E_x KL(q(z|x) || p(z)) [nats]", "max")


def mutual_info_claim(
    statement: str,
    info_arm: str,
    info_estimate: np.ndarray,
    info_rate: np.ndarray,
    elbo_arm: str,
    elbo_estimate: np.ndarray,
    elbo_rate: np.ndarray,
) -> Claim:
    """The mutual-information claim on [estimate, rate] intervals (see :data:`PAPER_CLAIMS`):
    each arm's I(x; z) lies between its estimate (``metric.mutual_info``) and its rate
    (``metric.kl``); 95% bootstrap intervals of both over the confirm seeds."""
    counts = [a.size for a in (info_estimate, info_rate, elbo_estimate, elbo_rate)]
    if min(counts) < 2:
        return Claim(
            statement,
            "not measured",
            f"mutual information and rate: {info_arm} has {min(counts[:2])} and {elbo_arm} "
            f"{min(counts[2:])} completed confirm seed(s) with both; the intervals need at "
            "least 2 each",
            info_arm,
            elbo_arm,
            "mutual_info",
        )
    ie, ir = bootstrap_mean_ci(info_estimate), bootstrap_mean_ci(info_rate)
    ee, er = bootstrap_mean_ci(elbo_estimate), bootstrap_mean_ci(elbo_rate)
    if ie.low > er.high:
        status: ClaimStatus = "holds"
        verdict = f"{info_arm}'s estimate is above {elbo_arm}'s rate"
    elif ee.low > ir.high:
        status = "does not hold"
        verdict = f"{elbo_arm}'s estimate is above {info_arm}'s rate"
    else:
        status = "not measurable"
        verdict = "the intervals overlap: this estimator cannot order the two arms"

    def arm_text(arm: str, estimate: Interval, rate: Interval) -> str:
        return (
            f"{arm} estimate {_interval_text(estimate.estimate, estimate.low, estimate.high)}, "
            f"rate {_interval_text(rate.estimate, rate.low, rate.high)}"
        )

    numbers = (
        f"I(x; z) in [estimate, rate], nats: {arm_text(info_arm, ie, ir)}; "
        f"{arm_text(elbo_arm, ee, er)} (n = {info_estimate.size}, {elbo_estimate.size}); "
        f"{verdict}"
    )
    effect = (
        f"InfoVAE's estimate low end {_fmt(ie.low)} vs the ELBO's rate high end {_fmt(er.high)} "
        "nats"
    )
    return Claim(statement, status, numbers, info_arm, elbo_arm, "mutual_info", effect)


def check_claims(
    verdict: Verdict | None,
    roles: Sequence[ArmClassification],
    trials: pd.DataFrame,
    tested: Sequence[str] | None = None,
) -> tuple[Claim, ...]:
    """Check the paper's claims for every (InfoVAE-like, ELBO-like) pair of arms on the
    verdict's confirm seeds, plus the decoder-expressiveness and small-data claims over all
    completed trials. ``tested``: the claim ids to check (a study file's ``claims:``); None
    checks every claim except ``small_data``, which needs a ``data.train_size`` grid."""
    wanted = set(tested) if tested is not None else set(CLAIMS_BY_ID) - {"small_data"}
    info_arms = [r.arm for r in roles if r.role == "infovae"]
    elbo_arms = [r.arm for r in roles if r.role == "elbo"]
    metrics = {m.key: m for m in verdict_metrics(trials.columns)}
    missing = _missing_roles(info_arms, elbo_arms)
    pairs = [(info, elbo) for info in info_arms for elbo in elbo_arms]
    claims: list[Claim] = []

    def pair_claims(claim_id: ClaimId, key: str, statement: str) -> None:
        if missing is not None:
            claims.append(Claim(statement, "not measured", missing, claim_id=claim_id))
        elif key not in metrics:
            absent = f"{names.metric(key)} is not in {names.TRIALS_FILE}"
            claims.append(Claim(statement, "not measured", absent, claim_id=claim_id))
        else:
            metric = metrics[key]
            for info, elbo in pairs:
                samples = (_samples(verdict, info, metric), _samples(verdict, elbo, metric))
                claims.append(
                    _pair_claim(claim_id, statement, metric, info, samples[0], elbo, samples[1])
                )

    if "aggregate_mmd" in wanted:
        pair_claims("aggregate_mmd", "mmd", CLAIMS_BY_ID["aggregate_mmd"].statement)
    if "log_det_cov" in wanted:
        pair_claims("log_det_cov", "log_det_cov", CLAIMS_BY_ID["log_det_cov"].statement)
    if "mutual_info" in wanted:
        statement = CLAIMS_BY_ID["mutual_info"].statement
        if missing is not None:
            claims.append(Claim(statement, "not measured", missing, claim_id="mutual_info"))
        else:
            estimate = metrics.get("mutual_info", MetricSpec("mutual_info", "", "max"))
            for info, elbo in pairs:
                claims.append(
                    mutual_info_claim(
                        statement,
                        info,
                        _samples(verdict, info, estimate),
                        _samples(verdict, info, RATE),
                        elbo,
                        _samples(verdict, elbo, estimate),
                        _samples(verdict, elbo, RATE),
                    )
                )
    if "information_preference" in wanted:
        claims.append(expressive_decoder_claim(trials, roles))
    if "probe_accuracy" in wanted:
        probe_keys = [k for k in metrics if k.startswith("probe_acc_")]
        for key in probe_keys:
            statement = f"{CLAIMS_BY_ID['probe_accuracy'].statement} ({metrics[key].label})"
            pair_claims("probe_accuracy", key, statement)
        if not probe_keys:
            pair_claims("probe_accuracy", "probe_acc", CLAIMS_BY_ID["probe_accuracy"].statement)
    if "small_data" in wanted:
        claims.append(small_data_claim(trials, roles))
    return tuple(claims)


def _missing_roles(info_arms: list[str], elbo_arms: list[str]) -> str | None:
    if not elbo_arms and not info_arms:
        return "no ELBO-like (alpha = 0, lambda = 1) and no InfoVAE-like arm in this study"
    if not elbo_arms:
        return "no ELBO-like arm (alpha = 0, lambda = 1) in this study"
    if not info_arms:
        return "no InfoVAE-like arm (alpha + lambda - 1 > 0) in this study"
    return None


def _samples(verdict: Verdict | None, arm: str, metric: MetricSpec) -> np.ndarray:
    return verdict.samples(arm, metric) if verdict is not None else np.empty(0)


def _at_the_cap_note(infovae: pd.DataFrame, levels: Sequence[Any]) -> str:
    """A note when InfoVAE's mean I(x; z) estimate reaches the estimator's log N cap (within
    1 %) at some decoder levels: there its MI, and so the gap, can be larger than shown."""
    cap_column = names.metric("mutual_info_cap")
    if cap_column not in infovae.columns or infovae[cap_column].isna().all():
        return ""
    capped = []
    for level in levels:
        rows = infovae[infovae["level"] == level]
        cap = float(rows[cap_column].mean())
        if float(rows[names.metric("mutual_info")].mean()) >= 0.99 * cap:
            capped.append(cap)
    if not capped:
        return ""
    return (
        f". InfoVAE's estimate is at the estimator's cap (log N = {_fmt(max(capped))}) at "
        f"{len(capped)} of {len(levels)} levels: "
        "there its MI, and the gap, can be larger than shown"
    )


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
            claim_id="information_preference",
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
            claim_id="information_preference",
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
    ) + _at_the_cap_note(pool[pool["role"] == "infovae"], levels)
    top = gaps[-1]
    effect = f"MI gap at the most expressive decoder: {top[2]}"
    status: ClaimStatus = "holds" if holds else "does not hold"
    return Claim(statement, status, numbers, claim_id="information_preference", effect=effect)


def small_data_claim(trials: pd.DataFrame, roles: Sequence[ArmClassification]) -> Claim:
    """The small-data claim (:data:`PAPER_CLAIMS`): at the smallest ``data.train_size`` of the
    completed trials, the InfoVAE-like arms' MMD against the ELBO-like arms' (all their
    completed trials at that size, pooled per family)."""
    statement = CLAIMS_BY_ID["small_data"].statement
    size, mmd = names.param("data.train_size"), names.metric("mmd")
    if size not in trials.columns or mmd not in trials.columns:
        reason = f"needs {size} and {mmd} in {names.TRIALS_FILE}"
        return Claim(statement, "not measured", reason, claim_id="small_data")
    role_of = {r.arm: r.role for r in roles}
    done = trials[(trials[names.STATUS] == names.COMPLETED) & trials[size].notna()]
    sizes = pd.to_numeric(done[size], errors="coerce")
    if sizes.nunique() < 2:
        reason = f"needs at least two values of {size}; found {sizes.nunique()}"
        return Claim(statement, "not measured", reason, claim_id="small_data")
    smallest = done[sizes == sizes.min()]
    family = smallest[names.ARM].map(role_of)
    info = smallest.loc[family == "infovae", mmd].to_numpy(dtype=np.float64)
    elbo = smallest.loc[family == "elbo", mmd].to_numpy(dtype=np.float64)
    metric = MetricSpec("mmd", f"MMD² at data.train_size = {sizes.min():g}", "min")
    claim = _pair_claim("small_data", statement, metric, "InfoVAE", info, "ELBO", elbo)
    return Claim(
        claim.statement, claim.status, claim.numbers, claim_id="small_data", effect=claim.effect
    )


def reference_arm(roles: Sequence[ArmClassification], arms: Sequence[str]) -> str | None:
    """The arm others are compared to in the verdict: the first ELBO-like arm, else the first."""
    for role in roles:
        if role.role == "elbo":
            return role.arm
    return arms[0] if arms else None


__all__ = [
    "ArmClassification",
    "CLAIMS_BY_ID",
    "PAPER_CLAIMS",
    "ArmRole",
    "Claim",
    "ClaimId",
    "PaperClaim",
    "ClaimStatus",
    "check_claims",
    "classify_arm",
    "expressive_decoder_claim",
    "mutual_info_claim",
    "small_data_claim",
    "reference_arm",
]
