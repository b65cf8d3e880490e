"""Edge-aware disparity smoothness (Godard et al. 2017), as monodepth2 computes it."""

from __future__ import annotations

from torch import Tensor, nn

from torchgrad._internal import (
    check_batch,
    check_bool,
    check_reduction,
    check_same_device,
    forward_difference_operator,
)

from ._autocast import autocast_off, autocast_pair
from ._fused import FusedLoss, reduced_penalty
from ._penalties import EdgeAware


def edge_aware_smoothness_loss(
    disparity: Tensor, image: Tensor, *, normalize: bool = True, reduction: str = "mean"
) -> Tensor:
    r"""Disparity gradients, down-weighted where the image has edges.

    Per element, ``|\partial_y d|\, e^{-\overline{|\partial_y I|}}`` and
    ``|\partial_x d|\, e^{-\overline{|\partial_x I|}}``, with forward differences (valid at the
    ``(H-1, W)`` and ``(H, W-1)`` positions that have a next pixel) and ``\overline{\cdot}`` the
    mean over the image's channels. ``"mean"`` is monodepth2's value, the sum of each term's mean over
    its valid positions:

    .. math::
        \operatorname{mean}\, |\partial_x d|\, e^{-\overline{|\partial_x I|}}
        + \operatorname{mean}\, |\partial_y d|\, e^{-\overline{|\partial_y I|}}

    ``"none"`` returns both terms stacked as :func:`gradient_loss` stacks them, with zeros where a
    forward difference does not exist (last row of the ``y`` term, last column of the ``x`` term);
    ``"sum"`` is the sum of that map. With ``normalize`` the disparity is first divided by its
    per-sample spatial mean (plus ``1e-7``), as monodepth2 does, so the loss does not reward
    shrinking the disparity. The image only weighs the terms: it is treated as a constant (no
    gradient reaches it), as the input frames of depth estimation are. One autograd Function
    computes the loss; its backward saves only references to its inputs.

    Args:
        disparity: ``(N, 1, H, W)`` (or ``(N, C, H, W)``) predicted disparity.
        image: ``(N, C', H, W)`` the colour image it was predicted from, same ``N``, ``H``, ``W``.
        normalize: divide the disparity by its mean first.
        reduction: ``"mean"`` (monodepth2's), ``"sum"`` or ``"none"``.

    Returns:
        A scalar, or with ``reduction="none"`` the per-element loss stacked as ``(N, C, 2, H, W)``
        (``(dy, dx)`` terms), in the disparity's dtype (under autocast, at least float32, as the other losses).

    Example:
        >>> image = torch.rand(2, 3, 8, 8)
        >>> float(edge_aware_smoothness_loss(torch.ones(2, 1, 8, 8), image))  # a flat disparity
        0.0
        >>> edge_aware_smoothness_loss(torch.rand(2, 1, 8, 8), image, reduction="none").shape
        torch.Size([2, 1, 2, 8, 8])
    """
    caller = "edge_aware_smoothness_loss"
    normalize = check_bool(caller, "normalize", normalize)
    reduction = check_reduction(caller, "reduction", reduction)
    disparity, image = check_batch(caller, "disparity", disparity, (4,)), check_batch(caller, "image", image, (4,))
    for name, value in (("disparity", disparity), ("image", image)):
        if value.shape[1] == 0:  # the mean over no channels is NaN
            raise ValueError(f"{caller}: `{name}` must have at least one channel, got shape {tuple(value.shape)}")
    if disparity.shape[0] != image.shape[0] or disparity.shape[2:] != image.shape[2:]:
        raise ValueError(
            f"{caller}: `disparity` and `image` must share N, H and W, "
            f"got shapes {tuple(disparity.shape)} and {tuple(image.shape)}"
        )
    check_same_device(caller, "image", image, "disparity", disparity)
    disparity, image = autocast_pair(disparity, image)
    with autocast_off(disparity.device):
        return _edge_aware(caller, disparity, image, normalize, reduction)


def _edge_aware(caller: str, disparity: Tensor, image: Tensor, normalize: bool, reduction: str) -> Tensor:
    if normalize:  # in the standard layout (a copy only for another one): its sums are the same whatever the layout
        disparity = disparity.contiguous()
        disparity = disparity / (disparity.mean(dim=(2, 3), keepdim=True) + 1e-7)
    weights = None
    if reduction == "mean":
        if disparity.numel() == 0:  # a mean over no elements is 0, as for the other losses
            return disparity.sum()
        # Forward differences are zero on the last row (dy) and column (dx): weighting the sum over the full map
        # by one over the valid count gives the means over the valid (H-1, W) and (H, W-1) positions.
        n, c, h, w = disparity.shape
        weights = (1.0 / (n * c * (h - 1) * w), 1.0 / (n * c * h * (w - 1)))
    loss = FusedLoss(forward_difference_operator(disparity, 2, caller), EdgeAware(), weights)
    # The weights make the sum of the map monodepth2's mean.
    total = "none" if reduction == "none" else "sum"
    return reduced_penalty(disparity, image.detach(), None, loss, total, disparity.dtype)


class EdgeAwareSmoothnessLoss(nn.Module):
    """Module form of :func:`edge_aware_smoothness_loss`; ``forward(disparity, image)``.

    Example:
        >>> criterion = EdgeAwareSmoothnessLoss(reduction="sum")
        >>> criterion(torch.rand(2, 1, 8, 8), torch.rand(2, 3, 8, 8)).shape
        torch.Size([])
    """

    def __init__(self, normalize: bool = True, reduction: str = "mean") -> None:
        super().__init__()
        self.normalize = check_bool(type(self).__name__, "normalize", normalize)
        self.reduction = check_reduction(type(self).__name__, "reduction", reduction)

    def forward(self, disparity: Tensor, image: Tensor) -> Tensor:
        return edge_aware_smoothness_loss(disparity, image, normalize=self.normalize, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"normalize={self.normalize}, reduction={self.reduction!r}"
