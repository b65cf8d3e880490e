"""The fused loss Function: a penalty on a linear operator's outputs, with a hand-written backward.

:class:`FusedLoss` names the operator (a :class:`~torchgrad._internal.Separable`, or any
:class:`FusedOperator`), the :class:`~._penalties.Penalty` and optional weights per
output component; :func:`penalty_call` runs it inside one ``torch.autograd.Function`` (returning
the total, or the per-element map) that saves only references to its inputs (no new memory) and
recomputes the operator's outputs in backward. The Function reads the penalty's properties only:
a linear penalty takes one operator pass over ``input - target`` instead of two.

Where the Triton kernels serve the operator and the penalty (``route`` of :mod:`torchgrad._internal` says
so, the one place), totals run as the fused-loss ops instead, inside
:class:`_KernelPenaltyFunction`: a loss kernel with the penalty and per-block sums, a final reduction,
and a backward of two kernels (recomputed slopes, then the adjoint writing both gradients); each pass is
preceded by one launch for the target's components or the edge-aware weights where the penalty needs them
(the kernels form ``input - target`` themselves).
Where those ops raise ``KernelsUnavailable`` (the kernels cannot be compiled on the device, or were switched
off between forward and backward), the same numbers come from the eager code: the forward's in
:func:`reduced_penalty`, the backward's in :class:`_KernelPenaltyFunction`, with the forward's scales.

Totals over everything run slab by slab along the batch, so that no temporary is as large as the
input: each slab's values are computed in place in the operator's output buffers, summed in the
computation dtype with torch's pairwise summation, and the small partial sums added in float64. The
slabs of one call share one :class:`~torchgrad._internal.Workspace` (the operator's outputs and intermediates
for a linear penalty, whose ``input - target`` the operator forms as it pads: ``apply(x, minus=y)``), and the
backward's adjoint writes each slab's gradient in place: a call allocates its temporaries once, not once per
slab (a fresh buffer costs a page fault per 4 KiB).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Protocol, Sequence

import torch
from torch import Tensor

from torchgrad._internal import (
    KernelsUnavailable,
    Workspace,
    apply_adjoint,
    apply_operator,
    in_work_dtype,
    needs_traceable_code,
    route,
    slabs,
)

from ._penalties import Penalty


def _partials_dtype(device: torch.device) -> torch.dtype:
    """The dtype in which partial sums (slabs, components) are added: float64, where the device has it."""
    return torch.float32 if device.type == "mps" else torch.float64


class FusedOperator(Protocol):
    """What the Function needs of a linear operator acting on the last ``spatial_dims`` axes, as
    :class:`~torchgrad._internal.Separable` provides it: ``A x`` and ``A^T g`` as eager code (writing into
    its own temporaries) or ``traceable`` code, the number of outputs, and the operator with absolute
    weights (for masks)."""

    @property
    def n_outputs(self) -> int: ...

    @property
    def spatial_dims(self) -> int: ...

    def apply(
        self,
        x: Tensor,
        traceable: bool = False,
        workspace: Optional[Workspace] = None,
        minus: Optional[Tensor] = None,
    ) -> tuple[Tensor, ...]:
        """``A x``, or ``A (x - minus)``; with a ``workspace``, the outputs may be its buffers (until its next
        use)."""

    def adjoint(
        self,
        grads: Sequence[Optional[Tensor]],
        traceable: bool = False,
        out: Optional[Tensor] = None,
        workspace: Optional[Workspace] = None,
    ) -> Tensor:
        """``A^T g``, written into ``out`` when one is given."""

    def support(self) -> FusedOperator: ...


@dataclass(frozen=True)
class FusedLoss:
    """``penalty`` on each output component of ``op``, the component's values multiplied by ``weights[k]``."""

    op: FusedOperator
    penalty: Penalty
    weights: Optional[tuple[float, ...]] = None


def penalty_call(
    x: Tensor, y: Optional[Tensor], mask: Optional[Tensor], loss: FusedLoss, sum_from: Optional[int]
) -> Tensor:
    """The total over the dims from ``sum_from`` on, or (``sum_from=None``) the per-element map, the
    components stacked before the spatial dims. ``y=None`` (linear penalties) penalises ``A x``."""
    function = _PenaltyFunction if torch.compiler.is_compiling() else _PenaltyFunctionWithJvp
    return function.apply(x, y, mask, loss, sum_from)


