"""The findings page (``infovae-sweep findings RESULTS_DIR``): docs/findings.md and its SVG
figures, rendered from :func:`sweep.analysis.findings.gather_findings`.

The page is generated from the study folders alone, so the same folders always give the same
bytes: no time stamps, numbers written by :mod:`sweep.analysis.formatting`, seeded intervals.
It is never edited by hand; CI regenerates it and compares.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sweep.analysis.findings import (
    ARM_METRICS,
    ClaimFinding,
    Findings,
    PlannedStudy,
    StudyFindings,
)
from sweep.analysis.formatting import format_interval, format_number
from sweep.atomic_files import atomic_write_text
from sweep.report.svg import Panel, Series, interval_chart

_VERDICT_MARK = {
    "holds": "**holds**",
    "holds in part": "**holds in part**",
    "does not hold": "**does not hold**",
    "not measurable": "not measurable",
    "not run": "not run",
}


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |"]
    lines.append("| " + " | ".join("---" for _ in header) + " |")
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not recorded"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _run_lines(study: StudyFindings) -> list[str]:
    """Hardware, wall time, code and load of a study's runs, from its run record."""
    runs = study.runs
    if not runs:
        return ["- Run record: none in the study folder (no run.json)."]
    first, last = runs[0], runs[-1]
    code = first.get("code") or {}
    commit = str(code.get("commit") or "unknown")[:12]
    clean = {True: "uncommitted changes", False: "clean"}.get(code.get("dirty"), "unknown state")
    cpu = first.get("cpu") or {}
    gpus = ", ".join(first.get("gpus") or []) or "none"
    start = [str((r.get("load_average") or {}).get("start", ["?"])[0]) for r in runs]
    end = [str(((r.get("load_average") or {}).get("end") or ["?"])[0]) for r in runs]
    statuses = ", ".join(str(r.get("status")) for r in runs)
    return [
        f"- Machine: {cpu.get('model', 'unknown CPU')}, {cpu.get('cores', '?')} cores; "
        f"GPUs: {gpus}; {first.get('os', '')}, Python {first.get('python', '?')}, "
        f"torch {(first.get('packages') or {}).get('torch', '?')}.",
        f"- Code: infovae-sweep {code.get('version', '?')} at commit `{commit}` ({clean}).",
        f"- Runs: {len(runs)} ({statuses}), wall time {_duration(study.wall_seconds)} in all, "
        f"from {first.get('started_at', '?')} to {last.get('ended_at') or 'unfinished'}; "
        f"1-minute load average {', '.join(start)} at the start and {', '.join(end)} at the end "
        "of each run.",
    ]


def _command(study: StudyFindings) -> str:
    runs = study.runs
    command = runs[0].get("command") if runs else None
    if isinstance(command, list) and len(command) >= 3 and command[1] in ("run", "resume"):
        return " ".join(str(c) for c in command[:3])
    return f"infovae-sweep run studies/{study.name}.yaml"


def _interval(interval: Any) -> str:
    if interval is None or interval.n == 0:
        return "-"
    return format_interval(interval.estimate, interval.low, interval.high, missing="-")


def _arm_table(study: StudyFindings) -> list[str]:
    shown = [(k, label) for k, label in ARM_METRICS if any(k in a.intervals for a in study.arms)]
    header = ["arm", "n", "converged", *[label for _, label in shown]]
    rows = [
        [
            arm.arm,
            str(arm.runs),
            f"{arm.converged} of {arm.runs}",
            *[_interval(arm.intervals.get(k)) for k, _ in shown],
        ]
        for arm in study.arms
    ]
    return _table(header, rows)


def _settings_tables(study: StudyFindings) -> list[str]:
    out: list[str] = []
    for numbers in study.settings:
        header = [
            "arm",
            numbers.setting_label,
            "n",
            "converged",
            f"{numbers.metric} mean [95% t interval]",
        ]
        rows = [
            [
                row.arm,
                row.setting,
                str(row.n),
                f"{row.converged} of {row.n}",
                format_interval(row.mean, row.low, row.high, missing="-"),
            ]
            for row in numbers.rows
        ]
        out += _table(header, rows)
    return out


def _study_figure(study: StudyFindings) -> str | None:
    """The SVG of a study: MMD and log det Cov[z] per arm for a confirm-phase study, the grid
    metric per setting for a grid study."""
    if study.arms:
        panels = []
        for key, label in (("mmd", "MMD² (q(z) vs p(z))"), ("log_det_cov", "log det Cov[z]")):
            series = tuple(
                Series(
                    arm.arm,
                    ((arm.arm, i.estimate, i.low, i.high),),
                )
                for arm in study.arms
                if (i := arm.intervals.get(key)) is not None and i.n > 0
            )
            if series:
                panels.append(Panel(label, label, tuple(s.name for s in series), series))
        caption = f"{study.name}: confirm-phase mean and 95% bootstrap interval per arm"
        return interval_chart(panels, caption) if panels else None
    panels = []
    for numbers in study.settings:
        settings = tuple(dict.fromkeys(row.setting for row in numbers.rows))
        arms = tuple(dict.fromkeys(row.arm for row in numbers.rows))
        series = tuple(
            Series(
                arm,
                tuple((r.setting, r.mean, r.low, r.high) for r in numbers.rows if r.arm == arm),
            )
            for arm in arms
        )
        panels.append(
            Panel(f"{numbers.metric} by {numbers.setting_label}", numbers.metric, settings, series)
        )
    caption = f"{study.name}: mean and 95% t interval over seeds per setting"
    return interval_chart(panels, caption) if panels else None


