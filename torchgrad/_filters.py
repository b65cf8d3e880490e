"""Separable derivative filters: a central difference along one axis, smoothing along the others."""

from __future__ import annotations

from torch import Tensor

from ._separable import Separable
from ._stencil import padded_stencil
from ._validation import check_bool, check_image, check_min_size, check_padding

DIFFERENCE = (-1, 0, 1)
SOBEL = (1, 2, 1)
SCHARR = (3, 10, 3)


def derivative_operator(
    fn: str, image: Tensor, smoothing: tuple[int, int, int], padding: str, normalized: bool, spatial_dims: int
) -> Separable:
    """The filter bank for ``image``: per spatial axis (outermost first), ``DIFFERENCE`` along it and
    ``smoothing`` along the others. Checks the arguments on behalf of ``fn``.

    ``normalized`` divides by the kernel's L1 norm: ``2 * sum(smoothing) ** (spatial_dims - 1)``.
    """
    image = check_image(fn, "image", image, spatial_dims)
    padding = check_padding(fn, "padding", padding)
    normalized = check_bool(fn, "normalized", normalized)
    if padding == "reflect":
        check_min_size(fn, "image", image, spatial_dims, 2, "reflect padding")
    norm = 2 * sum(smoothing) ** (spatial_dims - 1) if normalized else 1
    axes = range(-spatial_dims, 0)
    chains = []
    for axis in axes:
        stages = [padded_stencil(a, smoothing, padding) for a in axes if a != axis]
        stages.append(padded_stencil(axis, DIFFERENCE, padding, divisor=norm))
        chains.append(tuple(stages))
    return Separable(tuple(chains))
