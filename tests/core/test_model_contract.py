"""Contract suite: every encoder x decoder x likelihood x divergence satisfies the same promises."""

from __future__ import annotations

import math
from typing import get_args

import pytest
import torch

from infovae_core.config import (
    DecoderConfig,
    DecoderKind,
    DivergenceKind,
    EncoderConfig,
    EncoderKind,
    ModelConfig,
    ObjectiveConfig,
)
from infovae_core.models import build_model
from infovae_core.objective import build_divergence, infovae_loss

LIKELIHOODS = [("bernoulli", "fixed"), ("gaussian", "fixed"), ("gaussian", "learned")]
SHAPES = [(1, 8, 8), (1, 28, 28)]


def _cases():
    for encoder in get_args(EncoderKind):
        for decoder in get_args(DecoderKind):
            for likelihood, variance in LIKELIHOODS:
                if decoder == "pixelcnn" and likelihood != "bernoulli":
                    continue  # refused by DecoderConfig: PixelCNN models binary pixels
                for divergence in get_args(DivergenceKind):
                    yield encoder, decoder, likelihood, variance, divergence


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[1]}x{s[2]}")
@pytest.mark.parametrize("encoder,decoder,likelihood,variance,divergence", list(_cases()))
def test_forward_loss_and_gradients(shape, encoder, decoder, likelihood, variance, divergence):
    torch.manual_seed(0)
    latent_dim = 4
    config = ModelConfig(
        latent_dim=latent_dim,
        encoder=EncoderConfig(kind=encoder, width=32, depth=2),
        decoder=DecoderConfig(
            kind=decoder, width=32, depth=2, likelihood=likelihood, variance=variance
        ),
    )
    model = build_model(config, shape)
    x = torch.rand(6, *shape)
    if likelihood == "bernoulli":
        x = x.round()
    objective = ObjectiveConfig(alpha=0.0, lambda_=10.0, divergence=divergence)
    estimator = build_divergence(objective, latent_dim)
    output = model(x)

    assert output.z.shape == (6, latent_dim)
    assert output.posterior.mu.shape == output.posterior.logvar.shape == (6, latent_dim)
    assert output.log_px_z.shape == (6,)
    terms = infovae_loss(output, estimator(output.z), objective)
    for name, value in terms.as_floats().items():
        assert math.isfinite(value), name
    terms.total.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"no gradient reaches {name}"
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, f"zero gradient at {name}"

    with torch.no_grad():
        mean = model.decoder.mean(output.z)
        sample = model.decoder.sample(output.z, torch.Generator().manual_seed(0))
    assert mean.shape == sample.shape == x.shape
    assert float(mean.min()) >= 0.0 and float(mean.max()) <= 1.0


def test_conv_capacity_knobs_change_parameter_count():
    def n_params(width, depth):
        config = ModelConfig(decoder=DecoderConfig(kind="conv", width=width, depth=depth))
        return sum(p.numel() for p in build_model(config, (1, 28, 28)).decoder.parameters())

    assert n_params(64, 2) < n_params(128, 2)
    assert n_params(64, 2) != n_params(64, 3)