def _answer_line(finding: ClaimFinding) -> list[str]:
    head = finding.headline
    if head is None:
        where, effect = "no shipped study tests it", ""
    else:
        study, claim = head
        others = len({s.name for s, _ in finding.results}) - 1
        where = f"`{study.name}`" + (f" (and {others} more)" if others > 0 else "")
        effect = claim.effect or claim.numbers
    return [finding.claim.statement, _VERDICT_MARK[finding.verdict], where, effect]


def _not_run_rows(planned: tuple[PlannedStudy, ...]) -> list[list[str]]:
    return [
        [
            f"`studies/{p.file}`",
            p.description,
            f"{p.trials} trials, at most {format_number(p.epoch_budget)} epochs, "
            + (f"{format_number(p.gpu_per_trial)} GPU per trial" if p.gpu_per_trial else "CPU"),
        ]
        for p in planned
    ]


def render_findings(findings: Findings, figures_dir_name: str) -> tuple[str, dict[str, str]]:
    """The Markdown page and its figures (file name -> SVG text)."""
    figures: dict[str, str] = {}
    lines = [
        "# Findings: does InfoVAE beat the ELBO, and where?",
        "",
        "Generated by `infovae-sweep findings results` from the study folders shipped in",
        "`results/` (each with the driver's run record, `run.json`); not edited by hand. Every",
        "number below can be recomputed from the Parquet files there. Claims of Zhao, Song and",
        "Ermon (2017), each decided by the rule stated with it (`sweep/analysis/claims.py`).",
        "",
        "## The answer",
        "",
    ]
    lines += _table(
        ["claim", "verdict", "study", "effect"], [_answer_line(f) for f in findings.claims]
    )
    for finding in findings.claims:
        lines += [
            f"## {finding.claim.statement}",
            "",
            f"Verdict: {_VERDICT_MARK[finding.verdict]}.",
            "",
            f"Rule: {finding.claim.rule}.",
            "",
        ]
        if not finding.results:
            lines += ["No shipped study tests this claim.", ""]
            continue
        for study, claim in finding.results:
            pair = f" ({claim.infovae_arm} vs {claim.elbo_arm})" if claim.infovae_arm else ""
            lines += [f"### `{study.name}`{pair}: {claim.status}", "", claim.numbers, ""]
    lines += ["## The studies", ""]
    for study in findings.studies:
        lines += [f"### `{study.name}`", "", " ".join(study.analysis.data.description.split()), ""]
        lines += [
            f"- Reproduce: `{_command(study)}` (then `infovae-sweep report results/{study.name}`).",
            *_run_lines(study),
            "",
        ]
        if study.arms:
            lines += [
                "Confirm phase, per arm: mean [95% bootstrap interval] over seeds; "
                "I(x; z) lies between the estimate and the rate (docs/metrics.md).",
                "",
            ]
            lines += _arm_table(study)
        lines += _settings_tables(study)
        svg = _study_figure(study)
        if svg is not None:
            name = f"{study.name}.svg"
            figures[name] = svg
            lines += [f"![{study.name}]({figures_dir_name}/{name})", ""]
    lines += ["## Studies not run yet", ""]
    if findings.not_run:
        lines += ["These study files have no shipped results (most need a GPU cluster):", ""]
        lines += _table(["study", "question", "size"], _not_run_rows(findings.not_run))
    else:
        lines += ["Every study file has shipped results.", ""]
    if findings.refused:
        lines += ["Study files the loader refused:", ""]
        lines += [f"- {_cell(r)}" for r in findings.refused] + [""]
    text = "\n".join(lines).rstrip() + "\n"
    return text, figures


#: The folder of the page's figures, beside the page (the page links them relatively, so the
#: page's bytes do not depend on where it is written).
FIGURES_DIR = "findings"


def write_findings(findings: Findings, out: Path) -> list[Path]:
    """Write the page to ``out`` and its figures to ``findings/`` beside it, atomically;
    figures the page no longer names are removed. Returns the written paths."""
    out = Path(out)
    figures_dir = out.parent / FIGURES_DIR
    page, figures = render_findings(findings, FIGURES_DIR)
    written = []
    if figures:
        figures_dir.mkdir(parents=True, exist_ok=True)
    for name, svg in sorted(figures.items()):
        atomic_write_text(figures_dir / name, svg)
        written.append(figures_dir / name)
    if figures_dir.is_dir():
        for stale in figures_dir.glob("*.svg"):
            if stale.name not in figures:
                stale.unlink()
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, page)
    return [out, *written]


__all__ = ["FIGURES_DIR", "render_findings", "write_findings"]
