"""Edge-aware disparity smoothness (Godard et al. 2017), as monodepth2 computes it."""

from __future__ import annotations

from torch import Tensor, nn

from torchgrad._internal import check_batch, check_bool, check_same_device, forward_difference_operator

from ._penalty import Penalty, penalty_call


def edge_aware_smoothness_loss(disparity: Tensor, image: Tensor, *, normalize: bool = True) -> Tensor:
    r"""Disparity gradients, down-weighted where the image has edges.

    .. math::
        \operatorname{mean}\, |\partial_x d|\, e^{-\overline{|\partial_x I|}}
        + \operatorname{mean}\, |\partial_y d|\, e^{-\overline{|\partial_y I|}}

    with forward differences over their valid ``(H, W-1)`` and ``(H-1, W)`` positions and
    ``\overline{\cdot}`` the mean over the image's channels. With ``normalize`` the disparity is
    first divided by its per-sample spatial mean (plus ``1e-7``), as monodepth2 does, so the loss
    does not reward shrinking the disparity. The image only weighs the terms: it is treated as a
    constant (no gradient reaches it), as the input frames of depth estimation are. One autograd
    Function computes the loss; its backward saves only references to its inputs.

    Args:
        disparity: ``(N, 1, H, W)`` (or ``(N, C, H, W)``) predicted disparity.
        image: ``(N, C', H, W)`` the colour image it was predicted from, same ``N``, ``H``, ``W``.
        normalize: divide the disparity by its mean first.

    Returns:
        A scalar in the disparity's dtype.

    Example:
        >>> image = torch.rand(2, 3, 8, 8)
        >>> float(edge_aware_smoothness_loss(torch.ones(2, 1, 8, 8), image))  # a flat disparity
        0.0
    """
    fn = "edge_aware_smoothness_loss"
    normalize = check_bool(fn, "normalize", normalize)
    disparity, image = check_batch(fn, "disparity", disparity, (4,)), check_batch(fn, "image", image, (4,))
    for name, value in (("disparity", disparity), ("image", image)):
        if value.shape[1] == 0:  # the mean over no channels is NaN
            raise ValueError(f"{fn}: `{name}` must have at least one channel, got shape {tuple(value.shape)}")
    if disparity.shape[0] != image.shape[0] or disparity.shape[2:] != image.shape[2:]:
        raise ValueError(
            f"{fn}: `disparity` and `image` must share N, H and W, "
            f"got shapes {tuple(disparity.shape)} and {tuple(image.shape)}"
        )
    check_same_device(fn, "image", image, "disparity", disparity)
    if normalize:
        disparity = disparity / (disparity.mean(dim=(2, 3), keepdim=True) + 1e-7)
    # Forward differences are zero on the last row (dy) and column (dx): summing over the full map and
    # dividing by the valid count gives the means over the valid (H-1, W) and (H, W-1) positions.
    n, c, h, w = disparity.shape
    if disparity.numel() == 0:  # an empty batch has no mean (as torch.mean of nothing)
        return disparity.sum() * float("nan")
    scales = (1.0 / (n * c * (h - 1) * w), 1.0 / (n * c * h * (w - 1)))
    penalty = Penalty(forward_difference_operator(disparity, 2, fn), "edge", scales=scales)
    return penalty_call(disparity, image.detach(), None, penalty, 0).to(disparity.dtype)


class EdgeAwareSmoothnessLoss(nn.Module):
    """Module form of :func:`edge_aware_smoothness_loss`; ``forward(disparity, image)``."""

    def __init__(self, normalize: bool = True) -> None:
        super().__init__()
        self.normalize = check_bool(type(self).__name__, "normalize", normalize)

    def forward(self, disparity: Tensor, image: Tensor) -> Tensor:
        return edge_aware_smoothness_loss(disparity, image, normalize=self.normalize)

    def extra_repr(self) -> str:
        return f"normalize={self.normalize}"
