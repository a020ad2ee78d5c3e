"""The store's part files and lazy compaction: what a kill -9 at any step leaves behind."""

from __future__ import annotations

import os
import pathlib
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from sweep.store import PARTS_DIR, ResultsStore, list_studies
from sweep.store import arrow_schema as store_schema
from sweep.store import parquet_files as store_files
from tests.sweep.store.test_store import STUDY_YAML, epoch_rows, trial_row

IDS = ["t1", "t2", "t3", "t4"]


def _epochs_for(trial_id: str) -> int:
    return {"t1": 2, "t2": 3, "t3": 0, "t4": 1}[trial_id]


def _record(store: ResultsStore, trial_id: str) -> bool:
    return store.record_trial(trial_row(trial_id), epoch_rows(_epochs_for(trial_id)))


def _frozen_states(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Path]]:
    """Run a writer (lock, record, compact, record, unlock) and copy the study folder at every
    step of every write: before and after each rename and after each unlink. Each copy is what
    a kill -9 at that instant leaves (every file written so far was fsync-ed)."""
    folder = tmp_path / "live" / "demo"
    store = ResultsStore.create(folder, STUDY_YAML)
    states: list[tuple[str, Path]] = []
    real_replace, real_unlink = os.replace, pathlib.Path.unlink

    def freeze(step: str) -> None:
        copy = tmp_path / "frozen" / f"{len(states):03d}" / "demo"
        shutil.copytree(folder, copy, ignore=shutil.ignore_patterns(".lock"))
        states.append((step, copy))

    def replace(src: Any, dst: Any) -> None:
        freeze(f"before rename to {Path(dst).name}")
        real_replace(src, dst)
        freeze(f"after rename to {Path(dst).name}")

    def unlink(self: pathlib.Path, missing_ok: bool = False) -> None:
        real_unlink(self, missing_ok=missing_ok)
        if self.name.endswith(".parquet"):
            freeze(f"after unlink of {self.name}")

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(pathlib.Path, "unlink", unlink)
    with store.lock():
        _record(store, "t1")
        _record(store, "t2")
        store.compact()
        _record(store, "t3")
        _record(store, "t4")
    monkeypatch.undo()
    return states


def _check_state(step: str, folder: Path) -> None:
    # A reader (a report during the run) sees whole trials only, each once, in order.
    reader = ResultsStore.open(folder)
    seen = reader.trials()["trial_id"].tolist()
    assert seen == IDS[: len(seen)], step
    epochs = reader.epochs()
    for trial_id in seen:
        assert (epochs["trial_id"] == trial_id).sum() == _epochs_for(trial_id), step
    assert set(epochs["trial_id"]) <= set(seen), step

    # The next driver recovers: same rows, compacted, no part or temp file left behind ...
    writer = ResultsStore.open(folder)
    with writer.lock():
        assert writer.trials()["trial_id"].tolist() == seen, step
    assert not list((folder / PARTS_DIR).glob("*")) if (folder / PARTS_DIR).exists() else True
    assert not [p for p in folder.rglob(".tmp-*")], step
    trials_file = pd.read_parquet(folder / "trials.parquet")
    assert trials_file["trial_id"].tolist() == seen, step
    epochs_file = pd.read_parquet(folder / "epochs.parquet")
    assert len(epochs_file) == sum(_epochs_for(t) for t in seen), step

    # ... and records the rest (what resume does) without losing or repeating a row.
    with writer.lock():
        for trial_id in IDS:
            assert _record(writer, trial_id) == (trial_id not in seen), step
    assert pd.read_parquet(folder / "trials.parquet")["trial_id"].tolist() == [
        *seen,
        *[t for t in IDS if t not in seen],
    ], step
    epochs_file = pd.read_parquet(folder / "epochs.parquet")
    assert len(epochs_file) == sum(_epochs_for(t) for t in IDS), step
    assert not epochs_file.duplicated(["trial_id", "epoch"]).any(), step


def test_kill_at_every_step_of_recording_and_compaction_loses_and_repeats_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    states = _frozen_states(tmp_path, monkeypatch)
    steps = [step for step, _ in states]
    # the writer went through parts, main files and unlinks: every kind of step is covered
    assert any("trials-" in s for s in steps) and any("epochs-" in s for s in steps)
    assert any("rename to trials.parquet" in s for s in steps)
    assert any("unlink" in s for s in steps)
    for step, folder in states:
        _check_state(step, folder)


