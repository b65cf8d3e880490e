"""The fused loss Function: a pointwise penalty on image gradients, with a hand-written backward.

``Penalty`` states the loss per gradient element; :func:`penalty_call` runs it inside one
``torch.autograd.Function`` (returning the total, or the per-element map) that saves only
references to its inputs (no new memory) and recomputes the gradients in backward. The operators
are linear, so the L1/L2 losses take one operator pass over ``input - target`` instead of two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
from torch import Tensor

from torchgrad._internal import Separable, apply_adjoint, apply_operator, needs_traceable_code, slabs


def _float32_if_half(t: Tensor) -> Tensor:
    """Half-precision tensors are computed in float32."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


@dataclass(frozen=True)
class Penalty:
    """Per-element loss on the outputs of ``op``.

    ``"l1"``: ``|A (x - y)|``; ``"l2"``: ``(A (x - y))^2``; ``"gdl"``: ``||A x| - |A y||^alpha`` (the
    gradient difference loss); ``"edge"``: ``|A x| exp(-mean_channels |A y|)`` with no gradient for
    ``y`` (edge-aware smoothness). ``y`` may be ``None`` for ``l1``/``l2`` (a penalty on ``A x``
    alone). ``scales`` multiplies each component's values.
    """

    op: Separable
    kind: str
    alpha: float = 1.0
    scales: Optional[tuple[float, ...]] = None

    def outputs(
        self, x: Tensor, y: Optional[Tensor], traceable: bool
    ) -> tuple[tuple[Tensor, ...], Optional[tuple[Tensor, ...]]]:
        run = (lambda t: apply_operator(self.op, t)) if traceable else self.op.apply
        if self.kind == "edge":
            with torch.no_grad():
                b = tuple(torch.exp(-c.abs().mean(-3, keepdim=True)) for c in self.op.apply(_float32_if_half(y)))  # type: ignore[arg-type]
            return run(_float32_if_half(x)), b
        if self.kind == "gdl":
            return run(_float32_if_half(x)), run(_float32_if_half(y))  # type: ignore[arg-type]
        d = _float32_if_half(x) if y is None else _float32_if_half(x) - _float32_if_half(y)
        return run(d), None

    def values(self, a: tuple[Tensor, ...], b: Optional[tuple[Tensor, ...]]) -> list[Tensor]:
        if self.kind == "l1":
            values = [e.abs() for e in a]
        elif self.kind == "l2":
            values = [e * e for e in a]
        elif self.kind == "edge":
            values = [e.abs() * w for e, w in zip(a, b)]  # type: ignore[arg-type]
        else:
            values = [(ai.abs() - bi.abs()).abs().pow(self.alpha) for ai, bi in zip(a, b)]  # type: ignore[arg-type]
        return values if self.scales is None else [v * s for v, s in zip(values, self.scales)]

    def derivatives(
        self, a: tuple[Tensor, ...], b: Optional[tuple[Tensor, ...]], traceable: bool = True
    ) -> tuple[list[Tensor], Optional[list[Tensor]]]:
        """d value / d a and (for ``gdl``) d value / d b, per component; unless ``traceable``, overwrites ``a``."""
        da, db = self._derivatives(a, b, traceable)
        if self.scales is not None:
            da = [d.mul_(s) if not traceable else d * s for d, s in zip(da, self.scales)]
            db = None if db is None else [d.mul_(s) if not traceable else d * s for d, s in zip(db, self.scales)]
        return da, db

    def _derivatives(
        self, a: tuple[Tensor, ...], b: Optional[tuple[Tensor, ...]], traceable: bool
    ) -> tuple[list[Tensor], Optional[list[Tensor]]]:
        if self.kind == "l1":
            return [e.sign_() if not traceable else e.sign() for e in a], None
        if self.kind == "l2":
            return [e.mul_(2) if not traceable else 2 * e for e in a], None
        if self.kind == "edge":
            return [e.sign_().mul_(w) if not traceable else e.sign() * w for e, w in zip(a, b)], None  # type: ignore[arg-type]
        da, db = [], []
        for ai, bi in zip(a, b):  # type: ignore[arg-type]
            r = ai.abs() - bi.abs()
            if self.alpha == 1:
                slope = r.sign()
            else:  # the derivative of |r|^alpha, 0 at r = 0 (where the untaken branch stays finite)
                magnitude = r.abs()
                safe = magnitude.clamp_min(torch.finfo(magnitude.dtype).tiny)
                slope = torch.where(magnitude == 0, 0.0, self.alpha * safe.pow(self.alpha - 1)) * r.sign()
            da.append(slope * ai.sign())
            db.append(-slope * bi.sign())
        return da, db