def reduced_penalty(
    x: Tensor,
    y: Optional[Tensor],
    mask: Optional[Tensor],
    loss: FusedLoss,
    reduction: str,
    dtype: torch.dtype,
    count: Optional[int] = None,
) -> Tensor:
    """The loss as ``torch.nn`` losses reduce it: the stacked per-element map (``"none"``), its sum, or
    its mean over the elements that count (the valid ones under ``mask``, else ``count``, by default
    every element of every component); a mean over no elements (an empty batch, or a mask that leaves none)
    is 0."""
    if reduction == "none":
        return penalty_call(x, y, mask, loss, None).to(dtype)
    if count is None:
        count = loss.op.n_outputs * x.numel()
    divisor = torch.sym_max(count, 1)  # a mean over no elements is 0, as where a mask leaves none
    description = route(loss.op, x, loss=(loss.penalty.kernel_code, y)).description
    if description is not None:
        try:
            total, _ = _KernelPenaltyFunction.apply(x, y, mask, loss, description, reduction == "mean", divisor, dtype)
            return total
        except KernelsUnavailable:
            pass  # the kernels cannot be compiled on this device (the op warned, once): the eager code follows
    total = penalty_call(x, y, mask, loss, 0)
    if reduction == "mean":
        total = total / (divisor if mask is None else _count(loss.op, mask))
    return total.to(dtype)


def _count(op: FusedOperator, mask: Tensor) -> Tensor:
    """The number of gradient elements that count for ``"mean"`` under a mask (at least 1)."""
    with torch.no_grad():
        invalid = _invalid_elements(op, mask)
        return (len(invalid) * mask.numel() - torch.stack([i.sum() for i in invalid]).sum()).clamp_min(1)


def _invalid_elements(op: FusedOperator, mask: Tensor) -> tuple[Tensor, ...]:
    """Per output component, where the stencil reads a sample that is not valid in ``mask``."""
    return tuple(c != 0 for c in op.support().apply((~mask).to(torch.float32)))


_OperatorApply = Callable[[Tensor, Optional[Tensor], Optional[Workspace]], tuple[Tensor, ...]]
"""``(t, minus, workspace) -> A (t - minus)`` (``A t`` for no ``minus``)."""


def _outputs(
    loss: FusedLoss, x: Tensor, y: Optional[Tensor], apply: _OperatorApply, workspace: Optional[Workspace] = None
) -> tuple[tuple[Tensor, ...], tuple[Optional[Tensor], ...]]:
    """``a`` and ``b`` per component: ``A (x - y)`` and ``None`` for a linear penalty, else ``A x`` and the
    penalty's reference of ``A y``. A linear penalty's outputs live in ``workspace`` when one is given (a
    penalty with two operator passes allocates its outputs: the second would overwrite the first's)."""
    x = in_work_dtype(x)
    if loss.penalty.linear:
        a = apply(x, None if y is None else in_work_dtype(y).expand_as(x), workspace)
        return a, (None,) * len(a)
    if y is None:
        raise ValueError("a penalty that is not linear in input - target needs a target")
    return apply(x, None, None), loss.penalty.reference(apply(in_work_dtype(y), None, None))


def _values(
    x: Tensor,
    y: Optional[Tensor],
    mask: Optional[Tensor],
    loss: FusedLoss,
    traceable: bool,
    workspace: Optional[Workspace] = None,
) -> list[Tensor]:
    """Per component, the weighted per-element loss, zero where not valid under ``mask``."""
    a, b = _outputs(loss, x, y, lambda t, m, w: loss.op.apply(t, traceable=traceable, workspace=w, minus=m), workspace)
    values = [loss.penalty.values(ai, bi, traceable) for ai, bi in zip(a, b)]
    if loss.weights is not None:
        values = [v * w if traceable else v.mul_(w) for v, w in zip(values, loss.weights)]
    if mask is not None:
        invalid = _invalid_elements(loss.op, mask)
        values = [torch.where(i, 0.0, v) if traceable else v.masked_fill_(i, 0.0) for v, i in zip(values, invalid)]
    return values


