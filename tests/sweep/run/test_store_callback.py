"""The driver's StoreCallback records a trial that Ray retried from its checkpoint once: the
epochs before the checkpoint from the first attempt, the rest from the retry; a trial's epochs,
artefacts and details come from its last checkpoint."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from sweep import names
from sweep.run.events import ArmProgress, StudyEvents
from sweep.run.store_callback import StoreCallback
from sweep.run.trial import (
    TrialArtifacts,
    TrialContext,
    TrialMeta,
    TrialResult,
    write_trial_files,
)
from sweep.store import ResultsStore


def _epoch(epoch: int, attempt: int) -> dict:
    return {names.EPOCH: epoch, "train.loss": 100.0 * attempt + epoch, names.RESUMED_FROM_EPOCH: 0}


def _one_trial(tmp_path):
    """A fresh store, its callback, and one search trial of arm ``arm`` as Tune hands it."""
    store = ResultsStore.create(tmp_path / "s", "name: s\n")
    context = TrialContext("s", names.SEARCH, {"arm": {}}, threads=1, data_key="")
    events = StudyEvents(spec=None, arms={"arm": ArmProgress(planned=1)})
    callback = StoreCallback(store, context, events, "metric.mmd", "minimize")
    trial = SimpleNamespace(
        trial_id="t0",
        config=TrialMeta("arm", "arm-0000", 0).to_config(),
        num_failures=0,
        last_result=None,
    )
    return store, events, callback, trial


def test_a_trial_retried_from_its_checkpoint_keeps_each_epoch_once(tmp_path):
    store, events, callback, trial = _one_trial(tmp_path)

    callback.on_trial_start(0, [], trial)
    for epoch in range(1, 8):  # the first attempt reached epoch 7, its checkpoint is epoch 5's
        callback.on_trial_result(0, [], trial, _epoch(epoch, attempt=0))
    trial.num_failures = 1
    callback.on_trial_recover(0, [], trial)
    callback.on_trial_start(0, [], trial)
    for epoch in range(6, 11):
        callback.on_trial_result(0, [], trial, _epoch(epoch, attempt=1))
    trial.last_result = TrialResult(names.COMPLETED, resumed_from_epoch=5).to_report()
    callback.on_trial_complete(0, [], trial)

    epochs = store.epochs().sort_values(names.EPOCH)
    assert list(epochs[names.EPOCH]) == list(range(1, 11))
    assert list(epochs["train.loss"]) == [e for e in range(1, 6)] + [100 + e for e in range(6, 11)]
    row = store.trials().iloc[0]
    assert row[names.RESUMED_FROM_EPOCH] == 5 and row[names.ATTEMPT] == 1
    assert events.arms["arm"].running == 0 and events.arms["arm"].done == 1


def _checkpoint(directory, epochs, result=None):
    tune = pytest.importorskip("ray.tune")
    directory.mkdir(parents=True)
    write_trial_files(directory, epochs, result)
    return tune.Checkpoint.from_directory(directory)


def test_the_epochs_of_the_last_checkpoint_come_first_then_those_reported_after_it(tmp_path):
    store, events, callback, trial = _one_trial(tmp_path)
    callback.on_trial_start(0, [], trial)
    for epoch in (3, 5):  # epochs reported together: the last of each batch only
        callback.on_trial_result(0, [], trial, _epoch(epoch, attempt=1))
    trial.checkpoint = _checkpoint(tmp_path / "c", [_epoch(e, attempt=0) for e in (1, 2, 3)])
    callback.on_trial_complete(0, [], trial)  # stopped after epoch 5, no final checkpoint

    epochs = store.epochs().sort_values(names.EPOCH)
    assert list(epochs[names.EPOCH]) == [1, 2, 3, 5]
    assert list(epochs["train.loss"]) == [1.0, 2.0, 3.0, 105.0]
    assert store.trials().iloc[0][names.STATUS] == names.STOPPED


def test_a_completed_trial_records_the_artefacts_and_details_of_its_final_checkpoint(tmp_path):
    store, events, callback, trial = _one_trial(tmp_path)
    callback.on_trial_start(0, [], trial)
    latents = np.arange(6, dtype=np.float32).reshape(3, 2)
    final = TrialResult(
        names.COMPLETED,
        metrics={"metric.mmd": 0.5},
        host="worker-7",
        artifacts=TrialArtifacts(latents=latents, samples_png=b"png"),
    )
    trial.last_result = final.to_report()
    trial.checkpoint = _checkpoint(tmp_path / "c", [_epoch(1, 0), _epoch(2, 0)], final)
    callback.on_trial_complete(0, [], trial)

    folder = store.folder / names.ARTIFACTS_DIR / "arm-0000"
    assert np.array_equal(np.load(folder / "latents.npy"), latents)
    assert (folder / "samples.png").read_bytes() == b"png"
    assert list(store.epochs()[names.EPOCH]) == [1, 2]
    row = store.trials().iloc[0]
    assert row[names.HOST] == "worker-7" and row["metric.mmd"] == 0.5
