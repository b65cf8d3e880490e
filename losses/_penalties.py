"""Pointwise penalties on image gradients: each a small frozen class stating its values and derivatives.

A penalty compares ``a``, one output component of a linear operator ``A``, with ``b``, the same
component computed from the target. A ``linear`` penalty depends on ``a - b`` only: the fused
Function then applies ``A`` once, to ``input - target``, and passes ``b=None``; the target's
gradient is minus the input's. The others see ``A input`` and :meth:`Penalty.reference` of
``A target``.

``traceable=True`` asks for plain out-of-place tensor code (autograd, Dynamo and ``torch.func`` can
trace it, and it is differentiable again for double backward); ``traceable=False`` is eager code that
may overwrite ``a`` and ``b``, which are then the Function's own temporaries.

``kernel_code`` and :meth:`Penalty.kernel_params` are what the Triton kernels compute instead
(``PENALTY_CODES`` of :mod:`torchgrad._internal`); a penalty without a code runs on the eager executors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
from torch import Tensor

from torchgrad._internal import PENALTY_CODES


class Penalty(ABC):
    """The loss per gradient element; subclasses are frozen dataclasses (hashable, Dynamo constants)."""

    #: Whether the value depends on ``a - b`` only (then ``b`` is ``None``: ``a`` is ``A (input - target)``).
    linear: ClassVar[bool] = False
    #: The fused-loss kernels' code of this penalty, ``None`` where they have none.
    kernel_code: ClassVar[Optional[int]] = None

    def kernel_params(self) -> tuple[float, ...]:
        """The parameters that the kernels take with :attr:`kernel_code`."""
        return ()

    def reference(self, components: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """What the values compare ``a`` with, from the target's components (by default, themselves)."""
        return components

    @abstractmethod
    def values(self, a: Tensor, b: Optional[Tensor], traceable: bool) -> Tensor:
        """The per-element loss."""

    @abstractmethod
    def derivatives(self, a: Tensor, b: Optional[Tensor], traceable: bool) -> tuple[Tensor, Optional[Tensor]]:
        """``d value / d a`` and ``d value / d b``; ``None`` for ``b`` when linear or when ``b`` is a constant."""


@dataclass(frozen=True)
class L1(Penalty):
    """``|a - b|``."""

    linear: ClassVar[bool] = True
    kernel_code: ClassVar[Optional[int]] = PENALTY_CODES.L1

    def values(self, a: Tensor, b: Optional[Tensor], traceable: bool) -> Tensor:
        return a.abs() if traceable else a.abs_()

    def derivatives(self, a: Tensor, b: Optional[Tensor], traceable: bool) -> tuple[Tensor, Optional[Tensor]]:
        return (a.sign() if traceable else a.sign_()), None


@dataclass(frozen=True)
class SquaredL2(Penalty):
    """``(a - b)^2``."""

    linear: ClassVar[bool] = True
    kernel_code: ClassVar[Optional[int]] = PENALTY_CODES.SQUARED_L2

    def values(self, a: Tensor, b: Optional[Tensor], traceable: bool) -> Tensor:
        return a * a if traceable else a.square_()

    def derivatives(self, a: Tensor, b: Optional[Tensor], traceable: bool) -> tuple[Tensor, Optional[Tensor]]:
        return (2 * a if traceable else a.mul_(2)), None