def _partial_total(values: list[Tensor], sum_from: int) -> Tensor:
    """The sum over the dims from ``sum_from`` on of every component: each summed in its own dtype
    (pairwise), the components' sums added in :func:`_partials_dtype`.

    The values are summed contiguous (copied first where the operator's outputs follow a channels_last or
    strided input): the order of a sum follows the memory order, so that the total of the same values is the
    same whatever the input's layout."""
    dims = tuple(range(sum_from, values[0].dim()))
    dtype = _partials_dtype(values[0].device)
    return torch.stack([v.contiguous().sum(dims).to(dtype) for v in values]).sum(0)


class _PenaltyFunction(torch.autograd.Function):
    """The total over the dims from ``sum_from`` on, or the stacked map (``sum_from=None``), of a :class:`FusedLoss`."""

    @staticmethod
    def forward(
        x: Tensor, y: Optional[Tensor], mask: Optional[Tensor], loss: FusedLoss, sum_from: Optional[int]
    ) -> Tensor:
        traceable = any(needs_traceable_code(t) for t in (x, y, mask) if t is not None)
        if sum_from is None:
            return torch.stack(_values(x, y, mask, loss, traceable), dim=-(loss.op.spatial_dims + 1))
        # A total over everything runs slab by slab, so that no temporary is as large as the input.
        if sum_from != 0 or traceable:
            return _partial_total(_values(x, y, mask, loss, traceable), sum_from).to(in_work_dtype(x).dtype)
        workspace = Workspace()
        cuts = slabs(x, loss.op.spatial_dims)
        parts = [_partial_total(_values(x[s], _cut(y, s), _cut(mask, s), loss, False, workspace), 0) for s in cuts]
        return torch.stack(parts).sum(0).to(in_work_dtype(x).dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x, y, mask, ctx.loss, ctx.sum_from = inputs
        ctx.save_for_backward(x, y, mask)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Optional[Tensor], ...]:
        x, y, mask = ctx.saved_tensors
        loss: FusedLoss = ctx.loss
        need_x, need_y = ctx.needs_input_grad[:2]
        if torch.is_grad_enabled() or needs_traceable_code(grad):
            # Differentiable (double backward) or traced: plain operations through the Functions.
            gx, gy = _pull_back(x, y, mask, loss, grad, ctx.sum_from, need_x, need_y, traceable=True)
            return gx, gy, None, None, None
        # First-order eager backward, slab by slab (a total's gradient is the same scalar for every slab).
        cuts = slabs(x, loss.op.spatial_dims) if ctx.sum_from == 0 else [slice(None)]
        if len(cuts) == 1:
            gx, gy = _pull_back(x, y, mask, loss, grad, ctx.sum_from, need_x, need_y, traceable=False)
            return _cast(gx, x), _cast(gy, y), None, None, None
        grads: list[Optional[Tensor]] = [None, None]
        # The adjoint writes x's gradient slab by slab, in place (half precision computes in float32 first).
        in_place = need_x and in_work_dtype(x) is x
        gx_all = grads[0] = torch.empty_like(x) if in_place else None
        workspace = Workspace()
        for s in cuts:
            out = gx_all[s] if gx_all is not None else None
            pieces = _pull_back(
                x[s], _cut(y, s), _cut(mask, s), loss, grad, ctx.sum_from, need_x, need_y, False, out, workspace
            )
            for k, (like, piece) in enumerate(zip((x, y), pieces)):
                if piece is not None and piece is not out:
                    g = grads[k]
                    if g is None:
                        g = grads[k] = torch.empty_like(like)
                    g[s].copy_(piece)
        return grads[0], grads[1], None, None, None

    @staticmethod
    def vmap(
        info: Any,
        in_dims: tuple[Optional[int], ...],
        x: Tensor,
        y: Optional[Tensor],
        mask: Optional[Tensor],
        loss: FusedLoss,
        sum_from: Optional[int],
    ) -> Any:
        def front(t: Tensor, d: Optional[int]) -> Tensor:
            return t.movedim(d, 0) if d is not None else t.expand(info.batch_size, *t.shape)

        x_dim, y_dim, mask_dim = in_dims[:3]
        y = None if y is None else front(y, y_dim)
        mask = None if mask is None else front(mask, mask_dim)
        return penalty_call(front(x, x_dim), y, mask, loss, None if sum_from is None else sum_from + 1), 0