def test_orphan_epochs_part_is_invisible_and_removed_by_the_next_lock(tmp_path: Path) -> None:
    store = ResultsStore.create(tmp_path / "demo", STUDY_YAML)
    _record(store, "t1")
    # a writer killed between the epochs part and the trial part of t2
    orphan = store.folder / PARTS_DIR / "epochs-0000000099.parquet"
    pq.write_table(store_schema.epoch_table(trial_row("t2"), epoch_rows(3)), orphan)
    reader = ResultsStore.open(store.folder)
    assert set(reader.epochs(recorded_only=False)["trial_id"]) == {"t1"}
    writer = ResultsStore.open(store.folder)
    with writer.lock():
        assert not orphan.exists()
        assert _record(writer, "t2")
    assert (pd.read_parquet(store.epochs_path)["trial_id"] == "t2").sum() == 3


def test_reader_sees_recorded_rows_before_compaction_and_files_after(tmp_path: Path) -> None:
    store = ResultsStore.create(tmp_path / "demo", STUDY_YAML)
    with store.lock():
        _record(store, "t1")
        _record(store, "t2")
        assert ResultsStore.open(store.folder).recorded_trial_ids() == {"t1", "t2"}
        assert [s.n_trials for s in list_studies(tmp_path)] == [2]
    # the lock's release compacted: the main files hold everything, no parts remain
    assert pd.read_parquet(store.trials_path)["trial_id"].tolist() == ["t1", "t2"]
    assert len(pd.read_parquet(store.epochs_path)) == 5
    assert list((store.folder / PARTS_DIR).iterdir()) == []


def test_recording_compacts_after_the_interval(tmp_path: Path) -> None:
    store = ResultsStore.create(tmp_path / "demo", STUDY_YAML)
    store.compact_interval_s = 0.0
    _record(store, "t1")
    assert pd.read_parquet(store.trials_path)["trial_id"].tolist() == ["t1"]
    store.compact_interval_s = 3600.0
    _record(store, "t2")
    assert pd.read_parquet(store.trials_path)["trial_id"].tolist() == ["t1"]
    assert store.recorded_trial_ids() == {"t1", "t2"}


def test_record_cost_does_not_grow_with_the_trials_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counts the rows each record writes rather than seconds (robust on a loaded machine):
    the 150th record writes no more than the 10th (rewriting the files wrote them all)."""
    store = ResultsStore.create(tmp_path / "demo", STUDY_YAML)
    store.compact_interval_s = float("inf")
    written = {"rows": 0}
    real_write = store_files.write_table

    def counting(path: Path, table: Any, **kwargs: Any) -> None:
        written["rows"] += table.num_rows
        real_write(path, table, **kwargs)

    monkeypatch.setattr(store_files, "write_table", counting)
    rows = {}
    for index in range(1, 151):
        before = written["rows"]
        store.record_trial(trial_row(f"t{index:04d}", seed=index), epoch_rows(20))
        rows[index] = written["rows"] - before
    assert rows[150] == rows[10] == 1 + 20
    assert len(ResultsStore.open(store.folder).epochs()) == 150 * 20


@pytest.mark.parametrize("reader", ["pyarrow", "pandas", "duckdb", "polars"])
def test_compacted_files_open_in_every_reader(tmp_path: Path, reader: str) -> None:
    """The main files carry the store's own schema metadata (the parts number); readers
    ignore it and see one row per trial and per epoch."""
    store = ResultsStore.create(tmp_path / "demo", STUDY_YAML)
    with store.lock():
        for trial_id in IDS:
            _record(store, trial_id)
    trials, epochs = str(store.trials_path), str(store.epochs_path)
    if reader == "pyarrow":
        counts = (pq.read_table(trials).num_rows, pq.read_table(epochs).num_rows)
    elif reader == "pandas":
        counts = (len(pd.read_parquet(trials)), len(pd.read_parquet(epochs)))
    elif reader == "duckdb":
        duckdb = pytest.importorskip("duckdb")
        counts = tuple(
            duckdb.sql(f"select count(*) from read_parquet('{path}')").fetchall()[0][0]
            for path in (trials, epochs)
        )
    else:
        polars = pytest.importorskip("polars")
        counts = (polars.read_parquet(trials).height, polars.read_parquet(epochs).height)
    assert counts == (len(IDS), sum(_epochs_for(t) for t in IDS))
