"""Training-time divergences: differentiable, batch-sized, pure functions of tensors.

- :func:`gaussian_kl_to_standard_normal`: the per-sample KL(q(z|x) || p(z)) of the objective.
- :func:`mmd_squared`: MMD^2 between a batch of codes z ~ q(z) and prior draws, the ``mmd``
  choice of D(q(z) || p(z)) in the InfoVAE objective (docs/objective.md).

- :func:`jensen_shannon_estimate` and :class:`AdversarialDivergence`: the ``adversarial`` choice,
  a discriminator on z with its own optimiser.
- :func:`svgd_direction`, :func:`kernelized_stein_discrepancy` and :class:`SteinDivergence`: the
  ``stein`` choice, D descended by Stein variational gradient on the batch of codes.

The full-data evaluation versions live in :mod:`infovae_core.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from infovae_core.kernels import KernelName, kernel_matrix, squared_distances

__all__ = [
    "AdversarialDivergence",
    "SteinDivergence",
    "gaussian_kl_to_standard_normal",
    "jensen_shannon_estimate",
    "kernelized_stein_discrepancy",
    "median_heuristic_bandwidth",
    "mmd_squared",
    "svgd_direction",
]


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
    """Squared maximum mean discrepancy between samples ``x`` and ``y`` (docs/kernels.md kernels).

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


# --- Stein variational gradient (SVGD) -----------------------------------------------------------
#
# The SVGD kernel is NOT the MMD kernel of docs/kernels.md: it is
# k(a, b) = exp(-||a - b||^2 / h) with the bandwidth h set per batch by the median heuristic,
# as in Liu & Wang (2016) and the InfoVAE paper.


def median_heuristic_bandwidth(z: Tensor) -> Tensor:
    """Bandwidth ``h = med^2 / log(n + 1)`` of the SVGD kernel ``k(a, b) = exp(-||a - b||^2 / h)``.

    ``med^2`` is the median of the squared distances ``||z_i - z_j||^2`` over the pairs i < j
    (the lower of the two middle values for an even number of pairs).
    Liu & Wang (2016)'s rationale: a particle's kernel weight on the others, about
    ``n exp(-med^2 / h) = n / (n + 1) ~ 1``, then balances its own weight ``k(z_i, z_i) = 1``,
    so neither the driving nor the repulsive term dominates (``log(n + 1)`` rather than
    ``log n`` keeps h finite at n = 1 and changes little otherwise).

    Args:
        z: ``[n, d]``, n >= 2. Treated as a constant (detached).

    Returns:
        0-dim tensor, ``> 0`` (clamped at 1e-8 when all points coincide).
    """
    _check_codes(z)
    n = z.shape[0]
    sq = squared_distances(z.detach(), z.detach())
    rows, cols = torch.triu_indices(n, n, offset=1, device=z.device)
    med_sq = sq[rows, cols].median()
    return (med_sq / math.log(n + 1)).clamp_min(1e-8)


def _check_codes(z: Tensor) -> None:
    if z.dim() != 2 or z.shape[0] < 2 or z.shape[1] < 1:
        raise ValueError(f"z must be [n, d] with n >= 2 and d >= 1, got shape {tuple(z.shape)}")


def _bandwidth(z: Tensor, bandwidth: Tensor | float | None) -> Tensor:
    if bandwidth is None:
        return median_heuristic_bandwidth(z)
    return torch.as_tensor(bandwidth, dtype=z.dtype, device=z.device)


def svgd_direction(z: Tensor, bandwidth: Tensor | float | None = None) -> Tensor:
    """SVGD update direction towards p(z) = N(0, I) for the particles ``z``.

    ``phi(z_i) = (1/n) sum_j [ k(z_j, z_i) grad log p(z_j) + grad_{z_j} k(z_j, z_i) ]`` with
    ``grad log p(z) = -z`` and ``k(a, b) = exp(-||a - b||^2 / h)``, so
    ``grad_{z_j} k(z_j, z_i) = (2 / h) (z_i - z_j) k(z_j, z_i)``. The first term pulls the
    particles towards high prior density, the second pushes them apart. Moving every particle by
    ``eps * phi(z_i)`` decreases KL(q || p) at the rate of the kernelized Stein discrepancy
    (:func:`kernelized_stein_discrepancy`), the steepest rate in the unit ball of the kernel's RKHS.

    Args:
        z: ``[n, d]`` particles (treated as constants: the result is detached).
        bandwidth: ``h``; None for :func:`median_heuristic_bandwidth`.

    Returns:
        ``[n, d]``, detached.
    """
    _check_codes(z)
    z = z.detach()
    n = z.shape[0]
    h = _bandwidth(z, bandwidth)
    k = torch.exp(-squared_distances(z, z) / h)  # [n, n], symmetric
    k_z = k @ z  # row i: sum_j k(z_j, z_i) z_j
    driving = -k_z
    repulsive = (2.0 / h) * (z * k.sum(dim=1, keepdim=True) - k_z)
    return (driving + repulsive) / n