class _PenaltyFunctionWithJvp(_PenaltyFunction):
    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        _PenaltyFunction.setup_context(ctx, inputs, output)
        ctx.save_for_forward(*inputs[:3])

    @staticmethod
    def jvp(ctx: Any, x_t: Optional[Tensor], y_t: Optional[Tensor], *_: Any) -> Tensor:
        x, y, mask = ctx.saved_tensors
        loss: FusedLoss = ctx.loss
        a, b = _outputs(loss, x, y, lambda t, m, _: apply_operator(loss.op, t if m is None else t - m))
        slopes = [loss.penalty.derivatives(ai, bi, traceable=True) for ai, bi in zip(a, b)]
        if loss.penalty.linear:  # the tangent of A (x - y) is A (x_t - y_t)
            t = x_t if y_t is None else (y_t.neg() if x_t is None else x_t - y_t)
            operands: list[tuple[Optional[Tensor], list[Optional[Tensor]]]] = [(t, [da for da, _ in slopes])]
        else:
            operands = [(x_t, [da for da, _ in slopes]), (y_t, [db for _, db in slopes])]
        tangents = [torch.zeros_like(ai) for ai in a]
        for t, derivatives in operands:
            if t is not None:
                for k, (d, t_a) in enumerate(zip(derivatives, apply_operator(loss.op, in_work_dtype(t)))):
                    if d is not None:  # None: a constant reference
                        tangents[k] = tangents[k] + d * t_a
        if loss.weights is not None:
            tangents = [t * w for t, w in zip(tangents, loss.weights)]
        if mask is not None:
            tangents = [torch.where(i, 0.0, t) for i, t in zip(_invalid_elements(loss.op, mask), tangents)]
        dtype = in_work_dtype(x).dtype
        if ctx.sum_from is None:
            return torch.stack(tangents, dim=-(loss.op.spatial_dims + 1)).to(dtype)
        return _partial_total(tangents, ctx.sum_from).to(dtype)


class _KernelPenaltyFunction(torch.autograd.Function):
    """The total of a :class:`FusedLoss` on the fused-loss Triton ops (``description``: the operator's), in
    ``dtype``, over the elements that count when ``mean``; also returns each component's scale (no gradient).

    Backward is ``torch.ops.torchgrad.fused_loss_backward``; asked for a graph of the gradient (double
    backward), or where that op raises ``KernelsUnavailable``, it is the eager Function's differentiable code
    instead, with the forward's scales. (No ``torch.func`` rules: those calls
    never come here. So ``forward`` takes the ``ctx`` itself, which spares each call the signature binding
    that a separate ``setup_context`` costs.)"""

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        y: Optional[Tensor],
        mask: Optional[Tensor],
        loss: FusedLoss,
        description: str,
        mean: bool,
        divisor: int,
        dtype: torch.dtype,
    ) -> tuple[Tensor, Tensor]:
        penalty = loss.penalty
        weights = list(loss.weights or (1.0,) * loss.op.n_outputs)
        params = list(penalty.kernel_params())
        total, scales = torch.ops.torchgrad.fused_loss(
            x, y, mask, description, penalty.kernel_code, params, weights, mean, divisor, dtype
        )
        ctx.loss, ctx.description = loss, description
        ctx.save_for_backward(x, y, mask)
        # The scales (one number per component, never seen outside this Function) are not one of autograd's
        # saved tensors: only the inputs are.
        ctx.scales = scales
        ctx.mark_non_differentiable(scales)
        ctx.set_materialize_grads(False)  # no zeros for the scales' (absent) gradient
        return total, scales

    @staticmethod
    def backward(ctx: Any, grad: Optional[Tensor], _: Optional[Tensor]) -> tuple[Optional[Tensor], ...]:
        if grad is None:
            return (None,) * 8
        x, y, mask = ctx.saved_tensors
        scales: Tensor = ctx.scales
        loss: FusedLoss = ctx.loss
        need_x, need_y = ctx.needs_input_grad[:2]
        if not torch.is_grad_enabled():
            penalty, params = loss.penalty, list(loss.penalty.kernel_params())
            try:
                grads = torch.ops.torchgrad.fused_loss_backward(
                    grad, x, y, mask, scales, ctx.description, penalty.kernel_code, params, need_y
                )
            except KernelsUnavailable:
                pass  # the kernels cannot run now (switched off, or not compiled on this device): the code below
            else:
                gy = grads[1] if len(grads) > 1 else None
                return (grads[0] if need_x else None), gy, None, None, None, None, None, None
        # A graph of the gradient, or no kernels: the eager Function's differentiable code, each component's
        # cotangent grad * scale (its weight over the elements that count) stacked as a per-element map would be.
        spatial = (1,) * loss.op.spatial_dims
        stacked = (grad * scales).reshape((1,) * (x.dim() - loss.op.spatial_dims) + (-1,) + spatial)
        unweighted = replace(loss, weights=None)
        gx, gy = _pull_back(x, y, mask, unweighted, stacked, None, need_x, need_y, traceable=True)
        return gx, gy, None, None, None, None, None, None


