"""Small static charts as SVG text: means with their intervals, per category and series, in one
or more panels. Written by hand (no browser, no Kaleido) so that the same numbers always give
the same bytes: the findings page is regenerated and compared in CI."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from sweep.analysis.formatting import format_number

PALETTE: tuple[str, ...] = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
PANEL_WIDTH, PANEL_HEIGHT = 340, 230
_LEFT, _RIGHT, _TOP, _BOTTOM = 84, 12, 30, 46
_LEGEND = 26


@dataclass(frozen=True)
class Series:
    """One series: its name and, per category, ``(category, mean, low, high)`` (NaN bounds:
    the point alone)."""

    name: str
    points: tuple[tuple[str, float, float, float], ...]


@dataclass(frozen=True)
class Panel:
    title: str
    y_label: str
    categories: tuple[str, ...]
    series: tuple[Series, ...]


def _n(x: float) -> str:
    """A coordinate, rounded so that the file does not change with the last bits of a float."""
    return f"{x:.1f}"


def _text(x: float, y: float, text: str, **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<text x="{_n(x)}" y="{_n(y)}"{extra}>{escape(text)}</text>'


def _y_range(panel: Panel) -> tuple[float, float]:
    values = [
        v
        for s in panel.series
        for _, mean, low, high in s.points
        for v in (mean, low, high)
        if math.isfinite(v)
    ]
    if not values:
        return 0.0, 1.0
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.1 or 1.0
    return lo - pad, hi + pad


def _panel(
    panel: Panel, x0: float, y0: float, colors: dict[str, str], panel_width: float
) -> list[str]:
    lo, hi = _y_range(panel)
    width = panel_width - _LEFT - _RIGHT
    height = PANEL_HEIGHT - _TOP - _BOTTOM
    left, top = x0 + _LEFT, y0 + _TOP

    def y_of(v: float) -> float:
        return top + height * (1 - (v - lo) / (hi - lo))

    out = [
        _text(x0 + panel_width / 2, y0 + 18, panel.title, text_anchor="middle", font_weight="600"),
        f'<rect x="{_n(left)}" y="{_n(top)}" width="{_n(width)}" height="{_n(height)}" '
        'fill="none" stroke="#c8ccd4"/>',
    ]
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        y = y_of(v)
        out.append(
            f'<line x1="{_n(left - 4)}" y1="{_n(y)}" x2="{_n(left)}" y2="{_n(y)}" stroke="#888"/>'
        )
        out.append(_text(left - 6, y + 4, format_number(v), text_anchor="end"))
    out.append(
        _text(
            x0 + 12,
            top + height / 2,
            panel.y_label,
            text_anchor="middle",
            transform=f"rotate(-90 {_n(x0 + 12)} {_n(top + height / 2)})",
        )
    )
    slots = max(len(panel.categories), 1)
    step = width / slots
    for i, category in enumerate(panel.categories):
        out.append(
            _text(left + step * (i + 0.5), top + height + 16, category, text_anchor="middle")
        )
    spread = min(step * 0.5, 14 * len(panel.series))
    for j, series in enumerate(panel.series):
        color = colors[series.name]
        offset = 0.0 if len(panel.series) == 1 else spread * (j / (len(panel.series) - 1) - 0.5)
        where = {c: i for i, c in enumerate(panel.categories)}
        line = []
        for category, mean, low, high in series.points:
            if category not in where or not math.isfinite(mean):
                continue
            x = left + step * (where[category] + 0.5) + offset
            if math.isfinite(low) and math.isfinite(high):
                out.append(
                    f'<line x1="{_n(x)}" y1="{_n(y_of(low))}" x2="{_n(x)}" y2="{_n(y_of(high))}" '
                    f'stroke="{color}" stroke-width="2"/>'
                )
            out.append(f'<circle cx="{_n(x)}" cy="{_n(y_of(mean))}" r="4" fill="{color}"/>')
            line.append(f"{_n(x)},{_n(y_of(mean))}")
        if len(line) > 1:
            out.append(
                f'<polyline points="{" ".join(line)}" fill="none" stroke="{color}" '
                'stroke-opacity="0.5"/>'
            )
    return out


def interval_chart(panels: Sequence[Panel], caption: str = "") -> str:
    """Panels side by side, a shared legend of the series above them; returns the SVG text."""
    names: list[str] = []
    for panel in panels:
        for series in panel.series:
            if series.name not in names:
                names.append(series.name)
    # A panel is wide enough for its category labels (about 7 px a character).
    longest = max((len(c) for p in panels for c in p.categories), default=0)
    most = max((len(p.categories) for p in panels), default=1)
    panel_width = max(PANEL_WIDTH, _LEFT + _RIGHT + most * (7 * longest + 16))
    width = max(panel_width * max(len(panels), 1), 2 * PANEL_WIDTH)
    colors = {name: PALETTE[j % len(PALETTE)] for j, name in enumerate(names)}
    legend: list[str] = []
    x, row = 10.0, 0
    for name, color in colors.items():
        step = 24 + 7 * len(name)
        if x + step > width and x > 10:
            x, row = 10.0, row + 1
        y = 13 + 20 * row
        legend.append(f'<circle cx="{_n(x + 5)}" cy="{y}" r="5" fill="{color}"/>')
        legend.append(_text(x + 14, y + 4, name))
        x += step
    top = _LEGEND + 20 * row
    height = PANEL_HEIGHT + top
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f"<title>{escape(caption)}</title>" if caption else "",
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        *legend,
    ]
    for i, panel in enumerate(panels):
        out.extend(_panel(panel, panel_width * i, top, colors, panel_width))
    out.append("</svg>")
    return "\n".join(line for line in out if line) + "\n"
