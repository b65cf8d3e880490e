"""The operators by name, as the magnitude and the losses choose them: ``"diff"``, ``"sobel"``,
``"scharr"``, ``"central"``."""

from __future__ import annotations

from typing import Optional

from torch import Tensor

from ._checks import check_padding, check_spatial_dims
from ._filters import SCHARR, SOBEL, derivative_operator
from ._separable import Separable
from .gradient import central_difference_operator
from .image_gradients import forward_difference_operator

OPERATORS = ("diff", "sobel", "scharr", "central")


def check_operator_options(
    fn: str,
    operator: str,
    padding: Optional[str],
    normalized: bool,
    spatial_dims: Optional[int],
    allowed: tuple[str, ...] = OPERATORS,
) -> None:
    """Raise ``ValueError`` for an unknown operator or options the operator does not take."""
    if operator not in allowed:
        raise ValueError(f"{fn}: `operator` must be one of {', '.join(map(repr, allowed))}, got {operator!r}")
    if operator in ("diff", "central") and (padding is not None or normalized):
        raise ValueError(f"{fn}: `padding` and `normalized` apply to 'sobel' and 'scharr', not to {operator!r}")
    if padding is not None:
        check_padding(padding, fn)
    if spatial_dims is not None:
        check_spatial_dims(spatial_dims, fn, allowed=(2,) if operator == "scharr" else (2, 3))


def operator_by_name(
    fn: str, operator: str, image: Tensor, padding: Optional[str], normalized: bool, spatial_dims: int
) -> Separable:
    """The linear operator ``operator`` for ``image`` (checked on behalf of ``fn``): one output per spatial axis."""
    check_operator_options(fn, operator, padding, normalized, spatial_dims)
    if operator == "diff":
        return forward_difference_operator(image, spatial_dims, fn)
    if operator == "central":
        return central_difference_operator(image, spatial_dims, fn)
    smoothing = SOBEL if operator == "sobel" else SCHARR
    return derivative_operator(image, fn, smoothing, padding or "reflect", normalized, spatial_dims)