@dataclass(frozen=True)
class Charbonnier(Penalty):
    """``sqrt((a - b)^2 + eps^2)``: a smooth L1 (Charbonnier et al. 1994), MPRNet's loss; ``eps > 0``.

    Computed as ``hypot(a - b, eps)``, with the slope ``(a - b) / hypot(a - b, eps)``: neither square is formed,
    so an ``eps`` or a difference whose square under- or overflows the dtype gives the value and slope that
    the dtype holds (``eps`` and 0 where ``a = b``, ``|a - b|`` and about ``sign(a - b)`` for large
    differences). An ``eps`` that rounds to 0 in the dtype leaves ``|a - b|``, with the slope ``sign(a - b)``.
    """

    linear: ClassVar[bool] = True
    kernel_code: ClassVar[Optional[int]] = PENALTY_CODES.CHARBONNIER
    eps: float = 1e-3

    def kernel_params(self) -> tuple[float, ...]:
        return (self.eps,)

    def values(self, a: Tensor, b: Optional[Tensor], traceable: bool) -> Tensor:
        if _rounds_to_zero(self.eps, a.dtype):
            return a.abs() if traceable else a.abs_()
        eps = _scalar(self.eps)
        return torch.hypot(a, eps) if traceable else a.hypot_(eps)

    def derivatives(self, a: Tensor, b: Optional[Tensor], traceable: bool) -> tuple[Tensor, Optional[Tensor]]:
        if _rounds_to_zero(self.eps, a.dtype):
            return (a.sign() if traceable else a.sign_()), None
        eps = _scalar(self.eps)
        # hypot(a, eps) >= eps > 0: 0 where a = 0, and |slope| <= 1 everywhere
        return (a / torch.hypot(a, eps) if traceable else a.div_(torch.hypot(a, eps))), None


def _rounds_to_zero(value: float, dtype: torch.dtype) -> bool:
    """Whether a positive ``value`` rounds to 0 in ``dtype``: at most half its smallest subnormal number."""
    info = torch.finfo(dtype)
    return value <= info.smallest_normal * info.eps / 2


def _scalar(value: float) -> Tensor:
    """``value`` as a float64 CPU scalar, which a tensor of any floating dtype and device takes in its own
    dtype (a CPU scalar is passed to device kernels by value)."""
    return torch.tensor(value, dtype=torch.float64)


@dataclass(frozen=True)
class GradientDifference(Penalty):
    """``||a| - |b||^alpha``, the gradient difference loss of Mathieu et al. (2016)."""

    kernel_code: ClassVar[Optional[int]] = PENALTY_CODES.GRADIENT_DIFFERENCE
    alpha: float = 1.0

    def kernel_params(self) -> tuple[float, ...]:
        return (self.alpha,)

    def values(self, a: Tensor, b: Optional[Tensor], traceable: bool) -> Tensor:
        b = _present(b)
        if traceable:
            return (a.abs() - b.abs()).abs().pow(self.alpha)
        r = a.abs_().sub_(b.abs_()).abs_()
        return r if self.alpha == 1 else r.pow_(self.alpha)

    def derivatives(self, a: Tensor, b: Optional[Tensor], traceable: bool) -> tuple[Tensor, Optional[Tensor]]:
        b = _present(b)
        r = a.abs() - b.abs()
        if self.alpha == 1:
            slope = r.sign()
        else:  # the derivative of |r|^alpha, 0 at r = 0 (where the untaken branch stays finite)
            magnitude = r.abs()
            safe = magnitude.clamp_min(torch.finfo(magnitude.dtype).tiny)
            slope = torch.where(magnitude == 0, 0.0, self.alpha * safe.pow(self.alpha - 1)) * r.sign()
        if traceable:
            return slope * a.sign(), -slope * b.sign()
        return a.sign_().mul_(slope), b.sign_().mul_(slope).neg_()


@dataclass(frozen=True)
class EdgeAware(Penalty):
    """``|a| exp(-mean_channels |b|)`` with ``b`` the image's gradient, a constant (edge-aware smoothness)."""

    kernel_code: ClassVar[Optional[int]] = PENALTY_CODES.EDGE_AWARE

    def reference(self, components: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        with torch.no_grad():
            return tuple(torch.exp(-c.abs().mean(-3, keepdim=True)) for c in components)

    def values(self, a: Tensor, b: Optional[Tensor], traceable: bool) -> Tensor:
        return a.abs() * _present(b) if traceable else a.abs_().mul_(_present(b))

    def derivatives(self, a: Tensor, b: Optional[Tensor], traceable: bool) -> tuple[Tensor, Optional[Tensor]]:
        return (a.sign() * _present(b) if traceable else a.sign_().mul_(_present(b))), None


def _present(b: Optional[Tensor]) -> Tensor:
    """``b`` of a penalty that is not linear, which the Function always passes."""
    if b is None:
        raise ValueError("a penalty that is not linear in input - target needs the target's components")
    return b
