"""The study's verdict and claims, computed once for every rendering (HTML report, export)."""

from __future__ import annotations

from dataclasses import dataclass

from sweep.report.aggregate import Verdict, build_verdict
from sweep.report.claims import (
    ArmClassification,
    Claim,
    check_claims,
    classify_arm,
    reference_arm,
)
from sweep.report.data import StudyData


@dataclass(frozen=True)
class StudyAnalysis:
    """Arm roles, the reference arm, the confirm-phase verdict (None before any completed
    confirm trial), a sentence saying what the verdict rests on, and the paper's claims."""

    roles: tuple[ArmClassification, ...]
    reference: str | None
    verdict: Verdict | None
    verdict_note: str
    claims: tuple[Claim, ...]


def analyse(data: StudyData) -> StudyAnalysis:
    """Classify the arms, build the verdict on the confirm seeds and check the claims."""
    arms, trials = data.arms, data.trials
    roles = tuple(classify_arm(arm, data.arm_specs.get(arm, {}), trials) for arm in arms)
    reference = reference_arm(roles, arms)
    has_confirm = bool(
        len(trials) and ((trials["phase"] == "confirm") & (trials["status"] == "completed")).any()
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
    return StudyAnalysis(roles, reference, verdict, note, check_claims(verdict, roles, trials))


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
