"""A study folder with a truncated, overwritten or emptied file: every command that reads it
names the file and what is wrong, exits 2 and changes nothing; ``ls`` lists the other studies."""

from __future__ import annotations

import hashlib
import random
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sweep import names
from sweep.cli import app
from sweep.integrity import damaged_files
from sweep.store import ResultsStore
from tests.sweep.synthetic_study import write_synthetic_study

runner = CliRunner()

DAMAGES = ("truncate", "garbage", "empty")
TARGETS = ("trials", "epochs", "trials part", "epochs part", "optuna")
COMMANDS = ("ls", "show", "report", "export", "summary", "resume")
#: What each damage says about each kind of file (a part of the message).
SAYS = {
    ("parquet", "truncate"): "not a readable Parquet file",
    ("parquet", "garbage"): "not a readable Parquet file",
    ("parquet", "empty"): "empty file (0 bytes)",
    ("sqlite", "truncate"): "truncated SQLite database",
    ("sqlite", "garbage"): "not an SQLite database",
    ("sqlite", "empty"): "empty file (0 bytes)",
}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A results root with two studies; ``synthetic`` also has a trial in part files (recorded
    after the last compaction) beside its main files and optuna.db."""
    root = tmp_path_factory.mktemp("template") / "results"
    write_synthetic_study(root / "healthy", n_search=3, n_seeds=2, artifacts=False)
    folder = write_synthetic_study(
        root / "synthetic", n_search=3, n_seeds=2, artifacts=False, optuna_db=True
    )
    store = ResultsStore.open(folder)  # no lock: no compaction on exit, the parts stay
    store.record_trial(
        {
            "study": "synthetic",
            "arm": "elbo",
            "phase": "search",
            "trial_id": "late-trial",
            "seed": 0,
            "status": "completed",
            "metric.mmd": 0.1,
        },
        [{"epoch": 1, "train.loss": 2.0, "val.loss": 2.5}],
    )
    assert {p.name.split("-")[0] for p in (folder / names.PARTS_DIR).iterdir()} == {
        "trials",
        "epochs",
    }
    assert damaged_files(folder) == []
    return root


def _target(folder: Path, target: str) -> Path:
    if target.endswith("part"):
        return next((folder / names.PARTS_DIR).glob(f"{target.split()[0]}-*.parquet"))
    return folder / {
        "trials": names.TRIALS_FILE,
        "epochs": names.EPOCHS_FILE,
        "optuna": names.OPTUNA_FILE,
    }[target]


def _damage(path: Path, damage: str) -> None:
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(random.Random(0).randbytes(len(data)))
    else:
        path.write_bytes(b"")


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _argv(command: str, root: Path, folder: Path) -> list[str]:
    return [command, str(root)] if command == "ls" else [command, str(folder)]


@pytest.fixture
def never_run(monkeypatch):
    """``resume`` must refuse before the runner (Ray) starts."""
    import sweep.run.runner

    def run_study(*args, **kwargs):
        raise AssertionError("the runner was started on a damaged study")

    monkeypatch.setattr(sweep.run.runner, "run_study", run_study)


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("command", COMMANDS)
def test_command_names_the_damaged_file_exits_2_and_changes_nothing(
    template, tmp_path, never_run, command, target, damage
):
    root = tmp_path / "results"
    shutil.copytree(template, root)
    folder = root / "synthetic"
    damaged = _target(folder, target)
    _damage(damaged, damage)
    before = _hashes(root)

    result = runner.invoke(app, _argv(command, root, folder))

    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    output = result.output.replace("\n", "")
    assert str(damaged) in output
    kind = "sqlite" if target == "optuna" else "parquet"
    assert SAYS[(kind, damage)] in output
    assert _hashes(root) == before


def test_ls_lists_the_sound_studies_beside_a_damaged_one(template, tmp_path):
    root = tmp_path / "results"
    shutil.copytree(template, root)
    _damage(root / "synthetic" / names.TRIALS_FILE, "truncate")

    result = runner.invoke(app, ["ls", str(root)])

    assert result.exit_code == 2
    healthy = next(line for line in result.stdout.splitlines() if "healthy" in line)
    assert "elbo=" in healthy  # listed with its counts and best values
    damaged = next(line for line in result.stdout.splitlines() if "synthetic" in line)
    assert "damaged" in damaged


def test_an_empty_optuna_db_before_any_trial_is_not_damage(tmp_path):
    """A driver killed as SQLite created optuna.db leaves it empty: resume must go on."""
    folder = ResultsStore.create(tmp_path / "fresh", "name: fresh\narms: {elbo: {}}\n").folder
    (folder / names.OPTUNA_FILE).write_bytes(b"")
    assert damaged_files(folder) == []


def test_an_optuna_db_with_a_hot_journal_is_left_to_sqlite(template, tmp_path):
    """A writer killed mid transaction leaves a journal; SQLite rolls it back on next open."""
    folder = tmp_path / "synthetic"
    shutil.copytree(template / "synthetic", folder)
    db = folder / names.OPTUNA_FILE
    db.write_bytes(db.read_bytes()[: len(db.read_bytes()) // 2])
    Path(f"{db}-journal").write_bytes(b"\0" * 512)
    assert damaged_files(folder) == []


def test_a_sound_study_passes_the_thorough_and_the_quick_check(template):
    folder = template / "synthetic"
    assert damaged_files(folder) == [] and damaged_files(folder, thorough=False) == []


def test_ls_reads_parts_beside_a_main_file_written_by_pandas(template, tmp_path):
    """Regression: a trials.parquet written by pandas (nullable fields) plus the store's part
    files (not-null fields) made ``ls`` crash in pyarrow's concat_tables."""
    root = tmp_path / "results"
    shutil.copytree(template, root)

    result = runner.invoke(app, ["ls", str(root)])

    assert result.exit_code == 0, result.output
    synthetic = next(line for line in result.stdout.splitlines() if "synthetic" in line)
    assert "elbo=" in synthetic


def test_run_again_after_a_kill_while_creating_the_study_folder(tmp_path):
    """A driver killed while writing study.yaml leaves only its temp file: the folder was
    refused as "not empty" and the study could not be run again."""
    from sweep.atomic_files import TMP_PREFIX, TMP_SUFFIX

    folder = tmp_path / "fresh"
    folder.mkdir()
    (folder / f"{TMP_PREFIX}{names.STUDY_FILE}.x1y2{TMP_SUFFIX}").write_text("name: fre")

    store = ResultsStore.create(folder, "name: fresh\narms: {elbo: {}}\n")

    assert (store.folder / names.STUDY_FILE).is_file() and len(store) == 0