def kernelized_stein_discrepancy(
    z: Tensor, bandwidth: Tensor | float | None = None, unbiased: bool = True
) -> Tensor:
    """Kernelized Stein discrepancy KSD^2 between the sample ``z`` and p = N(0, I).

    With the Stein kernel for the score ``s(z) = -z`` and ``k(a, b) = exp(-||a - b||^2 / h)``,
    ``r^2 = ||a - b||^2``::

        u(a, b) = s(a).s(b) k + s(a).grad_b k + s(b).grad_a k + tr(grad_a grad_b k)
                = k(a, b) [ a.b - 2 r^2 / h + 2 d / h - 4 r^2 / h^2 ]

    - ``unbiased=True`` (default): the U-statistic ``sum_{i != j} u(z_i, z_j) / (n (n - 1))``,
      unbiased for KSD^2, so about 0 for a sample from p at any n (it can be slightly negative).
    - ``unbiased=False``: the V-statistic ``sum_{i, j} u(z_i, z_j) / n^2``, the squared RKHS norm
      of :func:`svgd_direction` (>= 0), i.e. the rate at which that SVGD step decreases
      KL(q || p); its i = j terms add a positive O(1/n) bias (about (d + 2d/h) / n).

    Dimensionless; the population KSD^2 is 0 exactly when q = p (the RBF kernel is
    characteristic).

    Args:
        z: ``[n, d]``, n >= 2 (detached).
        bandwidth: ``h``; None for :func:`median_heuristic_bandwidth`.
        unbiased: U-statistic rather than V-statistic.

    Returns:
        0-dim tensor, detached.
    """
    _check_codes(z)
    z = z.detach()
    n, d = z.shape
    h = _bandwidth(z, bandwidth)
    sq = squared_distances(z, z)
    k = torch.exp(-sq / h)
    u = k * (z @ z.transpose(0, 1) - 2.0 * sq / h + 2.0 * d / h - 4.0 * sq / h**2)
    if unbiased:
        return (u.sum() - torch.diagonal(u).sum()) / (n * (n - 1))
    return u.sum() / (n * n)


class SteinDivergence:
    """D(q(z) || p(z)) descended by Stein variational gradient on the encoder's batch of codes.

    ``__call__(z)`` returns a 0-dim tensor whose

    - gradient with respect to ``z`` is ``-phi(z) / n`` (``phi`` from :func:`svgd_direction`),
      from the surrogate ``-(phi.detach() * z).sum() / n``: a gradient step on the encoder's
      parameters theta moves them by ``lr * w / n * sum_i (dz_i/dtheta)^T phi(z_i)``, i.e. the
      codes along the SVGD direction, as in the InfoVAE paper (w = alpha + lambda - 1). The
      ``1 / n`` matches the batch-mean reconstruction and KL terms;
    - value is the unbiased kernelized Stein discrepancy KSD^2 of the batch (U-statistic of
      :func:`kernelized_stein_discrepancy`, same kernel and bandwidth, detached): about 0 when
      the codes follow N(0, I), growing as q(z) departs from it. That is what the logs show as
      ``divergence``; the surrogate's own value is not a divergence and is not reported.

    No auxiliary state: ``update`` does nothing.
    """

    def __call__(self, z: Tensor) -> Tensor:
        bandwidth = median_heuristic_bandwidth(z)
        phi = svgd_direction(z, bandwidth)
        surrogate = -(phi * z).sum() / z.shape[0]
        value = kernelized_stein_discrepancy(z, bandwidth)
        # Value of ``value``, gradient of ``surrogate``.
        return value + surrogate - surrogate.detach()

    def update(self, z: Tensor) -> None:
        return None


