"""Positive-definite kernels on latent codes, with the project's scale convention.

Kernel convention (docs/kernels.md; raw MMD values are meaningless without it). With ``d``
the latent dimension (the number of columns of the inputs) and ``s`` a scale:

- RBF:  ``k(a, b) = exp(-||a - b||^2 / (2 d s^2))``
- IMQ:  ``k(a, b) = C / (C + ||a - b||^2)`` with ``C = 2 d s^2``
- several scales: the SUM of the kernels over the listed scales, so ``k(a, a) = len(scales)``.

Dividing by ``d`` keeps a scale of 1 meaningful whatever the latent size: for two independent
N(0, I_d) draws, ``E||a - b||^2 = 2d``, so the default bandwidth matches the prior's spread.

All functions are differentiable (autograd) and work on any device and floating dtype.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

KernelName = Literal["rbf", "imq"]

__all__ = ["KernelName", "squared_distances", "rbf_kernel", "imq_kernel", "kernel_matrix"]


def _check_pair(a: Tensor, b: Tensor) -> None:
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(
            f"kernel inputs must be 2-D [n, d] and [m, d], got shapes {tuple(a.shape)} "
            f"and {tuple(b.shape)}"
        )
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"kernel inputs must share the latent dimension d, got {a.shape[1]} and {b.shape[1]}"
        )
    if a.shape[1] == 0:
        raise ValueError("kernel inputs must have latent dimension d >= 1")


def _check_scales(scales: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(s) for s in scales)
    if not values:
        raise ValueError("scales: needs at least one scale")
    if any(not s > 0 for s in values):
        raise ValueError(f"scales: every scale must be > 0, got {values}")
    return values


def squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise squared Euclidean distances ``D[i, j] = ||a_i - b_j||^2``.

    Args:
        a: ``[n, d]``.
        b: ``[m, d]``.

    Returns:
        ``[n, m]``, clamped at 0 (the expansion ``||a||^2 + ||b||^2 - 2 a.b`` used here, which
        costs one matrix product, can round slightly below 0 for near-identical points).
        Unlike ``torch.cdist(...)**2`` the gradient stays finite at zero distance.
    """
    _check_pair(a, b)
    a_sq = (a * a).sum(dim=1, keepdim=True)  # [n, 1]
    b_sq = (b * b).sum(dim=1, keepdim=True).transpose(0, 1)  # [1, m]
    # addmm fuses the product and the sum: one [n, m] temporary fewer than the plain expression.
    return torch.addmm(a_sq + b_sq, a, b.transpose(0, 1), beta=1.0, alpha=-2.0).clamp_min(0.0)


def rbf_kernel(a: Tensor, b: Tensor, scales: Sequence[float] = (1.0,)) -> Tensor:
    """RBF kernel matrix ``sum_s exp(-||a_i - b_j||^2 / (2 d s^2))``.

    Args:
        a: ``[n, d]``; b: ``[m, d]``; ``d`` (the number of columns) sets the bandwidth.
        scales: positive scales ``s``; the kernels are summed over them.

    Returns:
        ``[n, m]``, entries in ``(0, len(scales)]``.
    """
    return _rbf_from_distances(squared_distances(a, b), a.shape[1], _check_scales(scales))


def imq_kernel(a: Tensor, b: Tensor, scales: Sequence[float] = (1.0,)) -> Tensor:
    """Inverse multiquadric kernel matrix ``sum_s C / (C + ||a_i - b_j||^2)``, ``C = 2 d s^2``.

    Args:
        a: ``[n, d]``; b: ``[m, d]``; ``d`` (the number of columns) sets ``C``.
        scales: positive scales ``s``; the kernels are summed over them.

    Returns:
        ``[n, m]``, entries in ``(0, len(scales)]``.
    """
    return _imq_from_distances(squared_distances(a, b), a.shape[1], _check_scales(scales))


def kernel_matrix(
    a: Tensor, b: Tensor, kernel: KernelName = "rbf", scales: Sequence[float] = (1.0,)
) -> Tensor:
    """Kernel matrix ``K[i, j] = k(a_i, b_j)`` for ``kernel`` in ``{"rbf", "imq"}``.

    See the module docstring for the convention (bandwidth ``2 d s^2``, scales summed).

    Args:
        a: ``[n, d]``; b: ``[m, d]``.
        kernel: ``"rbf"`` or ``"imq"``.
        scales: positive scales, summed over.

    Returns:
        ``[n, m]``.
    """
    if kernel == "rbf":
        return rbf_kernel(a, b, scales)
    if kernel == "imq":
        return imq_kernel(a, b, scales)
    raise ValueError(f"kernel: must be 'rbf' or 'imq', got {kernel!r}")


def _rbf_from_distances(sq: Tensor, d: int, scales: tuple[float, ...]) -> Tensor:
    out = torch.exp(sq * (-1.0 / (2.0 * d * scales[0] ** 2)))
    for s in scales[1:]:
        out = out + torch.exp(sq * (-1.0 / (2.0 * d * s**2)))
    return out


def _imq_from_distances(sq: Tensor, d: int, scales: tuple[float, ...]) -> Tensor:
    c = 2.0 * d * scales[0] ** 2
    out = c / (c + sq)
    for s in scales[1:]:
        c = 2.0 * d * s**2
        out = out + c / (c + sq)
    return out
