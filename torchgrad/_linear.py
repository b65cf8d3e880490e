"""Linear operators as autograd Functions whose backward is the adjoint.

An operator ``y = A x`` (``y`` a tuple of tensors) needs only ``apply`` (``A x``) and ``adjoint``
(``A^T g``). From those two this file derives everything autograd and ``torch.func`` ask of it:

- backward is ``A^T g``: nothing is saved for it but the operator itself (shapes and arguments);
- the adjoint is a Function too, whose backward is ``A`` again, so double backward (gradient
  penalties, ``create_graph=True``) works to any order;
- forward-mode AD is ``A`` applied to the tangent (``jvp``);
- ``vmap`` moves the batch dimension to the front: operators act on trailing dimensions
  (:func:`batch_in_front`, the rule of every Function and op of torchgrad).

Dynamo does not trace a Function that defines ``jvp``, so each Function has a twin without it that
serves code under ``torch.compile``; both share one forward and one backward. Plain eager autograd (no
``torch.func`` transform, no forward mode) takes a third form of each, with ``forward(ctx, ...)``: torch
binds the arguments of a Function with a separate ``setup_context`` through :mod:`inspect` at every call
(tens of microseconds, as much as a small image's arithmetic), and that form needs no binding.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Protocol, Sequence, TypeVar

import torch
from torch import Tensor

from ._executor import Route, ops_directly, route, triton_operator


class LinearOperator(Protocol):
    """What a linear operator provides: ``A x`` and ``A^T g``."""

    def apply(self, x: Tensor) -> tuple[Tensor, ...]:
        """``A x``: one tensor per output component."""
        ...

    def adjoint(self, grads: Sequence[Optional[Tensor]]) -> Tensor:
        """``A^T g`` for one cotangent per output component (``None`` stands for zero; not all ``None``)."""
        ...


T = TypeVar("T")


def batch_in_front(
    info: Any, compute: Callable[..., T], tensors: Sequence[Optional[Tensor]], in_dims: Sequence[Optional[int]]
) -> tuple[T, Optional[int]]:
    """The ``vmap`` rule of a computation on trailing dimensions: ``compute(*tensors)`` with the batch dimension in
    front.

    Each batched tensor's batch dimension (``in_dims``, ``None`` for an unbatched tensor) is moved to dim 0
    and, where some tensor is batched, the unbatched ones (``None`` stays ``None``) are expanded to the batch
    size (``info.batch_size``). Returns ``compute``'s result and its out dim: 0 for every output (a single out dim
    stands for all of them), or ``None`` where no tensor is batched.
    """
    if all(d is None for d in in_dims):
        return compute(*tensors), None
    moved = [
        t if t is None else t.movedim(d, 0) if d is not None else t.expand(info.batch_size, *t.shape)
        for t, d in zip(tensors, in_dims)
    ]
    return compute(*moved), 0


def cast_like_input(gx: Tensor, dtype: torch.dtype) -> Tensor:
    if gx.is_complex() and not dtype.is_complex:
        gx = gx.real
    return gx.to(dtype)


class _Apply(torch.autograd.Function):
    """``A x``; backward ``A^T g``."""

    @staticmethod
    def forward(x: Tensor, op: LinearOperator) -> tuple[Tensor, ...]:
        return op.apply(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        x, op = inputs
        ctx.op, ctx.dtype = op, x.dtype
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx: Any, *grads: Optional[Tensor]) -> tuple[Optional[Tensor], None]:
        if all(g is None for g in grads):
            return None, None
        return apply_adjoint(ctx.op, ctx.dtype, grads), None

    @staticmethod
    def vmap(info: Any, in_dims: tuple[Optional[int], ...], x: Tensor, op: LinearOperator) -> Any:
        return batch_in_front(info, lambda t: apply_operator(op, t), [x], in_dims[:1])


class _ApplyWithJvp(_Apply):
    @staticmethod
    def jvp(ctx: Any, x_t: Tensor, _op_t: None) -> tuple[Tensor, ...]:
        return apply_operator(ctx.op, x_t)


class _EagerApply(torch.autograd.Function):
    """:class:`_Apply` for plain eager autograd (see the module's docstring)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, op: LinearOperator) -> tuple[Tensor, ...]:
        _Apply.setup_context(ctx, (x, op), None)
        return op.apply(x)

    backward = staticmethod(_Apply.backward)


class _Adjoint(torch.autograd.Function):
    """``A^T g``, cast to the input's dtype; backward ``A gg``."""

    @staticmethod
    def forward(op: LinearOperator, dtype: torch.dtype, *grads: Optional[Tensor]) -> Tensor:
        return cast_like_input(op.adjoint(grads), dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.op, ctx.dtype = inputs[0], inputs[1]
        ctx.grad_dtypes = [None if g is None else g.dtype for g in inputs[2:]]
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx: Any, ggx: Optional[Tensor]) -> tuple[Optional[Tensor], ...]:
        needed = ctx.needs_input_grad[2:]
        if ggx is None or not any(needed):
            return (None, None) + (None,) * len(needed)
        outs = apply_operator(ctx.op, ggx)
        return (None, None) + tuple(
            cast_like_input(o, dt) if need else None for o, dt, need in zip(outs, ctx.grad_dtypes, needed)
        )

    @staticmethod
    def vmap(
        info: Any, in_dims: tuple[Optional[int], ...], op: LinearOperator, dtype: torch.dtype, *grads: Optional[Tensor]
    ) -> Any:
        return batch_in_front(info, lambda *gs: apply_adjoint(op, dtype, gs), grads, in_dims[2:])


class _AdjointWithJvp(_Adjoint):
    @staticmethod
    def jvp(ctx: Any, _op_t: None, _dtype_t: None, *grads_t: Optional[Tensor]) -> Tensor:
        return apply_adjoint(ctx.op, ctx.dtype, grads_t)


class _EagerAdjoint(torch.autograd.Function):
    """:class:`_Adjoint` for plain eager autograd (see the module's docstring)."""

    @staticmethod
    def forward(ctx: Any, op: LinearOperator, dtype: torch.dtype, *grads: Optional[Tensor]) -> Tensor:
        _Adjoint.setup_context(ctx, (op, dtype, *grads), None)
        return _Adjoint.forward(op, dtype, *grads)

    backward = staticmethod(_Adjoint.backward)


def apply_operator(op: LinearOperator, x: Tensor) -> tuple[Tensor, ...]:
    """``A x`` through autograd: differentiable to any order, forward mode and ``vmap`` included.

    The executor is chosen by :mod:`torchgrad._executor`: the Triton ops where they serve (through
    these Functions under ``torch.func`` transforms and forward mode), else ``op``'s own.
    """
    way = route(op, x)
    if way.description is not None:
        if way.direct:
            return tuple(torch.ops.torchgrad.apply(x, way.description))
        op = triton_operator(way.description)
    if torch.compiler.is_compiling():
        return _Apply.apply(x, op)
    if way.direct and not (x.requires_grad and torch.is_grad_enabled()):
        # Nothing to differentiate (inference, validation): no autograd node to make; outside autograd, as inside
        # the Function (an operator's tensor weights, coordinates, are never differentiated).
        with torch.no_grad():
            return op.apply(x)
    return (_EagerApply if way.direct else _ApplyWithJvp).apply(x, op)


def apply_adjoint(op: LinearOperator, dtype: torch.dtype, grads: Sequence[Optional[Tensor]]) -> Tensor:
    """``A^T g`` through autograd, cast to ``dtype`` (the dtype of ``A``'s input).

    Under ``torch.compile`` the adjoint is traced as the plain tensor code it is (Dynamo does not
    trace a Function applied inside another's backward); eager code gets the Function, so that
    the backward is itself differentiable with its own hand-written backward.
    """
    given = [g for g in grads if g is not None]
    way = route(op, given[0]) if given else Route(None, ops_directly())
    if way.description is not None:
        if way.direct:
            return cast_like_input(torch.ops.torchgrad.adjoint(list(grads), way.description), dtype)
        op = triton_operator(way.description)
    if torch.compiler.is_compiling():
        return cast_like_input(op.adjoint(grads), dtype)
    return (_EagerAdjoint if way.direct else _AdjointWithJvp).apply(op, dtype, *grads)
