"""The operators by name, as the magnitude and the losses choose them: ``"diff"``, ``"sobel"``,
``"scharr"``, ``"central"``."""

from __future__ import annotations

from typing import Optional

from torch import Tensor

from ._filters import SCHARR, SOBEL, derivative_operator
from ._separable import Separable
from ._validation import check_operator, check_spatial_dims
from .gradient import central_difference_operator
from .image_gradients import forward_difference_operator

OPERATORS = ("diff", "sobel", "scharr", "central")


def operator_by_name(
    fn: str, operator: str, image: Tensor, padding: Optional[str], normalized: bool, spatial_dims: int
) -> Separable:
    """The linear operator ``operator`` for ``image`` (checked on behalf of ``fn``): one output per spatial axis."""
    operator = check_operator(fn, "operator", operator, OPERATORS, padding, normalized)
    spatial_dims = check_spatial_dims(fn, "spatial_dims", spatial_dims, (2,) if operator == "scharr" else (2, 3))
    if operator == "diff":
        return forward_difference_operator(image, spatial_dims, fn)
    if operator == "central":
        return central_difference_operator(image, spatial_dims, fn)
    smoothing = SOBEL if operator == "sobel" else SCHARR
    return derivative_operator(fn, image, smoothing, padding or "reflect", normalized, spatial_dims)
