"""MiDaS's scale-and-shift-invariant loss: align the prediction by least squares, then MSE plus gradient matching."""

from __future__ import annotations

from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from torchgrad._internal import (
    DEPTH_REDUCTIONS,
    Workspace,
    check_bool,
    check_choice,
    check_depth_batch,
    check_int,
    check_number,
    slabs,
)

from ._autocast import autocast_off, depth_dtypes
from ._depth_batch import (
    dots,
    plain_code,
    reduction_weights,
    refuse_create_graph,
    useful_scales,
    valid_counts,
    valid_maps,
)
from .alignment import centred, fit_sums, fit_traceable, pull_back, through_fit
from .gradient_matching_loss import matching_sums, matching_traceable


def _invariant_pass(
    prediction: Tensor,
    target: Tensor,
    mask: Tensor,
    counts: Tensor,
    data_weights: Tensor,
    matching_weights: Tensor,
    need_p: bool,
    need_t: bool,
) -> tuple[Tensor, Tensor, Tensor, Optional[Tensor], Optional[Tensor]]:
    """``(loss, scale, shift, grad_p, grad_t)``: the fit, the data term, the gradient matching and (when needed) the
    gradients, in one pass over the batch slab by slab.

    With ``h = d loss / d aligned`` (``2 w e`` of the data term, ``e = aligned - target``, plus the gradient matching's
    own), the prediction receives ``scale * h`` plus what flows through the fit (:func:`pull_back` of ``sum h q``,
    ``sum h``, the gradients of the fit's slope and offset); the data term's share of that is zero at the
    least-squares optimum, up to rounding. ``h`` is built in the gradient's own buffer.
    """
    grad_p = torch.empty_like(prediction, memory_format=torch.contiguous_format) if need_p else None
    grad_t = torch.empty_like(target, memory_format=torch.contiguous_format) if need_t else None
    total = prediction.new_zeros(())
    scales, shifts = [], []
    work = Workspace(prediction.device)
    for cut in slabs(prediction, 2, per_thread=True):
        p, t, m = prediction[cut], target[cut], mask[cut]
        valid, bits = valid_maps(work, m, p.dtype)
        q, r, p0, t0, unit = centred(p, t, m, bits, work)
        fit = fit_sums(q, r, counts[cut], p0, t0, unit, work)
        scales.append(fit.scale)
        shifts.append(fit.shift)
        slope, offset = fit.slope.view(-1, 1, 1), fit.offset.view(-1, 1, 1)
        # aligned - target at valid pixels, else 0
        e = torch.mul(q, slope, out=work.buffer("residual", q.shape, q.dtype)).addcmul_(valid, offset).sub_(r)
        wd = data_weights[cut]
        total += (dots(work, e, e) * wd).sum()
        if not (need_p or need_t):
            total += matching_sums(e, valid, matching_weights[:, cut], None, work).sum()
            continue
        h = grad_p[cut] if grad_p is not None else work.buffer("h", e.shape, e.dtype)
        total += matching_sums(e, valid, matching_weights[:, cut], h.zero_(), work).sum()
        h.addcmul_(e, 2 * wd.view(-1, 1, 1))
        u, v = pull_back(fit, dots(work, h, q), h.sum((1, 2)))
        if grad_t is not None:  # -h + u q + v at valid pixels
            uq, vq = (x.to(q.dtype).view(-1, 1, 1) for x in (u, v))
            torch.mul(q, uq, out=grad_t[cut]).sub_(h).addcmul_(valid, vq)
        if grad_p is not None:  # scale h + a r + b q + c at valid pixels, in place of h
            a, b, c = through_fit(fit, u, v)
            h.mul_(fit.scale.view(-1, 1, 1)).addcmul_(r, a).addcmul_(q, b).addcmul_(valid, c)
    scale = torch.cat(scales) if scales else prediction.new_zeros(0)
    shift = torch.cat(shifts) if shifts else prediction.new_zeros(0)
    return total, scale, shift, grad_p, grad_t


class _ScaleAndShiftInvariant(torch.autograd.Function):
    """``(loss, scale, shift)`` and, when needed, the gradients, from :func:`_invariant_pass`; the first backward hands
    them over scaled in place (a second one, after ``retain_graph=True``, computes them again). First order."""

    @staticmethod
    def forward(
        ctx: Any,
        prediction: Tensor,
        target: Tensor,
        mask: Tensor,
        counts: Tensor,
        data_weights: Tensor,
        matching_weights: Tensor,
        grad_mode: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        need_p, need_t = (grad_mode and need for need in ctx.needs_input_grad[:2])
        total, scale, shift, *ctx.grads = _invariant_pass(
            prediction, target, mask, counts, data_weights, matching_weights, need_p, need_t
        )
        ctx.save_for_backward(prediction, target, mask, counts, data_weights, matching_weights)
        ctx.mark_non_differentiable(scale, shift)
        return total, scale, shift

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor, _scale: Any, _shift: Any) -> Any:
        refuse_create_graph("scale_and_shift_invariant_loss")
        grads, ctx.grads = ctx.grads, None
        if grads is None:
            grads = _invariant_pass(*ctx.saved_tensors, *ctx.needs_input_grad[:2])[3:]
        grad_p, grad_t = (None if g is None else g.mul_(grad_output) for g in grads)
        return grad_p, grad_t, None, None, None, None, None


