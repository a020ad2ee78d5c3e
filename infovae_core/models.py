"""One VAE: a Gaussian encoder q(z|x), a decoder p(x|z) that exposes its log-likelihood, and the
standard normal prior p(z) = N(0, I).

Variants (ELBO, beta-VAE, InfoVAE-MMD, ...) differ only in the objective's settings
(:mod:`infovae_core.objective`), never in this file. A decoder is anything with
``log_prob(x, z) -> [B]`` (nats, summed over pixels), ``mean(z)`` and ``sample(z, generator)``; the
loss never hard-codes a BCE, so autoregressive decoders plug in the same way.

Shapes: images ``x`` are ``[B, C, H, W]`` in [0, 1] (binary for Bernoulli likelihoods); latents
``z``, ``mu`` and ``logvar`` are ``[B, d]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from infovae_core.config import DecoderConfig, EncoderConfig, ModelConfig

ImageShape = tuple[int, int, int]

_LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class Posterior:
    """Diagonal Gaussian q(z|x) = N(mu, diag(exp(logvar))); ``mu``, ``logvar``: [B, d]."""

    mu: Tensor
    logvar: Tensor

    def rsample(self, generator: torch.Generator | None = None) -> Tensor:
        """Reparameterised draw z = mu + exp(logvar / 2) * eps, eps ~ N(0, I): [B, d]."""
        eps = torch.randn(
            self.mu.shape, generator=generator, device=self.mu.device, dtype=self.mu.dtype
        )
        return self.mu + torch.exp(0.5 * self.logvar) * eps


@dataclass(frozen=True)
class VAEOutput:
    """One forward pass: the posterior, the latent draw ``z`` [B, d] and log p(x|z) [B] (nats)."""

    posterior: Posterior
    z: Tensor
    log_px_z: Tensor


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _conv_sizes(height: int, depth: int) -> list[int]:
    """Spatial sizes after each 4x4, stride-2, padding-1 convolution: s -> floor(s / 2).

    Depth is capped so that the smallest map is at least 1 pixel wide."""
    sizes = [height]
    while len(sizes) <= depth and sizes[-1] >= 2:
        sizes.append(sizes[-1] // 2)
    return sizes


def _conv_channels(width: int, n_layers: int) -> list[int]:
    base = max(width // 4, 8)
    return [base * 2**i for i in range(n_layers)]


def _conv_plan(image_shape: ImageShape, depth: int, width: int):
    """The stride-2 stack shared by :class:`ConvEncoder` and :class:`ConvDecoderNet` (mirrored):
    the maps' heights and widths after each layer, the number of layers (``depth``, fewer when
    the image is too small) and the channels of each layer."""
    _, height, width_px = image_shape
    sizes_h = _conv_sizes(height, depth)
    sizes_w = _conv_sizes(width_px, depth)
    n_layers = min(len(sizes_h), len(sizes_w)) - 1
    return sizes_h, sizes_w, n_layers, _conv_channels(width, n_layers)


class MLPEncoder(nn.Module):
    """q(z|x) by an MLP: flatten -> ``depth`` x (Linear(width), ReLU) -> Linear(2 d)."""

    def __init__(self, image_shape: ImageShape, latent_dim: int, config: EncoderConfig):
        super().__init__()
        n_pixels = math.prod(image_shape)
        self.net = _mlp([n_pixels] + [config.width] * config.depth + [2 * latent_dim])

    def forward(self, x: Tensor) -> Posterior:
        mu, logvar = self.net(x.flatten(1)).chunk(2, dim=1)
        return Posterior(mu=mu, logvar=logvar)


class ConvEncoder(nn.Module):
    """q(z|x) by stride-2 convolutions (channels doubling from width/4), then Linear(width) and
    Linear(2 d)."""

    def __init__(self, image_shape: ImageShape, latent_dim: int, config: EncoderConfig):
        super().__init__()
        sizes_h, sizes_w, n_layers, channels = _conv_plan(image_shape, config.depth, config.width)
        layers: list[nn.Module] = []
        previous = image_shape[0]
        for c in channels:
            layers += [nn.Conv2d(previous, c, kernel_size=4, stride=2, padding=1), nn.ReLU()]
            previous = c
        self.conv = nn.Sequential(*layers)
        flat = previous * sizes_h[n_layers] * sizes_w[n_layers]
        self.head = _mlp([flat, config.width, 2 * latent_dim])

    def forward(self, x: Tensor) -> Posterior:
        mu, logvar = self.head(F.relu(self.conv(x).flatten(1))).chunk(2, dim=1)
        return Posterior(mu=mu, logvar=logvar)


class MLPDecoderNet(nn.Module):
    """z -> ``depth`` x (Linear(width), ReLU) -> Linear(C H W): per-pixel likelihood parameters."""

    def __init__(self, image_shape: ImageShape, latent_dim: int, config: DecoderConfig):
        super().__init__()
        self.image_shape = image_shape
        self.net = _mlp([latent_dim] + [config.width] * config.depth + [math.prod(image_shape)])

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(-1, *self.image_shape)


class ConvDecoderNet(nn.Module):
    """z -> Linear -> feature map -> stride-2 transposed convolutions mirroring
    :class:`ConvEncoder` -> [B, C, H, W] likelihood parameters."""

    def __init__(self, image_shape: ImageShape, latent_dim: int, config: DecoderConfig):
        super().__init__()
        channels_out = image_shape[0]
        sizes_h, sizes_w, n_layers, channels = _conv_plan(image_shape, config.depth, config.width)
        channels = channels[::-1]
        self.start_shape = (channels[0], sizes_h[n_layers], sizes_w[n_layers])
        self.project = _mlp([latent_dim, config.width, math.prod(self.start_shape)])
        layers: list[nn.Module] = []
        for i in range(n_layers):
            target_h, target_w = sizes_h[n_layers - 1 - i], sizes_w[n_layers - 1 - i]
            current_h, current_w = sizes_h[n_layers - i], sizes_w[n_layers - i]
            out = channels[i + 1] if i + 1 < n_layers else channels_out
            # A 4x4 stride-2 padding-1 transposed conv doubles the size; odd targets (7 from 3)
            # need one extra row/column.
            padding = (target_h - 2 * current_h, target_w - 2 * current_w)
            layers.append(
                nn.ConvTranspose2d(
                    channels[i], out, kernel_size=4, stride=2, padding=1, output_padding=padding
                )
            )
            if i + 1 < n_layers:
                layers.append(nn.ReLU())
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        h = F.relu(self.project(z)).view(-1, *self.start_shape)
        return self.deconv(h)


class BernoulliLikelihood(nn.Module):
    """p(x|z) = prod_pixels Bernoulli(x; sigmoid(logits)); ``params`` are logits [B, C, H, W]."""

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """log p(x|z) summed over pixels: [B], nats."""
        return -F.binary_cross_entropy_with_logits(params, x, reduction="none").flatten(1).sum(1)

    def mean(self, params: Tensor) -> Tensor:
        return torch.sigmoid(params)

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        p = torch.sigmoid(params)
        return (torch.rand(p.shape, generator=generator, device=p.device) < p).to(p.dtype)


class GaussianLikelihood(nn.Module):
    """p(x|z) = prod_pixels N(x; sigmoid(params), sigma^2); sigma fixed (``std``) or one learned
    log-variance per pixel (independent of z)."""

    def __init__(self, image_shape: ImageShape, learned: bool, std: float):
        super().__init__()
        initial = torch.full(image_shape, 2 * math.log(std))
        if learned:
            self.logvar = nn.Parameter(initial)
        else:
            self.register_buffer("logvar", initial)

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """log N(x; mean, exp(logvar)) summed over pixels: [B], nats."""
        mean = torch.sigmoid(params)
        per_pixel = -0.5 * (_LOG_2PI + self.logvar + (x - mean) ** 2 * torch.exp(-self.logvar))
        return per_pixel.flatten(1).sum(1)

    def mean(self, params: Tensor) -> Tensor:
        return torch.sigmoid(params)

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        noise = torch.randn(params.shape, generator=generator, device=params.device)
        return self.mean(params) + torch.exp(0.5 * self.logvar) * noise


class FeedForwardDecoder(nn.Module):
    """A decoder whose pixels are independent given z: a network giving per-pixel parameters and
    a likelihood turning them into log p(x|z)."""

    def __init__(self, net: nn.Module, likelihood: nn.Module):
        super().__init__()
        self.net = net
        self.likelihood = likelihood

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        return self.likelihood.log_prob(self.net(z), x)

    def mean(self, z: Tensor) -> Tensor:
        return self.likelihood.mean(self.net(z))

    def sample(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.likelihood.sample(self.net(z), generator)


class VAE(nn.Module):
    """Encoder q(z|x), decoder p(x|z), prior N(0, I). The objective lives elsewhere."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = latent_dim

    def encode(self, x: Tensor) -> Posterior:
        return self.encoder(x)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z): [B], nats summed over pixels."""
        return self.decoder.log_prob(x, z)

    def forward(self, x: Tensor) -> VAEOutput:
        posterior = self.encode(x)
        z = posterior.rsample()
        return VAEOutput(posterior=posterior, z=z, log_px_z=self.log_likelihood(x, z))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Decoder means for n prior draws: [n, C, H, W] in [0, 1]."""
        device = next(self.parameters()).device
        z = torch.randn((n, self.latent_dim), generator=generator, device=device)
        return self.decoder.mean(z)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Decoder means at the posterior means: [B, C, H, W]."""
        return self.decoder.mean(self.encode(x).mu)


def build_likelihood(config: DecoderConfig, image_shape: ImageShape) -> nn.Module:
    if config.likelihood == "bernoulli":
        return BernoulliLikelihood()
    return GaussianLikelihood(image_shape, learned=config.variance == "learned", std=config.std)


def build_decoder(config: DecoderConfig, image_shape: ImageShape, latent_dim: int) -> nn.Module:
    if config.kind == "mlp":
        return FeedForwardDecoder(
            MLPDecoderNet(image_shape, latent_dim, config), build_likelihood(config, image_shape)
        )
    if config.kind == "conv":
        return FeedForwardDecoder(
            ConvDecoderNet(image_shape, latent_dim, config), build_likelihood(config, image_shape)
        )
    if config.kind == "pixelcnn":
        # Imported here: the autoregressive decoder builds on this module's interface only.
        from infovae_core.pixelcnn import PixelCNNDecoder

        return PixelCNNDecoder(image_shape, latent_dim, config)
    raise ValueError(f"model.decoder.kind: unknown decoder {config.kind!r}")


def build_model(config: ModelConfig, image_shape: ImageShape) -> VAE:
    """The VAE of ``config`` for images of ``image_shape`` = (C, H, W)."""
    encoders = {"mlp": MLPEncoder, "conv": ConvEncoder}
    encoder = encoders[config.encoder.kind](image_shape, config.latent_dim, config.encoder)
    decoder = build_decoder(config.decoder, image_shape, config.latent_dim)
    return VAE(encoder, decoder, config.latent_dim)
