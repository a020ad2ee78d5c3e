"""Evaluation metrics (docs/metrics.md): plain functions returning Python floats.

Full-data metrics (:func:`mmd`, :func:`mutual_information`) are CHUNKED: blocks of rows meet
blocks of columns and only running sums are kept, so no ``N x N`` matrix is ever held. Memory is
``O(chunk_size^2 + N d)``; 60,000 latents of dimension 64 take well under 2 GB and tens of
seconds on two CPU cores.

Kernel convention (as :mod:`infovae_core.kernels`): RBF ``k(a, b) = exp(-||a - b||^2 / (2 d s^2))``,
IMQ ``k(a, b) = C / (C + ||a - b||^2)``, ``C = 2 d s^2``, ``d`` the latent dimension, several
scales summed. Logarithms are natural, so information and likelihoods are in nats.

Randomness comes only from an explicit ``torch.Generator`` (never the global RNG); its noise is
drawn on the generator's device and then moved, so a CPU generator gives the same draws whether
the model runs on CPU or GPU.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from infovae_core.kernels import KernelName, kernel_matrix

if TYPE_CHECKING:  # evaluation imports this module; the Protocol is only needed for typing.
    from infovae_core.evaluation import LatentVariableModel

__all__ = [
    "active_units",
    "gaussian_log_density",
    "linear_probe_accuracy",
    "log_det_cov",
    "mmd",
    "mutual_information",
    "nll_iwae",
    "eval_mode",
    "sample_standard_normal",
    "standard_normal_log_density",
]

ArrayLike = Tensor | np.ndarray

_LOG_2PI = math.log(2.0 * math.pi)
DEFAULT_CHUNK_SIZE = 1024  # blocks of 1024 x 1024: a few MB each, and fast on CPU caches


def _as_2d_float(name: str, value: ArrayLike) -> Tensor:
    t = torch.as_tensor(value)
    if t.dim() != 2:
        raise ValueError(f"{name}: must be 2-D [N, d], got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.to(torch.float32)
    elif t.dtype in (torch.float16, torch.bfloat16):
        t = t.to(torch.float32)  # half precision loses the kernel's small differences
    return t


def _check_chunk(chunk_size: int) -> None:
    if chunk_size < 1:
        raise ValueError(f"chunk_size: must be >= 1, got {chunk_size}")


def sample_standard_normal(
    shape: Sequence[int],
    generator: torch.Generator | None,
    device: torch.device,
    dtype: torch.dtype,
) -> Tensor:
    """N(0, 1) noise of ``shape`` drawn on the generator's device, then moved to ``device``."""
    source = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=source, dtype=dtype).to(device)


def gaussian_log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over the last (latent) dimension, in nats.

    ``log q = -0.5 * sum_d [log(2 pi) + logvar_d + (z_d - mu_d)^2 exp(-logvar_d)]``.

    Args:
        z, mu, logvar: broadcastable tensors ``[..., d]`` (e.g. z ``[k, B, d]`` with mu, logvar
            ``[B, d]``).

    Returns:
        ``[...]``: the broadcast shape without its last dimension.
    """
    return -0.5 * (_LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(dim=-1)


def standard_normal_log_density(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over the last dimension: ``-0.5 * sum_d (log(2 pi) + z_d^2)``."""
    return -0.5 * (_LOG_2PI + z.pow(2)).sum(dim=-1)


def _block_sum(
    a: Tensor,
    b: Tensor,
    kernel: KernelName,
    scales: Sequence[float],
    chunk_size: int,
    symmetric: bool,
) -> float:
    """``sum_{i,j} k(a_i, b_j)`` over all pairs, in float64, block by block.

    With ``symmetric`` (``a is b``) only blocks on or above the diagonal are computed and the
    off-diagonal ones counted twice: half the work for the within-sample sums.
    """
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    n, m = a.shape[0], b.shape[0]
    for i in range(0, n, chunk_size):
        a_block = a[i : i + chunk_size]
        for j in range(i if symmetric else 0, m, chunk_size):
            block = kernel_matrix(a_block, b[j : j + chunk_size], kernel, scales)
            # Row sums of <= chunk_size entries in the block's dtype, then float64: accurate
            # to ~1e-7 relative, and much faster than a float64 reduction of the whole block.
            partial = block.sum(dim=1).to(torch.float64).sum()
            total += partial if (not symmetric or i == j) else 2.0 * partial
    return float(total)


