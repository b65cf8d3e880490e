"""Total variation, the smoothness regulariser of style transfer and denoising."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from torchgrad import gradient_magnitude
from torchgrad._internal import forward_difference_operator

from ._fused import FusedLoss, penalty_call
from ._inputs import autocast_pair, check_image, check_reduction, result_dtype
from ._penalties import L1, SquaredL2


def _check_options(fn: str, p: object, isotropic: object, eps: object) -> None:
    if p not in (1, 2) or isinstance(p, bool):
        raise ValueError(f"{fn}: `p` must be 1 or 2, got {p!r}")
    if isotropic and p != 1:
        raise ValueError(f"{fn}: `isotropic=True` is the L2 norm of the gradient and takes p=1, got p={p!r}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
        raise ValueError(f"{fn}: `eps` must be a non-negative number, got {eps!r}")


def total_variation_loss(
    input: Tensor, *, p: int = 1, isotropic: bool = False, eps: float = 1e-8, reduction: str = "mean"
) -> Tensor:
    r"""Total variation of images from forward differences (:func:`torchgrad.image_gradients`).

    Per pixel: ``|dy| + |dx|`` (``p=1``), ``dy^2 + dx^2`` (``p=2``) or ``sqrt(dy^2 + dx^2 + eps)``
    (``isotropic=True``), with ``dz`` too for volumes. ``dy`` is zero on the last row and ``dx`` on the
    last column, as TensorFlow defines them. Hand-written backward, saving only a reference to ``input``.

    Args:
        input: ``(N, C, H, W)`` images or ``(N, C, D, H, W)`` volumes.
        p: 1 or 2.
        isotropic: the Euclidean norm of the gradient instead of the sum of absolute values (``p=1``).
        eps: added under the square root of the isotropic form, so its gradient is finite on flat regions.
        reduction: ``"mean"`` or ``"sum"`` over ``(N, C, H, W)``, or ``"none"`` for the per-pixel map.

    Returns:
        A scalar, or the ``(N, C, H, W)`` map with ``reduction="none"``.

    Example:
        >>> image = torch.zeros(1, 1, 3, 3)
        >>> image[..., 1, 1] = 1.0
        >>> total_variation_loss(image, reduction="sum")  # four unit steps
        tensor(4.)
    """
    fn = "total_variation_loss"
    _check_options(fn, p, isotropic, eps)
    reduction = check_reduction(fn, reduction)
    input = check_image(fn, "input", input)
    dtype = result_dtype(input)
    input, _ = autocast_pair(input, None)
    with torch.autocast(input.device.type, enabled=False):
        spatial_dims = input.dim() - 2
        if isotropic:
            # in float32 for half precision: eps = 1e-8 underflows to 0 in float16
            work = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input
            per_pixel = gradient_magnitude(work, operator="diff", eps=eps, spatial_dims=spatial_dims)
            total = per_pixel if reduction == "none" else per_pixel.sum()
        else:
            loss = FusedLoss(forward_difference_operator(input, spatial_dims, fn), L1() if p == 1 else SquaredL2())
            if reduction == "none":
                total = penalty_call(input, None, None, loss, None).sum(dim=-(spatial_dims + 1))
            else:
                total = penalty_call(input, None, None, loss, 0)
        if reduction == "mean":
            total = total / input.numel()
        return total.to(dtype)


class TotalVariationLoss(nn.Module):
    """Module form of :func:`total_variation_loss`; ``forward(input)``."""

    def __init__(self, p: int = 1, isotropic: bool = False, reduction: str = "mean", eps: float = 1e-8) -> None:
        super().__init__()
        name = type(self).__name__
        _check_options(name, p, isotropic, eps)
        self.reduction = check_reduction(name, reduction)
        self.p, self.isotropic, self.eps = int(p), bool(isotropic), float(eps)

    def forward(self, input: Tensor) -> Tensor:
        return total_variation_loss(input, p=self.p, isotropic=self.isotropic, eps=self.eps, reduction=self.reduction)

    def extra_repr(self) -> str:
        extra = f", eps={self.eps}" if self.isotropic else ""
        return f"p={self.p}, isotropic={self.isotropic}, reduction={self.reduction!r}{extra}"
