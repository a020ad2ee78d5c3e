"""The trainable cuts each trial's data.train_size from the whole splits the runner shares."""

from __future__ import annotations

import pytest

import infovae_core.trainer as trainer
from infovae_core.config import DataConfig
from infovae_core.data import load_dataset
from sweep import trainable
from sweep.trainable import TRIAL_KEY, TrialContext, run_trial


@pytest.mark.parametrize("train_size", [None, 40])
def test_a_trial_trains_on_its_own_train_size(monkeypatch, train_size) -> None:
    tune = pytest.importorskip("ray.tune")
    whole = load_dataset(DataConfig(dataset="digits"))
    monkeypatch.setitem(trainable._DATA_CACHE, "key", whole)  # as if fetched from Ray already
    seen: dict[str, object] = {}

    def fake_fit(config, data, callback=None):
        seen["train"], seen["val"], seen["test"] = data.train, data.val, data.test
        raise RuntimeError("stop here")

    monkeypatch.setattr(trainer, "fit", fake_fit)
    reports: list[dict] = []
    monkeypatch.setattr(tune, "report", reports.append)
    settings = {"data.dataset": "digits", "data.train_size": None}
    context = TrialContext("s", "search", {"arm": settings}, threads=1, data_key="key")
    config = {TRIAL_KEY: {"arm": "arm", "seed": 0}, "data.train_size": train_size}
    run_trial(config, context, {})
    assert "stop here" in reports[-1]["trial_error"]  # the fake fit was reached
    expected = load_dataset(DataConfig(dataset="digits", train_size=train_size))
    assert len(seen["train"]) == len(expected.train)
    assert bool((seen["train"].images == expected.train.images).all())
    assert seen["val"] is whole.val and seen["test"] is whole.test