def _cut(t: Optional[Tensor], s: slice) -> Optional[Tensor]:
    return None if t is None else t[s]


def _cast(g: Optional[Tensor], like: Optional[Tensor]) -> Optional[Tensor]:
    return None if g is None or like is None else g.to(like.dtype)


def _pull_back(
    x: Tensor,
    y: Optional[Tensor],
    mask: Optional[Tensor],
    loss: FusedLoss,
    grad: Tensor,
    sum_from: Optional[int],
    need_x: bool,
    need_y: bool,
    traceable: bool,
    out: Optional[Tensor] = None,
    workspace: Optional[Workspace] = None,
) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """Gradients for ``x`` and ``y``: ``A^T`` of ``grad * d value / d output``, zero where not valid.

    A linear penalty's target gets minus the input's gradient; a constant reference gets none. Eager code
    writes the input's gradient into ``out`` when one is given (of ``x``'s dtype) and keeps its temporaries
    in ``workspace``.
    """
    op, penalty = loss.op, loss.penalty

    def apply(t: Tensor, minus: Optional[Tensor], w: Optional[Workspace]) -> tuple[Tensor, ...]:
        if traceable:
            return apply_operator(op, t if minus is None else t - minus)
        return op.apply(t, workspace=w, minus=minus)

    a, b = _outputs(loss, x, y, apply, workspace)
    if sum_from is None:
        grads = list(grad.unbind(-(op.spatial_dims + 1)))
    else:
        grads = [grad.reshape(grad.shape + (1,) * (a[0].dim() - grad.dim()))] * len(a)
    if loss.weights is not None:
        grads = [g * w for g, w in zip(grads, loss.weights)]
    invalid = _invalid_elements(op, mask) if mask is not None else None
    slopes = [penalty.derivatives(ai, bi, traceable) for ai, bi in zip(a, b)]

    def back(derivatives: list[Tensor], dtype: torch.dtype, into: Optional[Tensor] = None) -> Tensor:
        cotangents = []
        for k, (d, g) in enumerate(zip(derivatives, grads)):
            c = d * g if traceable else d.mul_(g)
            if invalid is not None:
                c = torch.where(invalid[k], 0.0, c) if traceable else c.masked_fill_(invalid[k], 0.0)
            cotangents.append(c)
        if traceable:
            return apply_adjoint(op, dtype, cotangents)
        return op.adjoint(cotangents, out=into, workspace=workspace)

    da = [d for d, _ in slopes]
    db = [d for _, d in slopes if d is not None]
    if penalty.linear:
        g = back(da, x.dtype, out if need_x else None) if need_x or need_y else None
        return (g if need_x else None), (-g if need_y and g is not None else None)
    gx = back(da, x.dtype, out) if need_x else None
    gy = back(db, y.dtype) if need_y and y is not None and db else None
    return gx, gy
