"""MiDaS's multi-scale gradient-matching loss: the gradients of the depth residual, at four scales, in L1."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

from torchgrad._internal import DEPTH_REDUCTIONS, Workspace, check_choice, check_depth_batch, check_int, slabs

from ._autocast import autocast_off, depth_dtypes
from ._depth_batch import (
    dots,
    keep_valid_,
    plain_code,
    reduction_weights,
    refuse_create_graph,
    useful_scales,
    valid_counts,
    valid_maps,
)


def matching_sums(residual: Tensor, valid: Tensor, weights: Tensor, grad: Optional[Tensor], work: Workspace) -> Tensor:
    """``(k,)``: per image, ``sum_s weights[s] * sum |R[x+1] - R[x]|`` over the pairs of valid pixels along x and y of
    the residual subsampled with step ``2**s``; adds its gradient to ``grad`` when given.

    ``residual`` ``(k, H, W)`` is 0 at invalid pixels, ``valid`` is the mask as 0/1 in its dtype, ``weights``
    ``(scales, k)`` (0 where a scale has no valid pixel, so an empty image adds nothing). Eager code in ``work``'s
    buffers: each scale is first copied out contiguously (from the one before), its gradient gathered unweighted and
    weighted once. ``grad`` must hold nothing else yet (its scale-0 part is weighted in place).

    Along each axis the differences are those of :func:`torchgrad.image_gradients` (the stencil ``D``: taps
    ``(-1, 1)``, ``R[x+1] - R[x]``) kept on the pairs of valid pixels, ``d = P D R``, and the gradient is
    ``D^T P sign(d)``. They are written here rather than run through that stencil's ``apply`` and ``adjoint``: the
    mask is fused into the difference (``R[x+1] v[x] - R[x] v[x+1]``, two passes where the stencil and the mask take
    three) and the adjoint is two shifted adds, where the stencil's eager adjoint gathers its border columns term by
    term, about 80 us of host time a call. With four scales that is 16 stencil calls a slab: on one thread,
    ``GradientMatchingLoss`` forward and backward on ``(8, 1, 256, 320)`` float32 took 30 to 45% longer on the
    stencils (``ScaleAndShiftInvariantLoss`` about 20%), and the share grows with threads and on a GPU, where the
    call is host-bound. Both forms give the same numbers (the tests compare them with MiDaS's autograd and with
    :func:`torchgrad.image_gradients`).
    """
    total = residual.new_zeros(residual.shape[0])
    r, v = residual, valid
    for s, weight in enumerate(weights):
        if s > 0:
            shape = tuple(r[:, ::2, ::2].shape)
            r = work.buffer(f"residual{s}", shape, r.dtype).copy_(r[:, ::2, ::2])
            v = work.buffer(f"valid{s}", shape, v.dtype).copy_(v[:, ::2, ::2])
        g = grad if s == 0 or grad is None else work.buffer(f"grad{s}", r.shape, r.dtype).zero_()
        raw = torch.zeros_like(total)
        for dim in (-2, -1):
            n = r.shape[dim]
            if n < 2:  # one row or column at this scale: no differences along it
                continue
            hi, lo = r.narrow(dim, 1, n - 1), r.narrow(dim, 0, n - 1)
            # hi - lo where both are valid, else 0: the residual is 0 at invalid pixels
            d = torch.mul(hi, v.narrow(dim, 0, n - 1), out=work.buffer("difference", hi.shape, r.dtype))
            d.addcmul_(lo, v.narrow(dim, 1, n - 1), value=-1)
            if g is None:
                raw += d.abs_().sum((1, 2))
                continue
            d.sign_()  # D^T sign(d): the slope of |d| spread back onto both pixels of each pair
            g.narrow(dim, 1, n - 1).add_(d)
            g.narrow(dim, 0, n - 1).sub_(d)
        if g is not None:  # sum |d| = <d, sign d> = <r, D^T sign d>: the scale's gradient so far, read against r
            raw = dots(work, r, g)
        total += raw * weight
        if g is not None:
            g.mul_(weight.view(-1, 1, 1))
            if s > 0:
                grad[:, :: 2**s, :: 2**s].add_(g)  # type: ignore[index]
    return total


def matching_traceable(residual: Tensor, mask: Tensor, weights: Tensor) -> Tensor:
    """The weighted total of :func:`matching_sums` as plain differentiable tensor code; ``mask`` bool."""
    total = residual.new_zeros(())
    for s, weight in enumerate(weights):
        step = 2**s
        r, m = residual[:, ::step, ::step], mask[:, ::step, ::step]
        for dim in (-2, -1):
            n = r.shape[dim]
            if n < 2:
                continue
            d = r.narrow(dim, 1, n - 1) - r.narrow(dim, 0, n - 1)
            pairs = m.narrow(dim, 1, n - 1) & m.narrow(dim, 0, n - 1)
            total = total + (torch.where(pairs, d.abs(), 0).sum((1, 2)) * weight).sum()
    return total


def _matching_pass(
    prediction: Tensor, target: Tensor, mask: Tensor, weights: Tensor, need_grad: bool
) -> tuple[Tensor, Optional[Tensor]]:
    """The loss and (when ``need_grad``) its gradient for ``prediction``, slab by slab."""
    grad = torch.empty_like(prediction, memory_format=torch.contiguous_format) if need_grad else None
    total = prediction.new_zeros(())
    work = Workspace(prediction.device)
    for cut in slabs(prediction, 2, per_thread=True):
        p, t, m = prediction[cut], target[cut], mask[cut]
        valid, bits = valid_maps(work, m, p.dtype)
        residual = keep_valid_(torch.sub(p, t, out=work.buffer("residual", p.shape, p.dtype)), bits)
        g = None if grad is None else grad[cut].zero_()
        total += matching_sums(residual, valid, weights[:, cut], g, work).sum()
    return total, grad


class _GradientMatching(torch.autograd.Function):
    """The loss and, when a gradient is needed, its gradient map, computed together; the first backward hands the map
    over scaled in place (a second one, after ``retain_graph=True``, computes it again). First order."""

    @staticmethod
    def forward(ctx: Any, prediction: Tensor, target: Tensor, mask: Tensor, weights: Tensor, grad_mode: bool) -> Tensor:
        need = grad_mode and (ctx.needs_input_grad[0] or ctx.needs_input_grad[1])
        total, ctx.grad = _matching_pass(prediction, target, mask, weights, need)
        ctx.save_for_backward(prediction, target, mask, weights)
        return total

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> Any:
        refuse_create_graph("gradient_matching_loss")
        grad, ctx.grad = ctx.grad, None
        if grad is None:
            prediction, target, mask, weights = ctx.saved_tensors
            grad = _matching_pass(prediction, target, mask, weights, True)[1]
        grad.mul_(grad_output)
        need_p, need_t = ctx.needs_input_grad[:2]
        grad_t = (grad.neg() if need_p else grad.neg_()) if need_t else None
        return (grad if need_p else None), grad_t, None, None, None


def gradient_matching_loss(
    prediction: Tensor, target: Tensor, mask: Tensor, *, scales: int = 4, reduction: str = "batch-based"
) -> Tensor:
    r"""MiDaS's multi-scale gradient-matching loss (Ranftl et al., 2020).

    At each scale ``s`` in ``0 .. scales-1`` the maps and the mask are subsampled with step ``2**s``; of the residual
    ``R = mask * (prediction - target)`` the differences ``|R[x+1] - R[x]|`` along x and y count where both pixels
    are valid. Per image their sum is divided by the number of valid pixels ``M`` at that scale, as MiDaS divides (by
    ``M``, not by the number of valid pairs): the batch's sum over the batch's ``M`` (``"batch-based"``) or each
    image's over its own, then the mean over the images (``"image-based"``). The scales' terms are summed. An image
    without valid pixels adds 0 to the value and to the gradient; so does a scale with one row or column along that
    axis, and so do scales past the image. The loss and its gradient are computed in one pass (backward only scales
    the saved gradient; first order: a backward with ``create_graph=True`` raises ``RuntimeError``).

    Args:
        prediction: ``(N, H, W)`` or ``(N, 1, H, W)`` depth, already aligned with the target.
        target: the ground truth, same shape; its values at invalid pixels are never read.
        mask: bool, same shape, True where the ground truth is valid.
        scales: how many scales, at least 1.
        reduction: ``"batch-based"`` or ``"image-based"``.

    Returns:
        A scalar.

    Example:
        >>> target = torch.arange(64.0).reshape(1, 8, 8)
        >>> mask = torch.ones(1, 8, 8, dtype=torch.bool)
        >>> gradient_matching_loss(target + 10, target, mask)  # an offset has the same gradients
        tensor(0.)
        >>> gradient_matching_loss(2 * target, target, mask, scales=1)  # (8 * 7 * 1 + 7 * 8 * 8) / 64
        tensor(7.8750)
    """
    caller = "gradient_matching_loss"
    scales = check_int(caller, "scales", scales, 1)
    reduction = check_choice(caller, "reduction", reduction, DEPTH_REDUCTIONS)
    p, t, m = check_depth_batch(caller, prediction, target, mask)
    scales = useful_scales(scales, *m.shape[1:])
    work, result = depth_dtypes(prediction, target)
    with autocast_off(p.device):
        p, t = p.to(work), t.to(work)
        weights = reduction_weights(valid_counts(m, scales), reduction, work)
        if plain_code(p, t):
            loss = matching_traceable(torch.where(m, p, 0) - torch.where(m, t, 0), m, weights)
        else:
            loss = _GradientMatching.apply(p, t, m, weights, torch.is_grad_enabled())
    return loss.to(result)


class GradientMatchingLoss(nn.Module):
    """Module form of :func:`gradient_matching_loss`; ``forward(prediction, target, mask)``."""

    def __init__(self, scales: int = 4, reduction: str = "batch-based") -> None:
        super().__init__()
        name = type(self).__name__
        self.scales = check_int(name, "scales", scales, 1)
        self.reduction = check_choice(name, "reduction", reduction, DEPTH_REDUCTIONS)

    def forward(self, prediction: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        return gradient_matching_loss(prediction, target, mask, scales=self.scales, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"scales={self.scales}, reduction={self.reduction!r}"
