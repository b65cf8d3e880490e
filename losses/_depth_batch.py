"""How the depth losses walk a batch: slabs of whole images, valid pixels per scale, the field's two reductions."""

from __future__ import annotations

import torch
from torch import Tensor

# Eager code handles a few whole images at a time, so that its per-pixel temporaries stay in cache.
SLAB_BYTES = 2**20


def image_slabs(x: Tensor) -> list[slice]:
    """Slices of dim 0 of ``(N, H, W)`` ``x``, each about ``SLAB_BYTES`` of whole images (at least one)."""
    per_image = max(x[0].numel() * 4, 1) if x.shape[0] else 1  # the work is float32 or wider
    step = max(1, SLAB_BYTES // per_image)
    return [slice(start, start + step) for start in range(0, x.shape[0], step)]


def valid_counts(mask: Tensor, scales: int) -> Tensor:
    """``(scales, N)``: the valid pixels of each image at each scale (``mask[:, ::2**s, ::2**s]``)."""
    return torch.stack([mask[:, :: 2**s, :: 2**s].sum((1, 2)) for s in range(scales)])


def reduction_weights(counts: Tensor, reduction: str, dtype: torch.dtype) -> Tensor:
    """Per-image weights ``w`` (shaped like ``counts``, ``(..., N)``) so that the reduced loss is
    ``sum_n w[n] * (the sum over image n)``; 0 where there is nothing to divide by.

    ``"batch-based"``: the batch's sum divided by the batch's count; ``"image-based"``: each image's sum
    divided by its own count, then the mean over the ``N`` images (an image without valid pixels counts as 0).
    """
    counts = counts.to(torch.float64)
    if reduction == "batch-based":
        counts = counts.sum(-1, keepdim=True).expand(counts.shape)
    else:
        counts = counts * counts.shape[-1]
    weights = torch.where(counts > 0, 1 / torch.where(counts > 0, counts, 1), 0)
    return weights.to(dtype)


_SAME_WIDTH = {
    torch.float64: torch.int64,
    torch.float32: torch.int32,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
}


def valid_bits(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """``mask`` as integers of ``dtype``'s width: every bit set where valid, none elsewhere (for :func:`keep_valid`)."""
    return mask.to(_SAME_WIDTH[dtype]).neg_()


def keep_valid_(x: Tensor, bits: Tensor) -> Tensor:
    """``x`` kept where valid and +0 elsewhere, in place: ``torch.where(mask, x, 0)`` as one bitwise and, several
    times faster on the CPU; NaN and inf at invalid pixels become 0, at valid ones they stay."""
    x.view(bits.dtype).bitwise_and_(bits)
    return x


def as_weights(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """``mask`` as 1.0 / 0.0 in ``dtype`` (through uint8: the direct bool conversion is several times slower)."""
    return mask.view(torch.uint8).to(dtype)


def row_dots(a: Tensor, b: Tensor) -> Tensor:
    """``(k,)``: the dot product of each image of the contiguous ``(k, ...)`` ``a`` and ``b``."""
    if a.shape[0] == 1:
        return torch.dot(a.view(-1), b.view(-1)).view(1)
    return torch.linalg.vecdot(a.flatten(1), b.flatten(1))
