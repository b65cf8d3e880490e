"""The Sobel operator, with ``tf.image.sobel_edges`` as its default semantics."""

from __future__ import annotations

from torch import Tensor, nn

from ._filters import SOBEL, derivative_operator
from ._linear import apply_operator
from ._validation import check_bool, check_padding, check_spatial_dims


def sobel(
    image: Tensor, *, padding: str = "reflect", normalized: bool = False, spatial_dims: int = 2
) -> tuple[Tensor, ...]:
    r"""Sobel derivatives along each spatial axis.

    In 2-D, ``dy`` correlates the image with ``[[-1, -2, -1], [0, 0, 0], [1, 2, 1]]`` and ``dx`` with
    its transpose: a ``[-1, 0, 1]`` difference along the axis times ``[1, 2, 1]`` smoothing across
    it, positive where intensity grows toward larger indices. The defaults reproduce
    ``tf.image.sobel_edges`` (reflect padding, unnormalised kernels); the NHWC form is
    :func:`torchgrad.tf_compat.sobel_edges`. In 3-D the kernel along each axis is the difference on
    that axis times ``[1, 2, 1]`` on the other two. Computed as separable stencils, with a
    hand-written backward that saves no tensors.

    Args:
        image: ``(..., H, W)`` tensor (``(..., D, H, W)`` when ``spatial_dims=3``), floating or complex.
        padding: how the border is extended: ``"reflect"`` (needs 2 samples per axis),
            ``"replicate"``, ``"zeros"``, ``"circular"`` or ``"symmetric"`` (half-sample: ``x[-1] = x[0]``).
        normalized: divide by the kernel's L1 norm (8 in 2-D, 32 in 3-D).
        spatial_dims: 2 for images, 3 for volumes.

    Returns:
        ``(dy, dx)``, or ``(dz, dy, dx)`` for volumes, each shaped and typed like ``image``.

    Example:
        >>> image = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 3)
        >>> dy, dx = sobel(image)
        >>> dx
        tensor([[0., 4., 4., 0.],
                [0., 4., 4., 0.],
                [0., 4., 4., 0.]])
        >>> bool(dy.eq(0).all())
        True
    """
    spatial_dims = check_spatial_dims("sobel", "spatial_dims", spatial_dims)
    return apply_operator(derivative_operator("sobel", image, SOBEL, padding, normalized, spatial_dims), image)


class Sobel(nn.Module):
    """Module form of :func:`sobel`."""

    def __init__(self, *, padding: str = "reflect", normalized: bool = False, spatial_dims: int = 2) -> None:
        super().__init__()
        self.padding = check_padding("Sobel", "padding", padding)
        self.normalized = check_bool("Sobel", "normalized", normalized)
        self.spatial_dims = check_spatial_dims("Sobel", "spatial_dims", spatial_dims)

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        return sobel(image, padding=self.padding, normalized=self.normalized, spatial_dims=self.spatial_dims)

    def extra_repr(self) -> str:
        return f"padding={self.padding!r}, normalized={self.normalized}, spatial_dims={self.spatial_dims}"
