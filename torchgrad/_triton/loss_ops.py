"""The fused losses' Triton kernels as PyTorch operators: ``torchgrad::fused_loss`` and
``torchgrad::fused_loss_backward`` (:mod:`torchgrad._triton.loss_launch`), with fake implementations, so that
``torch.compile(fullgraph=True)`` captures them.

The operator travels as its description string (:mod:`torchgrad._triton.description`), the penalty as
its code and parameters (:mod:`torchgrad._triton.penalty_codes`). Their autograd lives with the penalties,
in the losses' fused Function, which falls back to its differentiable eager code when a graph of the
gradient is asked for (double backward), and when these ops raise
:class:`~torchgrad._executor.KernelsUnavailable`: the kernels are switched off, or cannot be compiled on this
device (:func:`~torchgrad._executor.with_kernels`). The eager code needs the penalty itself, which these
ops know only by its code.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .._executor import with_kernels
from .description import parse
from .launch import accumulator_dtype
from .loss_launch import triton_loss, triton_loss_backward


@torch.library.custom_op("torchgrad::fused_loss", mutates_args=())
def fused_loss(
    x: Tensor,
    y: Optional[Tensor],
    mask: Optional[Tensor],
    operator: str,
    penalty: int,
    params: list[float],
    weights: list[float],
    mean: bool,
    elements: int,
    dtype: torch.dtype,
) -> tuple[Tensor, Tensor]:
    """The loss (a scalar of ``dtype``) and each component's scale: two launches, three with a target."""
    op = parse(operator)
    return with_kernels(lambda: triton_loss(op, x, y, mask, penalty, params, weights, mean, elements, dtype), None)


@fused_loss.register_fake
def _(
    x: Tensor,
    y: Optional[Tensor],
    mask: Optional[Tensor],
    operator: str,
    penalty: int,
    params: list[float],
    weights: list[float],
    mean: bool,
    elements: int,
    dtype: torch.dtype,
) -> tuple[Tensor, Tensor]:
    components = parse(operator).n_outputs
    return x.new_empty((), dtype=dtype), x.new_empty((components,), dtype=accumulator_dtype(x))


@torch.library.custom_op("torchgrad::fused_loss_backward", mutates_args=())
def fused_loss_backward(
    grad: Tensor,
    x: Tensor,
    y: Optional[Tensor],
    mask: Optional[Tensor],
    scales: Tensor,
    operator: str,
    penalty: int,
    params: list[float],
    need_y: bool,
) -> list[Tensor]:
    """``[grad_input]``, or ``[grad_input, grad_target]`` with ``need_y`` (linear penalties: its negative,
    written by the same adjoint launch)."""
    op = parse(operator)
    gx, gy = with_kernels(lambda: triton_loss_backward(op, x, y, mask, scales, grad, penalty, params, need_y), None)
    return [gx] if gy is None else [gx, gy]


@fused_loss_backward.register_fake
def _(
    grad: Tensor,
    x: Tensor,
    y: Optional[Tensor],
    mask: Optional[Tensor],
    scales: Tensor,
    operator: str,
    penalty: int,
    params: list[float],
    need_y: bool,
) -> list[Tensor]:
    gx = torch.empty_like(x)
    return [gx] if not need_y or y is None else [gx, torch.empty_like(x, dtype=y.dtype)]
