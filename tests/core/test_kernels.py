"""Kernels against explicit per-pair formulas (DESIGN.md convention: bandwidth 2 d s^2)."""

from __future__ import annotations

import math

import pytest
import torch

from infovae_core.kernels import imq_kernel, kernel_matrix, rbf_kernel, squared_distances


def _points(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _pair_sq(a: torch.Tensor, b: torch.Tensor) -> float:
    return sum((float(u) - float(v)) ** 2 for u, v in zip(a, b, strict=True))


def test_squared_distances_match_per_pair_sums() -> None:
    a, b = _points(5, 3, 0), _points(4, 3, 1)
    got = squared_distances(a, b)
    assert got.shape == (5, 4)
    for i in range(5):
        for j in range(4):
            assert got[i, j].item() == pytest.approx(_pair_sq(a[i], b[j]), rel=1e-12)


def test_squared_distances_are_never_negative_for_nearby_points_with_large_norms() -> None:
    # ||a||^2 + ||b||^2 - 2 a.b cancels catastrophically here: unclamped, hundreds of entries
    # come out negative in float32.
    g = torch.Generator().manual_seed(0)
    a = 100.0 + 1e-3 * torch.randn(50, 16, generator=g)
    assert (squared_distances(a, a) >= 0).all()


def test_squared_distances_gradient_is_finite_at_zero_distance() -> None:
    a = _points(3, 2, 2).requires_grad_(True)
    rbf_kernel(a, a).sum().backward()
    assert torch.isfinite(a.grad).all()


@pytest.mark.parametrize("scales", [(1.0,), (0.5,), (0.2, 1.0, 5.0)])
def test_rbf_matches_explicit_formula_with_latent_dim_and_summed_scales(scales) -> None:
    d = 3
    a, b = _points(4, d, 3), _points(6, d, 4)
    got = rbf_kernel(a, b, scales)
    for i in range(4):
        for j in range(6):
            sq = _pair_sq(a[i], b[j])
            want = sum(math.exp(-sq / (2 * d * s**2)) for s in scales)
            assert got[i, j].item() == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("scales", [(1.0,), (2.0,), (0.1, 1.0, 10.0)])
def test_imq_matches_explicit_formula_with_latent_dim_and_summed_scales(scales) -> None:
    d = 5
    a, b = _points(3, d, 5), _points(4, d, 6)
    got = imq_kernel(a, b, scales)
    for i in range(3):
        for j in range(4):
            sq = _pair_sq(a[i], b[j])
            want = sum((2 * d * s**2) / (2 * d * s**2 + sq) for s in scales)
            assert got[i, j].item() == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
def test_kernel_at_zero_distance_is_number_of_scales(kernel) -> None:
    a = _points(4, 7, 7)
    k = kernel_matrix(a, a, kernel, (0.5, 1.0, 2.0))
    assert torch.allclose(torch.diagonal(k), torch.full((4,), 3.0, dtype=torch.float64))


def test_kernel_matrix_dispatches_by_name() -> None:
    a, b = _points(3, 2, 8), _points(2, 2, 9)
    assert torch.equal(kernel_matrix(a, b, "rbf", (2.0,)), rbf_kernel(a, b, (2.0,)))
    assert torch.equal(kernel_matrix(a, b, "imq", (2.0,)), imq_kernel(a, b, (2.0,)))


def test_kernel_matrix_rejects_unknown_kernel_by_name() -> None:
    a = _points(2, 2, 10)
    with pytest.raises(ValueError, match="kernel"):
        kernel_matrix(a, a, "laplace", (1.0,))  # type: ignore[arg-type]


def test_kernels_reject_mismatched_latent_dimensions() -> None:
    with pytest.raises(ValueError, match="latent dimension"):
        rbf_kernel(_points(2, 2, 11), _points(2, 3, 12))


@pytest.mark.parametrize("scales", [(), (0.0,), (1.0, -1.0)])
def test_kernels_reject_empty_or_non_positive_scales(scales) -> None:
    a = _points(2, 2, 13)
    with pytest.raises(ValueError, match="scales"):
        imq_kernel(a, a, scales)
