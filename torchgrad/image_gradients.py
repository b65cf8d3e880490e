"""Forward differences with TensorFlow's ``tf.image.image_gradients`` semantics."""

from __future__ import annotations

from torch import Tensor, nn

from ._filters import build_operator
from ._linear import apply_operator
from ._registry import REGISTRY
from ._separable import Separable
from ._validation import check_spatial_dims


def image_gradients(image: Tensor, *, spatial_dims: int = 2) -> tuple[Tensor, ...]:
    r"""Forward differences along the spatial axes, as ``tf.image.image_gradients`` computes them.

    ``dy[..., i, j] = image[..., i + 1, j] - image[..., i, j]`` and
    ``dx[..., i, j] = image[..., i, j + 1] - image[..., i, j]``; the last row of ``dy`` and the last
    column of ``dx`` are zero, so both have the input's shape. TensorFlow's NHWC form is
    :func:`torchgrad.tf_compat.image_gradients`.

    Args:
        image: ``(..., H, W)`` tensor (``(..., D, H, W)`` when ``spatial_dims=3``), floating or
            complex. Integer images are refused: their differences wrap around in the integer dtype
            (``int8``: ``127 - (-128)`` is ``-1``); convert them first (``image.double()`` is exact
            for integers up to ``2**53``).
        spatial_dims: 2 for images, 3 for volumes.

    Returns:
        ``(dy, dx)``, or ``(dz, dy, dx)`` for volumes, each shaped and typed like ``image``.

    Example:
        >>> image = torch.arange(25.0).reshape(1, 1, 5, 5)
        >>> dy, dx = image_gradients(image)
        >>> dy[0, 0]
        tensor([[5., 5., 5., 5., 5.],
                [5., 5., 5., 5., 5.],
                [5., 5., 5., 5., 5.],
                [5., 5., 5., 5., 5.],
                [0., 0., 0., 0., 0.]])
        >>> dx[0, 0, 0]
        tensor([1., 1., 1., 1., 0.])
    """
    return apply_operator(forward_difference_operator(image, spatial_dims, "image_gradients"), image)


def forward_difference_operator(image: Tensor, spatial_dims: int, caller: str) -> Separable:
    """The forward differences of ``image`` along its spatial axes; checks the arguments for ``caller``."""
    return build_operator(caller, REGISTRY["diff"], image, None, False, spatial_dims)


class ImageGradients(nn.Module):
    """Module form of :func:`image_gradients`."""

    def __init__(self, *, spatial_dims: int = 2) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims("ImageGradients", "spatial_dims", spatial_dims)

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        return image_gradients(image, spatial_dims=self.spatial_dims)

    def extra_repr(self) -> str:
        return f"spatial_dims={self.spatial_dims}"
