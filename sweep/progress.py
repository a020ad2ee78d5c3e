"""A concise live view of a running study (rich): per arm trials done / running / failed,
best value so far, elapsed and estimated time left."""

from __future__ import annotations

import time

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from sweep.run.events import StudyEvents


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class LiveView:
    """A listener for :class:`sweep.run.events.StudyEvents`, drawn with ``rich.live.Live``."""

    def __init__(self, console: Console):
        self.console = console
        # Not a terminal (a log file, CI): one line per finished trial instead of a live table.
        self.interactive = console.is_terminal
        self.live = Live(console=console, refresh_per_second=2, transient=False)
        self._finished_at_start: int | None = None
        self._last_line: str | None = None

    def __enter__(self) -> LiveView:
        if self.interactive:
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.interactive:
            self.live.__exit__(*exc)

    def update(self, events: StudyEvents) -> None:
        if self.interactive:
            self.live.update(self.render(events))
            return
        line = self.summary_line(events)
        counts = line.split("] ", 1)[-1]  # print when the counts change, not the clock
        if counts != self._last_line:
            self.console.print(line, highlight=False, markup=False, soft_wrap=True)
            self._last_line = counts

    def summary_line(self, events: StudyEvents) -> str:
        """One line: phase, per-arm done/failed/stopped of planned and best value."""
        parts = []
        for arm, progress in events.arms.items():
            best = "-" if progress.best is None else f"{progress.best:.4g}"
            parts.append(
                f"{arm} {progress.done}/{progress.planned} done"
                + (f", {progress.failed} failed" if progress.failed else "")
                + (f", {progress.stopped} stopped" if progress.stopped else "")
                + f", best {best}"
            )
        elapsed = _duration(time.monotonic() - events.started)
        return f"[{elapsed}] {events.spec.name} {events.phase}: " + "; ".join(parts)

    def render(self, events: StudyEvents) -> Group:
        rank = events.spec.confirm_rank
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("arm", "done", "running", "failed", "stopped", "planned"):
            table.add_column(column, justify="left" if column == "arm" else "right")
        table.add_column(f"best {rank.metric} ({rank.direction[:3]})", justify="right")
        finished = planned = 0
        for arm, progress in events.arms.items():
            finished += progress.done + progress.failed + progress.stopped
            planned += progress.planned
            table.add_row(
                arm,
                str(progress.done),
                str(progress.running),
                str(progress.failed) if not progress.failed else f"[red]{progress.failed}[/]",
                str(progress.stopped),
                str(progress.planned),
                "-" if progress.best is None else f"{progress.best:.4g}",
            )
        if self._finished_at_start is None:
            self._finished_at_start = finished
        elapsed = time.monotonic() - events.started
        new = finished - self._finished_at_start
        left = max(planned - finished, 0)
        eta = _duration(elapsed / new * left) if new and left else ("-" if left else "0m00s")
        footer = Text(
            f"{events.spec.name}: {events.phase} phase, {finished}/{planned} trials, "
            f"elapsed {_duration(elapsed)}, left ~{eta}",
            style="dim",
        )
        return Group(table, footer)
