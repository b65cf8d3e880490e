"""The Hessian of an image: its three second derivatives, smoothed across as Sobel smooths."""

from __future__ import annotations

from torch import Tensor, nn

from ._filters import build_operator
from ._linear import apply_operator
from ._registry import REGISTRY
from ._validation import check_bool, check_padding


def hessian(image: Tensor, *, padding: str = "reflect", normalized: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    r"""The second derivatives ``(dyy, dyx, dxx)`` of an image.

    ``dyy`` correlates the image with ``[1, -2, 1]`` along ``y`` times ``[1, 2, 1]`` along ``x``
    (``[[1, 2, 1], [-2, -4, -2], [1, 2, 1]]``), ``dxx`` with its transpose, and ``dyx`` with
    ``[-1, 0, 1]`` along both (``[[1, 0, -1], [0, 0, 0], [-1, 0, 1]]``): OpenCV's
    ``cv2.Sobel(img, ddepth, 0, 2)``, ``(1, 1)`` and ``(2, 0)``. Computed as separable stencils, with
    a hand-written backward that saves no tensors.

    Args:
        image: ``(..., H, W)`` tensor, floating or complex.
        padding: ``"reflect"`` (needs 2 samples per axis), ``"replicate"``, ``"zeros"``, ``"circular"`` or
            ``"symmetric"`` (half-sample: ``x[-1] = x[0]``).
        normalized: divide each output by 4: the second derivatives themselves of a quadratic with
            unit spacing.

    Returns:
        ``(dyy, dyx, dxx)``, each shaped and typed like ``image``.

    Example:
        >>> y, x = torch.meshgrid(torch.arange(5.0), torch.arange(5.0), indexing="ij")
        >>> dyy, dyx, dxx = hessian(x**2 + 3 * x * y, normalized=True)
        >>> dyx[1:-1, 1:-1]
        tensor([[3., 3., 3.],
                [3., 3., 3.],
                [3., 3., 3.]])
        >>> dxx[2, 2], dyy[2, 2]
        (tensor(2.), tensor(0.))
    """
    dyy, dyx, dxx = apply_operator(build_operator("hessian", REGISTRY["hessian"], image, padding, normalized, 2), image)
    return dyy, dyx, dxx


class Hessian(nn.Module):
    """Module form of :func:`hessian`."""

    def __init__(self, *, padding: str = "reflect", normalized: bool = False) -> None:
        super().__init__()
        self.padding = check_padding("Hessian", "padding", padding)
        self.normalized = check_bool("Hessian", "normalized", normalized)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return hessian(image, padding=self.padding, normalized=self.normalized)

    def extra_repr(self) -> str:
        return f"padding={self.padding!r}, normalized={self.normalized}"
