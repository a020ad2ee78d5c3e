"""The InfoVAE objective (Zhao, Song & Ermon 2017, eq. 6; docs/objective.md).

Per data point, maximised::

    L = E_q(z|x)[log p(x|z)] - (1 - alpha) KL(q(z|x) || p(z)) - (alpha + lambda - 1) D(q(z) || p(z))

We minimise ``total = -L`` averaged over the batch; D is a batch-level estimate. ELBO
(alpha=0, lambda=1), beta-VAE (alpha=1-beta, lambda=beta) and InfoVAE-MMD are settings of the one
function :func:`infovae_loss`, never separate code paths. D is one of three estimators
(:func:`build_divergence`): ``mmd``, ``adversarial`` (discriminator Jensen-Shannon estimate) or
``stein`` (descended by Stein variational gradient; the logged value is the kernelized Stein
discrepancy). :class:`ObjectiveConfig` refuses settings whose weights would be negative (the
optimiser would then *increase* that term).

The ELBO, ``recon - kl``, is always computed and logged so every arm is comparable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from infovae_core.config import ObjectiveConfig
from infovae_core.divergences import (
    AdversarialDivergence,
    SteinDivergence,
    gaussian_kl_to_standard_normal,
    mmd_squared,
)
from infovae_core.models import VAEOutput

TERM_NAMES: tuple[str, ...] = ("loss", "recon", "kl", "divergence", "elbo")


@dataclass(frozen=True)
class LossTerms:
    """Batch means, 0-dim tensors, nats per image: ``total`` (minimised), ``recon``
    (E_q log p(x|z)), ``kl`` (KL(q(z|x) || p(z))), ``divergence`` (the D estimate, unweighted) and
    ``elbo`` (= recon - kl)."""

    total: Tensor
    recon: Tensor
    kl: Tensor
    divergence: Tensor
    elbo: Tensor

    def as_floats(self) -> dict[str, float]:
        """Names ``loss``, ``recon``, ``kl``, ``divergence``, ``elbo`` to Python floats."""
        return dict(zip(TERM_NAMES, self.stacked().tolist(), strict=True))

    def stacked(self) -> Tensor:
        """[5] detached tensor in the order of :meth:`as_floats` (accumulate without a sync)."""
        return torch.stack([self.total, self.recon, self.kl, self.divergence, self.elbo]).detach()


class DivergenceEstimator(Protocol):
    """An estimate of D(q(z) || p(z)) from a batch of codes ``z`` [B, d].

    ``__call__`` returns a 0-dim tensor whose gradient with respect to ``z`` descends D.
    ``update`` runs after each VAE step with the detached batch (e.g. a discriminator's own
    optimiser step); estimators without auxiliary state do nothing there.
    """

    def __call__(self, z: Tensor) -> Tensor: ...

    def update(self, z: Tensor) -> None: ...


class MMDDivergence:
    """D = MMD^2 between the batch z ~ q(z) and as many fresh draws from p(z) = N(0, I), with
    docs/kernels.md's kernel convention (see :func:`infovae_core.divergences.mmd_squared`)."""

    def __init__(self, kernel: str, scales: tuple[float, ...], unbiased: bool):
        self.kernel = kernel
        self.scales = scales
        self.unbiased = unbiased

    def __call__(self, z: Tensor) -> Tensor:
        prior = torch.randn_like(z)
        return mmd_squared(z, prior, kernel=self.kernel, scales=self.scales, unbiased=self.unbiased)

    def update(self, z: Tensor) -> None:
        return None


def build_divergence(
    config: ObjectiveConfig, latent_dim: int, device: torch.device | str = "cpu"
) -> DivergenceEstimator:
    """The estimator of D(q(z) || p(z)) named by ``config.divergence``.

    - ``mmd``: :class:`MMDDivergence` (MMD^2 to prior draws, docs/kernels.md kernel).
    - ``adversarial``: :class:`~infovae_core.divergences.AdversarialDivergence`, the
      Jensen-Shannon estimate of a discriminator on ``device`` with its own Adam optimiser
      (``discriminator_lr``, ``discriminator_width``, ``discriminator_steps``); its parameters
      are not the VAE's.
    - ``stein``: :class:`~infovae_core.divergences.SteinDivergence`, gradient = SVGD direction,
      value = kernelized Stein discrepancy.
    """
    if config.divergence == "mmd":
        return MMDDivergence(config.kernel, config.scales, config.mmd_unbiased)
    if config.divergence == "adversarial":
        return AdversarialDivergence(
            latent_dim,
            width=config.discriminator_width,
            lr=config.discriminator_lr,
            steps=config.discriminator_steps,
            device=device,
        )
    if config.divergence == "stein":
        return SteinDivergence()
    raise ValueError(f"objective.divergence: unknown divergence {config.divergence!r}")


def infovae_loss(output: VAEOutput, divergence: Tensor, config: ObjectiveConfig) -> LossTerms:
    """Negative InfoVAE objective for one batch.

    Args:
        output: the forward pass (``log_px_z`` [B], posterior ``mu``/``logvar`` [B, d]).
        divergence: 0-dim estimate of D(q(z) || p(z)) on this batch (unweighted).
        config: weights ``alpha``, ``lambda_``: KL weight 1 - alpha, D weight alpha + lambda - 1.

    Returns:
        :class:`LossTerms`, batch means in nats per image; ``total = -(recon - (1 - alpha) kl
        - (alpha + lambda - 1) D)``.
    """
    recon = output.log_px_z.mean()
    kl = gaussian_kl_to_standard_normal(output.posterior.mu, output.posterior.logvar).mean()
    total = -(recon - config.kl_weight * kl - config.divergence_weight * divergence)
    return LossTerms(total=total, recon=recon, kl=kl, divergence=divergence, elbo=recon - kl)
