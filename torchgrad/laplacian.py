"""The Laplacian: the sum of the second differences along every spatial axis."""

from __future__ import annotations

from torch import Tensor, nn

from ._filters import build_operator, check_form
from ._linear import apply_operator
from ._registry import REGISTRY
from ._validation import check_bool, check_int_choice, check_padding, check_spatial_dims


def laplacian(
    image: Tensor, *, padding: str = "reflect", ksize: int = 1, normalized: bool = False, spatial_dims: int = 2
) -> Tensor:
    r"""The discrete Laplacian ``d2/dy2 + d2/dx2`` (``+ d2/dz2`` for volumes) of an image.

    ``ksize=1`` is the 5-point stencil ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]`` (7-point in 3-D: the
    sum of ``[1, -2, 1]`` along each axis), ``cv2.Laplacian(img, ddepth)``'s default. ``ksize=3``
    (2-D only) is OpenCV's ``[[2, 0, 2], [0, -8, 0], [2, 0, 2]]``: ``d2/dx2`` with ``[1, 2, 1]``
    smoothing across plus ``d2/dy2`` likewise, ``cv2.Laplacian(img, ddepth, ksize=3)``. Computed as
    a sum of separable stencils, with a hand-written backward that saves no tensors.

    Args:
        image: ``(..., H, W)`` tensor (``(..., D, H, W)`` when ``spatial_dims=3``), floating or complex.
        padding: how the border is extended: ``"reflect"`` (needs 2 samples per axis),
            ``"replicate"``, ``"zeros"``, ``"circular"`` or ``"symmetric"`` (half-sample: ``x[-1] = x[0]``).
        ksize: 1 or 3 (2-D only), as OpenCV names the two kernels.
        normalized: return the Laplacian itself of a quadratic with unit spacing: ``ksize=1`` is that
            already (divides by 1), ``ksize=3`` divides by 4.
        spatial_dims: 2 for images, 3 for volumes.

    Returns:
        One tensor shaped and typed like ``image``.

    Example:
        >>> y, x = torch.meshgrid(torch.arange(5.0), torch.arange(5.0), indexing="ij")
        >>> laplacian(x**2 + 3 * y**2)[1:-1, 1:-1]  # 2 + 6 inside
        tensor([[8., 8., 8.],
                [8., 8., 8.],
                [8., 8., 8.]])
    """
    op = build_operator("laplacian", REGISTRY["laplacian"], image, padding, normalized, spatial_dims, ksize)
    (result,) = apply_operator(op, image)
    return result


class Laplacian(nn.Module):
    """Module form of :func:`laplacian`."""

    def __init__(
        self, *, padding: str = "reflect", ksize: int = 1, normalized: bool = False, spatial_dims: int = 2
    ) -> None:
        super().__init__()
        self.padding = check_padding("Laplacian", "padding", padding)
        self.normalized = check_bool("Laplacian", "normalized", normalized)
        self.spatial_dims = check_spatial_dims("Laplacian", "spatial_dims", spatial_dims)
        self.ksize = check_int_choice("Laplacian", "ksize", ksize, REGISTRY["laplacian"].ksizes)
        check_form("Laplacian", REGISTRY["laplacian"], self.spatial_dims, self.ksize)

    def forward(self, image: Tensor) -> Tensor:
        return laplacian(
            image, padding=self.padding, ksize=self.ksize, normalized=self.normalized, spatial_dims=self.spatial_dims
        )

    def extra_repr(self) -> str:
        return (
            f"padding={self.padding!r}, ksize={self.ksize}, normalized={self.normalized}, "
            f"spatial_dims={self.spatial_dims}"
        )