def valid_elements(op: Separable, mask: Tensor) -> tuple[Tensor, ...]:
    """Per output component, where every sample the stencil reads is valid in ``mask``."""
    invalid = (~mask).to(torch.float32)
    return tuple(c == 0 for c in op.support().apply(invalid))


def _reduce(maps: list[Tensor], keep: int) -> Tensor:
    dims = tuple(range(keep, maps[0].dim()))
    total = maps[0].sum(dims)
    for m in maps[1:]:
        total = total + m.sum(dims)
    return total


class _PenaltyFunction(torch.autograd.Function):
    """``sum`` (``keep`` leading dims kept) or the stacked map (``keep=None``) of a :class:`Penalty`."""

    @staticmethod
    def forward(
        x: Tensor, y: Optional[Tensor], mask: Optional[Tensor], penalty: Penalty, keep: Optional[int]
    ) -> Tensor:
        if keep == 0 and not torch.compiler.is_compiling():
            # A total over everything: slab by slab, so that no temporary is as large as the input.
            parts = [_evaluate(x[s], _cut(y, s), _cut(mask, s), penalty, 0) for s in slabs(x, penalty.op.spatial_dims)]
            return parts[0] if len(parts) == 1 else torch.stack(parts).sum()
        return _evaluate(x, y, mask, penalty, keep)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x, y, mask, ctx.penalty, ctx.keep = inputs
        ctx.save_for_backward(x, y, mask)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Optional[Tensor], ...]:
        x, y, mask = ctx.saved_tensors
        penalty: Penalty = ctx.penalty
        need_x, need_y = ctx.needs_input_grad[:2]
        if torch.is_grad_enabled() or needs_traceable_code(grad):
            # Differentiable (double backward) or traced: plain operations through the Functions.
            gx, gy = _pull_back(x, y, mask, penalty, grad, ctx.keep, need_x, need_y, traceable=True)
            return gx, gy, None, None, None
        # First-order eager backward, slab by slab (a total's gradient is the same scalar for every slab).
        cuts = slabs(x, penalty.op.spatial_dims) if ctx.keep == 0 else [(slice(None),)]
        gx = torch.empty_like(x) if need_x or (need_y and penalty.kind != "gdl") else None
        gy = torch.empty_like(y) if need_y and penalty.kind == "gdl" else None
        for s in cuts:
            g = grad if ctx.keep == 0 else grad[s]
            px, py = _pull_back(
                x[s],
                _cut(y, s),
                _cut(mask, s),
                penalty,
                g,
                ctx.keep,
                gx is not None,
                gy is not None,
                traceable=False,
            )
            if gx is not None:
                gx[s].copy_(px)  # type: ignore[arg-type]
            if gy is not None:
                gy[s].copy_(py)  # type: ignore[arg-type]
        if need_y and penalty.kind != "gdl":
            gy = torch.neg(gx).to(y.dtype)  # type: ignore[arg-type]
        return (gx if need_x else None), gy, None, None, None

    @staticmethod
    def vmap(
        info: Any,
        in_dims: tuple[Optional[int], ...],
        x: Tensor,
        y: Optional[Tensor],
        mask: Optional[Tensor],
        penalty: Penalty,
        keep: Optional[int],
    ) -> Any:
        def front(t: Optional[Tensor], d: Optional[int]) -> Optional[Tensor]:
            if t is None:
                return None
            return t.movedim(d, 0) if d is not None else t.expand(info.batch_size, *t.shape)

        x, y, mask = (front(t, d) for t, d in zip((x, y, mask), in_dims[:3]))
        return penalty_call(x, y, mask, penalty, None if keep is None else keep + 1), 0  # type: ignore[arg-type]


class _PenaltyFunctionWithJvp(_PenaltyFunction):
    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        _PenaltyFunction.setup_context(ctx, inputs, output)
        ctx.save_for_forward(*inputs[:3])

    @staticmethod
    def jvp(ctx: Any, x_t: Optional[Tensor], y_t: Optional[Tensor], *_: Any) -> Tensor:
        x, y, mask = ctx.saved_tensors
        penalty: Penalty = ctx.penalty
        a, b = penalty.outputs(x, y, traceable=True)
        da, db = penalty.derivatives(a, b)
        if db is None:  # l1 / l2 on A(x - y): the tangent is A(x_t - y_t)
            t = x_t if y_t is None else (y_t.neg() if x_t is None else x_t - y_t)
            pairs = [list(zip(da, apply_operator(penalty.op, _float32_if_half(t))))]
        else:
            pairs = [
                list(zip(d, apply_operator(penalty.op, _float32_if_half(t))))
                for d, t in ((da, x_t), (db, y_t))
                if t is not None
            ]
        tangents = [sum(d * t for d, t in components) for components in zip(*pairs)]
        if mask is not None:
            tangents = [torch.where(v, t, 0.0) for v, t in zip(valid_elements(penalty.op, mask), tangents)]
        if ctx.keep is None:
            return torch.stack(tangents, dim=-(penalty.op.spatial_dims + 1))
        return _reduce(tangents, ctx.keep)


