"""Training-time divergences: differentiable, batch-sized, pure functions of tensors.

- :func:`gaussian_kl_to_standard_normal`: the per-sample KL(q(z|x) || p(z)) of the objective.
- :func:`mmd_squared`: MMD^2 between a batch of codes z ~ q(z) and prior draws, the ``mmd``
  choice of D(q(z) || p(z)) in the InfoVAE objective (DESIGN.md).

Further estimators of D(q(z) || p(z)) (adversarial, Stein) belong in this module too, each as a
function of tensors; the full-data evaluation versions live in :mod:`infovae_core.metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from infovae_core.kernels import KernelName, kernel_matrix

__all__ = ["gaussian_kl_to_standard_normal", "mmd_squared"]


def gaussian_kl_to_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per sample, in nats.

    ``KL = 0.5 * sum_d (mu_d^2 + exp(logvar_d) - 1 - logvar_d)``.

    Args:
        mu: ``[B, d]`` posterior means.
        logvar: ``[B, d]`` posterior log-variances (natural log).

    Returns:
        ``[B]``, one KL per sample (summed over latent dimensions, not averaged).
    """
    if mu.shape != logvar.shape:
        raise ValueError(
            f"mu and logvar must have the same shape, got {tuple(mu.shape)} and "
            f"{tuple(logvar.shape)}"
        )
    if mu.dim() != 2:
        raise ValueError(f"mu must be 2-D [B, d], got shape {tuple(mu.shape)}")
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


def mmd_squared(
    x: Tensor,
    y: Tensor,
    kernel: KernelName = "rbf",
    scales: Sequence[float] = (1.0,),
    unbiased: bool = False,
) -> Tensor:
    """Squared maximum mean discrepancy between samples ``x`` and ``y`` (DESIGN.md kernels).

    Biased V-statistic (default)::

        MMD^2 = mean_{i,i'} k(x_i, x_i') + mean_{j,j'} k(y_j, y_j') - 2 mean_{i,j} k(x_i, y_j)

    which is >= 0 and exactly 0 when ``x`` and ``y`` are the same sample. The unbiased
    U-statistic (``unbiased=True``) drops the diagonal terms ``i = i'`` and ``j = j'`` from the
    two within-sample means (dividing by ``n (n - 1)`` and ``m (m - 1)``); it can be negative.

    Holds the three kernel matrices at once, so it is meant for training batches; for thousands
    of points use the chunked :func:`infovae_core.metrics.mmd`.

    Args:
        x: ``[n, d]`` samples (e.g. z ~ q(z|x) for a batch).
        y: ``[m, d]`` samples (e.g. z ~ N(0, I)).
        kernel: ``"rbf"`` or ``"imq"``; bandwidth ``2 d s^2`` per scale, scales summed.
        scales: positive kernel scales.
        unbiased: use the U-statistic (needs ``n, m >= 2``).

    Returns:
        0-dim tensor, differentiable with respect to ``x`` and ``y``.
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must be [n, d] and [m, d] with the same d, got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    n, m = x.shape[0], y.shape[0]
    if n < 1 or m < 1:
        raise ValueError(f"x and y need at least one row each, got n={n}, m={m}")
    if unbiased and (n < 2 or m < 2):
        raise ValueError(f"the unbiased MMD^2 needs n, m >= 2, got n={n}, m={m}")
    k_xx = kernel_matrix(x, x, kernel, scales)
    k_yy = kernel_matrix(y, y, kernel, scales)
    k_xy = kernel_matrix(x, y, kernel, scales)
    if unbiased:
        xx = (k_xx.sum() - torch.diagonal(k_xx).sum()) / (n * (n - 1))
        yy = (k_yy.sum() - torch.diagonal(k_yy).sum()) / (m * (m - 1))
    else:
        xx = k_xx.mean()
        yy = k_yy.mean()
    return xx + yy - 2.0 * k_xy.mean()
