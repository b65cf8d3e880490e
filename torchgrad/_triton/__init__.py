"""The Triton executor: the operators' descriptions (:class:`~torchgrad._separable.Separable`) run as
Triton kernels, one launch forward and one for the adjoint, whatever the batch.

- :func:`unsupported_reason` / :func:`can_serve`: whether the kernels run a given operator on a given
  tensor (which descriptions, dtypes, devices); the one place that says so.
- :func:`triton_apply`: ``A x``; :func:`triton_adjoint`: ``A^T g``; :func:`triton_magnitude` and
  :func:`triton_magnitude_backward`: the fused gradient magnitude.

- :mod:`torchgrad._triton.ops`: the same as ``torch.library`` ops (``torch.ops.torchgrad.apply``,
  ``adjoint``, ``magnitude``, ``magnitude_backward``), which the public operators call through
  :mod:`torchgrad._executor`; the operator travels as a string (:mod:`torchgrad._triton.description`).

Triton is imported only when one of these is used; without it (or with a release older than
:data:`MINIMUM_TRITON`), :func:`can_serve` is ``False``.
CPU tensors are served under Triton's interpreter (``TRITON_INTERPRET=1`` set before Triton is
imported), which is how the kernels are tested without a GPU.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import itertools
from functools import lru_cache
from typing import Any, Optional

from torch import Tensor

from .._separable import Separable

__all__ = [
    "available",
    "can_serve",
    "triton_adjoint",
    "triton_apply",
    "triton_magnitude",
    "triton_magnitude_backward",
    "unsupported_reason",
]


MINIMUM_TRITON = (3, 3)
"""The oldest Triton whose kernels torchgrad runs: they take tuples of tensors and a ``NamedTuple`` as a
compile-time argument. With an older one every call takes the other executors."""
MINIMUM_TRITON_TEXT = ".".join(map(str, MINIMUM_TRITON))


@lru_cache(maxsize=1)
def available() -> bool:
    """Whether Triton :data:`MINIMUM_TRITON` or newer is installed (read once, without importing it)."""
    if importlib.util.find_spec("triton") is None:
        return False
    return _release(_installed_version()) >= MINIMUM_TRITON


def _installed_version() -> str:
    """Triton's version as installed (the ``triton`` distribution, or PyTorch's ``pytorch-triton`` builds)."""
    for distribution in ("triton", "pytorch-triton"):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    import triton

    return str(getattr(triton, "__version__", "0"))


def _release(version: str) -> tuple[int, ...]:
    """``(major, minor)`` of a version string such as ``3.8.0`` or ``3.3.0+git1234``."""
    numbers = []
    for part in version.split(".")[:2]:
        digits = "".join(itertools.takewhile(str.isdigit, part))
        numbers.append(int(digits or 0))
    return tuple(numbers)


def unsupported_reason(op: Separable, x: Tensor) -> Optional[str]:
    """Why the Triton executor cannot compute ``op`` on ``x``, or ``None`` when it can."""
    if not available():
        return f"Triton {MINIMUM_TRITON_TEXT} or newer is not installed"
    from .launch import unsupported_reason as reason

    return reason(op, x)


def can_serve(op: Separable, x: Tensor) -> bool:
    """Whether the Triton executor runs ``op`` on ``x`` (forward, adjoint and magnitude alike)."""
    return unsupported_reason(op, x) is None


def __getattr__(name: str) -> Any:
    if name in ("triton_apply", "triton_adjoint", "triton_magnitude", "triton_magnitude_backward"):
        from . import launch

        return getattr(launch, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
