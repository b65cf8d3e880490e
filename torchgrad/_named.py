"""The operators by name, as the magnitude and the losses choose them: every entry of
:data:`~torchgrad._registry.REGISTRY` (``"diff"``, ``"sobel"``, ``"scharr"``, ``"central"``,
``"prewitt"``, ``"laplacian"``, ``"hessian"``)."""

from __future__ import annotations

from typing import Optional

from torch import Tensor

from ._filters import build_operator
from ._registry import REGISTRY
from ._separable import Separable
from ._validation import check_operator

OPERATOR_NAMES = tuple(REGISTRY)


def operator_by_name(
    caller: str, operator: str, image: Tensor, padding: Optional[str], normalized: bool, spatial_dims: int
) -> Separable:
    """The linear operator ``operator`` for ``image`` (checked on behalf of ``caller``), with its default ``ksize``."""
    operator = check_operator(caller, "operator", operator, OPERATOR_NAMES, padding, normalized)
    spec = REGISTRY[operator]
    return build_operator(caller, spec, image, padding or "reflect", normalized, spatial_dims)
