"""Total variation, the smoothness regulariser of style transfer and denoising."""

from __future__ import annotations

from torch import Tensor, nn

from torchgrad import gradient_magnitude
from torchgrad._internal import (
    check_batch,
    check_bool,
    check_int_choice,
    check_number,
    check_reduction,
    forward_difference_operator,
    in_work_dtype,
)

from ._autocast import autocast_off, autocast_pair, result_dtype
from ._fused import FusedLoss, penalty_call, reduced_penalty
from ._penalties import L1, SquaredL2


def _check_options(
    caller: str, p: object, isotropic: object, eps: object, reduction: object
) -> tuple[int, bool, float, str]:
    """``(p, isotropic, eps, reduction)``, checked for ``caller``."""
    p = check_int_choice(caller, "p", p, (1, 2))
    isotropic = check_bool(caller, "isotropic", isotropic)
    if isotropic and p != 1:
        raise ValueError(f"{caller}: `isotropic=True` is the L2 norm of the gradient and takes p=1, got p={p!r}")
    return (
        p,
        isotropic,
        check_number(caller, "eps", eps, non_negative=True),
        check_reduction(caller, "reduction", reduction),
    )


def total_variation_loss(
    input: Tensor, *, p: int = 1, isotropic: bool = False, eps: float = 1e-8, reduction: str = "mean"
) -> Tensor:
    r"""Total variation of images from forward differences (:func:`torchgrad.image_gradients`).

    Per pixel: ``|dy| + |dx|`` (``p=1``), ``dy^2 + dx^2`` (``p=2``) or ``sqrt(dy^2 + dx^2 + eps)``
    (``isotropic=True``), with ``dz`` too for volumes. ``dy`` is zero on the last row and ``dx`` on the
    last column, as TensorFlow defines them. Hand-written backward, saving only a reference to ``input``
    (isotropic on the Triton kernels: also ``eps``, a one-number tensor). Half precision is computed in
    float32 (isotropic: the casts in and out are launches of their own on CUDA).

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
    caller = "total_variation_loss"
    p, isotropic, eps, reduction = _check_options(caller, p, isotropic, eps, reduction)
    input = check_batch(caller, "input", input)
    dtype = result_dtype(input)
    input, _ = autocast_pair(input, None)
    with autocast_off(input.device):
        spatial_dims = input.dim() - 2
        if isotropic:
            # in float32 for half precision: eps = 1e-8 underflows to 0 in float16
            work = in_work_dtype(input)
            per_pixel = gradient_magnitude(work, operator="diff", eps=eps, spatial_dims=spatial_dims)
            if reduction == "none":
                return per_pixel.to(dtype)
            # reduced in the standard layout's order, as the fused losses are: the same total whatever the input's
            # layout; a mean over no elements is 0
            per_pixel = per_pixel.contiguous()
            total = per_pixel.mean() if reduction == "mean" and per_pixel.numel() else per_pixel.sum()
            return total.to(dtype)
        loss = FusedLoss(forward_difference_operator(input, spatial_dims, caller), L1() if p == 1 else SquaredL2())
        if reduction == "none":
            return penalty_call(input, None, None, loss, None).sum(dim=-(spatial_dims + 1)).to(dtype)
        return reduced_penalty(input, None, None, loss, reduction, dtype, count=input.numel())


class TotalVariationLoss(nn.Module):
    """Module form of :func:`total_variation_loss`; ``forward(input)``."""

    def __init__(self, p: int = 1, isotropic: bool = False, reduction: str = "mean", eps: float = 1e-8) -> None:
        super().__init__()
        self.p, self.isotropic, self.eps, self.reduction = _check_options(
            type(self).__name__, p, isotropic, eps, reduction
        )

    def forward(self, input: Tensor) -> Tensor:
        return total_variation_loss(input, p=self.p, isotropic=self.isotropic, eps=self.eps, reduction=self.reduction)

    def extra_repr(self) -> str:
        extra = f", eps={self.eps}" if self.isotropic else ""
        return f"p={self.p}, isotropic={self.isotropic}, reduction={self.reduction!r}{extra}"
