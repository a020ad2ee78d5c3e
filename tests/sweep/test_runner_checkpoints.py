"""Checkpointing trials through real Ray Tune (embedded, one CPU): trials that reuse a trial
actor after a checkpointing trial start fresh, and the checkpoints land in the storage path."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from sweep import names
from sweep.run.runner import run_study
from sweep.spec import load_study
from sweep.trainable import CHECKPOINT_FILE
from tests.sweep.studies import write_study

pytestmark = pytest.mark.slow


def test_checkpointing_trials_on_reused_actors_all_start_fresh(tmp_path):
    study = write_study(tmp_path, "ckpt", trials=2, seeds=0, epochs=3)
    text = study.read_text().replace(
        "train: {epochs:", "train: {checkpoint_every: 1, checkpoint_min_seconds: 0, epochs:"
    )
    study.write_text(text.replace("max_concurrent: 2", "max_concurrent: 1"))
    outcome = run_study(load_study(study), tmp_path / "results" / "ckpt", num_cpus=1)

    trials = pq.read_table(outcome.folder / names.TRIALS_FILE).to_pandas()
    assert len(trials) == 4 and (trials[names.STATUS] == names.COMPLETED).all()
    assert (trials[names.RESUMED_FROM_EPOCH] == 0).all()
    epochs = pq.read_table(outcome.folder / names.EPOCHS_FILE).to_pandas()
    assert epochs.groupby(names.TRIAL_ID)[names.EPOCH].apply(sorted).map(
        tuple
    ).unique().tolist() == [(1, 2, 3)]
    # A recorded trial is never restored: its checkpoints are gone from the storage path.
    kept = list((outcome.folder / names.RAY_DIR).glob(f"*/*/checkpoint_*/{CHECKPOINT_FILE}"))
    assert kept == []
