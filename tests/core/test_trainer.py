"""The one-trial trainer: learning, reproducibility, callbacks and non-finite losses."""

from __future__ import annotations

import math

import numpy as np
import pytest

from infovae_core.config import TrialConfig
from infovae_core.trainer import NonFiniteLossError, fit

DESIGN_METRICS = {
    "mmd",
    "log_det_cov",
    "mutual_info",
    "nll_iwae",
    "elbo",
    "recon",
    "kl",
    "active_units",
}


def _config(**overrides) -> TrialConfig:
    values = {
        "model.encoder.width": 64,
        "model.decoder.width": 64,
        "model.latent_dim": 4,
        "train.epochs": 6,
        "train.batch_size": 64,
        "eval.iwae_samples": 5,
        "eval.iwae_points": 50,
        "eval.probe_labels": [100],
    }
    values.update(overrides)
    return TrialConfig.from_dict(values)


@pytest.mark.parametrize("alpha,lam", [(0.0, 1.0), (1.0, 10.0)], ids=["elbo", "infovae-mmd"])
def test_short_training_lowers_loss_and_gives_finite_metrics(alpha, lam):
    epochs = []
    result = fit(
        _config(**{"objective.alpha": alpha, "objective.lambda": lam}), callback=epochs.append
    )
    assert [record.epoch for record in epochs] == list(range(1, 7))
    assert epochs[-1].train["loss"] < epochs[0].train["loss"]
    assert epochs[-1].val["loss"] < epochs[0].val["loss"]
    assert DESIGN_METRICS | {"probe_acc_100"} <= set(result.metrics)
    assert all(math.isfinite(v) for v in result.metrics.values())
    assert result.metrics["elbo"] == pytest.approx(result.metrics["recon"] - result.metrics["kl"])
    assert result.latents.shape[1] == 4
    assert result.samples.shape[1:] == (1, 8, 8)
    assert result.reconstructions.shape[0] == 2


def test_training_is_reproducible_with_a_seed():
    config = _config(**{"train.epochs": 2})
    first, second = fit(config), fit(config)
    assert first.history[-1].train == second.history[-1].train
    assert first.metrics == second.metrics


def test_different_seeds_give_different_runs():
    first = fit(_config(**{"train.epochs": 2, "train.seed": 0}))
    second = fit(_config(**{"train.epochs": 2, "train.seed": 1}))
    assert first.history[-1].train["loss"] != second.history[-1].train["loss"]


def test_exploding_learning_rate_raises_non_finite_loss_error():
    with pytest.raises(NonFiniteLossError) as caught:
        fit(_config(**{"train.lr": 1e12, "train.epochs": 5}))
    assert 1 <= caught.value.epoch <= 5
    assert any(not np.isfinite(v) for v in caught.value.terms.values())
    assert f"epoch {caught.value.epoch}" in str(caught.value)


def test_static_binarisation_trains():
    result = fit(_config(**{"data.binarize": "static", "train.epochs": 2}))
    assert math.isfinite(result.metrics["nll_iwae"])


def test_gaussian_likelihood_on_grey_levels_trains():
    result = fit(
        _config(
            **{
                "data.binarize": "none",
                "model.decoder.likelihood": "gaussian",
                "model.decoder.variance": "learned",
                "train.epochs": 3,
            }
        )
    )
    assert result.history[-1].train["loss"] < result.history[0].train["loss"]


def test_cuda_only_settings_are_ignored_on_cpu_with_a_note():
    result = fit(
        _config(
            **{"train.epochs": 1, "train.amp": True, "train.compile": True, "train.device": "cpu"}
        )
    )
    assert any("train.amp ignored on cpu" in note for note in result.notes)
    assert any("train.compile ignored on cpu" in note for note in result.notes)


def test_pixelcnn_on_grey_levels_is_refused_naming_the_key():
    from infovae_core.config import ConfigError

    with pytest.raises(ConfigError, match="data.binarize"):
        _config(**{"model.decoder.kind": "pixelcnn", "data.binarize": "none"})


def test_step_budget_sets_the_number_of_epochs_by_hand_count():
    # 300 images in batches of 64: 4 full batches and one of 44, so 5 steps an epoch;
    # 22 steps need ceil(22 / 5) = 5 epochs.
    config = _config(**{"data.train_size": 300, "train.steps": 22})
    assert config.batches_per_epoch() == 5
    assert config.planned_epochs() == 5
    assert len(fit(config).history) == 5


def test_a_last_batch_of_one_image_is_not_counted_as_a_step():
    # 129 images in batches of 64: 64 + 64 + 1, and the trainer skips a batch of one.
    config = _config(**{"data.train_size": 129, "train.steps": 4})
    assert config.batches_per_epoch() == 2
    assert config.planned_epochs() == 2


