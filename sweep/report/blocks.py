"""The report's content as plain typed data, between the computations and the HTML writer.

:mod:`sweep.report.sections` fills a :class:`ReportContent`; :mod:`sweep.report.html` turns it into
one HTML page. Text fields hold raw (unescaped) strings: escaping is the writer's job, done once.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

import pandas as pd
import plotly.graph_objects as go

from sweep.analysis.claims import ArmClassification, Claim
from sweep.analysis.study import ConvergenceReport
from sweep.analysis.verdict import Verdict


@dataclass(frozen=True)
class FigureBlock:
    """A Plotly figure with a caption under it."""

    figure: go.Figure
    caption: str = ""


@dataclass(frozen=True)
class NoteBlock:
    """A sentence shown in place of something that could not be drawn, with the reason."""

    text: str


@dataclass(frozen=True)
class ImageBlock:
    """A PNG image (raw bytes, embedded as base64) with a title."""

    title: str
    png: bytes


@dataclass(frozen=True)
class TableBlock:
    """A plain table: ``frame``'s columns and cells are shown as text."""

    frame: pd.DataFrame
    caption: str = ""


Block = FigureBlock | NoteBlock | ImageBlock | TableBlock


@dataclass(frozen=True)
class Section:
    """A titled part of the report; ``anchor`` is its id in the page."""

    title: str
    anchor: str
    blocks: tuple[Block, ...]
    intro: str = ""


#: Longest title part of a figure's file name (the section and number keep names unique).
MAX_STEM_TITLE = 60


def slug(text: str) -> str:
    """``text`` as a file-name part: lower-case ASCII letters, digits and single hyphens
    (HTML entities of escaped study text decoded first); "figure" when nothing is left."""
    words = re.sub(r"[^a-z0-9]+", "-", html.unescape(text).lower()).strip("-")
    return words[:MAX_STEM_TITLE].rstrip("-") or "figure"


def section_figures(section: Section) -> list[tuple[str, FigureBlock]]:
    """The figures of ``section`` in order, each with its file stem
    ``<section anchor>-<nn>-<title slug>``: the name of its static file (``report --figures``)
    and of the SVG the report's toolbar saves. Unique within a report."""
    out: list[tuple[str, FigureBlock]] = []
    for block in section.blocks:
        if isinstance(block, FigureBlock):
            title = block.figure.layout.title.text or ""
            out.append((f"{slug(section.anchor)}-{len(out) + 1:02d}-{slug(title)}", block))
    return out


@dataclass(frozen=True)
class Header:
    """Section 1: what was run, how much of it, where and with which libraries."""

    study: str
    description: str
    dataset: str
    roles: tuple[ArmClassification, ...]
    arm_settings: dict[str, str]
    counts: pd.DataFrame
    status_totals: dict[str, int]
    compute_seconds: float
    hardware: pd.DataFrame
    versions: dict[str, str]
    objectives: str


@dataclass(frozen=True)
class ReportContent:
    """Everything the HTML page shows, top to bottom."""

    title: str
    generated_at: str
    #: Built while the study's driver runs (it holds the study's lock).
    partial: bool
    header: Header
    verdict: Verdict | None
    verdict_note: str
    claims: tuple[Claim, ...]
    sections: tuple[Section, ...]
    failures: pd.DataFrame
    warnings: tuple[str, ...] = field(default_factory=tuple)
    convergence: ConvergenceReport | None = None
    #: Trials of the study's plan not recorded yet (:func:`sweep.plan.trials_left`).
    trials_left: int = 0
