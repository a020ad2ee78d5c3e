"""A gated PixelCNN decoder p(x|z) (van den Oord et al. 2016, "Conditional Image Generation with
PixelCNN Decoders"), conditioned on the latent code: the expressive decoder of the InfoVAE paper's
central experiment, where the ELBO learns to ignore z.

Factorisation, in raster order over the ``H x W`` pixels (row by row, left to right)::

    log p(x|z) = sum_{i, j} sum_c log Bernoulli(x[c, i, j]; sigmoid(logit[c, i, j](x_<(i,j), z)))

Every logit at pixel (i, j) depends only on the pixels strictly before (i, j) and on z. The C
channels of one pixel are conditionally independent given that context (MNIST and digits have
C = 1, where this is the full chain rule).

Architecture (blind-spot free, by construction rather than by masking weights):

- a *vertical stack* whose features at row i see only the input rows < i (the first layer's
  ``k//2 x k`` kernel lies entirely above row i; later layers' ``(k//2 + 1) x k`` kernels cover
  rows i - k//2 .. i of features that already exclude row i);
- a *horizontal stack* whose features at (i, j) see row i, columns < j in the first layer
  (mask type A: ``1 x k//2`` kernel to the left) and columns <= j of the previous horizontal
  features in later layers (mask type B: ``1 x (k//2 + 1)`` kernel, plus a residual
  connection), plus a 1x1 projection of the vertical features at (i, j);
- gated activations ``tanh(a) * sigmoid(b)`` in every layer, where ``a`` and ``b`` also receive a
  1x1 projection of a per-pixel conditioning map ``m(z)`` [B, 4, H, W] made by an MLP from z.

All padding is at the top and on the left, never at the bottom or the right, so the logits of
rows <= i computed on an image cropped to rows <= i equal those of the whole image; sampling
relies on that to process only the rows and columns it needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from infovae_core.config import DecoderConfig

ImageShape = tuple[int, int, int]

CONDITION_CHANNELS = 4  # channels of the per-pixel conditioning map m(z)

__all__ = ["CONDITION_CHANNELS", "PixelCNNDecoder"]


def _gate(pre: Tensor) -> Tensor:
    """Gated activation ``tanh(a) * sigmoid(b)`` with ``a, b`` the two halves of the channels."""
    a, b = pre.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


@contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run intra-op work on one thread on CPU, restoring the setting afterwards.

    Sampling makes thousands of calls on tensors of a few hundred numbers: splitting them over
    threads only adds synchronisation, and with the cores busy (parallel trials) OpenMP's barrier
    waits made sampling some 20x slower than on one thread.
    """
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class _GatedLayer(nn.Module):
    """One gated layer of both stacks; ``first`` selects the type-A (strictly causal) kernels."""

    def __init__(self, in_channels: int, channels: int, kernel: int, first: bool):
        super().__init__()
        self.half = kernel // 2
        self.first = first
        rows = self.half if first else self.half + 1
        cols = self.half if first else self.half + 1
        self.vertical = nn.Conv2d(in_channels, 2 * channels, (rows, kernel))
        self.horizontal = nn.Conv2d(in_channels, 2 * channels, (1, cols))
        self.vertical_to_horizontal = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.horizontal_out = nn.Conv2d(channels, channels, 1)

    def vertical_pre(self, v: Tensor, condition_vertical: Tensor) -> Tensor:
        """Pre-activation vertical features [B, 2c, R, W] from ``v`` [B, c_in, R, W]: row i sees
        rows i - k//2 .. i - 1 of the image (first layer) or rows i - k//2 .. i of ``v``."""
        rows = v.shape[2]
        # Top padding only; the first layer's output has R + 1 rows, of which row R (seeing the
        # last input row) is dropped.
        out = self.vertical(F.pad(v, (self.half, self.half, self.half, 0)))[:, :, :rows]
        return out + condition_vertical

    def horizontal_context(self, vertical_pre: Tensor, condition_horizontal: Tensor) -> Tensor:
        """What the horizontal stack adds from outside its own row: [B, 2c, R, W]."""
        return self.vertical_to_horizontal(vertical_pre) + condition_horizontal

    def horizontal_step(self, h: Tensor, context: Tensor) -> Tensor:
        """Horizontal features [B, c, R, W] from ``h`` [B, c_in, R, W] and
        :meth:`horizontal_context`: column j sees columns j - k//2 .. j - 1 of ``h`` (first
        layer) or j - k//2 .. j (later layers, plus a residual)."""
        cols = h.shape[3]
        pre = self.horizontal(F.pad(h, (self.half, 0, 0, 0)))[:, :, :, :cols] + context
        out = self.horizontal_out(_gate(pre))
        # The first layer's input is the image itself, which contains pixel (i, j): no residual.
        return out if self.first else out + h


