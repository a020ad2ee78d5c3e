"""The only module that writes HTML: :class:`ReportContent` -> one self-contained page.

The page works offline: plotly.js is inlined once in the ``<head>`` (no CDN) and every figure
is a ``<div>`` plus a ``Plotly.newPlot`` call; PNG grids are embedded as base64 data URIs.
Every string from the study (its file, arm names, parameter values, error messages) passes
through :func:`esc` exactly once, here.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Sequence

import pandas as pd
import plotly.graph_objects as go
import plotly.offline

from sweep.analysis.claims import Claim
from sweep.analysis.comparison import (
    MetricComparison,
    StudyComparison,
    StudySide,
    interval_frame,
)
from sweep.analysis.formatting import (
    format_interval,
    format_number,
    format_p,
    format_value,
    goal_rule,
)
from sweep.analysis.stats import Interval
from sweep.analysis.study import ConvergenceReport, runs_text
from sweep.analysis.verdict import MetricVerdict, Verdict
from sweep.report import blocks, figures

#: Longest error message shown per failed trial (the rest is cut, with a note).
MAX_ERROR_CHARS = 5000
#: Most failed trials listed.
MAX_FAILURES = 200
#: Plotly's config for every figure; the toolbar's camera button saves an SVG (for papers)
#: named like the figure's file from ``report --figures`` (:func:`plot_config`).
_PLOT_CONFIG = {"displaylogo": False, "responsive": True}

_CSS = """
:root { --fg:#1d2330; --muted:#5b6475; --line:#d9dde5; --bg:#fafbfc; --ok:#1b7f3b;
        --bad:#b3261e; --na:#6b7280; --warn:#8a5a00; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0; background: #fff; }
main { max-width: 1560px; margin: 0 auto; padding: 0 24px 64px; }
header.top { padding: 24px 0 8px; border-bottom: 1px solid var(--line); }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 21px; margin: 36px 0 8px; padding-top: 8px; border-top: 1px solid var(--line); }
h3 { font-size: 16px; margin: 18px 0 6px; }
.muted { color: var(--muted); } .small { font-size: 13px; }
nav.toc { margin: 10px 0 0; font-size: 14px; } nav.toc a { margin-right: 14px; }
.banner { padding: 10px 14px; border-radius: 6px; margin: 12px 0; font-weight: 600; }
.banner.partial { background: #fff4d6; color: var(--warn); border: 1px solid #f0d48a; }
.banner.warning { background: #fdecea; color: var(--bad); border: 1px solid #f3b8b3;
                  font-weight: 400; }
.banner.unconverged { background: #fdecea; color: var(--bad); border: 1px solid #f3b8b3; }
p.unconverged { color: var(--bad); font-weight: 600; margin: 6px 0; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13.5px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--bg); font-weight: 600; }
#verdict-table td:first-child { min-width: 9em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.scroll { overflow-x: auto; }
/* The verdict table has a column pair per compared arm: it gets the page's whole width, and the
   claims follow it, so no column of the table ever sits under the claims. */
.verdict-grid { display: grid; grid-template-columns: minmax(0, 1fr); gap: 8px; }
#claims .claim-list { display: grid; gap: 0 16px;
                      grid-template-columns: repeat(auto-fill, minmax(min(100%, 520px), 1fr)); }
span.ci { color: var(--muted); font-size: 12px; }
ul.versions { list-style: none; padding: 0; margin: 4px 0; display: flex; flex-wrap: wrap;
              gap: 4px 16px; font-size: 13px; }
.claim { border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; margin: 0 0 8px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff;
         font-size: 12px; font-weight: 700; margin-right: 6px; }
.badge.holds { background: var(--ok); } .badge.does-not-hold { background: var(--bad); }
.badge.not-measured, .badge.not-measurable { background: var(--na); }
.claim .numbers { font-size: 13px; color: var(--muted); margin-top: 4px; }
figure.plot { margin: 12px 0 20px; } figure.plot figcaption, figure.img figcaption {
  font-size: 13px; color: var(--muted); }
.images { display: flex; flex-wrap: wrap; gap: 16px; }
figure.img { margin: 0; width: 260px; } figure.img img { image-rendering: pixelated;
  width: 260px; border: 1px solid var(--line); }
