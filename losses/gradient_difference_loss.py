"""The gradient difference loss of Mathieu et al. (2016), the sharpness term of video prediction."""

from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from torchgrad._internal import (
    OPERATOR_NAMES,
    check_bool,
    check_number,
    check_operator,
    check_padding,
    check_reduction,
    operator_by_name,
)

from ._autocast import autocast_off, autocast_pair, result_dtype
from ._fused import FusedLoss, reduced_penalty
from ._penalties import GradientDifference
from .gradient_loss import check_pair


def _check_options(
    caller: str, alpha: object, operator: object, reduction: object, padding: object, normalized: object
) -> tuple[float, str, str, Optional[str], bool]:
    """``(alpha, operator, reduction, padding, normalized)``, checked for ``caller``."""
    padding = None if padding is None else check_padding(caller, "padding", padding)
    normalized = check_bool(caller, "normalized", normalized)
    operator = check_operator(caller, "operator", operator, OPERATOR_NAMES, padding, normalized)
    alpha = check_number(caller, "alpha", alpha, positive=True)
    return alpha, operator, check_reduction(caller, "reduction", reduction), padding, normalized


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
    it penalises edges that are weaker or stronger than the target's, whatever their sign. ``g_d`` are
    the components of ``operator``, the operators of :func:`gradient_loss`: first derivatives, or the
    second derivatives of ``"laplacian"`` and ``"hessian"``. Reduced as :func:`gradient_loss` reduces
    (``"mean"`` over every element of every component). One autograd Function computes it; its
    backward is written by hand and saves only references to the inputs.

    Args:
        input: ``(N, C, H, W)`` images or ``(N, C, D, H, W)`` volumes (``"scharr"``, ``"hessian"``: images
            only).
        target: same shape, device and dtype; gradients flow to it when it requires grad.
        alpha: the exponent, positive and finite.
        operator: ``"diff"`` (as in the paper), ``"sobel"``, ``"scharr"``, ``"prewitt"``, ``"central"``,
            ``"laplacian"`` or ``"hessian"``; another name is a ``ValueError``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        padding: border mode of the filters (``"sobel"``, ``"scharr"``, ``"prewitt"``, ``"laplacian"``,
            ``"hessian"``); ``None`` takes their default, reflect.
        normalized: divide the filter as :func:`gradient_loss` does (Sobel by 8, Scharr by 32, ...).

    Returns:
        A scalar, or with ``reduction="none"`` the per-element loss stacked as ``(N, C, K, H, W)``
        (``(N, C, K, D, H, W)`` for volumes), ``K`` the number of components: one per spatial axis for
        the first derivatives, 1 for ``"laplacian"``, 3 for ``"hessian"``.

    Example:
        >>> target = torch.zeros(1, 1, 4, 4)
        >>> target[..., 2:] = 1.0
        >>> gradient_difference_loss(-target, target)  # the same edge, opposite sign: no loss
        tensor(0.)
    """
    caller = "gradient_difference_loss"
    alpha, operator, reduction, padding, normalized = _check_options(
        caller, alpha, operator, reduction, padding, normalized
    )
    input, target = check_pair(caller, input, target, operator)
    spatial_dims = input.dim() - 2
    dtype = result_dtype(input, target)
    input, target = autocast_pair(input, target)
    with autocast_off(input.device):
        op = operator_by_name(caller, operator, input, padding, normalized, spatial_dims)
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
        options = _check_options(type(self).__name__, alpha, operator, reduction, padding, normalized)
        self.alpha, self.operator, self.reduction, self.padding, self.normalized = options

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
