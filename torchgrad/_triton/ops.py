"""The Triton kernels as PyTorch operators (``torch.library.custom_op``): ``torchgrad::apply``,
``torchgrad::adjoint``, ``torchgrad::magnitude`` and ``torchgrad::magnitude_backward``.

The operator travels as an argument, a string (:mod:`torchgrad._triton.description`): the whole
description, not a key into a table of this process.

Every op has a fake implementation that only allocates, an autograd formula and a ``vmap`` rule:

- the backward of ``apply`` (``A x``) is ``adjoint`` (``A^T g``) and the backward of ``adjoint`` is
  ``apply``, so double backward works to any order;
- the backward of ``magnitude`` recomputes ``A x``: one ``magnitude_backward`` (two launches) when
  no graph is built, else ``apply`` and ``adjoint`` with plain tensor code between them;
- ``vmap`` moves the batch dimension to the front (the operators act on trailing dimensions), by
  :func:`~torchgrad._linear.batch_in_front`, as the Functions of :mod:`torchgrad._linear` do.

Each op computes with the kernels where they serve its tensors, else with the operator's own
executors (:class:`~torchgrad._separable.Separable`; :func:`computed`): under ``torch.compile`` the choice
of these ops is made once, on the description and the rank (:mod:`torchgrad._executor`), so a size the
kernels refuse (a plane beyond int32 offsets) is only seen when the op runs, and computed there all the
same; so are calls made while the kernels are switched off (``TORCHGRAD_EXECUTOR=eager`` set after the
graph was traced, a backward run outside the forward's ``use_kernels`` block) and calls whose kernels
cannot be compiled on this device (which switches them off for the rest of the process).

``custom_op`` provides no forward-mode AD, and ops with tensor-list arguments or results do not
support ``torch.func.grad``: under ``torch.func`` transforms and forward mode, :mod:`torchgrad._executor`
runs these ops inside the autograd Functions of :mod:`torchgrad._linear` (:class:`TritonOperator`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, TypeVar

import torch
from torch import Tensor

from .._executor import with_kernels
from .._linear import batch_in_front
from .._separable import HALF, Separable, in_work_dtype
from ..magnitude import magnitude_gradient, plain_norm
from .description import parse
from .launch import triton_adjoint, triton_apply, triton_magnitude, triton_magnitude_backward
from .plan import Unsupported


@dataclass(frozen=True)
class TritonOperator:
    """A :class:`~torchgrad._linear.LinearOperator` whose ``A x`` and ``A^T g`` are the Triton ops
    (for the autograd Functions of :mod:`torchgrad._linear`, which serve ``torch.func`` and forward mode)."""

    description: str

    def apply(self, x: Tensor) -> tuple[Tensor, ...]:
        return tuple(apply(x, self.description))

    def adjoint(self, grads: Sequence[Optional[Tensor]]) -> Tensor:
        return adjoint(list(grads), self.description)


# --- where the kernels refuse the tensors: the operator's own executors -----------------------------

T = TypeVar("T")


def computed(kernels: Callable[[], T], fallback: Callable[[], T]) -> T:
    """``kernels()``, or ``fallback()`` (the operator's own executors) where the kernels refuse the tensors
    (:class:`Unsupported`), are switched off or cannot be compiled on this device
    (:func:`~torchgrad._executor.with_kernels`)."""

    def served() -> T:
        try:
            return kernels()
        except Unsupported:
            return fallback()

    return with_kernels(served, fallback)


def laid_out_like(x: Tensor, result: Tensor) -> Tensor:
    """``result`` in a new tensor laid out as the fake implementations say: like ``x``."""
    return torch.empty_like(x, dtype=result.dtype).copy_(result)


def _components(op: Separable, x: Tensor) -> tuple[Tensor, ...]:
    """``A x``, in float32 for half precision (whose squares overflow), as the kernels accumulate it."""
    return (op.with_output_dtype(torch.float32) if x.dtype in HALF else op).apply(x)


def _fallback_magnitude(op: Separable, x: Tensor, eps: Tensor) -> Tensor:
    return laid_out_like(x, plain_norm(_components(op, x), eps).to(x.dtype))


def _fallback_magnitude_backward(op: Separable, x: Tensor, grad: Tensor, eps: Tensor) -> Tensor:
    return laid_out_like(x, magnitude_gradient(_components(op, x), grad, eps, op.adjoint).to(x.dtype))


# --- A x --------------------------------------------------------------------------------------------


@torch.library.custom_op("torchgrad::apply", mutates_args=())
def apply(x: Tensor, operator: str) -> list[Tensor]:
    """``A x``: one tensor per component, shaped and typed like ``x``, from one kernel launch."""
    op = parse(operator)
    return computed(lambda: list(triton_apply(op, x)), lambda: [laid_out_like(x, y) for y in op.apply(x)])


@apply.register_fake
def _(x: Tensor, operator: str) -> list[Tensor]:
    return [torch.empty_like(x) for _ in range(parse(operator).n_outputs)]


def _apply_setup(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    ctx.operator = inputs[1]


def _apply_backward(ctx: Any, grads: Sequence[Optional[Tensor]]) -> tuple[Optional[Tensor], None]:
    if all(g is None for g in grads):
        return None, None
    return adjoint(list(grads), ctx.operator), None


apply.register_autograd(_apply_backward, setup_context=_apply_setup)


@apply.register_vmap
def _(info: Any, in_dims: tuple[Optional[int], ...], x: Tensor, operator: str) -> Any:
    return batch_in_front(info, lambda t: apply(t, operator), [x], in_dims[:1])


# --- A^T g ------------------------------------------------------------------------------------------


@torch.library.custom_op("torchgrad::adjoint", mutates_args=())
def adjoint(grads: list[Optional[Tensor]], operator: str) -> Tensor:
    """``A^T g``, ``None`` standing for a zero cotangent; shaped and typed like the first one given."""
    op = parse(operator)

    def fallback() -> Tensor:
        first = _first(grads)
        return laid_out_like(first, op.adjoint(grads).to(first.dtype))

    return computed(lambda: triton_adjoint(op, grads), fallback)


@adjoint.register_fake
def _(grads: list[Optional[Tensor]], operator: str) -> Tensor:
    return torch.empty_like(_first(grads))


def _first(grads: Sequence[Optional[Tensor]]) -> Tensor:
    for g in grads:
        if g is not None:
            return g
    raise ValueError("the adjoint needs a cotangent for at least one output")


def _adjoint_setup(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    ctx.operator = inputs[1]
    ctx.given = [g is not None for g in inputs[0]]


def _adjoint_backward(ctx: Any, ggx: Optional[Tensor]) -> tuple[Optional[list[Optional[Tensor]]], None]:
    if ggx is None:
        return None, None
    outs = apply(ggx, ctx.operator)
    return [o if given else None for o, given in zip(outs, ctx.given)], None


adjoint.register_autograd(_adjoint_backward, setup_context=_adjoint_setup)


@adjoint.register_vmap
def _(info: Any, in_dims: tuple[Any, ...], grads: list[Optional[Tensor]], operator: str) -> Any:
    return batch_in_front(info, lambda *gs: adjoint(list(gs), operator), grads, in_dims[0])


# --- |A x| ------------------------------------------------------------------------------------------


@torch.library.custom_op("torchgrad::magnitude", mutates_args=())
def magnitude(x: Tensor, operator: str, eps: Tensor) -> Tensor:
    """``sqrt(sum_c (A x)_c^2 + eps)`` from one launch, the components never written.

    ``eps`` is a 0-d float64 tensor on the input's device, not a ``float``: under
    ``torch.compile(dynamic=True)`` a new value is then an input of the graph, not a recompilation, and the
    kernel reads it from memory (no synchronisation, nothing to compile for a new value)."""
    op = parse(operator)
    return computed(lambda: triton_magnitude(op, x, eps), lambda: _fallback_magnitude(op, x, eps))


@magnitude.register_fake
def _(x: Tensor, operator: str, eps: Tensor) -> Tensor:
    return torch.empty_like(x)


@torch.library.custom_op("torchgrad::magnitude_backward", mutates_args=())
def magnitude_backward(x: Tensor, grad: Tensor, operator: str, eps: Tensor) -> Tensor:
    """``A^T (grad * A x / |A x|)``: the gradient of :func:`magnitude`, two launches."""
    op = parse(operator)
    return computed(
        lambda: triton_magnitude_backward(op, x, grad, eps), lambda: _fallback_magnitude_backward(op, x, grad, eps)
    )


@magnitude_backward.register_fake
def _(x: Tensor, grad: Tensor, operator: str, eps: Tensor) -> Tensor:
    return torch.empty_like(x)


def _magnitude_setup(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    x, ctx.operator, eps = inputs
    ctx.save_for_backward(x, eps)


def _magnitude_backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
    x, eps = ctx.saved_tensors
    if not torch.is_grad_enabled():
        return magnitude_backward(x, grad, ctx.operator, eps), None, None
    # A graph of the gradient (double backward): A x again through the differentiable ops, in float32
    # for half precision (the squares overflow float16).
    work = in_work_dtype(x)
    gx = magnitude_gradient(apply(work, ctx.operator), grad, eps, lambda g: adjoint(list(g), ctx.operator))
    return gx.to(x.dtype), None, None


magnitude.register_autograd(_magnitude_backward, setup_context=_magnitude_setup)


@magnitude.register_vmap
def _(info: Any, in_dims: tuple[Optional[int], ...], x: Tensor, operator: str, eps: Tensor) -> Any:
    return batch_in_front(info, lambda t: magnitude(t, operator, eps), [x], in_dims[:1])


@magnitude_backward.register_vmap
def _(info: Any, in_dims: tuple[Optional[int], ...], x: Tensor, grad: Tensor, operator: str, eps: Tensor) -> Any:
    return batch_in_front(info, lambda t, g: magnitude_backward(t, g, operator, eps), [x, grad], in_dims[:2])