class PixelCNNDecoder(nn.Module):
    """Gated PixelCNN p(x|z) with a Bernoulli likelihood per pixel (binarised images).

    Capacity: ``config.pixelcnn_layers`` gated layers of ``config.pixelcnn_channels`` channels,
    kernels ``config.pixelcnn_kernel`` wide (odd); the receptive field reaches
    ``layers * (kernel // 2)`` rows up and as many columns to either side. One layer with a 3x3
    kernel is a weak decoder that must rely on z; several wide layers are a strong one.
    ``config.width`` and ``config.depth`` size the conditioning MLP
    ``z [B, d] -> m(z) [B, 4, H, W]`` (``depth`` hidden layers of ``width`` units).
    ``config.likelihood`` must be ``bernoulli`` (the config refuses anything else).

    Interface of every decoder (:mod:`infovae_core.models`): :meth:`log_prob`, :meth:`mean`,
    :meth:`sample`. Inputs are fed to the network as ``2 x - 1`` so that the zero padding differs
    from both pixel values.
    """

    def __init__(self, image_shape: ImageShape, latent_dim: int, config: DecoderConfig):
        super().__init__()
        if config.likelihood != "bernoulli":
            raise ValueError(
                "model.decoder.likelihood: the pixelcnn decoder needs 'bernoulli', got "
                f"{config.likelihood!r}"
            )
        self.image_shape = tuple(image_shape)
        channels_in, height, width_px = image_shape
        channels = config.pixelcnn_channels
        sizes = [latent_dim] + [config.width] * config.depth
        hidden: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            hidden += [nn.Linear(a, b), nn.ReLU()]
        self.condition = nn.Sequential(
            *hidden, nn.Linear(sizes[-1], CONDITION_CHANNELS * height * width_px)
        )
        self.layers = nn.ModuleList(
            _GatedLayer(
                channels_in if i == 0 else channels, channels, config.pixelcnn_kernel, first=i == 0
            )
            for i in range(config.pixelcnn_layers)
        )
        # Every layer's vertical and horizontal projections of m(z) [B, 4, H, W], as one conv.
        self.condition_projection = nn.Conv2d(
            CONDITION_CHANNELS, 4 * channels * config.pixelcnn_layers, 1
        )
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
            nn.ReLU(),
            nn.Conv2d(channels, channels_in, 1),
        )

    def _condition_map(self, z: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per layer, the 1x1 projections of m(z) [B, 4, H, W] added before the vertical and
        the horizontal gates: two [B, 2c, H, W] tensors (one convolution for all layers)."""
        _, height, width_px = self.image_shape
        condition = self.condition(z).view(-1, CONDITION_CHANNELS, height, width_px)
        parts = self.condition_projection(condition).chunk(2 * len(self.layers), dim=1)
        return [(parts[2 * i], parts[2 * i + 1]) for i in range(len(self.layers))]

    def _contexts(self, x: Tensor, condition: list[tuple[Tensor, Tensor]]) -> list[Tensor]:
        """Run the vertical stack on ``x`` [B, C, R, W]; per layer, the horizontal stack's input
        from outside its row (:meth:`_GatedLayer.horizontal_context`), each [B, 2c, R, W]."""
        contexts: list[Tensor] = []
        v = 2 * x - 1
        for layer, (condition_vertical, condition_horizontal) in zip(
            self.layers, condition, strict=True
        ):
            pre = layer.vertical_pre(v, condition_vertical)
            contexts.append(layer.horizontal_context(pre, condition_horizontal))
            v = _gate(pre)
        return contexts

    def _horizontal(self, x: Tensor, contexts: list[Tensor]) -> Tensor:
        """Logits [B, C, R, W'] from the image rows ``x`` and the matching contexts."""
        h = 2 * x - 1
        for layer, context in zip(self.layers, contexts, strict=True):
            h = layer.horizontal_step(h, context)
        return self.head(h)

    def logits(self, x: Tensor, z: Tensor) -> Tensor:
        """Teacher-forced logits [B, C, H, W]: ``logits[:, c, i, j]`` is a function of z and of
        ``x[:, :, i', j']`` for (i', j') strictly before (i, j) in raster order only."""
        return self._horizontal(x, self._contexts(x, self._condition_map(z)))

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        """Exact log p(x|z) [B], nats summed over pixels, for ``x`` [B, C, H, W] in {0, 1} and
        ``z`` [B, d]: one teacher-forced pass."""
        logits = self.logits(x, z)
        return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)

    @torch.no_grad()
    def _autoregress(self, z: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Ancestral sampling in raster order: (image [B, C, H, W] in {0, 1}, the Bernoulli
        probabilities [B, C, H, W] each pixel was drawn with)."""
        channels_in, height, width_px = self.image_shape
        condition = self._condition_map(z)
        x = torch.zeros(z.shape[0], channels_in, height, width_px, device=z.device, dtype=z.dtype)
        probs = torch.zeros_like(x)
        with _one_cpu_thread(z.device):
            self._fill(x, probs, condition, generator)
        return x, probs

    def _fill(
        self,
        x: Tensor,
        probs: Tensor,
        condition: list[tuple[Tensor, Tensor]],
        generator: torch.Generator | None,
    ) -> None:
        """Sample ``x`` [B, C, H, W] in place in raster order, recording in ``probs`` the
        probability each pixel was drawn with.

        Incremental: every layer's features are cached and only the newest row (vertical stack)
        or pixel (horizontal stack) is computed, from a window of ``k//2 + 1`` rows or columns of
        the layer below (``k//2`` image columns in the first layer). A window's last row is exact:
        it sees only real features or, at the top border, the same zero padding as the full pass.
        Per pixel the horizontal layers are evaluated as matrix products on the window, with the
        convolutions' own weights (tiny convolutions cost far more in call overhead than in
        arithmetic). The whole draw costs about ``k//2 + 1`` teacher-forced passes.
        """
        batch, _, height, width_px = x.shape
        channels = self.layers[0].horizontal_out.out_channels
        half = self.layers[0].half
        # vertical_inputs[l]: the input of layer l's vertical convolution, filled row by row
        # (2 x - 1 for the first layer, gated vertical features after that).
        vertical_inputs = [torch.full_like(x, -1.0)] + [
            x.new_zeros(batch, channels, height, width_px) for _ in self.layers[1:]
        ]
        # Per layer: the horizontal convolution as a matrix on a flattened [c_in, window] slice,
        # and the 1x1 output convolution as a matrix.
        horizontal_weights = [layer.horizontal.weight.flatten(1) for layer in self.layers]
        output_weights = [layer.horizontal_out.weight.flatten(1) for layer in self.layers]
        head = [module for module in self.head if isinstance(module, nn.Conv2d)]
        for i in range(height):
            top = max(0, i - half)
            contexts: list[Tensor] = []
            for index, layer in enumerate(self.layers):
                condition_vertical, condition_horizontal = condition[index]
                pre = layer.vertical_pre(
                    vertical_inputs[index][:, :, top : i + 1], condition_vertical[:, :, top : i + 1]
                )[:, :, -1:]
                context = layer.horizontal_context(pre, condition_horizontal[:, :, i : i + 1])
                contexts.append(context[:, :, 0].transpose(1, 2))  # [B, W, 2c]
                if index + 1 < len(self.layers):
                    vertical_inputs[index + 1][:, :, i : i + 1] = _gate(pre)
            # horizontal[l]: row i of layer l's horizontal input as [B, k//2 + W, c_l], the
            # first k//2 columns being the zero padding on the left.
            horizontal = [x.new_zeros(batch, half + width_px, x.shape[1])] + [
                x.new_zeros(batch, half + width_px, channels) for _ in self.layers
            ]
            for j in range(width_px):
                at = half + j
                for index, layer in enumerate(self.layers):
                    if layer.first:  # type A: columns j - k//2 .. j - 1
                        window = horizontal[index][:, at - half : at]
                    else:  # type B: columns j - k//2 .. j
                        window = horizontal[index][:, at - half : at + 1]
                    pre = F.linear(
                        window.transpose(1, 2).flatten(1),
                        horizontal_weights[index],
                        layer.horizontal.bias,
                    )
                    out = F.linear(
                        _gate(pre + contexts[index][:, j]),
                        output_weights[index],
                        layer.horizontal_out.bias,
                    )
                    if not layer.first:
                        out = out + horizontal[index][:, at]
                    horizontal[index + 1][:, at] = out
                hidden = F.relu(horizontal[-1][:, at])
                hidden = F.relu(F.linear(hidden, head[0].weight.flatten(1), head[0].bias))
                p = torch.sigmoid(F.linear(hidden, head[1].weight.flatten(1), head[1].bias))
                u = torch.rand(p.shape, generator=generator, device=p.device, dtype=p.dtype)
                pixel = (u < p).to(x.dtype)
                probs[:, :, i, j] = p
                x[:, :, i, j] = pixel
                vertical_inputs[0][:, :, i, j] = 2 * pixel - 1
                horizontal[0][:, at] = 2 * pixel - 1

    def sample(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x ~ p(x|z) by ancestral sampling: [B, C, H, W] in {0, 1} (H W + H network passes)."""
        return self._autoregress(z, generator)[0]

    def mean(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Image grid for reports: [B, C, H, W] in [0, 1].

        An autoregressive decoder has no closed-form mean; this draws one image by ancestral
        sampling (as :meth:`sample`) and returns, per pixel, the Bernoulli probability
        p(x_ij = 1 | x_<ij, z) it was drawn with: the sampled image's "soft" version, smoother
        to look at than the binary draw. Random (global RNG unless ``generator`` is given).
        """
        return self._autoregress(z, generator)[1]