p.note { color: var(--muted); font-style: italic; margin: 6px 0; }
pre.error { white-space: pre-wrap; word-break: break-word; max-height: 16em; overflow: auto;
            margin: 0; font-size: 12px; background: var(--bg); padding: 4px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 8px 0; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; }
"""


def esc(value: object) -> str:
    """HTML-escape any value's text (quotes included, so it is safe in attributes too)."""
    return html.escape("" if value is None else str(value), quote=True)


def fmt_p(p: float) -> str:
    """A p-value (:func:`~sweep.analysis.formatting.format_p`) as HTML."""
    return esc(format_p(p))


def fmt_interval(interval: Interval, *, with_n: bool = True) -> str:
    """``mean [low, high] (n = k)`` as HTML, the interval on a line of its own; "n/a" when
    nothing was measured."""
    if interval.n == 0:
        return "n/a"
    text = format_interval(
        interval.estimate,
        interval.low,
        interval.high,
        template='{estimate}<br><span class="ci">[{low}, {high}]</span>',
    )
    return text if text == "n/a" or not with_n else f"{text} (n = {interval.n})"


def format_duration(seconds: float) -> str:
    """``3725`` -> ``1 h 02 min 05 s``; NaN -> ``n/a``."""
    if seconds is None or math.isnan(seconds):
        return "n/a"
    total = int(round(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min {s:02d} s" if h else f"{m} min {s:02d} s"


def plot_config(filename: str) -> dict[str, object]:
    """Plotly's config of one figure: no logo, responsive, and a toolbar that saves
    ``<filename>.svg``."""
    return {**_PLOT_CONFIG, "toImageButtonOptions": {"format": "svg", "filename": filename}}


def figure_div(figure: go.Figure, div_id: str, filename: str) -> str:
    """One figure as a ``<div>`` and its ``Plotly.newPlot`` call (plotly.js not included)."""
    return figure.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config=plot_config(filename),
        default_height=f"{int(figure.layout.height or 450)}px",
    )


class _PlotIds:
    """Deterministic div ids (plot-1, plot-2, ...) so two builds of one store are identical."""

    def __init__(self) -> None:
        self.count = 0

    def next(self) -> str:
        self.count += 1
        return f"plot-{self.count}"


def page_head(title: str, generator: str, css: str = "") -> str:
    """The page's start up to ``<main>``: the report's style (plus ``css``) and plotly.js
    inlined once, so that the file works offline and never fetches from a CDN."""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f'<meta name="generator" content="{esc(generator)}">',
            f"<title>{esc(title)}</title>",
            f"<style>{_CSS}{css}</style>",
            f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>',
            "</head><body><main>",
        ]
    )


def render_report(content: blocks.ReportContent) -> str:
    """The whole page as a string."""
    ids = _PlotIds()
    parts = [
        page_head(content.title, "infovae-sweep report"),
        _render_top(content),
        _render_header(content.header),
        _render_verdict(content.verdict, content.verdict_note, content.claims, content.convergence),
    ]
    for number, section in enumerate(content.sections, start=3):
        parts.append(_render_section(section, number, ids))
    parts.append(_render_failures(content.failures, 3 + len(content.sections)))
    parts.append("</main></body></html>")
    return "\n".join(parts)


def _render_top(content: blocks.ReportContent) -> str:
    out = [
        '<header class="top">',
        f"<h1>{esc(content.title)}</h1>",
        f'<div class="muted small">Generated {esc(content.generated_at)}</div>',
    ]
    if content.partial:
        out.append(
            '<div class="banner partial" id="partial-banner">Partial results: the study is '
            "still running. Numbers and plots below cover only the trials finished so far."
            "</div>"
        )
    elif content.trials_left:
        left = content.trials_left
        out.append(
            '<div class="banner partial" id="unfinished-banner">Unfinished study: its plan '
            f"still holds {left} trial{'s' if left != 1 else ''} (resume it; a study read "
            "from a mirror may still be running elsewhere). Numbers and plots below cover "
            "only the trials recorded so far.</div>"
        )
    for warning in content.warnings:
        out.append(f'<div class="banner warning">{esc(warning)}</div>')
    links = [("study", "1. Study"), ("verdict", "2. Verdict")]
    for number, section in enumerate(content.sections, start=3):
        links.append((section.anchor, f"{number}. {section.title}"))
    links.append(("failures", f"{3 + len(content.sections)}. Failures"))
    out.append(
        '<nav class="toc">'
        + "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t in links)
        + "</nav>"
    )
    out.append("</header>")
    return "\n".join(out)


