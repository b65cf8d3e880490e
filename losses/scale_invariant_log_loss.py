"""Eigen et al.'s scale-invariant log loss, in the form BTS and AdaBins train with."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

from torchgrad._internal import needs_traceable_code

from ._depth_inputs import check_depth_batch, check_float, check_optional_float, depth_dtypes


def _check_options(fn: str, variance_focus: Any, scale: Any, eps: Any) -> tuple[float, float, Optional[float]]:
    return (
        check_float(fn, "variance_focus", variance_focus, minimum=0, maximum=1),
        check_float(fn, "scale", scale, minimum=0, open_low=True),
        check_optional_float(fn, "eps", eps, minimum=0, open_low=True),
    )


def _check_positive(fn: str, name: str, value: Tensor, mask: Tensor) -> None:
    bad = mask & (value <= 0)
    if bool(bad.any()):
        raise ValueError(
            f"{fn}: `{name}` must be positive at valid pixels (or give `eps` to take log({name} + eps)), got "
            f"{int(bad.sum())} values <= 0 there, the smallest {value[bad].min().item():g}"
        )


def _log_difference(p: Tensor, t: Tensor, m: Tensor, eps: Optional[float]) -> tuple[Tensor, Tensor, Tensor]:
    """``(d, p', t')``: ``log p' - log t'`` at valid pixels (0 elsewhere), with ``x' = x (+ eps)`` (1 elsewhere)."""
    pe = torch.where(m, p if eps is None else p + eps, 1)
    te = torch.where(m, t if eps is None else t + eps, 1)
    return torch.log(pe) - torch.log(te), pe, te


def _moments(d: Tensor, m: Tensor, variance_focus: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(count, mean(d), mean(d^2) - variance_focus mean(d)^2)`` over the valid pixels, the last written as
    ``var + (1 - variance_focus) mean^2`` (never negative for ``variance_focus <= 1``); 0 without valid pixels."""
    count = m.sum()
    n = count.clamp_min(1)
    mean = d.sum() / n
    centred = torch.where(m, d - mean, 0).flatten()
    var = (centred * centred).sum() / n
    return count, mean, var + (1 - variance_focus) * mean * mean


class _ScaleInvariantLog(torch.autograd.Function):
    """The loss and (when a gradient is needed) its gradients, computed together; backward scales them."""

    @staticmethod
    def forward(
        ctx: Any,
        p: Tensor,
        t: Tensor,
        m: Tensor,
        variance_focus: float,
        scale: float,
        eps: Optional[float],
        grad_mode: bool,
    ) -> Tensor:
        d, pe, te = _log_difference(p, t, m, eps)
        count, mean, second = _moments(d, m, variance_focus)
        root = second.sqrt()
        loss = scale * root
        need_p, need_t = (grad_mode and need for need in ctx.needs_input_grad[:2])
        grad_p = grad_t = None
        if need_p or need_t:
            # d loss / d d_i = scale (d_i - variance_focus mean) / (count sqrt(second)); 0 where second is 0
            coef = torch.where(second > 0, scale / (count.clamp_min(1) * torch.where(second > 0, root, 1)), 0)
            slope = torch.where(m, (d - variance_focus * mean) * coef, 0)
            grad_p = slope / pe if need_p else None
            grad_t = -slope / te if need_t else None
        ctx.grads = grad_p, grad_t
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> Any:
        grad_p, grad_t = ctx.grads
        return (
            None if grad_p is None else grad_p * grad_output,
            None if grad_t is None else grad_t * grad_output,
            None,
            None,
            None,
            None,
            None,
        )


def _traceable(p: Tensor, t: Tensor, m: Tensor, variance_focus: float, scale: float, eps: Optional[float]) -> Tensor:
    d, _, _ = _log_difference(p, t, m, eps)
    _, _, second = _moments(d, m, variance_focus)
    positive = second > 0
    return scale * torch.where(positive, torch.where(positive, second, 1).sqrt(), 0)


def scale_invariant_log_loss(
    prediction: Tensor,
    target: Tensor,
    mask: Tensor,
    *,
    variance_focus: float = 0.85,
    scale: float = 10.0,
    eps: Optional[float] = None,
) -> Tensor:
    r"""Eigen et al.'s scale-invariant log loss, as BTS (``silog_loss``) and AdaBins train with it.

    Over the valid pixels of the whole batch, ``d = log(prediction) - log(target)`` and

    .. math::
        \text{scale} \cdot \sqrt{\operatorname{mean}(d^2) - \text{variance\_focus} \cdot \operatorname{mean}(d)^2}

    (computed as the variance plus ``(1 - variance_focus) mean(d)^2``, which cannot round below 0). With
    ``variance_focus = 1`` it is fully scale-invariant, with 0 it is the RMS log error. The gradient is finite
    everywhere: 0 where the square root's argument is 0 (a perfect prediction) and without valid pixels (the loss is
    then 0). Predictions or targets ``<= 0`` at valid pixels are an error unless ``eps`` is given; then
    ``log(x + eps)`` is taken. One pass computes the value and its gradients; backward is first order.

    Args:
        prediction: ``(N, H, W)`` or ``(N, 1, H, W)`` predicted depth, positive at valid pixels.
        target: the ground truth, same shape; its values at invalid pixels are never read.
        mask: bool, same shape, True where the ground truth is valid.
        variance_focus: ``lambda`` in ``[0, 1]`` (BTS: 0.85).
        scale: the factor in front of the root, positive (BTS: 10).
        eps: ``None``, or a positive number added before the logarithms.

    Returns:
        A scalar.

    Example:
        >>> target = torch.rand(2, 1, 6, 6) + 0.5
        >>> mask = target > 0.7
        >>> round(float(scale_invariant_log_loss(2 * target, target, mask, variance_focus=1.0)), 6)  # a scale is free
        0.0
    """
    fn = "scale_invariant_log_loss"
    variance_focus, scale, eps = _check_options(fn, variance_focus, scale, eps)
    p, t, m = check_depth_batch(fn, prediction, target, mask)
    work, result = depth_dtypes(prediction, target)
    traceable = needs_traceable_code(p) or needs_traceable_code(t)
    if eps is None and not traceable:
        _check_positive(fn, "prediction", p, m)
        _check_positive(fn, "target", t, m)
    with torch.autocast(p.device.type, enabled=False):
        p, t = p.to(work), t.to(work)
        if traceable:
            loss = _traceable(p, t, m, variance_focus, scale, eps)
        else:
            loss = _ScaleInvariantLog.apply(p, t, m, variance_focus, scale, eps, torch.is_grad_enabled())
    return loss.to(result)


class ScaleInvariantLogLoss(nn.Module):
    """Module form of :func:`scale_invariant_log_loss`; ``forward(prediction, target, mask)``."""

    def __init__(self, variance_focus: float = 0.85, scale: float = 10.0, eps: Optional[float] = None) -> None:
        super().__init__()
        self.variance_focus, self.scale, self.eps = _check_options(type(self).__name__, variance_focus, scale, eps)

    def forward(self, prediction: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        return scale_invariant_log_loss(
            prediction, target, mask, variance_focus=self.variance_focus, scale=self.scale, eps=self.eps
        )

    def extra_repr(self) -> str:
        eps = "" if self.eps is None else f", eps={self.eps}"
        return f"variance_focus={self.variance_focus}, scale={self.scale}{eps}"
