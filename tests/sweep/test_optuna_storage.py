"""The study's Optuna storage (sqlite, journal, an RDB URL), recorded in storage.yaml."""

from __future__ import annotations

import optuna
import pytest

from sweep import names
from sweep.optuna_storage import (
    JOURNAL,
    SQLITE,
    OptunaStorageError,
    StorageRecord,
    check_optuna_storage,
    close_optuna_storage,
    open_optuna_storage,
    read_record,
    write_record,
)
from sweep.run.searcher import ArmSearch
from sweep.run.trial import TrialResult

METRICS = ["metric.mmd", "metric.nll_iwae"]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, SQLITE),
        ("sqlite", SQLITE),
        ("journal", JOURNAL),
        ("postgresql://user@db.example/optuna", "postgresql://user@db.example/optuna"),
        ("mysql+pymysql://user@db/optuna", "mysql+pymysql://user@db/optuna"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_optuna_storage_choices_are_accepted(choice, expected):
    assert check_optuna_storage(choice) == expected


@pytest.mark.parametrize("choice", ["redis", "s3://bucket/optuna", "/mnt/optuna.db", ""])
def test_other_optuna_storages_are_refused_naming_the_option(choice):
    with pytest.raises(OptunaStorageError, match="--optuna-storage"):
        check_optuna_storage(choice)


def test_storage_record_reads_back_what_was_written(tmp_path):
    record = StorageRecord(storage="s3://bucket/sweeps", optuna_storage=JOURNAL)
    write_record(tmp_path, record)
    assert read_record(tmp_path) == record


def test_a_folder_without_a_record_reads_as_none(tmp_path):
    assert read_record(tmp_path) is None


def test_a_bad_record_names_its_file(tmp_path):
    (tmp_path / names.STORAGE_FILE).write_text("optuna_storage: redis\n")
    with pytest.raises(OptunaStorageError, match=r"storage\.yaml: optuna_storage"):
        read_record(tmp_path)


def _search(storage) -> ArmSearch:
    return ArmSearch(
        arm="infovae",
        storage=storage,
        sampler=optuna.samplers.RandomSampler(seed=0),
        space={"objective.lambda": optuna.distributions.FloatDistribution(1.0, 100.0, log=True)},
        metrics=METRICS,
        directions=["minimize", "minimize"],
        seed_for=lambda number: number,
    )


def _tell_one(search: ArmSearch) -> None:
    search.suggest("tune-1")
    search.on_trial_complete(
        "tune-1", TrialResult(names.COMPLETED, metrics={"metric.mmd": 0.1, "metric.nll_iwae": 80.0})
    )


def test_journal_storage_is_a_file_in_the_study_folder_with_metric_names(tmp_path):
    write_record(tmp_path, StorageRecord(storage=None, optuna_storage=JOURNAL))
    _tell_one(_search(open_optuna_storage(tmp_path)))
    journal = tmp_path / names.OPTUNA_JOURNAL_FILE
    assert journal.is_file() and not (tmp_path / names.OPTUNA_FILE).exists()
    # What optuna-dashboard does with a journal file: open it as a JournalStorage.
    from optuna.storages.journal import JournalFileBackend

    reader = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    study = optuna.load_study(study_name="infovae", storage=reader)
    assert study.metric_names == METRICS
    assert [t.values for t in study.trials] == [[0.1, 80.0]]


def test_rdb_url_storage_is_that_database_with_metric_names(tmp_path):
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"  # stands in for postgresql://
    folder = tmp_path / "study"
    folder.mkdir()
    write_record(folder, StorageRecord(storage=None, optuna_storage=url))
    storage = open_optuna_storage(folder)
    _tell_one(_search(storage))
    close_optuna_storage(storage)
    assert not (folder / names.OPTUNA_FILE).exists()
    study = optuna.load_study(study_name="infovae", storage=url)
    assert study.metric_names == METRICS
    assert [t.values for t in study.trials] == [[0.1, 80.0]]


def test_default_storage_is_sqlite_in_the_study_folder_with_metric_names(tmp_path):
    storage = open_optuna_storage(tmp_path)
    _tell_one(_search(storage))
    close_optuna_storage(storage)
    url = f"sqlite:///{tmp_path / names.OPTUNA_FILE}"
    assert optuna.load_study(study_name="infovae", storage=url).metric_names == METRICS


def test_a_reader_gets_none_when_the_storage_file_is_missing(tmp_path):
    assert open_optuna_storage(tmp_path, read_only=True) is None
    write_record(tmp_path, StorageRecord(storage=None, optuna_storage=JOURNAL))
    assert open_optuna_storage(tmp_path, read_only=True) is None
    assert not (tmp_path / names.OPTUNA_JOURNAL_FILE).exists()


def test_report_reads_importances_from_a_journal_storage(tmp_path):
    from sweep.analysis.study import analyse_study
    from sweep.report.sections import _importance_blocks
    from tests.sweep.synthetic_study import write_synthetic_study

    folder = write_synthetic_study(tmp_path / "syn", n_search=6, n_seeds=1, optuna_db=True)
    write_record(folder, StorageRecord(storage=None, optuna_storage=JOURNAL))
    journal = open_optuna_storage(folder)
    for arm in ("elbo", "infovae"):
        optuna.copy_study(
            from_study_name=arm,
            from_storage=f"sqlite:///{folder / names.OPTUNA_FILE}",
            to_storage=journal,
        )
    (folder / names.OPTUNA_FILE).unlink()
    blocks = _importance_blocks(analyse_study(folder))
    assert [type(b).__name__ for b in blocks][0] == "FigureBlock"


def test_run_refuses_a_database_it_cannot_open_and_writes_nothing(tmp_path):
    from typer.testing import CliRunner

    from sweep.cli import app
    from tests.sweep.studies import write_study

    study = write_study(tmp_path, "db", trials=1, seeds=0, epochs=1)
    url = f"sqlite:///{tmp_path / 'no-such-folder' / 'optuna.db'}"
    result = CliRunner().invoke(
        app, ["run", str(study), "--results", str(tmp_path / "r"), "--optuna-storage", url]
    )
    assert result.exit_code == 2, result.output
    assert "--optuna-storage: cannot open" in result.output
    assert not (tmp_path / "r").exists()


def test_run_refuses_a_database_url_with_a_password_without_echoing_it(tmp_path):
    from typer.testing import CliRunner

    from sweep.cli import app
    from tests.sweep.studies import write_study

    study = write_study(tmp_path, "db", trials=1, seeds=0, epochs=1)
    url = "postgresql://analyst:s3cret-word@db.example/optuna"
    result = CliRunner().invoke(
        app, ["run", str(study), "--results", str(tmp_path / "r"), "--optuna-storage", url]
    )
    assert result.exit_code == 2, result.output
    assert "holds a password" in result.output and "PGPASSWORD" in result.output
    assert "s3cret-word" not in result.output
    assert not (tmp_path / "r").exists()
