"""The Scharr operator: Sobel's layout with ``[3, 10, 3]`` smoothing, more rotation-invariant."""

from __future__ import annotations

from torch import Tensor, nn

from ._filters import SCHARR, derivative_operator
from ._linear import apply_operator
from ._validation import check_bool, check_padding


def scharr(image: Tensor, *, padding: str = "reflect", normalized: bool = False) -> tuple[Tensor, Tensor]:
    r"""Scharr derivatives of an image: ``[-1, 0, 1]`` along the axis times ``[3, 10, 3]`` across it.

    ``dy`` correlates the image with ``[[-3, -10, -3], [0, 0, 0], [3, 10, 3]]`` and ``dx`` with its
    transpose, positive where intensity grows toward larger indices.

    Args:
        image: ``(..., H, W)`` tensor, floating or complex.
        padding: ``"reflect"`` (needs 2 samples per axis), ``"replicate"``, ``"zeros"``, ``"circular"`` or
            ``"symmetric"``.
        normalized: divide by the kernel's L1 norm, 32.

    Returns:
        ``(dy, dx)``, each shaped and typed like ``image``.

    Example:
        >>> image = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 3)
        >>> dy, dx = scharr(image, normalized=True)
        >>> dx
        tensor([[0.0000, 0.5000, 0.5000, 0.0000],
                [0.0000, 0.5000, 0.5000, 0.0000],
                [0.0000, 0.5000, 0.5000, 0.0000]])
    """
    dy, dx = apply_operator(derivative_operator("scharr", image, SCHARR, padding, normalized, 2), image)
    return dy, dx


class Scharr(nn.Module):
    """Module form of :func:`scharr`."""

    def __init__(self, *, padding: str = "reflect", normalized: bool = False) -> None:
        super().__init__()
        self.padding = check_padding("Scharr", "padding", padding)
        self.normalized = check_bool("Scharr", "normalized", normalized)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        return scharr(image, padding=self.padding, normalized=self.normalized)

    def extra_repr(self) -> str:
        return f"padding={self.padding!r}, normalized={self.normalized}"
