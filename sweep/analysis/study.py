"""The one analysis object of a study (:class:`StudyAnalysis`): its convergence, verdict,
claims, leaderboards and grid summaries, each computed once for every output (the HTML report,
``export``, ``show``, ``ls``, ``summary``, ``compare``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from sweep import names
from sweep.analysis.claims import (
    ArmClassification,
    Claim,
    check_claims,
    classify_arm,
    reference_arm,
)
from sweep.analysis.convergence import convergence_summary, describe_rule, trial_convergence
from sweep.analysis.formatting import format_number
from sweep.analysis.grid import (
    DEFAULT_METRICS,
    SearchSettings,
    configuration_summary,
    search_settings,
)
from sweep.analysis.importance import Importances, hyperparameter_importances
from sweep.analysis.latents import BestTrialArtefacts, best_trial_artefacts
from sweep.analysis.leaderboard import Leaderboard, build_leaderboards
from sweep.analysis.load import StudyData, load_study_data
from sweep.analysis.verdict import Verdict, build_verdict
from sweep.plan import trials_left


@dataclass(frozen=True)
class ArmConvergence:
    """Convergence of the confirm runs of one arm that the verdict compares."""

    arm: str
    runs: int
    not_converged: int
    unknown: int


@dataclass(frozen=True)
class ConvergenceReport:
    """Every completed trial judged by :mod:`sweep.analysis.convergence`'s rule, shown beside
    the verdict.

    ``rule``: the rule in words. ``summary``: per arm and phase, the counts of ``converged``,
    ``not_converged`` and ``unknown`` trials and the ``median_relative_change`` (a fraction, NaN
    when none was judged): :func:`sweep.analysis.convergence.convergence_summary`'s table.
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