def _cut(t: Optional[Tensor], s: tuple[slice, ...]) -> Optional[Tensor]:
    return None if t is None else t[s]


def _evaluate(x: Tensor, y: Optional[Tensor], mask: Optional[Tensor], penalty: Penalty, keep: Optional[int]) -> Tensor:
    """The stacked per-element loss (``keep=None``) or its total over the dims from ``keep`` on."""
    a, b = penalty.outputs(x, y, traceable=False)
    if keep is not None and mask is None and penalty.kind in ("l1", "l2") and penalty.scales is None:
        dims = tuple(range(keep, a[0].dim()))
        order = 1 if penalty.kind == "l1" else 2
        norms = [torch.linalg.vector_norm(e, order, dim=dims) for e in a]  # no temporaries
        return sum(n if order == 1 else n * n for n in norms)  # type: ignore[return-value]
    values = penalty.values(a, b)
    if mask is not None:
        values = [torch.where(v, m, 0.0) for v, m in zip(valid_elements(penalty.op, mask), values)]
    if keep is None:
        return torch.stack(values, dim=-(penalty.op.spatial_dims + 1))
    return _reduce(values, keep)


def _pull_back(
    x: Tensor,
    y: Optional[Tensor],
    mask: Optional[Tensor],
    penalty: Penalty,
    grad: Tensor,
    keep: Optional[int],
    need_x: bool,
    need_y: bool,
    traceable: bool,
) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """Gradients for ``x`` and (``gdl`` only) ``y``: ``A^T`` of ``grad * d value / d output``, zero where not valid."""
    a, b = penalty.outputs(x, y, traceable)
    da, db = penalty.derivatives(a, b, traceable=traceable)
    valid = valid_elements(penalty.op, mask) if mask is not None else None
    if keep is None:
        grads = list(grad.unbind(-(penalty.op.spatial_dims + 1)))
    else:
        grads = [grad.reshape(grad.shape + (1,) * (da[0].dim() - grad.dim()))] * len(da)

    def cotangents(derivatives: list[Tensor]) -> list[Tensor]:
        out = []
        for k, (d, g) in enumerate(zip(derivatives, grads)):
            c = d * g if traceable else d.mul_(g)
            if valid is not None:
                c = torch.where(valid[k], c, 0.0) if traceable else c.masked_fill_(~valid[k], 0.0)
            out.append(c)
        return out

    def back(derivatives: list[Tensor], dtype: torch.dtype) -> Tensor:
        if traceable:
            return apply_adjoint(penalty.op, dtype, cotangents(derivatives))
        return penalty.op.adjoint(cotangents(derivatives))

    gx = back(da, x.dtype) if need_x else None
    gy = back(db, y.dtype) if need_y and db is not None else None  # type: ignore[union-attr]
    if traceable and need_y and db is None:
        gy = -gx if gx is not None else -back(da, y.dtype)  # type: ignore[union-attr]
    return gx, gy


def reduced_penalty(
    x: Tensor, y: Optional[Tensor], mask: Optional[Tensor], penalty: Penalty, reduction: str, dtype: torch.dtype
) -> Tensor:
    """The loss as ``torch.nn`` losses reduce it: the stacked per-element map (``"none"``), its sum, or
    its mean over the elements that count (all of them, or the valid ones under ``mask``)."""
    if reduction == "none":
        return penalty_call(x, y, mask, penalty, None).to(dtype)
    total = penalty_call(x, y, mask, penalty, 0)
    if reduction == "mean":
        total = total / _count(penalty.op, x, mask)
    return total.to(dtype)


def _count(op: Separable, x: Tensor, mask: Optional[Tensor]) -> Union[Tensor, int]:
    """The number of gradient elements that count for ``"mean"`` (at least 1 under a mask)."""
    if mask is None:
        return len(op.chains) * x.numel()
    with torch.no_grad():
        return torch.stack([v.sum() for v in valid_elements(op, mask)]).sum().clamp_min(1)


def penalty_call(
    x: Tensor, y: Optional[Tensor], mask: Optional[Tensor], penalty: Penalty, keep: Optional[int]
) -> Tensor:
    fn = _PenaltyFunction if torch.compiler.is_compiling() else _PenaltyFunctionWithJvp
    return fn.apply(x, y, mask, penalty, keep)