def test_without_a_step_budget_epochs_is_the_budget():
    assert _config(**{"train.epochs": 7}).planned_epochs() == 7


def test_validation_subset_changes_the_curves_but_not_the_training_trajectory():
    whole = fit(_config(**{"train.epochs": 3}))
    subset = fit(_config(**{"train.epochs": 3, "train.val_points": 40}))
    # Validation draws from a forked RNG: the model trains exactly the same way ...
    assert [r.train for r in whole.history] == [r.train for r in subset.history]
    for a, b in zip(whole.model.parameters(), subset.model.parameters(), strict=True):
        assert np.array_equal(a.detach().numpy(), b.detach().numpy())
    # ... while its validation curve is measured on other images.
    assert whole.history[-1].val["recon"] != subset.history[-1].val["recon"]


@pytest.mark.parametrize(
    "key,value", [("train.steps", 0), ("train.val_points", 1)], ids=["steps", "val_points"]
)
def test_step_budget_and_validation_subset_are_validated(key, value):
    from infovae_core.config import ConfigError

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        _config(**{key: value})


def test_fit_trains_exactly_like_a_minimal_loop_from_the_same_seed():
    """The trainer adds nothing to the optimisation (docs/reference.md: a reference library's
    loop and ours, from the same weights, data order and noise, must reach the same model). A
    plain loop over the same seeded streams ends with the same parameters as fit, validation
    included."""
    import torch

    from infovae_core.data import binarize, load_dataset
    from infovae_core.models import build_model
    from infovae_core.objective import build_divergence, infovae_loss

    config = _config(**{"train.epochs": 2, "objective.alpha": 0.0, "objective.lambda": 100.0})
    result = fit(config)

    torch.manual_seed(config.train.seed)
    splits = load_dataset(config.data)
    model = build_model(config.model, splits.image_shape)
    divergence = build_divergence(config.objective, config.model.latent_dim)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    generator = torch.Generator().manual_seed(config.train.seed)
    images = splits.train.images
    for _ in range(config.train.epochs):
        epoch_images = binarize(images, generator)
        order = torch.randperm(images.shape[0], generator=generator)
        for start in range(0, images.shape[0], config.train.batch_size):
            index = order[start : start + config.train.batch_size]
            if index.shape[0] < 2:
                continue
            output = model(epoch_images[index])
            loss = infovae_loss(output, divergence(output.z), config.objective).total
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    for ours, plain in zip(result.model.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(ours, plain, rtol=0, atol=1e-6)


def test_cosine_learning_rate_matches_its_closed_form_at_start_middle_and_end():
    from infovae_core.trainer import learning_rate

    train = _config(**{"train.lr": 2e-3, "train.lr_schedule": "cosine",
                       "train.lr_min": 1e-4}).train
    assert learning_rate(train, 0, 100) == pytest.approx(2e-3)
    assert learning_rate(train, 50, 100) == pytest.approx((2e-3 + 1e-4) / 2)
    assert learning_rate(train, 100, 100) == pytest.approx(1e-4)
    # cos(pi / 4) = sqrt(2) / 2: a quarter of the way down the half cosine.
    expected = 1e-4 + (2e-3 - 1e-4) * (1 + math.sqrt(2) / 2) / 2
    assert learning_rate(train, 25, 100) == pytest.approx(expected)


def test_constant_learning_rate_ignores_the_step():
    from infovae_core.trainer import learning_rate

    train = _config(**{"train.lr": 3e-3}).train
    assert {learning_rate(train, step, 10) for step in (0, 5, 10)} == {3e-3}


def test_fit_applies_the_cosine_rate_at_every_gradient_step(monkeypatch):
    import torch

    seen: list[float] = []
    adam_step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return adam_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    config = _config(**{"train.epochs": 3, "train.lr": 1e-3, "train.lr_schedule": "cosine",
                        "data.train_size": 200})
    fit(config)
    # 200 images at batch 64: 3 full batches and one of 8 per epoch, 3 epochs.
    total = 3 * 4
    assert len(seen) == total
    expected = [1e-3 * 0.5 * (1 + math.cos(math.pi * t / total)) for t in range(total)]
    assert seen == pytest.approx(expected)


def test_lr_min_above_lr_is_refused_naming_the_setting():
    from infovae_core.config import ConfigError

    with pytest.raises(ConfigError, match="train.lr_min"):
        _config(**{"train.lr": 1e-3, "train.lr_min": 1e-2})


def test_unknown_lr_schedule_is_refused_listing_the_choices():
    from infovae_core.config import ConfigError

    with pytest.raises(ConfigError, match="constant"):
        _config(**{"train.lr_schedule": "linear"})
