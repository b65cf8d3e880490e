"""Sobel as models write it by hand (a padded depthwise ``F.conv2d``), the form the CUDA benchmarks give to
``torch.compile`` as the strongest baseline without custom kernels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# the (dy, dx) kernels of torchgrad.sobel, correlated with the image as F.conv2d does
SOBEL = ((-1.0, -2.0, -1.0), (0.0, 0.0, 0.0), (1.0, 2.0, 1.0))


def sobel_weight(channels: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(2 * channels, 1, 3, 3)`` depthwise weight: the ``dy`` then the ``dx`` kernel of each channel in turn."""
    dy = torch.tensor(SOBEL, dtype=dtype, device=device)
    return torch.stack([dy, dy.T]).repeat(channels, 1, 1).unsqueeze(1)


def naive_sobel(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``(N, 2C, H, W)``: reflect padding, then one depthwise ``F.conv2d`` with both kernels of each channel
    (``torchgrad.sobel``'s default, ``(dy, dx)`` of channel ``c`` at ``2c`` and ``2c + 1``)."""
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), weight, groups=x.shape[1])


def naive_sobel_l1(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.l1_loss`` between the naive Sobel derivatives of ``x`` and ``y`` (``GradientLoss("sobel")``)."""
    return F.l1_loss(naive_sobel(x, weight), naive_sobel(y, weight))
