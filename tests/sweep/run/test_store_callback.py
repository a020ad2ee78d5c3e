"""The driver's StoreCallback records a trial that Ray retried from its checkpoint once: the
epochs before the checkpoint from the first attempt, the rest from the retry."""

from __future__ import annotations

from types import SimpleNamespace

from sweep import names
from sweep.run.events import ArmProgress, StudyEvents
from sweep.run.store_callback import StoreCallback
from sweep.run.trial import TrialContext, TrialMeta, TrialResult, epoch_report
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


def test_epochs_reported_together_are_recorded_once_each_in_order(tmp_path):
    store, events, callback, trial = _one_trial(tmp_path)
    callback.on_trial_start(0, [], trial)
    batch = epoch_report([_epoch(1, 0), _epoch(2, 0), _epoch(3, 0)])
    callback.on_trial_result(0, [], trial, batch)
    final = TrialResult(names.COMPLETED, epochs=(_epoch(4, 0), _epoch(5, 0))).to_report()
    callback.on_trial_result(0, [], trial, final)
    callback.on_trial_result(0, [], trial, final)  # a result seen twice adds nothing
    trial.last_result = final
    callback.on_trial_complete(0, [], trial)

    epochs = store.epochs().sort_values(names.EPOCH)
    assert list(epochs[names.EPOCH]) == [1, 2, 3, 4, 5]
    assert list(epochs["train.loss"]) == [1.0, 2.0, 3.0, 4.0, 5.0]
