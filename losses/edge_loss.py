"""MPRNet's edge loss: the Charbonnier distance between Laplacian bands, fused into one linear pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from torchgrad._internal import (
    FLOATING,
    Separable,
    Workspace,
    check_image,
    check_like,
    check_number,
    check_reduction,
    needs_traceable_code,
    padded_stencil,
)

from ._autocast import autocast_off, autocast_pair, result_dtype
from ._fused import FusedLoss, penalty_call, reduced_penalty
from ._penalties import Charbonnier

#: MPRNet's Gaussian ``[.05, .25, .4, .25, .05]`` along each axis, as integers over their sum, replicate-padded.
GAUSSIAN = Separable(
    ((padded_stencil(-2, (1, 5, 8, 5, 1), "replicate", 20), padded_stencil(-1, (1, 5, 8, 5, 1), "replicate", 20)),)
)


def _even_samples_times_4(t: Tensor, traceable: bool) -> Tensor:
    """``U D t``: 4 times ``t`` where both the row and the column are even, 0 elsewhere (in place unless
    ``traceable``). Zeroed samples are dropped, not multiplied: a non-finite value there is not read."""
    if traceable:
        rows = torch.arange(t.shape[-2], device=t.device) % 2 == 0
        cols = torch.arange(t.shape[-1], device=t.device) % 2 == 0
        return torch.where(rows[:, None] & cols, 4 * t, 0.0)
    t[..., 1::2, :] = 0.0
    t[..., ::2, 1::2] = 0.0
    t[..., ::2, ::2] *= 4.0
    return t


@dataclass(frozen=True)
class LaplacianBand:
    """``x - G U D G x`` (``G`` the Gaussian, ``U D`` :func:`_even_samples_times_4`) on the last two axes,
    a linear operator with one output; its adjoint is ``g - G^T U D G^T g`` (``U D`` is diagonal).

    ``subtract=False`` is ``x + G U D G x``, the band's :meth:`support`: with ``G``'s weights non-negative it is
    non-zero exactly where an output reads a non-zero sample."""

    gaussian: Separable = GAUSSIAN
    subtract: bool = True

    n_outputs = 1
    spatial_dims = 2

    def apply(
        self,
        x: Tensor,
        traceable: bool = False,
        workspace: Optional[Workspace] = None,
        minus: Optional[Tensor] = None,
    ) -> tuple[Tensor]:
        """``A x`` or ``A (x - minus)``, in buffers of its own (the two blurs' outputs would share a
        ``workspace``'s)."""
        if minus is not None:
            x = x - minus
        traceable = traceable or needs_traceable_code(x)
        (smooth,) = self.gaussian.apply(x, traceable)
        (smooth,) = self.gaussian.apply(_even_samples_times_4(smooth, traceable), traceable)
        return (self._combine(x, smooth, traceable),)

    def adjoint(
        self,
        grads: Sequence[Optional[Tensor]],
        traceable: bool = False,
        out: Optional[Tensor] = None,
        workspace: Optional[Workspace] = None,
    ) -> Tensor:
        """``A^T g``, copied into ``out`` when one is given."""
        (g,) = grads
        if g is None:
            raise ValueError("the adjoint needs a cotangent for at least one output")
        traceable = traceable or needs_traceable_code(g)
        smooth = self.gaussian.adjoint([g], traceable)
        smooth = self.gaussian.adjoint([_even_samples_times_4(smooth, traceable)], traceable)
        result = self._combine(g, smooth, traceable)
        return result if out is None else out.copy_(result)

    def support(self) -> LaplacianBand:
        return LaplacianBand(self.gaussian.support(), subtract=False)

    def _combine(self, x: Tensor, smooth: Tensor, traceable: bool) -> Tensor:
        """``x - smooth`` (or ``x + smooth``), written over ``smooth`` unless ``traceable``."""
        if traceable:
            return x - smooth if self.subtract else x + smooth
        return torch.sub(x, smooth, out=smooth) if self.subtract else smooth.add_(x)


BAND = LaplacianBand()


def _check_options(caller: str, eps: object, reduction: object) -> tuple[float, str]:
    return check_number(caller, "eps", eps, positive=True), check_reduction(caller, "reduction", reduction)


def edge_loss(input: Tensor, target: Tensor, *, eps: float = 1e-3, reduction: str = "mean") -> Tensor:
    r"""MPRNet's edge loss: the Charbonnier distance between the Laplacian bands of two images.

    .. math:: \ell = \operatorname{reduce}_{\text{elements}} \sqrt{(L\,\text{input} - L\,\text{target})^2
        + \varepsilon^2}, \qquad L x = x - G\,U D\,G\,x

    with ``G`` the 5x5 Gaussian ``[.05, .25, .4, .25, .05]`` (outer product) with replicate padding, ``D`` taking
    every second pixel and ``U`` stuffing zeros back to the input's size and multiplying by 4, as MPRNet's
    ``EdgeLoss`` (Zamir et al. 2021) computes it: ``edge_loss(x, y)`` equals its ``EdgeLoss()(x, y)``. ``L`` is
    linear, so this is one pass over ``input - target``, inside one autograd Function whose backward
    (``L^T ((L d) / sqrt((L d)^2 + eps^2))``, ``L^T = I - G^T U D G^T``) is written by hand and saves only
    references to ``input`` and ``target``.

    Args:
        input: ``(..., H, W)``: ``(N, C, H, W)`` images with any number of channels, or ``(C, H, W)``, ``(H, W)``;
            each channel is filtered alone.
        target: same shape, device and dtype as ``input``; gradients flow to it when it requires grad.
        eps: the Charbonnier ``eps``, a finite positive number (MPRNet's 1e-3). The distance is computed as
            ``hypot(L input - L target, eps)``: no square leaves the dtype's range, whatever ``eps``.
        reduction: ``"mean"`` (MPRNet's: over every element; 0 over an empty batch), ``"sum"`` or ``"none"``.

    Returns:
        A scalar, or with ``reduction="none"`` the per-element loss, of ``input``'s shape. Half-precision inputs
        are accumulated in float32 and the result returned in the input's dtype; under autocast the result is
        float32.

    Example:
        >>> image = torch.zeros(1, 1, 4, 4)
        >>> edge_loss(image, image)  # sqrt(0 + eps^2)
        tensor(0.0010)
        >>> image[..., 1, 1] = 1.0
        >>> edge_loss(image, torch.zeros(1, 1, 4, 4), reduction="sum")
        tensor(1.8489)
    """
    caller = "edge_loss"
    eps, reduction = _check_options(caller, eps, reduction)
    input = check_image(caller, "input", input, 2, FLOATING)
    target = check_like(caller, "target", check_image(caller, "target", target, 2, FLOATING), "input", input)
    dtype = result_dtype(input, target)
    input, target = autocast_pair(input, target)
    with autocast_off(input.device):
        loss = FusedLoss(BAND, Charbonnier(eps))
        if reduction == "none":
            return penalty_call(input, target, None, loss, None).squeeze(-3).to(dtype)
        return reduced_penalty(input, target, None, loss, reduction, dtype)


class EdgeLoss(nn.Module):
    """Module form of :func:`edge_loss`; ``forward(input, target)``. ``EdgeLoss()`` is MPRNet's ``EdgeLoss()``.

    Example:
        >>> criterion = EdgeLoss()
        >>> x = torch.rand(2, 3, 8, 8)
        >>> criterion(x, x)  # eps where the bands agree
        tensor(0.0010)
    """

    def __init__(self, eps: float = 1e-3, reduction: str = "mean") -> None:
        super().__init__()
        self.eps, self.reduction = _check_options(type(self).__name__, eps, reduction)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return edge_loss(input, target, eps=self.eps, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, reduction={self.reduction!r}"