def mmd(
    x: ArrayLike,
    y: ArrayLike,
    kernel: KernelName = "rbf",
    scales: Sequence[float] = (1.0,),
    unbiased: bool = True,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> float:
    """Squared MMD between samples ``x`` and ``y`` over all pairs, chunked (no N x N matrix).

    Unbiased U-statistic (default, the ``metric.mmd`` definition)::

        MMD^2 = sum_{i != i'} k(x_i, x_i') / (n (n-1)) + sum_{j != j'} k(y_j, y_j') / (m (m-1))
                - 2 sum_{i,j} k(x_i, y_j) / (n m)

    It is an unbiased estimate of the population MMD^2 and can be slightly negative.
    ``unbiased=False`` gives the biased V-statistic (means over all pairs, diagonals included),
    matching :func:`infovae_core.divergences.mmd_squared`. The diagonal ``k(a, a)`` equals
    ``len(scales)`` exactly for both kernels and is removed in closed form.

    Args:
        x: ``[n, d]``; y: ``[m, d]`` (tensors or arrays, any device).
        kernel: ``"rbf"`` or ``"imq"`` (docs/kernels.md convention, bandwidth ``2 d s^2``).
        scales: positive scales, summed.
        unbiased: U-statistic (needs ``n, m >= 2``) instead of the V-statistic.
        chunk_size: rows (and columns) per block; peak extra memory ~ a few ``chunk_size^2``
            floats. Blocks are computed in float32 (float64 when both inputs are float64) and
            summed into float64 accumulators.

    Returns:
        MMD^2 as a Python float (squared kernel units, dimensionless).
    """
    _check_chunk(chunk_size)
    xt, yt = _as_2d_float("x", x), _as_2d_float("y", y)
    if xt.shape[1] != yt.shape[1]:
        raise ValueError(
            f"x and y must share the latent dimension, got {xt.shape[1]} and {yt.shape[1]}"
        )
    dtype = torch.promote_types(xt.dtype, yt.dtype)
    xt, yt = xt.to(dtype), yt.to(device=xt.device, dtype=dtype)
    n, m = xt.shape[0], yt.shape[0]
    if unbiased and (n < 2 or m < 2):
        raise ValueError(f"the unbiased MMD^2 needs n, m >= 2, got n={n}, m={m}")
    if n < 1 or m < 1:
        raise ValueError(f"x and y need at least one row each, got n={n}, m={m}")
    with torch.no_grad():
        s_xx = _block_sum(xt, xt, kernel, scales, chunk_size, symmetric=True)
        s_yy = _block_sum(yt, yt, kernel, scales, chunk_size, symmetric=True)
        s_xy = _block_sum(xt, yt, kernel, scales, chunk_size, symmetric=False)
    if unbiased:
        k_self = float(len(tuple(scales)))  # k(a, a) = 1 per scale for both kernels
        return (
            (s_xx - n * k_self) / (n * (n - 1))
            + (s_yy - m * k_self) / (m * (m - 1))
            - 2.0 * s_xy / (n * m)
        )
    return s_xx / n**2 + s_yy / m**2 - 2.0 * s_xy / (n * m)


def log_det_cov(z: ArrayLike) -> float:
    """log det of the sample covariance of ``z`` (``[N, d]``), in float64.

    ``Sigma = (z - mean)^T (z - mean) / (N - 1)``; returns ``log det Sigma`` from ``slogdet``
    (0 for samples of a perfect N(0, I), up to sampling noise). A covariance that is singular
    to working precision (smallest eigenvalue <= ``d * eps * largest``, the rank tolerance of
    ``numpy.linalg.matrix_rank``; e.g. ``N <= d`` or a dimension copying another) gives
    ``-inf`` rather than a rounding-dependent large negative number.
    """
    zt = _as_2d_float("z", z).to(torch.float64)
    n, d = zt.shape
    if n < 2:
        raise ValueError(f"z: needs at least 2 rows for a covariance, got {n}")
    centred = zt - zt.mean(dim=0, keepdim=True)
    cov = centred.T @ centred / (n - 1)
    eigenvalues = torch.linalg.eigvalsh(cov)
    if float(eigenvalues[0]) <= d * torch.finfo(torch.float64).eps * float(eigenvalues[-1]):
        return float("-inf")
    sign, logabsdet = torch.linalg.slogdet(cov)
    if float(sign) <= 0:
        return float("-inf")
    return float(logabsdet)


def mutual_information(
    mu: ArrayLike,
    logvar: ArrayLike,
    *,
    generator: torch.Generator | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> float:
    """I_q(x; z) under the aggregate posterior of N points, exact mixture, in nats.

    With q(z|x_j) = N(mu_j, diag(exp(logvar_j))) and one draw z_i ~ q(z|x_i) per point::

        I = mean_i [ log q(z_i|x_i) - log( (1/N) sum_j q(z_i|x_j) ) ]

    Each term is at most ``log N``, so the estimate is capped by ``log N`` and biased downward
    when the true value approaches it. The ``N x N`` table of ``log q(z_i|x_j)`` is never held:
    for a row block of z it is built column block by column block from two matrix products
    (``sum_d (z_id - mu_jd)^2 / v_jd = [z^2, z] @ [1/v, -2 mu/v]^T + sum_d mu_jd^2 / v_jd``) and
    folded into a running log-sum-exp. Everything is float64, and where the expansion cannot be
    trusted it is not used: when posterior variances are tiny (an encoder without a KL term,
    alpha = 1, drives them towards 0) the expansion cancels terms of size ``mu^2 / v`` and its
    rounding error, about ``1e-15 * sum_d (z_id^2 + mu_jd^2) / v_jd``, can exceed the quadratic
    form itself. Every entry whose error bound is above 1e-3 and that could still matter (its
    expanded value is below 1e3 plus the bound) is recomputed from the differences
    ``z_i - mu_j`` directly; there are few (the own term i = j, near-duplicate codes).

    Args:
        mu: ``[N, d]`` posterior means; logvar: ``[N, d]`` posterior log-variances.
        generator: seeds the draws of z (any device; the draws are moved to ``mu``'s device).
        chunk_size: rows and columns per block.

    Returns:
        The estimate in nats as a Python float.
    """
    _check_chunk(chunk_size)
    mu_t = _as_2d_float("mu", mu).to(torch.float64)
    lv_t = _as_2d_float("logvar", logvar).to(device=mu_t.device, dtype=torch.float64)
    if mu_t.shape != lv_t.shape:
        raise ValueError(
            f"mu and logvar must have the same shape, got {tuple(mu_t.shape)} and "
            f"{tuple(lv_t.shape)}"
        )
    n, d = mu_t.shape
    if n < 1:
        raise ValueError("mu: needs at least one row")
    with torch.no_grad():
        eps = sample_standard_normal((n, d), generator, mu_t.device, torch.float64)
        z = mu_t + torch.exp(0.5 * lv_t) * eps
        log_q_own = gaussian_log_density(z, mu_t, lv_t)  # [N]

        precision = torch.exp(-lv_t)
        columns = torch.cat([precision, -2.0 * mu_t * precision], dim=1)  # [N, 2d]
        mu_sq_p = (mu_t.pow(2) * precision).sum(dim=1)  # [N]
        offsets = lv_t.sum(dim=1) + d * _LOG_2PI  # [N]
        rows = torch.cat([z.pow(2), z], dim=1)  # [N, 2d]
        z_sq = z.pow(2)
        unit = 8.0 * torch.finfo(torch.float64).eps  # rounding of the expansion, per unit scale

        log_mix = torch.empty(n, dtype=torch.float64, device=mu_t.device)
        for i in range(0, n, chunk_size):
            r = rows[i : i + chunk_size]
            running = torch.full((r.shape[0],), -math.inf, dtype=torch.float64, device=r.device)
            for j in range(0, n, chunk_size):
                cols = slice(j, j + chunk_size)
                # Quadratic forms sum_d (z_id - mu_jd)^2 / v_jd of the block, expanded ...
                quad = torch.addmm(mu_sq_p[cols].unsqueeze(0), r, columns[cols].T)
                # ... and the size of the terms that cancelled in it.
                bound = torch.addmm(
                    mu_sq_p[cols].unsqueeze(0), z_sq[i : i + chunk_size], precision[cols].T
                ).mul_(unit)
                redo = (bound > 1e-3) & (quad < 1e3 + bound)
                if bool(redo.any()):
                    a, b = redo.nonzero(as_tuple=True)
                    diff = z[i + a] - mu_t[j + b]
                    quad[a, b] = (diff.pow(2) * precision[j + b]).sum(dim=1)
                block = quad.add_(offsets[cols].unsqueeze(0)).mul_(-0.5)
                running = torch.logaddexp(running, torch.logsumexp(block, dim=1))
            log_mix[i : i + chunk_size] = running - math.log(n)
        return float((log_q_own - log_mix).mean())


def active_units(mu: ArrayLike, threshold: float = 0.01) -> int:
    """Number of latent dimensions with ``Cov_x(E_q[z_d | x]) > threshold``.

    Args:
        mu: ``[N, d]`` posterior means E_q[z | x_i] over the evaluation points.
        threshold: variance threshold (0.01 after Burda et al. 2016).

    Returns:
        The count of dimensions whose sample variance (``N - 1`` denominator) of the means
        exceeds ``threshold``.
    """
    mu_t = _as_2d_float("mu", mu).to(torch.float64)
    if mu_t.shape[0] < 2:
        raise ValueError(f"mu: needs at least 2 rows for a variance, got {mu_t.shape[0]}")
    return int((mu_t.var(dim=0, unbiased=True) > threshold).sum())


def _to_numpy(value: ArrayLike) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _select_labelled(labels: np.ndarray, n_labels: int, seed: int) -> np.ndarray:
    """Indices of ``n_labels`` training points: stratified by class when possible, seeded."""
    from sklearn.model_selection import train_test_split

    n = labels.shape[0]
    indices = np.arange(n)
    if n_labels == n:
        return indices
    _, counts = np.unique(labels, return_counts=True)
    if n_labels >= counts.size and counts.min() >= 2 and n - n_labels >= counts.size:
        chosen, _ = train_test_split(
            indices, train_size=n_labels, stratify=labels, random_state=seed
        )
        return np.sort(chosen)
    # Too few labels (or too rare a class) to stratify: a plain seeded draw.
    return np.sort(np.random.default_rng(seed).choice(n, size=n_labels, replace=False))


def linear_probe_accuracy(
    train_latents: ArrayLike,
    train_labels: ArrayLike,
    test_latents: ArrayLike,
    test_labels: ArrayLike,
    n_labels: int,
    seed: int,
) -> float:
    """Test accuracy of a linear classifier trained on ``n_labels`` labelled training latents.

    ``n_labels`` training points are chosen with a class-stratified, seeded split (a plain
    seeded draw when there are too few labels per class to stratify). The classifier is
    standardisation followed by multinomial logistic regression (scikit-learn, L2, C = 1), i.e.
    an affine map of the latents; standardising keeps it fair to codes of very different scales.
    If the chosen labels hold a single class, that class is predicted everywhere.

    Args:
        train_latents: ``[N_train, d]`` (the posterior means, per docs/metrics.md).
        train_labels: ``[N_train]`` integer classes.
        test_latents: ``[N_test, d]``; test_labels: ``[N_test]``.
        n_labels: number of labelled training points, ``1 <= n_labels <= N_train``.
        seed: seeds the selection and the solver.

    Returns:
        Accuracy on the test latents, in [0, 1].
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train = _to_numpy(train_latents).astype(np.float64)
    y_train = _to_numpy(train_labels).reshape(-1)
    x_test = _to_numpy(test_latents).astype(np.float64)
    y_test = _to_numpy(test_labels).reshape(-1)
    if x_train.ndim != 2 or x_test.ndim != 2 or x_train.shape[1] != x_test.shape[1]:
        raise ValueError(
            f"train_latents and test_latents must be [N, d] with the same d, got "
            f"{x_train.shape} and {x_test.shape}"
        )
    if y_train.shape[0] != x_train.shape[0]:
        raise ValueError(f"train_labels: {y_train.shape[0]} labels for {x_train.shape[0]} latents")
    if y_test.shape[0] != x_test.shape[0]:
        raise ValueError(f"test_labels: {y_test.shape[0]} labels for {x_test.shape[0]} latents")
    if y_test.shape[0] == 0:
        raise ValueError("test_latents: needs at least one test point")
    if not 1 <= n_labels <= x_train.shape[0]:
        raise ValueError(
            f"n_labels: must be between 1 and the {x_train.shape[0]} training points, "
            f"got {n_labels}"
        )
    chosen = _select_labelled(y_train, n_labels, seed)
    classes = np.unique(y_train[chosen])
    if classes.size == 1:
        return float(np.mean(y_test == classes[0]))
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    with warnings.catch_warnings():
        # Thousands of trials would repeat it; the accuracy is still a valid probe result.
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(x_train[chosen], y_train[chosen])
    return float(np.mean(probe.predict(x_test) == y_test))


def _model_device(model: torch.nn.Module, fallback: torch.device) -> torch.device:
    for parameter in model.parameters():
        return parameter.device
    return fallback


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode and no-grad for the block, restoring its training flag."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def nll_iwae(
    model: LatentVariableModel,
    x: Tensor,
    k: int,
    batch_size: int = 4096,
    generator: torch.Generator | None = None,
) -> float:
    """-log p(x) by importance sampling with ``k`` samples from q(z|x), nats per image.

    ``log p(x) ~ logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log k``,
    ``z_k ~ q(z|x)``, ``p(z) = N(0, I)``. In expectation this lower-bounds log p(x) (so the
    returned NLL upper-bounds the true one), tightening as ``k`` grows; it is exact for any
    ``k`` when q is the true posterior.

    Args:
        model: has ``encode(x) -> posterior (.mu, .logvar [B, d])`` and
            ``log_likelihood(x, z) -> [B]`` (see
            :class:`infovae_core.evaluation.LatentVariableModel`).
            Run in eval mode without gradients; its training flag is restored afterwards.
        x: ``[N, C, H, W]`` images, prepared for the likelihood (binarised when Bernoulli).
        k: importance samples per image (>= 1).
        batch_size: most (image, sample) pairs per decoder call; images are batched by
            ``batch_size // k`` and, when ``k > batch_size``, samples are split too.
        generator: seeds the draws of z.

    Returns:
        The mean over the N images of ``-log p(x)``, in nats per image.
    """
    if k < 1:
        raise ValueError(f"k: must be >= 1, got {k}")
    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    n = x.shape[0]
    if n < 1:
        raise ValueError("x: needs at least one image")
    device = _model_device(model, x.device)
    images_per_batch = max(1, batch_size // k)
    total = 0.0
    with eval_mode(model):
        for start in range(0, n, images_per_batch):
            xb = x[start : start + images_per_batch].to(device)
            b = xb.shape[0]
            posterior = model.encode(xb)
            mu, logvar = posterior.mu, posterior.logvar
            samples_per_call = max(1, batch_size // b)
            log_weights = []
            for s0 in range(0, k, samples_per_call):
                s = min(samples_per_call, k - s0)
                eps = sample_standard_normal((s, b, mu.shape[1]), generator, device, mu.dtype)
                z = mu + torch.exp(0.5 * logvar) * eps  # [s, b, d]
                x_rep = xb.unsqueeze(0).expand(s, *xb.shape).reshape(s * b, *xb.shape[1:])
                log_px_z = model.log_likelihood(x_rep, z.reshape(s * b, -1)).reshape(s, b)
                log_w = (
                    log_px_z + standard_normal_log_density(z) - gaussian_log_density(z, mu, logvar)
                )
                log_weights.append(log_w.to(torch.float64))
            log_px = torch.logsumexp(torch.cat(log_weights, dim=0), dim=0) - math.log(k)
            total += float(-log_px.sum())
    return total / n
