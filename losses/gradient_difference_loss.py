"""The gradient difference loss of Mathieu et al. (2016), the sharpness term of video prediction."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from torchgrad._internal import check_operator_options, operator_by_name

from ._fused import FusedLoss, reduced_penalty
from ._inputs import autocast_pair, check_pair, check_reduction, result_dtype
from ._penalties import GradientDifference


def _check_alpha(fn: str, alpha: object) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ValueError(f"{fn}: `alpha` must be a positive number, got {alpha!r}")
    return float(alpha)


def gradient_difference_loss(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 1.0,
    operator: str = "diff",
    reduction: str = "mean",
    padding: Optional[str] = None,
    normalized: bool = False,
) -> Tensor:
    r"""Gradient difference loss: ``| |g_d(input)| - |g_d(target)| |^alpha`` per gradient element.

    Mathieu, Couprie and LeCun, *Deep multi-scale video prediction beyond mean square error* (2016):
    it penalises edges that are weaker or stronger than the target's, whatever their sign. Reduced as
    :func:`gradient_loss` reduces (``"mean"`` over every element of every component). One autograd
    Function computes it; its backward is written by hand and saves only references to the inputs.

    Args:
        input: ``(N, C, H, W)`` images or ``(N, C, D, H, W)`` volumes.
        target: same shape, device and dtype; gradients flow to it when it requires grad.
        alpha: the exponent, positive.
        operator: ``"diff"`` (as in the paper), ``"sobel"``, ``"scharr"`` or ``"central"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (stacked as ``(N, C, 2, H, W)``).
        padding: border mode of ``"sobel"``/``"scharr"``; ``None`` takes their default.
        normalized: divide the Sobel/Scharr kernel by its L1 norm.

    Returns:
        A scalar, or the per-element loss with ``reduction="none"``.

    Example:
        >>> target = torch.zeros(1, 1, 4, 4)
        >>> target[..., 2:] = 1.0
        >>> gradient_difference_loss(-target, target)  # the same edge, opposite sign: no loss
        tensor(0.)
    """
    fn = "gradient_difference_loss"
    alpha = _check_alpha(fn, alpha)
    reduction = check_reduction(fn, reduction)
    check_operator_options(fn, operator, padding, normalized, None)
    spatial_dims = check_pair(fn, input, target)
    dtype = result_dtype(input, target)
    input, target = autocast_pair(input, target)
    with torch.autocast(input.device.type, enabled=False):
        op = operator_by_name(fn, operator, input, padding, normalized, spatial_dims)
        loss = FusedLoss(op, GradientDifference(alpha))
        return reduced_penalty(input, target, None, loss, reduction, dtype)


class GradientDifferenceLoss(nn.Module):
    """Module form of :func:`gradient_difference_loss`; ``forward(input, target)``."""

    def __init__(
        self,
        alpha: float = 1.0,
        operator: str = "diff",
        reduction: str = "mean",
        padding: Optional[str] = None,
        normalized: bool = False,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.alpha = _check_alpha(name, alpha)
        self.reduction = check_reduction(name, reduction)
        check_operator_options(name, operator, padding, normalized, None)
        self.operator, self.padding, self.normalized = operator, padding, bool(normalized)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return gradient_difference_loss(
            input,
            target,
            alpha=self.alpha,
            operator=self.operator,
            reduction=self.reduction,
            padding=self.padding,
            normalized=self.normalized,
        )

    def extra_repr(self) -> str:
        options = f"alpha={self.alpha}, operator={self.operator!r}, reduction={self.reduction!r}"
        if self.padding is not None:
            options += f", padding={self.padding!r}"
        return options + (", normalized=True" if self.normalized else "")
