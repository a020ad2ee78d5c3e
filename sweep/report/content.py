"""The report's content as plain typed data, between the computations and the HTML writer.

:mod:`sweep.report.build` fills a :class:`ReportContent`; :mod:`sweep.report.html` turns it into
one HTML page. Text fields hold raw (unescaped) strings: escaping is the writer's job, done once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import plotly.graph_objects as go

from sweep.report.aggregate import Verdict
from sweep.report.analysis import ConvergenceReport
from sweep.report.claims import ArmClassification, Claim


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
    partial: bool
    header: Header
    verdict: Verdict | None
    verdict_note: str
    claims: tuple[Claim, ...]
    sections: tuple[Section, ...]
    failures: pd.DataFrame
    warnings: tuple[str, ...] = field(default_factory=tuple)
    convergence: ConvergenceReport | None = None
