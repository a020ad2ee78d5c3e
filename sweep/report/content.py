"""The report's content as plain typed data, between the computations and the HTML writer.

:mod:`sweep.report.build` fills a :class:`ReportContent`; :mod:`sweep.report.html` turns it into
one HTML page. Text fields hold raw (unescaped) strings: escaping is the writer's job, done once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import plotly.graph_objects as go

from sweep.report.aggregate import Verdict
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
class ArmConvergence:
    """Convergence of the confirm runs of one arm that the verdict compares."""

    arm: str
    runs: int
    not_converged: int
    unknown: int


@dataclass(frozen=True)
class ConvergenceReport:
    """Every trial judged by :mod:`sweep.convergence`'s rule, shown beside the verdict.

    ``rule``: the rule in words. ``table``: per arm and phase, the counts and the median
    relative change (display strings). ``verdict_runs``: per arm of the verdict, its confirm
    runs' judgement; the verdict is *drawn from unconverged runs* when any has
    ``not_converged > 0``.
    """

    rule: str
    table: pd.DataFrame
    verdict_runs: tuple[ArmConvergence, ...] = ()

    @property
    def unconverged(self) -> tuple[ArmConvergence, ...]:
        """Arms of the verdict with at least one confirm run not converged."""
        return tuple(a for a in self.verdict_runs if a.not_converged > 0)

    @property
    def unknown(self) -> tuple[ArmConvergence, ...]:
        """Arms of the verdict with at least one confirm run whose convergence is unknown."""
        return tuple(a for a in self.verdict_runs if a.unknown > 0)


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