class StudyAnalysis:
    """Everything the outputs show about one study, each part computed once, on first use.

    ``data`` is the study as read once (:func:`sweep.analysis.load.load_study_data`). Every
    completed trial's convergence is judged once (:attr:`judged`, the study's ``convergence:``
    rule); the arms' roles, the confirm-phase verdict, the paper's claims, the leaderboards and
    the grid summaries are built from it. Renderers take this object and format what it holds.
    """

    def __init__(self, data: StudyData) -> None:
        self.data = data

    @cached_property
    def judged(self) -> pd.DataFrame:
        """Every completed trial judged by :func:`~sweep.analysis.convergence.trial_convergence`
        with the study's metric and tolerance (one row per trial)."""
        metric, tolerance = self.data.convergence
        return trial_convergence(self.data.trials, self.data.epochs, metric, tolerance)

    @cached_property
    def _status_by_trial(self) -> dict[str, str]:
        judged = self.judged
        return dict(zip(judged["trial_id"].astype(str), judged["status"], strict=True))

    def convergence_of(self, trial_id: object) -> str:
        """``converged``, ``not_converged`` or ``unknown`` (also for a trial not judged)."""
        return self._status_by_trial.get(str(trial_id), "unknown")

    def relative_change_of(self, trial_id: object) -> float:
        """The trial's relative change over the last tenth of its epochs (NaN when unknown)."""
        judged = self.judged
        match = judged.loc[judged["trial_id"].astype(str) == str(trial_id), "relative_change"]
        return float(match.iloc[0]) if len(match) else math.nan

    @cached_property
    def roles(self) -> tuple[ArmClassification, ...]:
        data = self.data
        return tuple(
            classify_arm(arm, data.arm_specs.get(arm, {}), data.trials) for arm in data.arms
        )

    @cached_property
    def reference(self) -> str | None:
        return reference_arm(self.roles, self.data.arms)

    @cached_property
    def verdict(self) -> Verdict | None:
        """The confirm-phase verdict; None before any completed confirm trial."""
        trials = self.data.trials
        has_confirm = bool(
            len(trials)
            and (
                (trials[names.PHASE] == names.CONFIRM) & (trials[names.STATUS] == names.COMPLETED)
            ).any()
        )
        if not has_confirm:
            return None
        return build_verdict(trials, self.data.arms, self.data.primary_objective, self.reference)

    @cached_property
    def verdict_note(self) -> str:
        """A sentence saying what the verdict rests on."""
        if self.verdict is None:
            return (
                "No completed confirm-phase trials yet: the verdict needs the confirm runs "
                "(the best configurations re-run with several seeds)."
            )
        return verdict_note(self.verdict, self.reference)

    @cached_property
    def claims(self) -> tuple[Claim, ...]:
        tested = self.data.spec.claims if self.data.spec is not None else None
        return check_claims(self.verdict, self.roles, self.data.trials, tested)

    @cached_property
    def convergence(self) -> ConvergenceReport:
        """The per-arm, per-phase convergence summary and, per arm of the verdict, how many of
        its confirm runs did not converge or are unknown."""
        metric, tolerance = self.data.convergence
        runs: list[ArmConvergence] = []
        for selection in self.verdict.selections if self.verdict is not None else ():
            found = [self.convergence_of(t) for t in selection.trials[names.TRIAL_ID]]
            runs.append(
                ArmConvergence(
                    arm=selection.arm,
                    runs=len(found),
                    not_converged=found.count("not_converged"),
                    unknown=found.count("unknown"),
                )
            )
        return ConvergenceReport(
            describe_rule(metric, tolerance), convergence_summary(self.judged), tuple(runs)
        )

    @property
    def unconverged(self) -> tuple[ArmConvergence, ...]:
        """Arms whose confirm runs in the verdict include one not converged: when not empty,
        the verdict and the claims are drawn from unconverged runs (empty without a verdict)."""
        return self.convergence.unconverged if self.verdict is not None else ()

    @cached_property
    def trials_left(self) -> int:
        """Trials of the study's plan not recorded yet (:func:`sweep.plan.trials_left`); 0 when
        the study file was refused."""
        spec = self.data.spec
        return trials_left(spec, self.data.trials) if spec is not None else 0

    def trials_left_of(self, arm: str) -> int:
        """``arm``'s trials of the plan not recorded yet."""
        spec = self.data.spec
        return trials_left(spec, self.data.trials, [arm]) if spec is not None else 0

    def leaderboards(self, top: int = 5) -> tuple[Leaderboard, ...]:
        """Each arm's best ``top`` completed trials (:mod:`sweep.analysis.leaderboard`); raises
        the loader's error when the study file was refused."""
        return build_leaderboards(self, top)

    @cached_property
    def search_settings(self) -> SearchSettings | None:
        """The settings table of a grid study (None for a search that did not replicate its
        settings over seeds): :func:`sweep.analysis.grid.search_settings`."""
        return search_settings(self.data.trials, self.convergence_of)

    @cached_property
    def importances(self) -> Importances:
        """fANOVA importances of each arm's searched parameters, from the Optuna storage."""
        return hyperparameter_importances(self.data.study_dir, self.data.arms)

    @cached_property
    def best_trial_artefacts(self) -> tuple[BestTrialArtefacts, ...]:
        """Each arm's best trial with its latents and images (its artefacts folder)."""
        return tuple(best_trial_artefacts(self.data, arm) for arm in self.data.arms)

    def grid_summary(
        self,
        by: Sequence[str] | None = None,
        metrics: Sequence[str] = DEFAULT_METRICS,
        phases: Sequence[str] = names.PHASES,
    ) -> pd.DataFrame:
        """Per arm and setting: mean and 95% t interval of each metric over the seeds
        (:func:`sweep.analysis.grid.configuration_summary`)."""
        return configuration_summary(self.data.trials, by=by, metrics=metrics, phases=phases)


def analyse(data: StudyData) -> StudyAnalysis:
    """The analysis of a study already read."""
    return StudyAnalysis(data)


def analyse_study(
    folder: Path | str, *, strict: bool = False, check_damage: bool = False
) -> StudyAnalysis:
    """Read a study folder once (:func:`~sweep.analysis.load.load_study_data`; ``strict``: a
    results file the store cannot read is an error, not a warning; ``check_damage``: a damaged
    file is an error naming it) and analyse it."""
    return StudyAnalysis(load_study_data(Path(folder), strict=strict, check_damage=check_damage))


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
