"""Every output command reads its study folder once and judges convergence once: the numbers of
the report, the exports, ``show``, ``summary`` and ``compare`` all come from one
:class:`~sweep.analysis.study.StudyAnalysis` per study."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sweep.analysis import convergence, load, study
from sweep.cli import app
from sweep.store import ResultsStore
from tests.sweep.synthetic_study import write_synthetic_study

runner = CliRunner()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Counts, per kind, the reads of a study folder's files (the study file through the
    loader, the store opened and its two tables read) and the convergence judgements."""
    counts: Counter = Counter()

    def counting(kind: str, function):
        def wrapper(*args, **kwargs):
            counts[kind] += 1
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(load, "load_study", counting("study.yaml", load.load_study))
    opened = ResultsStore.open.__func__
    monkeypatch.setattr(ResultsStore, "open", classmethod(counting("store opened", opened)))
    monkeypatch.setattr(ResultsStore, "trials", counting("trials", ResultsStore.trials))
    monkeypatch.setattr(ResultsStore, "epochs", counting("epochs", ResultsStore.epochs))
    judge = counting("convergence judged", convergence.trial_convergence)
    monkeypatch.setattr(convergence, "trial_convergence", judge)
    monkeypatch.setattr(study, "trial_convergence", judge)
    return counts


ONCE = {"study.yaml": 1, "store opened": 1, "trials": 1, "epochs": 1}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_study(
        tmp_path_factory.mktemp("read-once") / "study", n_search=4, n_seeds=3, n_epochs=6
    )


@pytest.mark.parametrize(
    ("command", "judged"),
    [
        (["report"], 1),
        (["export", "--format", "json"], 1),
        (["export", "--format", "markdown"], 1),
        (["show"], 1),
        (["summary"], 0),  # means over seeds: no convergence column
    ],
    ids=lambda c: "-".join(c) if isinstance(c, list) else str(c),
)
def test_an_output_command_reads_the_folder_once_and_judges_convergence_once(
    command: list[str], judged: int, folder: Path, reads: Counter, tmp_path: Path
) -> None:
    extra = ["--out", str(tmp_path / "out")] if command[0] in ("report", "export") else []
    result = runner.invoke(app, [command[0], str(folder), *command[1:], *extra])
    assert result.exit_code == 0, result.output
    assert dict(reads) == {**ONCE, **({"convergence judged": judged} if judged else {})}


def test_compare_reads_each_folder_once(folder: Path, reads: Counter, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["compare", str(folder), str(folder), "--out", str(tmp_path / "c.html")]
    )
    assert result.exit_code == 0, result.output
    assert dict(reads) == {kind: 2 * n for kind, n in ONCE.items()} | {"convergence judged": 2}


def test_ls_reads_each_study_once(folder: Path, reads: Counter) -> None:
    result = runner.invoke(app, ["ls", str(folder.parent)])
    assert result.exit_code == 0, result.output
    # list_studies opens the folder to count its trials by status; the best-per-arm column
    # comes from the study's one analysis.
    assert reads["study.yaml"] == 1
    assert reads["convergence judged"] == 1
    assert reads["trials"] == 1
