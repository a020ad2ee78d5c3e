"""The study folder's mirror under a storage URI (pyarrow's local file system: file:// URIs)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from sweep import names
from sweep.atomic_files import TMP_PREFIX, TMP_SUFFIX
from sweep.run import mirror as mirror_module
from sweep.run.mirror import (
    NotAStudyMirrorError,
    StudyMirror,
    list_mirrored_studies,
    pull,
    pulled,
    split_study_uri,
)
from sweep.store import ResultsStore, json_columns
from tests.sweep.synthetic_study import write_synthetic_study


def _record_extra_trial(folder: Path) -> ResultsStore:
    """Record one more trial (a copy of the first row under a new id) as a part file."""
    store = ResultsStore.open(folder)
    table = store.trials_table()
    row = table.slice(0, 1).to_pylist()[0]
    for column in json_columns(table.schema):  # a list-valued hyperparameter, as JSON text
        row[column] = json.loads(row[column])
    row.update(trial_id="elbo-extra")
    assert store.record_trial(row, [{"epoch": 1, "train.loss": 1.0}])
    assert list((folder / names.PARTS_DIR).glob("trials-*"))
    return store


def _files(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def study(tmp_path) -> Path:
    folder = write_synthetic_study(
        tmp_path / "results" / "syn", n_search=3, n_seeds=2, n_epochs=3, optuna_db=True
    )
    (folder / names.LOCK_FILE).write_text("")
    (folder / f"{TMP_PREFIX}trials.parquet.abc{TMP_SUFFIX}").write_text("half")
    return folder


@pytest.fixture
def bucket(tmp_path) -> Path:
    return tmp_path / "bucket"


def _uri(bucket: Path) -> str:
    return f"{bucket.as_uri()}/syn"


def test_sync_copies_every_file_but_the_lock_temp_files_and_its_state(study, bucket):
    StudyMirror(study, _uri(bucket)).sync(force=True)
    local = _files(study)
    for left_out in (names.LOCK_FILE, names.MIRROR_STATE_FILE, f"{TMP_PREFIX}trials.parquet.abc"):
        local = {k: v for k, v in local.items() if not k.startswith(left_out)}
    mirrored = _files(bucket / "syn")
    assert mirrored.keys() == local.keys()
    assert {k: v for k, v in mirrored.items() if k != names.OPTUNA_FILE} == {
        k: v for k, v in local.items() if k != names.OPTUNA_FILE
    }


def test_mirrored_sqlite_storage_holds_the_same_optuna_studies(study, bucket):
    StudyMirror(study, _uri(bucket)).sync(force=True)
    copy = optuna.load_study(study_name="elbo", storage=f"sqlite:///{bucket / 'syn/optuna.db'}")
    original = optuna.load_study(study_name="elbo", storage=f"sqlite:///{study / 'optuna.db'}")
    assert len(copy.trials) == len(original.trials) > 0


def test_second_sync_copies_only_the_changed_file(study, bucket):
    mirror = StudyMirror(study, _uri(bucket))
    mirror.sync(force=True)
    before = {p: p.stat().st_mtime_ns for p in (bucket / "syn").rglob("*") if p.is_file()}
    assert mirror.sync(force=True) is False
    (study / names.STUDY_FILE).write_text((study / names.STUDY_FILE).read_text() + "# edited\n")
    assert mirror.sync(force=True) is True
    changed = {p for p, t in before.items() if p.stat().st_mtime_ns != t}
    assert changed == {bucket / "syn" / names.STUDY_FILE}
    assert (bucket / "syn" / names.STUDY_FILE).read_text().endswith("# edited\n")


def test_files_removed_from_the_study_folder_are_removed_from_the_mirror(study, bucket):
    mirror = StudyMirror(study, _uri(bucket))
    mirror.sync(force=True)
    gone = study / names.ARTIFACTS_DIR / "elbo-c00000" / "samples.png"
    gone.unlink()
    mirror.sync(force=True)
    assert not (bucket / "syn" / gone.relative_to(study)).exists()


def test_recorded_part_files_reach_the_mirror_and_read_as_every_trial(study, bucket):
    store = _record_extra_trial(study)
    StudyMirror(study, _uri(bucket)).sync(force=True)
    assert len(ResultsStore.open(bucket / "syn")) == len(store) == len(ResultsStore.open(study))
    assert "elbo-extra" in ResultsStore.open(bucket / "syn").recorded_trial_ids()


def test_a_failed_copy_leaves_only_the_behind_marker_in_the_mirror(study, bucket, monkeypatch):
    def half_then_fail(source, out, length=0):
        out.write(source.read(10))
        raise OSError("network gone")

    monkeypatch.setattr(mirror_module.shutil, "copyfileobj", half_then_fail)
    with pytest.raises(OSError, match="network gone"):
        StudyMirror(study, _uri(bucket)).sync(force=True)
    leftovers = [p for p in bucket.rglob("*") if p.is_file()]
    assert leftovers == [bucket / "syn" / mirror_module.BEHIND_MARKER]
    assert leftovers[0].stat().st_size == 0


def test_temp_files_of_a_killed_sync_are_removed_from_the_mirror(study, bucket):
    stale = bucket / "syn" / f"{TMP_PREFIX}trials.parquet.0123{TMP_SUFFIX}"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    StudyMirror(study, _uri(bucket)).sync(force=True)
    assert not stale.exists()


def test_syncs_are_spaced_after_a_slow_one_unless_forced(study, bucket, monkeypatch):
    monkeypatch.setattr(mirror_module, "MIRROR_SPACING", 1e9)
    mirror = StudyMirror(study, _uri(bucket))
    assert mirror.sync() is True
    (study / names.STUDY_FILE).write_text("# changed\n")
    assert mirror.sync() is False
    assert mirror.sync(force=True) is True


def test_pull_copies_the_mirror_into_a_fresh_folder(study, bucket, tmp_path):
    StudyMirror(study, _uri(bucket)).sync(force=True)
    target = tmp_path / "fresh" / "syn"
    pull(_uri(bucket), target)
    pulled_files = {k: v for k, v in _files(target).items() if k != names.MIRROR_STATE_FILE}
    assert pulled_files == _files(bucket / "syn")
    assert len(ResultsStore.open(target)) == len(ResultsStore.open(study))


def test_a_pulled_folder_is_not_copied_again_by_its_mirror(study, bucket, tmp_path):
    StudyMirror(study, _uri(bucket)).sync(force=True)
    target = tmp_path / "fresh" / "syn"
    pull(_uri(bucket), target)
    state = json.loads((target / names.MIRROR_STATE_FILE).read_text())
    assert state["uri"] == _uri(bucket)
    assert StudyMirror(target, _uri(bucket)).sync(force=True) is False


def test_pull_refuses_a_uri_that_holds_no_study(tmp_path):
    (tmp_path / "bucket" / "other").mkdir(parents=True)
    with pytest.raises(NotAStudyMirrorError, match="not a study"):
        pull(f"{(tmp_path / 'bucket').as_uri()}/other", tmp_path / "out")
    with pytest.raises(NotAStudyMirrorError, match="not a study"):
        pull(f"{(tmp_path / 'bucket').as_uri()}/missing", tmp_path / "out")


def test_pulled_view_folds_the_part_files_into_the_main_files(study, bucket):
    _record_extra_trial(study)
    StudyMirror(study, _uri(bucket)).sync(force=True)
    with pulled(_uri(bucket)) as folder:
        import pyarrow.parquet as pq

        direct = pq.read_table(folder / names.TRIALS_FILE)
        assert "elbo-extra" in direct.column("trial_id").to_pylist()
        assert not (folder / names.ARTIFACTS_DIR).exists()
    assert not folder.exists()


def test_studies_mirrored_under_a_storage_uri_are_listed(study, bucket):
    StudyMirror(study, _uri(bucket)).sync(force=True)
    (bucket / "not-a-study").mkdir()
    assert list_mirrored_studies(bucket.as_uri()) == ["syn"]


def test_a_study_uri_splits_into_storage_and_study():
    assert split_study_uri("s3://bucket/path/digits/") == ("s3://bucket/path", "digits")
    with pytest.raises(ValueError, match="<storage URI>/<study>"):
        split_study_uri("s3://")


def test_copy_order_puts_optuna_first_and_each_trials_part_after_its_epochs(
    study, bucket, monkeypatch
):
    order: list[str] = []
    upload = StudyMirror._upload

    def spy(self, rel, path):
        order.append(rel)
        return upload(self, rel, path)

    monkeypatch.setattr(StudyMirror, "_upload", spy)
    _record_extra_trial(study)
    StudyMirror(study, _uri(bucket)).sync(force=True)
    assert order[0] == names.OPTUNA_FILE
    parts = [rel for rel in order if rel.startswith(names.PARTS_DIR)]
    assert [rel.split("/")[1].split("-")[0] for rel in parts] == ["epochs", "trials"]
    assert order.index(parts[-1]) < order.index(names.TRIALS_FILE)
