"""The findings across studies: for each claim of the paper (:data:`PAPER_CLAIMS`), its verdict
on every study folder that tests it, the verdict over all of them, and the numbers behind it.
``infovae-sweep findings`` renders this as docs/findings.md (:mod:`sweep.findings_page`).

Each study folder is analysed once (:class:`~sweep.analysis.study.StudyAnalysis`), so the page
says about a study exactly what its report and ``export`` say. Over studies, a claim:

- *holds* when every study that tests it finds it holds;
- *holds in part* when some find it holds and others do not, or cannot decide it (overlapping
  intervals: ``not measurable``);
- *does not hold* when no study finds it holds and at least one finds it does not;
- *not measurable* when no study can decide it;
- *not run* when no shipped study tests it.

A study that lacks the numbers a claim needs (``not measured``: too few runs, a missing
metric) does not count either way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from sweep import names
from sweep.analysis.claims import CLAIMS_BY_ID, PAPER_CLAIMS, Claim, PaperClaim
from sweep.analysis.descriptive import capacity_label, capacity_levels
from sweep.analysis.stats import Interval, bootstrap_mean_ci, t_interval
from sweep.analysis.study import StudyAnalysis, analyse_study
from sweep.plan import plan_study
from sweep.spec import StudySpec, StudySpecError, load_study
from sweep.store import is_study_folder

OverallVerdict = Literal["holds", "holds in part", "does not hold", "not measurable", "not run"]

#: The confirm-phase metrics shown per arm (the mutual information with its rate, the high end
#: of its interval).
ARM_METRICS: tuple[tuple[str, str], ...] = (
    ("mmd", "MMD²"),
    ("log_det_cov", "log det Cov[z]"),
    ("mutual_info", "I(x; z) estimate"),
    ("kl", "rate"),
    ("nll_iwae", "NLL"),
    ("active_units", "active units"),
)


@dataclass(frozen=True)
class ArmNumbers:
    """One arm's confirm-phase mean and 95% bootstrap interval per metric of
    :data:`ARM_METRICS` (the verdict's selection of runs), and how many of those runs
    converged."""

    arm: str
    intervals: dict[str, Interval]
    runs: int
    converged: int


#: Datasets a headline result is taken from first: the paper's own.
MNIST_DATASETS = frozenset({"mnist"})


@dataclass(frozen=True)
class SettingRow:
    """One arm at one setting of a grid study: the mean and Student-t interval of a metric
    over its ``n`` completed seeds, of which ``converged`` met the study's convergence rule."""

    arm: str
    setting: str
    mean: float
    low: float
    high: float
    n: int
    converged: int


@dataclass(frozen=True)
class SettingNumbers:
    """A grid study's per-setting numbers: ``setting`` (e.g. ``train_size 500`` or a decoder
    level), per arm the mean and Student-t interval of a metric over its seeds."""

    metric: str
    setting_label: str
    rows: tuple[SettingRow, ...]
    """Per arm (sorted by name), its settings in increasing order."""


@dataclass(frozen=True)
class StudyFindings:
    """One shipped study: its analysis, the claims it tests and what its run record says."""

    analysis: StudyAnalysis
    claims: tuple[Claim, ...]
    arms: tuple[ArmNumbers, ...]
    settings: tuple[SettingNumbers, ...]

    @property
    def name(self) -> str:
        return self.analysis.data.name

    @property
    def dataset(self) -> str | None:
        spec = self.analysis.data.spec
        return spec.data.dataset if spec is not None else None

    @property
    def run_record(self) -> dict[str, Any] | None:
        return self.analysis.data.run_record

    @property
    def runs(self) -> list[dict[str, Any]]:
        runs = (self.run_record or {}).get("runs")
        return [r for r in runs if isinstance(r, dict)] if isinstance(runs, list) else []

    @property
    def wall_seconds(self) -> float | None:
        walls = [r.get("wall_seconds") for r in self.runs]
        walls = [w for w in walls if isinstance(w, int | float)]
        return float(sum(walls)) if walls else None


@dataclass(frozen=True)
class ClaimFinding:
    """A claim of the paper over every shipped study that tests it."""

    claim: PaperClaim
    verdict: OverallVerdict
    results: tuple[tuple[StudyFindings, Claim], ...]

    @property
    def headline(self) -> tuple[StudyFindings, Claim] | None:
        """The result the answer line quotes: one that decides the claim the way the verdict
        says (holds for holds and holds in part, does not hold for does not hold), else any;
        among those a study on MNIST, the paper's data, before one on the 8x8 digits, then
        the first by study name."""
        wanted = "does not hold" if self.verdict == "does not hold" else "holds"
        agreeing = [(s, c) for s, c in self.results if c.status == wanted] or list(self.results)
        on_mnist = [(s, c) for s, c in agreeing if s.dataset in MNIST_DATASETS]
        return (on_mnist or agreeing or [None])[0]


@dataclass(frozen=True)
class PlannedStudy:
    """A study file with no shipped results: its question and size."""

    name: str
    file: str
    description: str
    dataset: str
    trials: int
    epoch_budget: int
    gpu_per_trial: float


@dataclass(frozen=True)
class Findings:
    studies: tuple[StudyFindings, ...]
    claims: tuple[ClaimFinding, ...]
    not_run: tuple[PlannedStudy, ...]
    refused: tuple[str, ...]
    """Study files under the studies folder that the loader refused (the reason each)."""


def overall_verdict(statuses: Sequence[str]) -> OverallVerdict:
    """The verdict of a claim over the statuses it got from each study (see module doc); a
    study without the numbers a claim needs (``not measured``) does not count."""
    if not statuses:
        return "not run"
    statuses = [s for s in statuses if s != "not measured"]
    if not statuses:
        return "not measurable"
    holds = sum(s == "holds" for s in statuses)
    fails = sum(s == "does not hold" for s in statuses)
    if holds == len(statuses):
        return "holds"
    if holds:
        return "holds in part"
    if fails:
        return "does not hold"
    return "not measurable"


def _arm_numbers(analysis: StudyAnalysis) -> tuple[ArmNumbers, ...]:
    verdict = analysis.verdict
    if verdict is None:
        return ()
    runs = {r.arm: r for r in analysis.convergence.verdict_runs}
    out = []
    for selection in verdict.selections:
        trials = selection.trials
        intervals = {
            key: bootstrap_mean_ci(trials[names.metric(key)].to_numpy(dtype=np.float64))
            for key, _ in ARM_METRICS
            if names.metric(key) in trials.columns
        }
        judged = runs.get(selection.arm)
        total = judged.runs if judged else len(trials)
        bad = (judged.not_converged + judged.unknown) if judged else total
        out.append(ArmNumbers(selection.arm, intervals, total, total - bad))
    return tuple(out)


def _setting_numbers(analysis: StudyAnalysis, claim_ids: set[str]) -> tuple[SettingNumbers, ...]:
    """Per-setting means over seeds for the grid claims: MI per decoder level
    (information_preference), MMD per training-set size (small_data)."""
    trials = analysis.data.trials
    done = trials[trials[names.STATUS] == names.COMPLETED] if len(trials) else trials
    judged = analysis.judged
    converged = set(judged.loc[judged["status"] == "converged", "trial_id"].astype(str))
    done = done.assign(_converged=done[names.TRIAL_ID].astype(str).isin(converged))
    out = []
    if "information_preference" in claim_ids and names.metric("mutual_info") in done:
        levels = capacity_levels(done)
        out.append(_by_setting(done, levels, "mutual_info", "decoder", capacity_label))
    size = names.param("data.train_size")
    if "small_data" in claim_ids and size in done and names.metric("mmd") in done:
        sizes = pd.to_numeric(done[size], errors="coerce")
        out.append(_by_setting(done, sizes, "mmd", "training images", lambda s: f"{s:g}"))
    return tuple(out)


def _by_setting(
    done: pd.DataFrame, keys: pd.Series, metric: str, label: str, show: Callable[[Any], str]
) -> SettingNumbers:
    rows = []
    column = names.metric(metric)
    frame = done.assign(_key=keys)
    for (arm, key), part in frame.groupby([names.ARM, "_key"], sort=True):
        mean, low, high = t_interval(part[column].to_numpy(dtype=np.float64))
        measured = part[column].notna()
        rows.append(
            SettingRow(
                str(arm),
                show(key),
                mean,
                low,
                high,
                int(measured.sum()),
                int((measured & part["_converged"]).sum()),
            )
        )
    return SettingNumbers(metric, label, tuple(rows))


def study_findings(analysis: StudyAnalysis) -> StudyFindings:
    """The claims a study tests (its ``claims:``; all its checked claims when it names none)
    and the numbers the findings page shows for it."""
    tested = analysis.data.spec.claims if analysis.data.spec is not None else None
    claims = tuple(
        c
        for c in analysis.claims
        if c.claim_id is not None and (tested is None or c.claim_id in tested)
    )
    ids = {c.claim_id for c in claims if c.claim_id}
    return StudyFindings(analysis, claims, _arm_numbers(analysis), _setting_numbers(analysis, ids))


def _planned(path: Path) -> PlannedStudy | str | None:
    """The plan of a study file; the loader's message when it refuses it; None for a template
    on the user's own data (``data.dataset: array``)."""
    try:
        spec: StudySpec = load_study(path)
    except StudySpecError as error:
        return f"{path.name}: {error}"
    if spec.data.dataset == "array":
        return None
    plan = plan_study(spec)
    return PlannedStudy(
        spec.name,
        path.name,
        " ".join(spec.description.split()),
        spec.data.dataset,
        plan.total_trials,
        plan.epoch_budget,
        spec.resources.gpu,
    )


def gather_findings(results_dir: Path, studies_dir: Path | None = None) -> Findings:
    """Analyse every study folder under ``results_dir`` (sorted by name) and set the claims
    side by side; the study files under ``studies_dir`` without a folder are listed as not run.
    Raises :class:`~sweep.store.NotAStudyFolderError` naming a damaged or unreadable folder."""
    folders = sorted(p for p in Path(results_dir).iterdir() if is_study_folder(p))
    studies = tuple(
        study_findings(analyse_study(folder, strict=True, check_damage=True)) for folder in folders
    )
    shipped = {s.name for s in studies}
    not_run: list[PlannedStudy] = []
    refused: list[str] = []
    for path in sorted(Path(studies_dir).glob("*.yaml")) if studies_dir is not None else ():
        planned = _planned(path)
        if isinstance(planned, str):
            refused.append(planned)
        elif planned is not None and planned.name not in shipped:
            not_run.append(planned)
    findings = []
    for paper_claim in PAPER_CLAIMS:
        results = tuple(
            (study, claim)
            for study in studies
            for claim in study.claims
            if claim.claim_id == paper_claim.id
        )
        verdict = overall_verdict([claim.status for _, claim in results])
        findings.append(ClaimFinding(paper_claim, verdict, results))
    return Findings(studies, tuple(findings), tuple(not_run), tuple(refused))


__all__ = [
    "ARM_METRICS",
    "CLAIMS_BY_ID",
    "ArmNumbers",
    "ClaimFinding",
    "Findings",
    "PlannedStudy",
    "SettingNumbers",
    "SettingRow",
    "StudyFindings",
    "gather_findings",
    "overall_verdict",
    "study_findings",
]
