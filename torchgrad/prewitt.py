"""The Prewitt operator: Sobel's layout with uniform ``[1, 1, 1]`` smoothing."""

from __future__ import annotations

from torch import Tensor, nn

from ._filters import build_operator
from ._linear import apply_operator
from ._registry import REGISTRY
from ._validation import check_bool, check_padding, check_spatial_dims


def prewitt(
    image: Tensor, *, padding: str = "reflect", normalized: bool = False, spatial_dims: int = 2
) -> tuple[Tensor, ...]:
    r"""Prewitt derivatives along each spatial axis: ``[-1, 0, 1]`` along the axis times ``[1, 1, 1]`` across.

    In 2-D, ``dy`` correlates the image with ``[[-1, -1, -1], [0, 0, 0], [1, 1, 1]]`` and ``dx`` with
    its transpose, positive where intensity grows toward larger indices (``scipy.ndimage.prewitt``
    along the same axis). In 3-D the kernel along each axis is the difference on that axis times
    ``[1, 1, 1]`` on the other two. Computed as separable stencils, with a hand-written backward
    that saves no tensors.

    Args:
        image: ``(..., H, W)`` tensor (``(..., D, H, W)`` when ``spatial_dims=3``), floating or complex.
        padding: how the border is extended: ``"reflect"`` (needs 2 samples per axis),
            ``"replicate"``, ``"zeros"``, ``"circular"`` or ``"symmetric"`` (half-sample: ``x[-1] = x[0]``).
        normalized: divide by the kernel's L1 norm (6 in 2-D, 18 in 3-D): the derivative itself of
            a linear ramp with unit spacing.
        spatial_dims: 2 for images, 3 for volumes.

    Returns:
        ``(dy, dx)``, or ``(dz, dy, dx)`` for volumes, each shaped and typed like ``image``.

    Example:
        >>> image = torch.tensor([[0.0, 1.0, 2.0, 3.0]] * 3)
        >>> dy, dx = prewitt(image, padding="replicate", normalized=True)
        >>> dx
        tensor([[0.5000, 1.0000, 1.0000, 0.5000],
                [0.5000, 1.0000, 1.0000, 0.5000],
                [0.5000, 1.0000, 1.0000, 0.5000]])
        >>> bool(dy.eq(0).all())
        True
    """
    op = build_operator("prewitt", REGISTRY["prewitt"], image, padding, normalized, spatial_dims)
    return apply_operator(op, image)


class Prewitt(nn.Module):
    """Module form of :func:`prewitt`."""

    def __init__(self, *, padding: str = "reflect", normalized: bool = False, spatial_dims: int = 2) -> None:
        super().__init__()
        self.padding = check_padding("Prewitt", "padding", padding)
        self.normalized = check_bool("Prewitt", "normalized", normalized)
        self.spatial_dims = check_spatial_dims("Prewitt", "spatial_dims", spatial_dims)

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        return prewitt(image, padding=self.padding, normalized=self.normalized, spatial_dims=self.spatial_dims)

    def extra_repr(self) -> str:
        return f"padding={self.padding!r}, normalized={self.normalized}, spatial_dims={self.spatial_dims}"
