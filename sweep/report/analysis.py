"""The study's verdict, claims and convergence, computed once for every rendering (HTML report,
export)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sweep import names
from sweep.convergence import convergence_summary, describe_rule, trial_convergence
from sweep.report.aggregate import Verdict, build_verdict, format_number
from sweep.report.claims import (
    ArmClassification,
    Claim,
    check_claims,
    classify_arm,
    reference_arm,
)
from sweep.report.data import StudyData


@dataclass(frozen=True)
class ArmConvergence:
    """Convergence of the confirm runs of one arm that the verdict compares."""

    arm: str
    runs: int
    not_converged: int
    unknown: int


@dataclass(frozen=True)
class ConvergenceReport:
    """Every completed trial judged by :mod:`sweep.convergence`'s rule, shown beside the verdict.

    ``rule``: the rule in words. ``summary``: per arm and phase, the counts of ``converged``,
    ``not_converged`` and ``unknown`` trials and the ``median_relative_change`` (a fraction, NaN
    when none was judged): :func:`sweep.convergence.convergence_summary`'s table.
    ``verdict_runs``: per arm of the verdict, its confirm runs' judgement; the verdict is *drawn
    from unconverged runs* when any has ``not_converged > 0``.
    """

    rule: str
    summary: pd.DataFrame
    verdict_runs: tuple[ArmConvergence, ...] = ()

    @property
    def table(self) -> pd.DataFrame:
        """``summary`` for display: the median relative change as a percentage string."""
        summary = self.summary
        return pd.DataFrame(
            {
                "arm": summary[names.ARM].astype(str),
                "phase": summary[names.PHASE].astype(str),
                "converged": summary["converged"],
                "not converged": summary["not_converged"],
                "unknown": summary["unknown"],
                "median relative change": [
                    "" if np.isnan(x) else f"{format_number(100 * x)}%"
                    for x in summary["median_relative_change"]
                ],
            }
        )

    @property
    def unconverged(self) -> tuple[ArmConvergence, ...]:
        """Arms of the verdict with at least one confirm run not converged."""
        return tuple(a for a in self.verdict_runs if a.not_converged > 0)

    @property
    def unknown(self) -> tuple[ArmConvergence, ...]:
        """Arms of the verdict with at least one confirm run whose convergence is unknown."""
        return tuple(a for a in self.verdict_runs if a.unknown > 0)


def runs_text(arms: tuple[ArmConvergence, ...], count: str) -> str:
    """``arm: k of n`` per arm, ``count`` naming the attribute counted (``not_converged`` or
    ``unknown``)."""
    return "; ".join(f"{a.arm}: {getattr(a, count)} of {a.runs}" for a in arms)


@dataclass(frozen=True)
class StudyAnalysis:
    """Arm roles, the reference arm, the confirm-phase verdict (None before any completed
    confirm trial), a sentence saying what the verdict rests on, the paper's claims, and the
    convergence of every completed trial (with the verdict's confirm runs judged per arm)."""

    roles: tuple[ArmClassification, ...]
    reference: str | None
    verdict: Verdict | None
    verdict_note: str
    claims: tuple[Claim, ...]
    convergence: ConvergenceReport

    @property
    def unconverged(self) -> tuple[ArmConvergence, ...]:
        """Arms whose confirm runs in the verdict include one not converged: when not empty,
        the verdict and the claims are drawn from unconverged runs (empty without a verdict)."""
        return self.convergence.unconverged if self.verdict is not None else ()


def analyse(data: StudyData) -> StudyAnalysis:
    """Classify the arms, build the verdict on the confirm seeds, check the claims and judge
    every completed trial's convergence (the study's ``convergence:`` rule)."""
    arms, trials = data.arms, data.trials
    roles = tuple(classify_arm(arm, data.arm_specs.get(arm, {}), trials) for arm in arms)
    reference = reference_arm(roles, arms)
    has_confirm = bool(
        len(trials)
        and (
            (trials[names.PHASE] == names.CONFIRM) & (trials[names.STATUS] == names.COMPLETED)
        ).any()
    )
    verdict = (
        build_verdict(trials, arms, data.primary_objective, reference) if has_confirm else None
    )
    if verdict is None:
        note = (
            "No completed confirm-phase trials yet: the verdict needs the confirm runs "
            "(the best configurations re-run with several seeds)."
        )
    else:
        note = verdict_note(verdict, reference)
    claims = check_claims(verdict, roles, trials)
    return StudyAnalysis(roles, reference, verdict, note, claims, convergence_report(data, verdict))


def convergence_report(data: StudyData, verdict: Verdict | None) -> ConvergenceReport:
    """Judge every completed trial (:func:`sweep.convergence.trial_convergence` with the
    study's metric and tolerance): the per-arm, per-phase summary and, per arm of the verdict,
    how many of its confirm runs did not converge or are unknown."""
    metric, tolerance = data.convergence
    judged = trial_convergence(data.trials, data.epochs, metric, tolerance)
    summary = convergence_summary(judged)
    runs: list[ArmConvergence] = []
    if verdict is not None:
        status = dict(zip(judged["trial_id"].astype(str), judged["status"], strict=True))
        for selection in verdict.selections:
            ids = [str(t) for t in selection.trials[names.TRIAL_ID]]
            found = [status.get(t, "unknown") for t in ids]
            runs.append(
                ArmConvergence(
                    arm=selection.arm,
                    runs=len(ids),
                    not_converged=found.count("not_converged"),
                    unknown=found.count("unknown"),
                )
            )
    return ConvergenceReport(describe_rule(metric, tolerance), summary, tuple(runs))


def verdict_note(verdict: Verdict, reference: str | None) -> str:
    """What the verdict rests on: seeds per arm, and the arm differences are taken against."""
    parts = []
    for selection in verdict.selections:
        n = len(selection.trials)
        if selection.n_configs > 1:
            parts.append(
                f"{selection.arm}: {n} seed(s) of the best of {selection.n_configs} confirmed "
                "configurations"
            )
        else:
            parts.append(f"{selection.arm}: {n} seed(s)")
    ref = f" Differences are against {reference}." if reference else ""
    return "Confirm phase, completed runs. " + "; ".join(parts) + "." + ref
