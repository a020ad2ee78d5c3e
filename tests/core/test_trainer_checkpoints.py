"""Trainer checkpoints: a fit interrupted after epoch k and resumed from its saved TrainState
ends exactly where the uninterrupted fit ends."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from infovae_core.config import TrialConfig
from infovae_core.trainer import TrainState, fit


class Interrupted(Exception):
    """Stands in for a lost node: raised from the epoch callback."""


def _config(**overrides) -> TrialConfig:
    values = {
        "model.encoder.width": 32,
        "model.decoder.width": 32,
        "model.latent_dim": 4,
        "train.epochs": 5,
        "train.batch_size": 128,
        "train.device": "cpu",
        "train.checkpoint_every": 2,
        "train.checkpoint_min_seconds": 0.0,
        "train.val_points": 100,
        "eval.iwae_samples": 5,
        "eval.iwae_points": 50,
        "eval.probe_labels": [100],
    }
    values.update(overrides)
    return TrialConfig.from_dict(values)


def _interrupted_then_resumed(config: TrialConfig, stop_after: int, tmp_path):
    """Fit until the epoch callback of ``stop_after`` raises, keeping the checkpoints; then
    resume a fresh fit from the last one, read back from a file."""
    saved = []

    def stop(record) -> None:
        if record.epoch == stop_after:
            raise Interrupted

    with pytest.raises(Interrupted):
        fit(config, callback=stop, checkpoint=saved.append)
    path = tmp_path / "state.pt"
    saved[-1].save(path)
    # Another process would start from other global RNG states: resuming must not depend on them.
    torch.manual_seed(12345)
    np.random.seed(12345)
    random.seed(12345)
    return saved[-1].epoch, fit(config, resume_from=TrainState.load(path))


@pytest.mark.parametrize(
    "overrides",
    [
        {"objective.alpha": 1.0, "objective.lambda": 10.0},  # MMD, dynamic binarisation
        {"objective.divergence": "adversarial", "objective.alpha": 0.0, "objective.lambda": 2.0},
        {"train.lr_schedule": "cosine", "train.lr_min": 1e-4},
    ],
    ids=["mmd", "adversarial", "cosine-lr"],
)
def test_resumed_fit_ends_with_the_uninterrupted_fits_metrics_and_parameters(overrides, tmp_path):
    config = _config(**overrides)
    whole = fit(config)
    # Interrupted during epoch 3's callback: the last checkpoint is epoch 2's.
    resumed_epoch, resumed = _interrupted_then_resumed(config, stop_after=3, tmp_path=tmp_path)

    assert resumed_epoch == 2
    assert resumed.metrics == whole.metrics
    assert [(r.epoch, r.train, r.val) for r in resumed.history] == [
        (r.epoch, r.train, r.val) for r in whole.history
    ]
    for name, value in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name
    assert np.array_equal(resumed.samples, whole.samples)


def test_fit_resumed_from_its_last_epochs_checkpoint_only_evaluates(tmp_path):
    config = _config(**{"train.epochs": 4})
    whole = fit(config)
    resumed_epoch, resumed = _interrupted_then_resumed(config, stop_after=4, tmp_path=tmp_path)
    assert resumed_epoch == 4
    assert resumed.metrics == whole.metrics


def test_checkpoints_come_every_checkpoint_every_epochs_before_the_epoch_callback():
    calls = []
    fit(
        _config(**{"train.epochs": 5, "train.checkpoint_every": 2}),
        callback=lambda record: calls.append(("epoch", record.epoch)),
        checkpoint=lambda state: calls.append(("checkpoint", state.epoch, len(state.history))),
    )
    assert calls == [
        ("epoch", 1),
        ("checkpoint", 2, 2),
        ("epoch", 2),
        ("epoch", 3),
        ("checkpoint", 4, 4),
        ("epoch", 4),
        ("epoch", 5),
    ]


def test_checkpoint_every_zero_turns_checkpoints_off():
    saved = []
    fit(_config(**{"train.epochs": 2, "train.checkpoint_every": 0}), checkpoint=saved.append)
    assert saved == []


def test_negative_checkpoint_every_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="train.checkpoint_every"):
        _config(**{"train.checkpoint_every": -1})


def test_no_checkpoint_before_checkpoint_min_seconds_of_training():
    saved = []
    fit(
        _config(**{"train.epochs": 4, "train.checkpoint_min_seconds": 3600.0}),
        checkpoint=saved.append,
    )
    assert saved == []  # every 2nd epoch is due, but an hour of training has not passed


def test_checkpoint_min_seconds_out_of_range_is_refused_naming_the_key():
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="train.checkpoint_min_seconds"):
            _config(**{"train.checkpoint_min_seconds": bad})