# --- Adversarial (Jensen-Shannon) ----------------------------------------------------------------


def jensen_shannon_estimate(logits_q: Tensor, logits_p: Tensor) -> Tensor:
    """Discriminator estimate of JS(q || p), in nats.

    With ``D(z) = sigmoid(T(z))`` the probability that z came from q rather than from p::

        JS_hat = log 2 + 0.5 E_q[log D(z)] + 0.5 E_p[log(1 - D(z))]

    (expectations as batch means). For every discriminator this is a lower bound of JS(q || p)
    (Goodfellow et al. 2014: the GAN value E_q log D + E_p log(1 - D) is at most 2 JS - log 4),
    reached by the optimal ``T*(z) = log q(z) / p(z)``; a chance-level discriminator
    (``T = 0``) gives exactly 0. It lies in (-inf, log 2]; slightly negative values mean a
    discriminator worse than chance on this batch.

    Args:
        logits_q: ``[n]`` discriminator logits T(z) on codes z ~ q(z).
        logits_p: ``[m]`` logits on draws z ~ p(z).

    Returns:
        0-dim tensor, differentiable with respect to both inputs.
    """
    return (
        math.log(2.0)
        + 0.5 * F.logsigmoid(logits_q).mean()
        + 0.5 * F.logsigmoid(-logits_p).mean()
    )


class AdversarialDivergence:
    """D(q(z) || p(z)) = the Jensen-Shannon estimate of a discriminator on codes.

    The discriminator T is an MLP ``d -> width -> width -> 1`` (LeakyReLU 0.2) with its own Adam
    optimiser (learning rate ``lr``); it lives on ``device`` and its parameters are not the VAE's
    (the VAE's optimiser never sees them).

    - ``__call__(z)``: :func:`jensen_shannon_estimate` of T on ``z`` and on as many fresh
      N(0, I) draws. Differentiable with respect to ``z`` only: T's parameters enter as constants,
      so the VAE's backward pass leaves no gradient on them. Why that gradient is right: the
      estimate at the optimal discriminator is JS(q_theta || p) = max_T V(theta, T), and by the
      envelope (Danskin) theorem d/dtheta max_T V = dV/dtheta at T = T*, T held fixed; only the
      ``E_q[log D(z)]`` term depends on theta, through the reparameterised ``z``. (Like the
      original minimax GAN loss, this gradient fades when T is very confident; the KL term keeps
      q(z) close enough to p(z) for that to matter little.)
    - ``update(z)``: ``steps`` Adam steps on the discriminator's binary cross-entropy, q-codes
      labelled 1 and fresh prior draws 0, i.e. maximising the same estimate
      (``BCE = 2 (log 2 - JS_hat)``). The trainer calls it after each VAE step with the detached
      batch.
    """

    def __init__(
        self,
        latent_dim: int,
        width: int = 256,
        lr: float = 1e-3,
        steps: int = 1,
        device: torch.device | str = "cpu",
    ):
        if latent_dim < 1 or width < 1 or steps < 1 or not lr > 0:
            raise ValueError(
                f"need latent_dim, width, steps >= 1 and lr > 0, got {latent_dim}, {width}, "
                f"{steps}, {lr}"
            )
        self.steps = steps
        self.discriminator = nn.Sequential(
            nn.Linear(latent_dim, width),
            nn.LeakyReLU(0.2),
            nn.Linear(width, width),
            nn.LeakyReLU(0.2),
            nn.Linear(width, 1),
        ).to(device)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=lr)

    def logits(self, z: Tensor) -> Tensor:
        """T(z): ``[n]`` logits, > 0 meaning "from q"; differentiable in z and in T's parameters."""
        return self.discriminator(z).squeeze(1)

    def __call__(self, z: Tensor) -> Tensor:
        constants = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        logits_q = functional_call(self.discriminator, constants, (z,)).squeeze(1)
        with torch.no_grad():
            logits_p = self.logits(torch.randn_like(z))
        return jensen_shannon_estimate(logits_q, logits_p)

    def update(self, z: Tensor) -> None:
        z = z.detach()
        for _ in range(self.steps):
            logits_q = self.logits(z)
            logits_p = self.logits(torch.randn_like(z))
            loss = 2.0 * (math.log(2.0) - jensen_shannon_estimate(logits_q, logits_p))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
