"""L1 / L2 distance between image gradients, fused through linearity into one operator pass."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from torchgrad._internal import check_operator_options, operator_by_name

from ._fused import FusedLoss, reduced_penalty
from ._inputs import autocast_pair, check_mask, check_pair, check_reduction, result_dtype
from ._penalties import L1, SquaredL2


def _check_p(fn: str, p: object) -> int:
    if p not in (1, 2) or isinstance(p, bool):
        raise ValueError(f"{fn}: `p` must be 1 (L1) or 2 (squared L2), got {p!r}")
    return int(p)  # type: ignore[call-overload]


def gradient_loss(
    input: Tensor,
    target: Tensor,
    mask: Optional[Tensor] = None,
    *,
    operator: str = "sobel",
    p: int = 1,
    reduction: str = "mean",
    padding: Optional[str] = None,
    normalized: bool = False,
) -> Tensor:
    r"""L1 (``p=1``) or squared L2 (``p=2``) distance between the image gradients of two images.

    .. math:: \ell = \operatorname{reduce}_{c, d, \text{pixels}} |g_d(\text{input}) - g_d(\text{target})|^p

    with ``g_d`` the components of ``operator`` (``"diff"``: :func:`torchgrad.image_gradients`,
    ``"sobel"``, ``"scharr"``, ``"central"``: :func:`torchgrad.gradient` over the spatial axes). The
    operators are linear, so this is ``|A (input - target)|^p``: one operator pass, inside one
    autograd Function whose backward (``A^T sign(A d)`` or ``A^T 2 A d``) is written by hand and
    saves only references to ``input``, ``target`` and ``mask``. ``"mean"`` averages over every
    element of every component: ``gradient_loss(x, y)`` equals TensorFlow's
    ``reduce_mean(abs(sobel_edges(x) - sobel_edges(y)))``.

    Args:
        input: ``(N, C, H, W)`` images or ``(N, C, D, H, W)`` volumes (``"scharr"``: images only).
        target: same shape, device and dtype as ``input``; gradients flow to it when it requires grad.
        mask: bool, broadcastable to ``input``, True where a pixel is valid (depth maps with holes). A
            gradient element counts only where every pixel its stencil reads is valid; ``"mean"``
            divides by the number that count (a batch where none counts gives 0).
        operator: ``"diff"``, ``"sobel"``, ``"scharr"`` or ``"central"``.
        p: 1 for L1, 2 for the squared error.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        padding: border mode of ``"sobel"``/``"scharr"``; ``None`` takes their default, reflect.
        normalized: divide the Sobel/Scharr kernel by its L1 norm.

    Returns:
        A scalar, or with ``reduction="none"`` the per-element loss stacked as ``(N, C, 2, H, W)``
        (``(N, C, 3, D, H, W)`` for volumes). Half-precision inputs are accumulated in float32 and the
        result returned in the input's dtype; under autocast the result is float32.

    Example:
        >>> target = torch.zeros(1, 1, 4, 4)
        >>> input = torch.zeros(1, 1, 4, 4)
        >>> input[..., 2:] = 1.0
        >>> gradient_loss(input, target, operator="diff", p=2)
        tensor(0.1250)
    """
    fn = "gradient_loss"
    p = _check_p(fn, p)
    reduction = check_reduction(fn, reduction)
    check_operator_options(fn, operator, padding, normalized, None)
    spatial_dims = check_pair(fn, input, target)
    mask = check_mask(fn, mask, input)
    dtype = result_dtype(input, target)
    input, target = autocast_pair(input, target)
    with torch.autocast(input.device.type, enabled=False):
        op = operator_by_name(fn, operator, input, padding, normalized, spatial_dims)
        loss = FusedLoss(op, L1() if p == 1 else SquaredL2())
        return reduced_penalty(input, target, mask, loss, reduction, dtype)


class GradientLoss(nn.Module):
    """Module form of :func:`gradient_loss`; ``forward(input, target, mask=None)``.

    Example:
        >>> criterion = GradientLoss("diff", p=2)
        >>> criterion(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)).shape
        torch.Size([])
    """

    def __init__(
        self,
        operator: str = "sobel",
        p: int = 1,
        reduction: str = "mean",
        padding: Optional[str] = None,
        normalized: bool = False,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.p = _check_p(name, p)
        self.reduction = check_reduction(name, reduction)
        check_operator_options(name, operator, padding, normalized, None)
        self.operator, self.padding, self.normalized = operator, padding, bool(normalized)

    def forward(self, input: Tensor, target: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        return gradient_loss(
            input,
            target,
            mask,
            operator=self.operator,
            p=self.p,
            reduction=self.reduction,
            padding=self.padding,
            normalized=self.normalized,
        )

    def extra_repr(self) -> str:
        options = f"operator={self.operator!r}, p={self.p}, reduction={self.reduction!r}"
        if self.padding is not None:
            options += f", padding={self.padding!r}"
        return options + (", normalized=True" if self.normalized else "")