def _table(
    columns: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    raw: bool = False,
    numeric: Sequence[bool] | None = None,
    table_id: str | None = None,
) -> str:
    """A table; cells are escaped unless ``raw`` (then the caller escaped them)."""
    numeric = numeric or [False] * len(columns)
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for value, is_num in zip(row, numeric, strict=False):
            text = value if raw else esc(value)
            cls = ' class="num"' if is_num else ""
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    attr = f' id="{esc(table_id)}"' if table_id else ""
    return (
        f'<div class="scroll"><table{attr}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _frame_table(frame: pd.DataFrame) -> str:
    rows = [[_cell(v) for v in row] for row in frame.itertuples(index=False)]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    return _table([str(c) for c in frame.columns], rows, numeric=numeric)


def _cell(value: object) -> str:
    return format_value(value, missing="")


def _render_header(header: blocks.Header) -> str:
    out = ['<section id="study"><h2>1. Study</h2>', '<dl class="meta">']
    meta = [
        ("Study", esc(header.study)),
        ("Dataset", esc(header.dataset)),
        ("Search objective(s)", esc(header.objectives)),
        (
            "Trials",
            esc(", ".join(f"{k}: {v}" for k, v in header.status_totals.items()) or "none yet"),
        ),
        (
            "Total compute time",
            esc(
                f"{format_duration(header.compute_seconds)} "
                "(train + evaluation, summed over trials)"
            ),
        ),
    ]
    if header.description:
        meta.insert(1, ("Description", esc(header.description)))
    out += [f"<dt>{k}</dt><dd>{v}</dd>" for k, v in meta]
    out.append("</dl>")
    out.append("<h3>Arms</h3>")
    role_names = {"elbo": "ELBO-like", "infovae": "InfoVAE-like", "other": "other"}
    if header.roles:
        out.append(
            _table(
                ["arm", "role in the claims", "why", "settings"],
                [
                    [r.arm, role_names[r.role], r.reason, header.arm_settings.get(r.arm, "")]
                    for r in header.roles
                ],
            )
        )
    else:
        out.append('<p class="note">No arms in study.yaml and no trials yet.</p>')
    out.append("<h3>Trials per arm and phase</h3>")
    if header.counts.empty:
        out.append('<p class="note">No trials yet.</p>')
    else:
        out.append(_frame_table(header.counts))
    out.append("<h3>Hardware</h3>")
    out.append(
        '<p class="note">No trials yet.</p>'
        if header.hardware.empty
        else _frame_table(header.hardware)
    )
    out.append("<h3>Library versions</h3>")
    out.append(
        '<ul class="versions">'
        + "".join(
            f"<li><strong>{esc(k)}</strong> {esc(v)}</li>" for k, v in header.versions.items()
        )
        + "</ul>"
    )
    out.append('<p class="muted small">Of the environment that built this report.</p>')
    out.append("</section>")
    return "\n".join(out)


def _verdict_table(verdict: Verdict) -> str:
    columns = ["metric"]
    for arm, selection in zip(verdict.arms, verdict.selections, strict=True):
        columns.append(f"{arm} (n = {len(selection.trials)})")
    comparisons = verdict.rows[0].comparisons if verdict.rows else ()
    for comp in comparisons:
        columns += [
            f"{comp.treatment} − {comp.reference} [95% CI]",
            "p (Welch / Mann-Whitney)",
            "Hedges' g",
        ]
    columns.append("better arm")
    rows = [_verdict_row(row) for row in verdict.rows]
    numeric = [False] + [True] * (len(columns) - 2) + [False]
    return _table(columns, rows, raw=True, numeric=numeric, table_id="verdict-table")


def _verdict_row(row: MetricVerdict) -> list[str]:
    rule = esc(goal_rule(row.metric.goal, "Δ"))
    label = f'{esc(row.metric.label)}<br><span class="muted small">{rule}</span>'
    cells = [label] + [fmt_interval(s.interval, with_n=False) for s in row.summaries]
    for comp in row.comparisons:
        cells += [
            fmt_interval(comp.difference, with_n=False),
            f"{fmt_p(comp.test.welch_p)} / {fmt_p(comp.test.mannwhitney_p)}",
            format_number(comp.test.hedges_g),
        ]
    if row.winner is None:
        cells.append('<span class="muted">none (not measured or tied)</span>')
    elif row.winner_significant:
        cells.append(
            f'<strong>{esc(row.winner)}</strong><br><span class="muted small">'
            "p &lt; 0.05 vs all</span>"
        )
    else:
        cells.append(f'{esc(row.winner)}<br><span class="muted small">not significant</span>')
    return cells


def _render_claim(claim: Claim) -> str:
    status = claim.status.replace(" ", "-")
    pair = ""
    if claim.infovae_arm is not None and claim.elbo_arm is not None:
        pair = (
            f' <span class="muted small">({esc(claim.infovae_arm)} vs {esc(claim.elbo_arm)})</span>'
        )
    return (
        f'<div class="claim" data-status="{esc(claim.status)}">'
        f'<span class="badge {status}">{esc(claim.status)}</span>'
        f"{esc(claim.statement)}{pair}"
        f'<div class="numbers">{esc(claim.numbers)}</div></div>'
    )


def _render_convergence(convergence: ConvergenceReport) -> str:
    out = ['<div id="convergence">', "<h3>Convergence of the runs</h3>"]
    out.append(f'<p class="muted small">{esc(convergence.rule)}</p>')
    if convergence.table.empty:
        out.append('<p class="note">No completed trials to judge yet.</p>')
    else:
        out.append(
            _table(
                [str(c) for c in convergence.table.columns],
                [[_cell(v) for v in row] for row in convergence.table.itertuples(index=False)],
                numeric=[False, False, True, True, True, True],
                table_id="convergence-table",
            )
        )
    out.append("</div>")
    return "\n".join(out)


def _render_verdict(
    verdict: Verdict | None,
    note: str,
    claims: Sequence[Claim],
    convergence: ConvergenceReport | None = None,
) -> str:
    out = ['<section id="verdict"><h2>2. Verdict</h2>']
    unconverged = convergence.unconverged if convergence is not None and verdict else ()
    unknown = convergence.unknown if convergence is not None and verdict else ()
    if unconverged:
        out.append(
            '<div class="banner unconverged" id="unconverged-banner">Verdict drawn from '
            "unconverged runs: confirm runs not converged by the rule below ("
            + esc(runs_text(unconverged, "not_converged"))
            + "). Train longer before reading these differences as final.</div>"
        )
    out += ['<div class="verdict-grid">', "<div>"]
    out.append("<h3>Confirm-phase metrics per arm</h3>")
    out.append(f'<p class="muted small">{esc(note)}</p>')
    if verdict is not None:
        out.append(f'<div class="scroll">{_verdict_table(verdict)}</div>')
        out.append(
            '<p class="muted small">Mean over seeds with a 95% percentile-bootstrap '
            "interval; differences are bootstrapped per arm; Welch's t-test and the "
            "Mann-Whitney U test are two-sided; Hedges' g is the bias-corrected "
            "standardised difference.</p>"
        )
        if unknown:
            out.append(
                '<p class="note">Convergence unknown (too few epochs or no curve) for '
                f"confirm runs of {esc(runs_text(unknown, 'unknown'))}.</p>"
            )
    if convergence is not None:
        out.append(_render_convergence(convergence))
    out.append('</div><div id="claims">')
    out.append("<h3>The paper's claims on these numbers</h3>")
    if unconverged:
        out.append(
            '<p class="unconverged" id="claims-unconverged">These claims are drawn from '
            "unconverged runs ("
            + esc(runs_text(unconverged, "not_converged"))
            + " confirm runs not converged): they may change with longer training.</p>"
        )
    if claims:
        out.append('<div class="claim-list">')
        out.extend(_render_claim(c) for c in claims)
        out.append("</div>")
    else:
        out.append('<p class="note">No claims could be set up.</p>')
    out.append("</div></div></section>")
    return "\n".join(out)


def _render_block(block: blocks.Block, ids: _PlotIds, stems: dict[int, str]) -> str:
    if isinstance(block, blocks.FigureBlock):
        div = figure_div(block.figure, ids.next(), stems.get(id(block), "figure"))
        caption = f"<figcaption>{esc(block.caption)}</figcaption>" if block.caption else ""
        return f'<figure class="plot">{div}{caption}</figure>'
    if isinstance(block, blocks.NoteBlock):
        return f'<p class="note">{esc(block.text)}</p>'
    if isinstance(block, blocks.ImageBlock):
        data = base64.b64encode(block.png).decode("ascii")
        return (
            f'<figure class="img"><img alt="{esc(block.title)}" '
            f'src="data:image/png;base64,{data}"><figcaption>{esc(block.title)}'
            "</figcaption></figure>"
        )
    if isinstance(block, blocks.TableBlock):
        caption = f'<p class="muted small">{esc(block.caption)}</p>' if block.caption else ""
        return _frame_table(block.frame) + caption
    raise TypeError(f"unknown report block {type(block).__name__}")


def _render_section(section: blocks.Section, number: int, ids: _PlotIds) -> str:
    out = [f'<section id="{esc(section.anchor)}"><h2>{number}. {esc(section.title)}</h2>']
    if section.intro:
        out.append(f'<p class="muted">{esc(section.intro)}</p>')
    stems = {id(block): stem for stem, block in blocks.section_figures(section)}
    images: list[str] = []
    for block in section.blocks:
        if isinstance(block, blocks.ImageBlock):
            images.append(_render_block(block, ids, stems))
            continue
        if images:  # consecutive image grids sit side by side
            out.append('<div class="images">' + "".join(images) + "</div>")
            images = []
        out.append(_render_block(block, ids, stems))
    if images:
        out.append('<div class="images">' + "".join(images) + "</div>")
    out.append("</section>")
    return "\n".join(out)


def _render_failures(failures: pd.DataFrame, number: int) -> str:
    out = [f'<section id="failures"><h2>{number}. Failures</h2>']
    if failures.empty:
        out.append('<p class="note">No failed trials.</p></section>')
        return "\n".join(out)
    out.append(f"<p>{len(failures)} failed trial(s).</p>")
    rows = []
    for row in failures.head(MAX_FAILURES).itertuples(index=False):
        error = "" if row.error is None or (isinstance(row.error, float)) else str(row.error)
        cut = ""
        if len(error) > MAX_ERROR_CHARS:
            cut = f'<div class="muted small">({len(error) - MAX_ERROR_CHARS} more characters)</div>'
            error = error[:MAX_ERROR_CHARS]
        seed = (
            ""
            if row.seed is None or (isinstance(row.seed, float) and math.isnan(row.seed))
            else str(int(row.seed))
        )
        rows.append(
            [
                esc(row.arm),
                esc(row.phase),
                esc(row.trial_id),
                seed,
                esc(_cell(row.ended_at)),
                esc(_cell(row.host)),
                f'<pre class="error">{esc(error) or "(no message)"}</pre>{cut}',
            ]
        )
    out.append(
        _table(
            ["arm", "phase", "trial", "seed", "ended", "host", "error"],
            rows,
            raw=True,
            table_id="failures-table",
        )
    )
    if len(failures) > MAX_FAILURES:
        out.append(f'<p class="note">{len(failures) - MAX_FAILURES} more not listed.</p>')
    out.append("</section>")
    return "\n".join(out)


# --------------------------------------------------------------------------- compare page

_COMPARE_CSS = """
td.absent { color: var(--na); font-style: italic; }
td.unconverged, span.unconverged { color: var(--bad); }
"""


def render_comparison(comparison: StudyComparison) -> str:
    """The page of ``infovae-sweep compare``: two studies' confirm-phase metrics side by side,
    in the report's style."""
    a, b = comparison.a, comparison.b
    title = f"{a.name} vs {b.name}: confirm-phase metrics"
    out = [
        page_head(title, "infovae-sweep compare", _COMPARE_CSS),
        '<header class="top">',
        f"<h1>{esc(title)}</h1>",
        f'<div class="muted small">Generated {esc(comparison.generated_at)}</div>',
    ]
    for side in (a, b):
        for warning in side.data.warnings:
            out.append(f'<div class="banner warning">{esc(side.label)}: {esc(warning)}</div>')
    if comparison.unconverged:
        text = "; ".join(
            f"{side.label} {runs.arm}: {runs.not_converged} of {runs.runs}"
            for side, runs in comparison.unconverged
        )
        out.append(
            '<div class="banner unconverged" id="unconverged-banner">Confirm runs not converged '
            f"by their study's rule ({esc(text)}): train longer before reading these "
            "differences as final.</div>"
        )
    out.append("</header>")
    out.append('<section id="studies"><h2>Studies</h2>')
    out.append(
        _table(
            ["", "study", "folder", "dataset", "confirm runs (completed)", "verdict"],
            [
                [
                    side.label,
                    side.name,
                    str(side.data.study_dir),
                    side.data.dataset,
                    str(_confirm_runs(side)),
                    "yes" if side.analysis.verdict is not None else "no completed confirm runs",
                ]
                for side in (a, b)
            ],
            table_id="studies-table",
        )
    )
    out.append("<h3>Settings that differ</h3>")
    if comparison.differences:
        out.append(
            _table(
                ["key", f"A: {a.name}", f"B: {b.name}"],
                [[d.key, d.a, d.b] for d in comparison.differences],
                table_id="differences-table",
            )
        )
    else:
        out.append(
            '<p class="note" id="no-differences">The study files agree on data, defaults, '
            "search, confirm and convergence.</p>"
        )
    out.append(f'<p class="muted small">{esc(comparison.settings_note)}</p>')
    out.append("<h3>Arms</h3>")
    out.append(
        _table(
            ["arm", "in A", "in B"],
            [
                [arm, "yes" if arm in a.arms else "no", "yes" if arm in b.arms else "no"]
                for arm in comparison.arms
            ],
            table_id="arms-table",
        )
    )
    out.append("</section>")
    out.append('<section id="metrics"><h2>Confirm-phase metrics</h2>')
    out.append(
        '<p class="muted small">Per arm and study: the completed confirm runs of the arm\'s '
        "best confirmed configuration (as in each study's report), mean with a 95% "
        "percentile-bootstrap interval (n = runs). B − A: difference of the means with its "
        "bootstrap interval, Welch's t-test and Mann-Whitney U (two-sided); on |x| for "
        "metrics whose goal is 0.</p>"
    )
    frame_figure = figures.compare_figure(
        interval_frame(comparison),
        [f"{s.label}: {s.name}" for s in (comparison.a, comparison.b)],
        comparison.arms,
    )
    out.append(
        '<figure class="plot">'
        + figure_div(frame_figure, "plot-1", "compare-confirm-metrics")
        + "</figure>"
    )
    for item in comparison.metrics:
        out.append(_comparison_table(comparison, item))
    out.append("</section></main></body></html>")
    return "\n".join(out)


def _confirm_runs(side: StudySide) -> int:
    verdict = side.analysis.verdict
    return sum(len(s.trials) for s in verdict.selections) if verdict is not None else 0


def _side_cell(side: StudySide, arm: str, interval: Interval | None) -> str:
    if interval is None:
        return f'<td class="absent">not in {esc(side.label)}</td>'
    runs = side.unconverged(arm)
    if runs is None:
        return f'<td class="num">{fmt_interval(interval)}</td>'
    return (
        f'<td class="num unconverged">{fmt_interval(interval)}<br><span class="small">'
        f"{runs.not_converged} of {runs.runs} not converged</span></td>"
    )


def _comparison_table(comparison: StudyComparison, item: MetricComparison) -> str:
    a, b = comparison.a, comparison.b
    head = [
        "arm",
        f"A: {a.name}",
        f"B: {b.name}",
        "B − A [95% CI]",
        "p (Welch / Mann-Whitney)",
        "better",
    ]
    body = []
    for row in item.rows:
        cells = [f"<td>{esc(row.arm)}</td>", _side_cell(a, row.arm, row.a)]
        cells.append(_side_cell(b, row.arm, row.b))
        diff = row.b_vs_a
        if diff is None:
            cells += ["<td></td>"] * 3
        else:
            better = diff.better or "—"  # "A" or "B": compare() was given the labels
            cells += [
                f'<td class="num">{fmt_interval(diff.difference, with_n=False)}</td>',
                f'<td class="num">{fmt_p(diff.test.welch_p)} / '
                f"{fmt_p(diff.test.mannwhitney_p)}</td>",
                f"<td>{esc(better)}</td>",
            ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f"<h3>{esc(item.metric.label)} "
        f'<span class="muted small">({esc(goal_rule(item.metric.goal, "B - A"))})</span></h3>'
        '<div class="scroll"><table class="compare" data-metric="'
        f'{esc(item.metric.column)}"><thead><tr>'
        + "".join(f"<th>{esc(h)}</th>" for h in head)
        + f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )
