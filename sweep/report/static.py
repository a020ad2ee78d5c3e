"""The report's figures as static files (SVG, PDF or PNG) for papers: ``report --figures FMT``.

The figures are the very ``go.Figure`` objects of the HTML report (the
:class:`~sweep.report.blocks.FigureBlock` s of a :class:`~sweep.report.blocks.ReportContent`),
rendered by Plotly's ``write_images`` through Kaleido 1.x, which drives a Chrome or Chromium
(found on ``PATH``, at the usual install paths such as ``/usr/bin/chromium``, through
``BROWSER_PATH``, or the copy ``kaleido_get_chrome`` downloads). Kaleido is an optional extra:
``pip install 'infovae-sweep[figures]'``.

Every figure is rendered into a temporary folder first; only when all of them are done are
they moved into ``figures/`` (each rename atomic), so a missing browser or a failed render
leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import html
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sweep.atomic_files import TMP_PREFIX, fsync_dir
from sweep.report.blocks import ReportContent, section_figures

if TYPE_CHECKING:
    import plotly.graph_objects as go

FigureFormat = Literal["svg", "pdf", "png"]
FORMATS: tuple[FigureFormat, ...] = ("svg", "pdf", "png")
#: Width of every static figure in CSS pixels (the HTML report's are responsive); the height
#: is the figure's own (``layout.height``), else Plotly's default.
WIDTH = 1100
DEFAULT_HEIGHT = 450
#: PNG pixels per CSS pixel (vector formats ignore it).
PNG_SCALE = 2

_INSTALL = "pip install 'infovae-sweep[figures]' (or: pip install 'kaleido>=1')"
_BROWSER = (
    "install Chrome or Chromium (Debian: apt-get install chromium), set BROWSER_PATH to one, "
    "or run kaleido_get_chrome"
)


class FiguresUnavailableError(RuntimeError):
    """Static figures cannot be written here: Kaleido or a browser for it is missing."""


@dataclass(frozen=True)
class WrittenFigure:
    """A figure file written, with the section and the title it came from."""

    path: Path
    section: str
    title: str


def require_kaleido() -> None:
    """Raise :class:`FiguresUnavailableError` (saying how to fix it) unless Kaleido >= 1 is
    importable and it can find a Chrome or Chromium."""
    try:
        import kaleido  # noqa: F401
        from choreographer.browsers.chromium import Chromium  # Kaleido's browser finder
    except ImportError as error:
        raise FiguresUnavailableError(
            f"static figures need the Kaleido package ({error}); {_INSTALL}"
        ) from None
    if Chromium.find_browser(skip_local=False) is None:
        raise FiguresUnavailableError(f"static figures need a browser for Kaleido: {_BROWSER}")


def figure_files(content: ReportContent, fmt: FigureFormat) -> list[tuple[str, str, go.Figure]]:
    """``(file name, section title, figure)`` of every figure of the report, in page order."""
    out = []
    for section in content.sections:
        for stem, block in section_figures(section):
            out.append((f"{stem}.{fmt}", section.title, block.figure))
    return out


def write_figures(content: ReportContent, folder: Path, fmt: FigureFormat) -> list[WrittenFigure]:
    """Write every figure of ``content`` as ``folder/<section>-<nn>-<title>.<fmt>``.

    Raises :class:`FiguresUnavailableError` when Kaleido or its browser is missing, before
    anything is written; other render errors propagate, also with nothing written. Files of
    earlier runs with other names are left alone.
    """
    if fmt not in FORMATS:
        raise ValueError(f"figure format {fmt!r}: expected one of {', '.join(FORMATS)}")
    require_kaleido()
    import plotly.io as pio

    folder = Path(folder)
    files = figure_files(content, fmt)
    if not files:
        return []
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{folder.name}.", dir=folder.parent))
    try:
        figures = [figure for _, _, figure in files]
        heights = [int(f.layout.height or DEFAULT_HEIGHT) for f in figures]
        try:
            pio.write_images(
                figures,
                [staging / name for name, _, _ in files],
                format=fmt,
                width=WIDTH,
                height=heights,
                scale=PNG_SCALE if fmt == "png" else 1,
            )
        except RuntimeError as error:  # plotly's "Kaleido requires Chrome" and the like
            if "chrome" in str(error).lower() or "kaleido" in str(error).lower():
                raise FiguresUnavailableError(
                    f"static figures could not be rendered: {str(error).strip()}"
                ) from None
            raise
        # Kaleido can return without having written a figure (a render that timed out on a
        # busy machine): render the missing ones again, one at a time, then give up loudly.
        for (name, _, figure), height in zip(files, heights, strict=True):
            if not (staging / name).is_file():
                pio.write_image(
                    figure, staging / name, format=fmt, width=WIDTH, height=height,
                    scale=PNG_SCALE if fmt == "png" else 1,
                )
        missing = [name for name, _, _ in files if not (staging / name).is_file()]
        if missing:
            raise RuntimeError(
                f"Kaleido wrote no file for {len(missing)} figure(s) ({', '.join(missing)}); "
                "nothing was written"
            )
        folder.mkdir(exist_ok=True)
        written = []
        for (name, section, figure), staged in zip(
            files, (staging / name for name, _, _ in files), strict=True
        ):
            with open(staged, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(staged, folder / name)
            title = html.unescape(figure.layout.title.text or "")
            written.append(WrittenFigure(folder / name, section, title))
        fsync_dir(folder)
        return written
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
