"""How the depth losses walk a batch: the mask as weights and bits, valid pixels per scale, per-image dot products
and the field's two reductions, over slabs of whole images (:func:`~torchgrad._internal.slabs` with ``per_thread``) in
one :class:`~torchgrad._internal.Workspace` a call."""

from __future__ import annotations

import torch
from torch import Tensor

from torchgrad._internal import Workspace, needs_traceable_code, slabs


def plain_code(prediction: Tensor, target: Tensor) -> bool:
    """Whether a depth loss runs as plain differentiable tensor code: under ``torch.compile`` and ``torch.func``
    transforms (:func:`needs_traceable_code`), and on ``meta`` tensors, which have shapes but no values to read."""
    return prediction.device.type == "meta" or needs_traceable_code(prediction) or needs_traceable_code(target)


def useful_scales(scales: int, height: int, width: int) -> int:
    """How many of the first ``scales`` scales (steps ``2**s``) have a pair of neighbouring pixels in an ``(H, W)``
    map, at least 1: scale ``s`` has one where ``2**s`` is less than the longer side; the scales past it see a single
    pixel and add nothing."""
    useful, longest = 1, max(height, width)
    while useful < scales and 2**useful < longest:
        useful += 1
    return useful


def refuse_create_graph(caller: str) -> None:
    """Raise in a hand-written backward that runs with ``create_graph=True`` (grad mode is on there only then): the
    depth losses' backward is not differentiable again, and a gradient without a graph would fail only later, at
    the second differentiation."""
    if torch.is_grad_enabled():
        raise RuntimeError(
            f"{caller}: backward supports first-order gradients only (it is hand-written and not differentiable "
            "again), so it cannot run with create_graph=True"
        )


def valid_counts(mask: Tensor, scales: int) -> Tensor:
    """``(scales, N)`` int32: the valid pixels of each image at each scale (``mask[:, ::2**s, ::2**s]``).

    Eager code converts the mask slab by slab into one reused buffer (a sum of the whole mask first converts all of
    it, into new memory).
    """
    if needs_traceable_code(mask) or mask.device.type != "cpu":
        return torch.stack([mask[:, :: 2**s, :: 2**s].sum((1, 2), dtype=torch.int32) for s in range(scales)])
    work = Workspace(mask.device)
    parts = []
    for cut in slabs(mask, 2, per_thread=True):
        m = mask[cut]
        ones = work.buffer("ones", m.shape, torch.int32).copy_(m.view(torch.uint8))
        parts.append(torch.stack([ones[:, :: 2**s, :: 2**s].sum((1, 2), dtype=torch.int32) for s in range(scales)]))
    return torch.cat(parts, 1) if parts else mask.new_zeros((scales, 0), dtype=torch.int32)


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


def dots(work: Workspace, a: Tensor, b: Tensor) -> Tensor:
    """``(k,)``: the dot product of each image of ``(k, ...)`` ``a`` and ``b``, summed as torch sums (cascaded), through
    ``work``'s buffer ``"product"`` (not BLAS's dot, whose threads may come from another OpenMP runtime and spin
    against torch's)."""
    product = torch.mul(a, b, out=work.buffer("product", a.shape, a.dtype))
    return product.flatten(1).sum(1)


def valid_maps(work: Workspace, mask: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``(weights, bits)``: ``mask`` as 1.0 / 0.0 in ``dtype`` and as integers of its width with every bit set where
    valid (for :func:`keep_valid_`), in ``work``'s buffers ``"valid"`` and ``"bits"``; converted through uint8,
    several times faster than from bool."""
    as_bytes = mask.view(torch.uint8)
    weights = work.buffer("valid", mask.shape, dtype).copy_(as_bytes)
    bits = work.buffer("bits", mask.shape, _SAME_WIDTH[dtype]).copy_(as_bytes).neg_()
    return weights, bits


def keep_valid_(x: Tensor, bits: Tensor) -> Tensor:
    """``x`` kept where valid and +0 elsewhere, in place: ``torch.where(mask, x, 0)`` as one bitwise and, several
    times faster on the CPU; NaN and inf at invalid pixels become 0, at valid ones they stay."""
    x.view(bits.dtype).bitwise_and_(bits)
    return x
