"""`infovae-sweep report --figures svg|pdf|png`: every report figure as a file, from the same
figure objects as the HTML page; the page's toolbar saves SVG; without Kaleido or a browser,
exit 2 and nothing written."""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sweep.analysis.study import analyse_study
from sweep.cli import app
from sweep.names import FIGURES_DIR, REPORT_FILE
from sweep.report import build_content, build_report
from sweep.report.blocks import FigureBlock, ReportContent, section_figures, slug
from sweep.report.static import FiguresUnavailableError, figure_files, require_kaleido
from tests.sweep.synthetic_study import write_synthetic_study

runner = CliRunner()

MAGIC = {"pdf": b"%PDF-", "png": b"\x89PNG\r\n\x1a\n"}


def _study(folder: Path) -> Path:
    return write_synthetic_study(folder, n_search=5, n_seeds=3, n_epochs=3, optuna_db=True)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _study(tmp_path_factory.mktemp("figures") / "study")


@pytest.fixture(scope="module")
def content(study: Path) -> ReportContent:
    return build_content(analyse_study(study))


def _kaleido_or_skip() -> None:
    try:
        require_kaleido()
    except FiguresUnavailableError as error:  # CI installs both (.[dev] and apt chromium)
        pytest.skip(str(error))


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["svg", "pdf", "png"])
def test_every_report_figure_is_written_as_a_valid_file(
    study: Path, content: ReportContent, fmt: str
) -> None:
    _kaleido_or_skip()
    result = runner.invoke(app, ["report", str(study), "--figures", fmt])
    assert result.exit_code == 0, result.output
    expected = [name for name, _, _ in figure_files(content, fmt)]
    blocks = [b for s in content.sections for b in s.blocks if isinstance(b, FigureBlock)]
    assert len(expected) == len(blocks) >= 10  # one file per figure of the report
    written = sorted(p.name for p in (study / FIGURES_DIR).glob(f"*.{fmt}"))
    assert written == sorted(expected)
    for name in expected:
        data = (study / FIGURES_DIR / name).read_bytes()
        if fmt == "svg":
            root = ET.fromstring(data)
            assert root.tag == "{http://www.w3.org/2000/svg}svg"
            assert float(root.get("width")) > 0 and float(root.get("height")) > 0
        else:
            assert data.startswith(MAGIC[fmt]), name
        assert str(study / FIGURES_DIR / name) in result.stdout  # the printed index
    assert f"figures: {len(expected)} {fmt} file(s)" in result.stdout
    assert (study / REPORT_FILE).is_file()  # the HTML report as well
    assert not list(study.glob(".tmp-*"))  # no staging folder left


def test_figure_file_names_are_safe_unique_and_name_section_and_title(
    content: ReportContent,
) -> None:
    names = [name for name, _, _ in figure_files(content, "svg")]
    assert len(names) == len(set(names))
    for name in names:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*-\d\d-[a-z0-9]+(-[a-z0-9]+)*\.svg", name), name
    assert "hyperparameters-01-nll-iwae-vs-lambda.svg" in names
    assert "hyperparameters-09-pareto-front.svg" in names


def test_slug_keeps_only_safe_characters_of_escaped_hostile_titles() -> None:
    assert slug("&lt;script&gt;alert(&quot;x&quot;)/../../etc") == "script-alert-x-etc"
    assert slug("...") == "figure"
    assert len(slug("a" * 500)) <= 60


def test_report_toolbar_saves_each_figure_as_svg_named_like_its_file(
    study: Path, content: ReportContent
) -> None:
    page = build_report(study).read_text(encoding="utf-8")
    options = [json.loads(m) for m in re.findall(r'"toImageButtonOptions": (\{[^}]*\})', page)]
    stems = [stem for s in content.sections for stem, _ in section_figures(s)]
    assert options == [{"format": "svg", "filename": stem} for stem in stems]


def _unchanged_and_refused(study: Path, result) -> None:
    assert result.exit_code == 2, result.output
    assert not (study / FIGURES_DIR).exists()
    assert not (study / REPORT_FILE).exists()
    assert not list(study.glob(".tmp-*"))


def test_without_kaleido_report_figures_exits_2_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = _study(tmp_path / "study")
    monkeypatch.setitem(sys.modules, "kaleido", None)  # `import kaleido` raises ImportError
    result = runner.invoke(app, ["report", str(study), "--figures", "svg"])
    _unchanged_and_refused(study, result)
    assert "Kaleido" in result.output and "infovae-sweep[figures]" in result.output


def test_without_a_browser_report_figures_exits_2_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("kaleido")
    from choreographer.browsers.chromium import Chromium

    study = _study(tmp_path / "study")
    monkeypatch.setattr(Chromium, "find_browser", classmethod(lambda cls, **kwargs: None))
    result = runner.invoke(app, ["report", str(study), "--figures", "png"])
    _unchanged_and_refused(study, result)
    assert "Chromium" in result.output


def test_an_unknown_figure_format_is_refused_with_the_choices(study: Path) -> None:
    result = runner.invoke(app, ["report", str(study), "--figures", "eps"])
    assert result.exit_code == 2
    assert "svg" in result.output and "pdf" in result.output


def _fake_kaleido(monkeypatch, skip_in_batch: int, single_writes: bool) -> list[str]:
    """plotly.io's writers replaced: the batch call leaves out its first ``skip_in_batch``
    figures (as Kaleido does when a render times out); the single call writes its file only
    when ``single_writes``. Returns the names the single call was asked for."""
    import plotly.io as pio

    import sweep.report.static as static

    monkeypatch.setattr(static, "require_kaleido", lambda: None)
    retried: list[str] = []

    def write_images(figures, paths, **_):
        for path in list(paths)[skip_in_batch:]:
            Path(path).write_bytes(b"figure")

    def write_image(figure, path, **_):
        retried.append(Path(path).name)
        if single_writes:
            Path(path).write_bytes(b"figure")

    monkeypatch.setattr(pio, "write_images", write_images)
    monkeypatch.setattr(pio, "write_image", write_image)
    return retried


def test_a_figure_kaleido_skipped_is_rendered_again_alone(monkeypatch, content, tmp_path):
    from sweep.report.static import write_figures

    retried = _fake_kaleido(monkeypatch, skip_in_batch=1, single_writes=True)
    written = write_figures(content, tmp_path / "figures", "png")
    expected = [name for name, _, _ in figure_files(content, "png")]
    assert retried == expected[:1]
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == sorted(expected)
    assert len(written) == len(expected)


def test_a_figure_kaleido_never_writes_fails_the_command_and_writes_nothing(
    monkeypatch, content, tmp_path
):
    from sweep.report.static import write_figures

    _fake_kaleido(monkeypatch, skip_in_batch=2, single_writes=False)
    with pytest.raises(RuntimeError, match="wrote no file for 2 figure"):
        write_figures(content, tmp_path / "figures", "png")
    assert list(tmp_path.iterdir()) == []
