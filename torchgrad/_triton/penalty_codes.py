"""The penalties that the fused-loss kernels compute, by code: a penalty class declares its code and its
parameters (:mod:`torchgrad.losses`' ``Penalty.kernel_code`` and ``kernel_params``), the kernels read them as
compile-time constants. This file never imports Triton.

- ``L1``: ``|a|``; ``SQUARED_L2``: ``a^2``; ``CHARBONNIER``: ``sqrt(a^2 + eps^2)``, computed as ``hypot(a, eps)``
  (no square that leaves the dtype's range), parameters ``(eps,)``; ``a`` is ``A (input - target)``.
- ``GRADIENT_DIFFERENCE``: ``||a| - |b||^alpha``, parameters ``(alpha,)``; ``a = A input``, ``b = A target``.
- ``EDGE_AWARE``: ``|a| b``; ``a = A input``, ``b = exp(-mean_channels |A target|)``, the target an image of
  any number of channels (edge-aware smoothness).
"""

from __future__ import annotations

from typing import NamedTuple

L1, SQUARED_L2, CHARBONNIER, GRADIENT_DIFFERENCE, EDGE_AWARE = range(1, 6)

LINEAR = (L1, SQUARED_L2, CHARBONNIER)
"""Codes of the penalties of ``A (input - target)`` (the others compare ``A input`` with ``A target``)."""


class Penalty(NamedTuple):
    """A penalty as the loss kernels take it: one compile-time argument ``L``."""

    PENALTY: int
    """Its code."""
    PARAMS: tuple[float, ...]
    """Its parameters."""
    REFS: bool
    """The kernel reads a component per output (``A target``, or the edge-aware weights) from buffers."""
    MASK: bool
    """An element counts only where the mask says every sample it reads is valid."""
    SUBTRACT: bool
    """The kernel forms ``input - target`` as it reads them (a linear penalty with a target)."""
