"""The PixelCNN decoder: causality, no blind spot, a normalised likelihood, and sampling that
draws from that likelihood."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from infovae_core.config import ConfigError, DecoderConfig, ModelConfig, TrialConfig
from infovae_core.models import build_model
from infovae_core.pixelcnn import PixelCNNDecoder


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: intra-op threads only add synchronisation, which stalls on busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


LATENT = 3


def _decoder(shape=(1, 6, 7), layers=3, channels=8, kernel=3, seed=0) -> PixelCNNDecoder:
    torch.manual_seed(seed)
    config = DecoderConfig(
        kind="pixelcnn",
        width=16,
        depth=1,
        pixelcnn_layers=layers,
        pixelcnn_channels=channels,
        pixelcnn_kernel=kernel,
    )
    return PixelCNNDecoder(shape, LATENT, config).double()


def _bits(shape, seed) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g, dtype=torch.float64) < 0.5).double()


@pytest.mark.parametrize(
    "shape,kernel,layers",
    [((1, 6, 7), 3, 1), ((1, 6, 7), 5, 2), ((2, 4, 5), 3, 3)],
    ids=["1x6x7-k3-l1", "1x6x7-k5-l2", "2x4x5-k3-l3"],
)
@torch.no_grad()
def test_logits_at_pixel_unchanged_when_later_pixels_change(shape, kernel, layers):
    decoder = _decoder(shape, layers=layers, kernel=kernel)
    c, h, w = shape
    x = _bits((4, *shape), seed=1)
    z = torch.randn(4, LATENT, dtype=torch.float64)
    base = decoder.logits(x, z)
    for t in range(h * w):
        changed = x.clone().view(4, c, h * w)
        changed[:, :, t:] = _bits((4, c, h * w - t), seed=100 + t)
        changed[:, :, t] = 1 - x.view(4, c, h * w)[:, :, t]  # surely different at pixel t
        logits = decoder.logits(changed.view(4, c, h, w), z).view(4, c, h * w)
        torch.testing.assert_close(logits[:, :, : t + 1], base.view(4, c, h * w)[:, :, : t + 1])


def _dependence(decoder: PixelCNNDecoder, shape, i: int, j: int) -> torch.Tensor:
    """[H, W] mask of the input pixels that the logits at (i, j) have a nonzero gradient for."""
    x = _bits((1, *shape), seed=3).requires_grad_(True)
    z = torch.randn(1, LATENT, dtype=torch.float64)
    decoder.logits(x, z)[0, :, i, j].sum().backward()
    return x.grad[0].abs().sum(0) > 0


def test_logits_depend_on_the_whole_causal_neighbourhood_without_blind_spot():
    # Two layers of 3x3 gated convolutions: pixel (i, j) sees rows i-2, i-1 at columns
    # j-2 .. j+2 and row i at columns j-2, j-1, and nothing else. A single masked stack would
    # miss (i-1, j+2) (the classic blind spot above and to the right).
    shape = (1, 7, 7)
    decoder = _decoder(shape, layers=2, kernel=3)
    i, j = 4, 3
    expected = torch.zeros(7, 7, dtype=torch.bool)
    expected[i - 2 : i, j - 2 : j + 3] = True
    expected[i, j - 2 : j] = True
    assert torch.equal(_dependence(decoder, shape, i, j), expected)


def test_log_prob_is_a_normalised_distribution_over_all_images():
    # 1 x 2 x 3 images: all 64 of them; sum_x p(x|z) = 1 holds only for a causal factorisation.
    shape = (1, 2, 3)
    decoder = _decoder(shape, layers=2, kernel=3)
    images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=6)), dtype=torch.float64)
    images = images.view(64, *shape)
    for seed in range(3):
        z = torch.randn(
            1, LATENT, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
        )
        log_p = decoder.log_prob(images, z.expand(64, LATENT)).detach()
        assert math.isclose(float(torch.logsumexp(log_p, 0)), 0.0, abs_tol=1e-10)


def test_log_prob_is_the_bernoulli_log_likelihood_of_the_logits():
    shape = (1, 5, 4)
    decoder = _decoder(shape)
    x = _bits((3, *shape), seed=4)
    z = torch.randn(3, LATENT, dtype=torch.float64)
    p = torch.sigmoid(decoder.logits(x, z))
    expected = (x * torch.log(p) + (1 - x) * torch.log1p(-p)).flatten(1).sum(1)
    torch.testing.assert_close(decoder.log_prob(x, z), expected)


def test_log_prob_depends_on_z():
    shape = (1, 5, 4)
    decoder = _decoder(shape)
    x = _bits((2, *shape), seed=5)
    z = torch.randn(2, LATENT, dtype=torch.float64, requires_grad=True)
    decoder.log_prob(x, z).sum().backward()
    assert (z.grad.abs().sum(1) > 0).all()


def test_sample_shape_and_binary_values():
    shape = (2, 5, 6)
    decoder = _decoder(shape)
    z = torch.randn(7, LATENT, dtype=torch.float64)
    x = decoder.sample(z, torch.Generator().manual_seed(0))
    assert x.shape == (7, *shape)
    assert set(x.unique().tolist()) == {0.0, 1.0}


def test_mean_is_probabilities_in_unit_interval():
    shape = (1, 5, 6)
    decoder = _decoder(shape)
    mean = decoder.mean(torch.randn(7, LATENT, dtype=torch.float64), torch.Generator())
    assert mean.shape == (7, *shape)
    assert float(mean.min()) > 0.0 and float(mean.max()) < 1.0


@pytest.mark.parametrize("kernel,layers", [(3, 1), (5, 3)])
def test_sampling_probabilities_equal_teacher_forced_probabilities(kernel, layers):
    # The incremental sampler and the full teacher-forced pass are separate code paths.
    shape = (2, 6, 7)
    decoder = _decoder(shape, layers=layers, kernel=kernel)
    z = torch.randn(5, LATENT, dtype=torch.float64)
    x = decoder.sample(z, torch.Generator().manual_seed(9))
    probs = decoder.mean(z, torch.Generator().manual_seed(9))  # same draws, their probabilities
    torch.testing.assert_close(probs, torch.sigmoid(decoder.logits(x, z)).detach())


def test_samples_follow_the_model_distribution():
    shape = (1, 2, 2)
    decoder = _decoder(shape, layers=2, kernel=3)
    z = torch.randn(1, LATENT, dtype=torch.float64).expand(4000, LATENT)
    samples = decoder.sample(z, torch.Generator().manual_seed(0)).view(4000, 4)
    codes = (samples * torch.tensor([8.0, 4.0, 2.0, 1.0], dtype=torch.float64)).sum(1).long()
    empirical = torch.bincount(codes, minlength=16).double() / 4000
    images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)), dtype=torch.float64)
    model = decoder.log_prob(images.view(16, *shape), z[:16]).exp().detach()
    # Binomial standard error at n = 4000 is at most 0.008.
    assert (empirical - model).abs().max() < 0.035


def test_sampling_is_reproducible_with_a_generator():
    decoder = _decoder((1, 4, 4))
    z = torch.randn(3, LATENT, dtype=torch.float64)
    a = decoder.sample(z, torch.Generator().manual_seed(1))
    b = decoder.sample(z, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_sampling_restores_the_thread_count():
    before = torch.get_num_threads()
    _decoder((1, 3, 3)).sample(torch.randn(2, LATENT, dtype=torch.float64))
    assert torch.get_num_threads() == before


def test_build_model_gives_pixelcnn_decoder_for_the_pixelcnn_kind():
    config = ModelConfig(latent_dim=LATENT, decoder=DecoderConfig(kind="pixelcnn"))
    model = build_model(config, (1, 8, 8))
    assert isinstance(model.decoder, PixelCNNDecoder)
    samples = model.sample(3, torch.Generator().manual_seed(0))
    assert samples.shape == (3, 1, 8, 8)


def test_capacity_knobs_change_parameter_count():
    def n_params(**knobs) -> int:
        torch.manual_seed(0)
        decoder = PixelCNNDecoder((1, 8, 8), LATENT, DecoderConfig(kind="pixelcnn", **knobs))
        return sum(p.numel() for p in decoder.parameters())

    base = n_params(pixelcnn_layers=2, pixelcnn_channels=16, pixelcnn_kernel=3)
    assert n_params(pixelcnn_layers=4, pixelcnn_channels=16, pixelcnn_kernel=3) > base
    assert n_params(pixelcnn_layers=2, pixelcnn_channels=32, pixelcnn_kernel=3) > base
    assert n_params(pixelcnn_layers=2, pixelcnn_channels=16, pixelcnn_kernel=7) > base


def test_pixelcnn_with_gaussian_likelihood_is_refused():
    with pytest.raises(ConfigError, match="model.decoder.likelihood.*bernoulli"):
        TrialConfig.from_dict(
            {"model.decoder.kind": "pixelcnn", "model.decoder.likelihood": "gaussian"}
        )


@pytest.mark.parametrize(
    "key,value",
    [
        ("model.decoder.pixelcnn_kernel", 4),
        ("model.decoder.pixelcnn_kernel", 1),
        ("model.decoder.pixelcnn_layers", 0),
        ("model.decoder.pixelcnn_channels", 1),
    ],
)
def test_bad_pixelcnn_knobs_are_refused_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=key):
        TrialConfig.from_dict({"model.decoder.kind": "pixelcnn", key: value})


def test_pixelcnn_knobs_flow_through_dotted_keys():
    config = TrialConfig.from_dict(
        {
            "model.decoder.kind": "pixelcnn",
            "model.decoder.pixelcnn_layers": 2,
            "model.decoder.pixelcnn_channels": 12,
            "model.decoder.pixelcnn_kernel": 7,
        }
    )
    flat = config.to_flat_dict()
    assert flat["model.decoder.pixelcnn_layers"] == 2
    assert flat["model.decoder.pixelcnn_channels"] == 12
    assert flat["model.decoder.pixelcnn_kernel"] == 7
    assert TrialConfig.from_dict(flat) == config
    decoder = build_model(config.model, (1, 8, 8)).decoder
    assert len(decoder.layers) == 2
    assert decoder.layers[1].vertical.kernel_size == (4, 7)
    assert decoder.layers[1].horizontal_out.out_channels == 12
