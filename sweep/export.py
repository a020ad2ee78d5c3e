"""Export a study's verdict, claims and leaderboards as CSV, Markdown, LaTeX or JSON.

The numbers are those of the HTML report and of ``infovae-sweep show``: :func:`collect_tables`
takes them from the study's :class:`~sweep.analysis.study.StudyAnalysis` as plain tables, and
one renderer per format writes them.

- ``csv``: one file per table: ``verdict.csv``, ``claims.csv``, ``convergence.csv``,
  ``leaderboard-<arm>.csv``; raw numbers (full precision, empty cell for a missing value).
- ``json``: one document, ``export.json``: ``{"study", "verdict_note", "reference",
  "significance_level", "convergence_rule", "verdict_unconverged", "tables": {name: {"title",
  "note", "columns", "rows": [{column: value}]}}}``; missing values are null.
- ``markdown``: ``export.md``, one pipe table per table, numbers to 4 significant digits.
- ``latex``: ``export.tex``, one booktabs ``tabular`` per table (needs ``\\usepackage{booktabs}``),
  every cell escaped for LaTeX.

Markdown and LaTeX show the verdict in a shorter form for a paper (:func:`display_verdict`:
"mean [CI]" cells, p-values, the best arm); CSV and JSON keep every raw column.

The verdict has one row per (metric, arm): the arm's mean over its confirm seeds with the 95%
percentile-bootstrap CI, and, for arms other than the reference, the difference to the reference
(on ``|x|`` for metrics whose goal is 0) with its CI, Welch's t-test, the Mann-Whitney U test and
Hedges' g; then the metric's best arm and whether it beats every other arm at p < 0.05, and
how many of the arm's confirm runs did not converge or have an unknown convergence.

Convergence (:mod:`sweep.analysis.convergence`, the study's ``convergence:`` rule) as in the
report: the ``convergence`` table counts converged / not converged / unknown trials per arm and
phase with the median relative change (a fraction), each leaderboard has a ``converged``
column, and when a confirm run the verdict compares did not converge the verdict's and the
claims' titles say
"drawn from unconverged runs" (in every format; JSON also has ``verdict_unconverged: true``).
Files are written atomically (temporary file, then rename) after every table is computed.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sweep.analysis.claims import Claim
from sweep.analysis.formatting import (
    Cell,
    format_interval,
    format_p,
    format_value,
    goal_rule,
    plain_value,
)
from sweep.analysis.stats import SIGNIFICANCE_LEVEL
from sweep.analysis.study import (
    ArmConvergence,
    ConvergenceReport,
    StudyAnalysis,
    analyse_study,
    runs_text,
)
from sweep.analysis.verdict import Verdict
from sweep.atomic_files import atomic_write_text

ExportFormat = Literal["csv", "markdown", "latex", "json"]
FORMATS: tuple[str, ...] = ("csv", "markdown", "latex", "json")
EXPORT_DIR = "export"

VERDICT_COLUMNS: tuple[str, ...] = (
    "metric",
    "label",
    "goal",
    "arm",
    "n",
    "mean",
    "ci_low",
    "ci_high",
    "reference",
    "difference",
    "difference_ci_low",
    "difference_ci_high",
    "welch_t",
    "welch_df",
    "welch_p",
    "mannwhitney_u",
    "mannwhitney_p",
    "hedges_g",
    "winner",
    "winner_significant",
    "runs_not_converged",
    "runs_convergence_unknown",
)
CLAIM_COLUMNS: tuple[str, ...] = ("statement", "status", "infovae_arm", "elbo_arm", "numbers")
CONVERGENCE_COLUMNS: tuple[str, ...] = (
    "arm",
    "phase",
    "converged",
    "not_converged",
    "unknown",
    "median_relative_change",
)
UNCONVERGED = "drawn from unconverged runs"


@dataclass(frozen=True)
class Table:
    """A table to export: ``name`` (file stem, JSON key), a title, columns and raw cells, and
    an optional ``note`` shown under the title (Markdown, LaTeX comment, JSON; not in CSV)."""

    name: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    note: str = ""


@dataclass(frozen=True)
class StudyTables:
    """Everything exported for one study."""

    study: str
    verdict_note: str
    reference: str | None
    tables: tuple[Table, ...]
    convergence_rule: str = ""
    verdict_unconverged: bool = False


def _unconverged_title(title: str, unconverged: Sequence[ArmConvergence]) -> str:
    if not unconverged:
        return title
    return f"{title}, {UNCONVERGED} ({runs_text(tuple(unconverged), 'not_converged')})"


def verdict_table(verdict: Verdict | None, convergence: ConvergenceReport | None = None) -> Table:
    """The verdict as one row per (metric, arm); empty before any completed confirm trial.
    With ``convergence``, each row counts the arm's confirm runs not converged / unknown, and
    the title says the verdict is drawn from unconverged runs when any did not converge."""
    runs = {a.arm: a for a in convergence.verdict_runs} if convergence is not None else {}
    rows: list[tuple[Cell, ...]] = []
    for row in verdict.rows if verdict is not None else ():
        comparisons = {c.treatment: c for c in row.comparisons}
        for summary in row.summaries:
            ci = summary.interval
            cells: list[Cell] = [
                row.metric.column,
                row.metric.label,
                row.metric.goal,
                summary.arm,
                ci.n,
                plain_value(ci.estimate),
                plain_value(ci.low),
                plain_value(ci.high),
            ]
            comp = comparisons.get(summary.arm)
            if comp is None:
                cells += [None] * 10
            else:
                cells += [
                    comp.reference,
                    plain_value(comp.difference.estimate),
                    plain_value(comp.difference.low),
                    plain_value(comp.difference.high),
                    plain_value(comp.test.welch_t),
                    plain_value(comp.test.welch_df),
                    plain_value(comp.test.welch_p),
                    plain_value(comp.test.mannwhitney_u),
                    plain_value(comp.test.mannwhitney_p),
                    plain_value(comp.test.hedges_g),
                ]
            cells += [row.winner, row.winner_significant if row.winner is not None else None]
            judged = runs.get(summary.arm)
            cells += [None, None] if judged is None else [judged.not_converged, judged.unknown]
            rows.append(tuple(cells))
    unconverged = convergence.unconverged if convergence is not None and verdict else ()
    title = _unconverged_title("Verdict (confirm phase)", unconverged)
    return Table("verdict", title, VERDICT_COLUMNS, tuple(rows))


def claims_table(claims: Sequence[Claim], unconverged: Sequence[ArmConvergence] = ()) -> Table:
    """The paper's claims checked on this study, with the numbers each rests on (the title
    marked when the verdict they rest on is drawn from unconverged runs)."""
    rows = tuple((c.statement, c.status, c.infovae_arm, c.elbo_arm, c.numbers) for c in claims)
    title = _unconverged_title("Claims of Zhao, Song & Ermon (2017)", unconverged)
    return Table("claims", title, CLAIM_COLUMNS, rows)


def convergence_table(convergence: ConvergenceReport) -> Table:
    """Per arm and phase: converged / not converged / unknown trials and the median relative
    change (a fraction), with the rule in words as the note."""
    rows = tuple(
        (
            str(r.arm),
            str(r.phase),
            int(r.converged),
            int(r.not_converged),
            int(r.unknown),
            plain_value(r.median_relative_change),
        )
        for r in convergence.summary.itertuples(index=False)
    )
    return Table(
        "convergence", "Convergence of the runs", CONVERGENCE_COLUMNS, rows, convergence.rule
    )


def _safe_name(arm: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", arm) or "arm"


def collect_tables(analysis: StudyAnalysis, top: int = 10) -> StudyTables:
    """The verdict, claims, convergence and per-arm leaderboards (``top`` trials) of a study,
    as plain tables. Raises the loader's :class:`~sweep.spec.StudySpecError` when it refused
    the study file (the leaderboards need the study's objectives)."""
    tables = [
        verdict_table(analysis.verdict, analysis.convergence),
        claims_table(analysis.claims, analysis.unconverged),
        convergence_table(analysis.convergence),
    ]
    for board in analysis.leaderboards(top):
        tables.append(
            Table(
                f"leaderboard-{_safe_name(board.arm)}",
                board.title,
                board.columns,
                tuple(tuple(plain_value(v) for v in row) for row in board.values),
            )
        )
    return StudyTables(
        analysis.data.name,
        analysis.verdict_note,
        analysis.reference,
        tuple(tables),
        analysis.convergence.rule,
        bool(analysis.unconverged),
    )


# --------------------------------------------------------------------------- renderings


_ARM_COLUMNS = ("reference", "infovae_arm", "elbo_arm")


def _display(value: Cell, column: str) -> str:
    """A cell for people (Markdown, LaTeX): p-values by :func:`format_p`, other numbers by
    :func:`format_number`; a missing arm is an empty cell, any other missing value n/a."""
    if column.endswith("_p") and isinstance(value, float):
        return format_p(value)
    return format_value(value, missing="" if column in _ARM_COLUMNS else "n/a")


def _interval(estimate: Cell, low: Cell, high: Cell) -> str:
    return format_interval(estimate, low, high)  # type: ignore[arg-type]


def display_verdict(table: Table) -> Table:
    """The verdict for a paper: per (metric, arm) the mean [95% CI], the difference to the
    reference [95% CI], both tests' p-values, Hedges' g and the metric's best arm. Same numbers
    as :func:`verdict_table`, fewer columns, formatted as text."""
    col = {name: i for i, name in enumerate(table.columns)}
    rows = []
    for r in table.rows:
        goal = r[col["goal"]]
        rule = goal_rule(str(goal))
        reference = r[col["reference"]]
        winner = r[col["winner"]]
        best = "none (not measured or tied)" if winner is None else str(winner)
        if winner is not None:
            best += " (p < 0.05 vs all)" if r[col["winner_significant"]] else " (not significant)"
        rows.append(
            (
                f"{r[col['label']]} ({rule})",
                r[col["arm"]],
                r[col["n"]],
                _interval(r[col["mean"]], r[col["ci_low"]], r[col["ci_high"]]),
                "(reference)"
                if reference is None
                else _interval(
                    r[col["difference"]],
                    r[col["difference_ci_low"]],
                    r[col["difference_ci_high"]],
                ),
                "" if reference is None else _display(r[col["welch_p"]], "welch_p"),
                "" if reference is None else _display(r[col["mannwhitney_p"]], "mannwhitney_p"),
                "" if reference is None else _display(r[col["hedges_g"]], "hedges_g"),
                best,
            )
        )
    columns = (
        "metric",
        "arm",
        "n",
        "mean [95% CI]",
        "difference to reference [95% CI]",
        "Welch p",
        "Mann-Whitney p",
        "Hedges' g",
        "best arm",
    )
    return Table(table.name, table.title, columns, tuple(rows))


def _for_people(tables: StudyTables) -> tuple[Table, ...]:
    return tuple(display_verdict(t) if t.name == "verdict" else t for t in tables.tables)


def to_csv(table: Table) -> str:
    """The table as CSV (header row, raw values, empty cells for missing ones)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow(["" if v is None else v for v in row])
    return buffer.getvalue()


def to_json(tables: StudyTables) -> str:
    """All tables as one JSON document (see the module docstring)."""
    document = {
        "study": tables.study,
        "verdict_note": tables.verdict_note,
        "reference": tables.reference,
        "significance_level": SIGNIFICANCE_LEVEL,
        "convergence_rule": tables.convergence_rule,
        "verdict_unconverged": tables.verdict_unconverged,
        "tables": {
            t.name: {
                "title": t.title,
                "note": t.note,
                "columns": list(t.columns),
                "rows": [dict(zip(t.columns, row, strict=True)) for row in t.rows],
            }
            for t in tables.tables
        },
    }
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def _markdown_cell(text: str) -> str:
    return " ".join(text.split()).replace("\\", "\\\\").replace("|", "\\|")


def to_markdown(tables: StudyTables) -> str:
    """All tables as Markdown: a heading and a pipe table each."""
    out = [f"# {_markdown_cell(tables.study)}: ELBO vs InfoVAE", "", tables.verdict_note, ""]
    for table in _for_people(tables):
        out += [f"## {_markdown_cell(table.title)}", ""]
        if table.note:
            out += [" ".join(table.note.split()), ""]
        if not table.rows:
            out += ["(no rows)", ""]
            continue
        out.append("| " + " | ".join(_markdown_cell(c) for c in table.columns) + " |")
        out.append("| " + " | ".join("---" for _ in table.columns) + " |")
        for row in table.rows:
            cells = (
                _markdown_cell(_display(v, c)) for v, c in zip(row, table.columns, strict=True)
            )
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "²": r"\textsuperscript{2}",
    "−": "-",
    "Δ": r"$\Delta$",
}


def latex_escape(text: str) -> str:
    """``text`` as LaTeX text: every special character escaped, whitespace collapsed."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in " ".join(text.split()))


_WIDE = {
    "statement": r"p{0.3\linewidth}",
    "numbers": r"p{0.45\linewidth}",
    "metric": r"p{0.2\linewidth}",
    "best arm": r"p{0.12\linewidth}",
}


def to_latex(tables: StudyTables) -> str:
    """All tables as LaTeX booktabs ``tabular`` environments inside ``table`` floats."""
    out = [
        f"% {latex_escape(tables.study)}: exported by infovae-sweep (needs booktabs)",
        f"% {latex_escape(tables.verdict_note)}",
    ]
    for table in _for_people(tables):
        spec = "".join(_WIDE.get(c, "l") for c in table.columns)
        out += [
            r"\begin{table}[htbp]",
            r"\centering",
            r"\caption{" + latex_escape(table.title) + "}",
            r"\label{tab:" + re.sub(r"[^A-Za-z0-9.-]+", "-", table.name) + "}",
            *([f"% {latex_escape(table.note)}"] if table.note else []),
            r"\begin{tabular}{" + spec + "}",
            r"\toprule",
            " & ".join(latex_escape(c) for c in table.columns) + r" \\",
            r"\midrule",
        ]
        for row in table.rows:
            cells = [latex_escape(_display(v, c)) for v, c in zip(row, table.columns, strict=True)]
            if cells and cells[0].startswith("["):  # else read as the optional argument of \\
                cells[0] = "{}" + cells[0]
            out.append(" & ".join(cells) + r" \\")
        if not table.rows:
            out.append(r"\multicolumn{" + str(len(table.columns)) + r"}{l}{(no rows)} \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)


def render(tables: StudyTables, fmt: ExportFormat) -> dict[str, str]:
    """File name -> text of each file of format ``fmt``."""
    renderers: dict[str, Callable[[], dict[str, str]]] = {
        "csv": lambda: {f"{t.name}.csv": to_csv(t) for t in tables.tables},
        "json": lambda: {"export.json": to_json(tables)},
        "markdown": lambda: {"export.md": to_markdown(tables)},
        "latex": lambda: {"export.tex": to_latex(tables)},
    }
    if fmt not in renderers:
        raise ValueError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    return renderers[fmt]()


def write_export(tables: StudyTables, fmt: ExportFormat, target: Path) -> list[Path]:
    """Write ``tables`` in format ``fmt`` into the folder ``target``.

    Everything is rendered before the first file is written; each file is written atomically.
    Returns the written paths.
    """
    files = render(tables, fmt)
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        atomic_write_text(target / name, text)
        written.append(target / name)
    return written


def export_study(
    folder: Path, fmt: ExportFormat = "csv", out: Path | None = None, top: int = 10
) -> list[Path]:
    """Read and analyse the study in ``folder`` once and write its tables in format ``fmt``
    into ``out`` (default ``folder/export``). Returns the written paths."""
    tables = collect_tables(analyse_study(folder), top=top)
    return write_export(tables, fmt, Path(out) if out is not None else Path(folder) / EXPORT_DIR)


__all__ = [
    "FORMATS",
    "ExportFormat",
    "StudyTables",
    "Table",
    "claims_table",
    "collect_tables",
    "convergence_table",
    "display_verdict",
    "export_study",
    "latex_escape",
    "render",
    "to_csv",
    "to_json",
    "to_latex",
    "to_markdown",
    "verdict_table",
    "write_export",
]