def _traceable(
    p: Tensor, t: Tensor, m: Tensor, data_weights: Tensor, matching_weights: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    q, r, fit = fit_traceable(p, t, m)  # zero in the holes: the arithmetic below never meets their values
    e = torch.where(m, fit.slope.view(-1, 1, 1) * q + fit.offset.view(-1, 1, 1) - r, 0)
    total = ((e * e).sum((1, 2)) * data_weights).sum() + matching_traceable(e, m, matching_weights)
    return total, fit.scale.detach(), fit.shift.detach()


def scale_and_shift_invariant_loss(
    prediction: Tensor,
    target: Tensor,
    mask: Tensor,
    *,
    alpha: float = 0.5,
    scales: int = 4,
    reduction: str = "batch-based",
    return_aligned: bool = False,
) -> Union[Tensor, tuple[Tensor, Tensor]]:
    r"""MiDaS's scale-and-shift-invariant loss (Ranftl et al., *Towards robust monocular depth estimation*, 2020).

    The prediction is aligned with :func:`scale_and_shift` (per image, least squares over the valid pixels), then

    .. math::
        \frac{\sum \text{mask} \, (\text{aligned} - \text{target})^2}{2M}
        + \alpha \cdot \text{gradient_matching_loss}(\text{aligned}, \text{target})

    with ``M`` the valid pixels, reduced ``"batch-based"`` (the batch's sum over the batch's ``M``) or
    ``"image-based"`` (each image over its own ``M``, then the mean over images), as
    :func:`gradient_matching_loss`. Gradients flow through the scale and shift, as in MiDaS; images without valid
    pixels, or whose fit is singular, add what MiDaS adds (nothing, resp. the loss of a zero prediction) and never a
    NaN. Scales past the image (where a step of ``2**s`` leaves a single pixel) add nothing. One pass computes the
    value and its gradients; backward is first order (a backward with ``create_graph=True`` raises ``RuntimeError``).

    Args:
        prediction: ``(N, H, W)`` or ``(N, 1, H, W)`` relative (inverse) depth, any scale and shift.
        target: the ground truth (MiDaS: disparity), same shape; its values at invalid pixels are never read.
        mask: bool, same shape, True where the ground truth is valid.
        alpha: weight of the gradient-matching term, >= 0 (0: the data term alone).
        scales: scales of the gradient-matching term, at least 1.
        reduction: ``"batch-based"`` or ``"image-based"``.
        return_aligned: also return the aligned prediction (for metrics and logging; no gradient).

    Returns:
        A scalar, or ``(loss, aligned)`` with ``aligned`` shaped like ``prediction``.

    Example:
        >>> target = torch.rand(2, 1, 8, 8) + 1
        >>> mask = torch.rand(2, 1, 8, 8) > 0.2
        >>> loss, aligned = scale_and_shift_invariant_loss(5 * target - 2, target, mask, return_aligned=True)
        >>> round(loss.item(), 5), torch.allclose(aligned, target, atol=1e-5)
        (0.0, True)
    """
    caller = "scale_and_shift_invariant_loss"
    alpha = check_number(caller, "alpha", alpha, non_negative=True)
    scales = check_int(caller, "scales", scales, 1)
    reduction = check_choice(caller, "reduction", reduction, DEPTH_REDUCTIONS)
    return_aligned = check_bool(caller, "return_aligned", return_aligned)
    p, t, m = check_depth_batch(caller, prediction, target, mask)
    scales = useful_scales(scales, *m.shape[1:])
    work, result = depth_dtypes(prediction, target)
    with autocast_off(p.device):
        p, t = p.to(work), t.to(work)
        counts = valid_counts(m, scales if alpha > 0 else 1)
        data_weights = reduction_weights(counts[0], reduction, work) / 2
        matching_weights = reduction_weights(counts, reduction, work) * alpha if alpha > 0 else counts[:0].to(work)
        if plain_code(p, t):
            loss, scale, shift = _traceable(p, t, m, data_weights, matching_weights)
        else:
            loss, scale, shift = _ScaleAndShiftInvariant.apply(
                p, t, m, counts[0], data_weights, matching_weights, torch.is_grad_enabled()
            )
        loss = loss.to(result)
        if not return_aligned:
            return loss
        with torch.no_grad():
            aligned = (scale.view(-1, 1, 1) * p + shift.view(-1, 1, 1)).reshape(prediction.shape).to(result)
    return loss, aligned


class ScaleAndShiftInvariantLoss(nn.Module):
    """Module form of :func:`scale_and_shift_invariant_loss`.

    ``forward(prediction, target, mask, return_aligned=False)``.
    """

    def __init__(self, alpha: float = 0.5, scales: int = 4, reduction: str = "batch-based") -> None:
        super().__init__()
        name = type(self).__name__
        self.alpha = check_number(name, "alpha", alpha, non_negative=True)
        self.scales = check_int(name, "scales", scales, 1)
        self.reduction = check_choice(name, "reduction", reduction, DEPTH_REDUCTIONS)

    def forward(
        self, prediction: Tensor, target: Tensor, mask: Tensor, return_aligned: bool = False
    ) -> Union[Tensor, tuple[Tensor, Tensor]]:
        return scale_and_shift_invariant_loss(
            prediction,
            target,
            mask,
            alpha=self.alpha,
            scales=self.scales,
            reduction=self.reduction,
            return_aligned=return_aligned,
        )

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, scales={self.scales}, reduction={self.reduction!r}"
