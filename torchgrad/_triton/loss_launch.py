"""The fused losses on the Triton kernels: a penalty on the components of ``A``, totalled, and its gradients.

Forward (:func:`triton_loss`): the loss kernel computes ``A (input - target)`` on each tile (the difference
formed in float32, or float64, from one read of each), the penalty and the tile's sum per component
(:mod:`~torchgrad._triton.penalty_kernels`), and one small kernel adds the sums into the loss. Backward
(:func:`triton_loss_backward`): the slopes kernel recomputes the components and writes each one's cotangent
``grad * scale * d value / d a``, then the adjoint kernel writes the input's gradient and, for a linear
penalty, the target's (its negative) in the same pass.

Penalties that compare ``A input`` with ``A target`` (the gradient difference) take ``A target`` from one
more launch of ``A`` (components in float32), which the loss kernel reads. The edge-aware smoothness reads
its weights, ``exp(-mean_channels |A image|)``, from one launch over the image (:func:`_edge_weights`) the
same way. Launches per call, whatever the batch: 2 forward and 2 backward for the linear penalties, one more
each for ``A target`` or the weights.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from .._separable import Separable
from . import launch, penalty_codes, penalty_kernels
from .launch import _accumulator, _block, _programs, accumulator_dtype, apply_into, sizes_of
from .layout import INT32_MAX, Layout, kernel_layout
from .plan import KernelPlan, Unsupported

TOTAL_BLOCK = 1024
"""Rows of partial sums that the final reduction adds per step."""


def _uses_references(penalty: int, x: Tensor, y: Optional[Tensor]) -> bool:
    """Whether the loss kernel reads ``A target`` from buffers instead of forming ``x - y`` itself."""
    return y is not None and penalty not in penalty_codes.LINEAR


EDGE_CHANNELS = 16
"""The most image channels whose edge-aware weights one program computes (they lie along its tile's z)."""


def loss_refusal(penalty: int, x: Tensor, y: Optional[Tensor]) -> Optional[str]:
    """Why the loss kernels cannot run ``penalty`` on ``x`` and target ``y`` with an operator that the operator
    kernels serve on ``x``, or ``None``: for the edge-aware weights, an image that the kernels cannot read, or
    more channels (of the image, or of the input that gets the weights) than one program holds."""
    if penalty == penalty_codes.EDGE_AWARE:
        if y is None or y.dim() != 4 or x.dim() != 4:
            return "the edge-aware weights need an (N, C, H, W) image and input"
        if max(x.shape[1], y.shape[1]) > EDGE_CHANNELS:
            shapes = f"{tuple(x.shape)} and {tuple(y.shape)}"
            return f"the edge-aware weights serve at most {EDGE_CHANNELS} channels, got shapes {shapes}"
        if y.dtype not in launch.FLOATING:
            return f"the kernels read float16, bfloat16, float32 and float64 images, got {y.dtype}"
    return None


def _served_loss_plan(op: Separable, x: Tensor, penalty: int, y: Optional[Tensor]) -> KernelPlan:
    plan, reason = launch._checked_plan(op, x)
    reason = reason or loss_refusal(penalty, x, y)
    if plan is None or reason is not None:
        raise Unsupported(f"the Triton executor cannot serve this loss: {reason}")
    return plan


def _references(plan: KernelPlan, y: Tensor) -> list[Tensor]:
    """``A y`` per component, in the work dtype: one forward launch."""
    refs = [torch.empty_like(y, dtype=accumulator_dtype(y)) for _ in range(plan.n_outputs)]
    if kernel_layout([y] + refs, plan.ndim) is None:
        y = y.contiguous()
        refs = [torch.empty_like(y, dtype=accumulator_dtype(y)) for _ in refs]
    apply_into(plan, y, refs)
    return refs


def _edge_weights(plan: KernelPlan, image: Tensor, like: Tensor) -> list[Tensor]:
    """The edge-aware weights ``exp(-mean_channels |A_c image|)`` per component, in the work dtype, shaped and
    laid out like ``like`` (the same weight in each of its channels): one forward launch, a program per
    tile of one image's plane with every channel along z."""
    weights = [torch.empty_like(like, dtype=accumulator_dtype(like)) for _ in range(plan.n_outputs)]
    n, channels, h, w = image.shape
    copies = like.shape[1]
    if (h - 1) * image.stride(2) + (w - 1) * image.stride(3) > INT32_MAX:
        image = image.contiguous()  # a plane as large as the input's, which the kernels read
    strides = [(0, t.stride(0), t.stride(1), t.stride(2), t.stride(3)) for t in (image, weights[0])]
    layout = Layout((1, n, channels, h, w), (strides[0], strides[1]))
    bd = launch.next_power_of_2(max(channels, copies))
    bw = min(64, launch.next_power_of_2(w))
    bh = min(8, launch.next_power_of_2(h), max(1, launch.TILE["forward"][2] // (bd * bw)))
    launch.launch_kernel(
        penalty_kernels._edge_weights_kernel,
        _programs(layout, (bd, bh, bw)),
        image, tuple(weights), sizes_of(layout), strides[0], strides[1], copies,
        P=plan.constants, ACC=_accumulator(image.dtype), BLOCK_D=bd, BLOCK_H=bh, BLOCK_W=bw,
    )  # fmt: skip
    return weights


def _operands(
    plan: KernelPlan, penalty: int, x: Tensor, y: Optional[Tensor], mask: Optional[Tensor]
) -> tuple[Tensor, Optional[Tensor], list[Tensor], Optional[Tensor]]:
    """``x`` and ``mask`` as the kernels read them, the components the loss kernel reads (``A target``, or the
    edge-aware weights), and the target it subtracts from ``x`` sample by sample (with ``x``'s strides)."""
    if penalty == penalty_codes.EDGE_AWARE:
        x, mask = _contiguous_if_needed(plan, [x, mask])  # type: ignore[assignment]
        return x, mask, _edge_weights(plan, y, x), None  # type: ignore[arg-type]
    x, y, mask = _contiguous_if_needed(plan, [x, y, mask])  # type: ignore[assignment]
    if _uses_references(penalty, x, y):
        return x, mask, _references(plan, y), None  # type: ignore[arg-type]
    if y is not None and y.stride() != x.stride():  # the kernel reads the target with the input's strides
        x, y, mask = (None if t is None else t.contiguous() for t in (x, y, mask))  # type: ignore[assignment]
    return x, mask, [], y


def _launch_loss(
    plan: KernelPlan,
    source: Tensor,
    components: list[Tensor],
    mask: Optional[Tensor],
    grad: Optional[Tensor],
    scales: Optional[Tensor],
    penalty: int,
    params: tuple[float, ...],
    refs: bool,
    target: Optional[Tensor],
) -> tuple[Tensor, int]:
    """The loss kernel (the slopes kernel where ``grad`` is given) on ``source`` (minus ``target`` where given);
    ``components`` are read (``refs``) and/or written (the slopes, with the ``scales`` of the forward).
    Returns the partial sums (a row per program; the scales when ``grad`` is given) and the number of
    programs."""
    held = [] if mask is None else [mask.view(torch.uint8)]
    tensors = [source] + components + held
    layout = kernel_layout(tensors, plan.ndim)
    if layout is None:
        raise Unsupported("the input, the target's components and the mask share no layout")
    strides = layout.strides
    c_strides = strides[1] if components else strides[0]
    m_strides = strides[-1] if held else strides[0]
    tile = _block(layout, plan.ndim, None, "loss reading components" if refs or mask is not None else "loss")
    programs = _programs(layout, tile)
    if scales is None:
        sums = torch.empty((programs, plan.n_outputs + 1), dtype=accumulator_dtype(source), device=source.device)
    else:
        sums = scales
    constants = penalty_codes.Penalty(penalty, params, refs, mask is not None, target is not None)
    common = (sizes_of(layout), strides[0], c_strides, m_strides)
    meta = dict(P=plan.constants, L=constants, ACC=_accumulator(source.dtype), BLOCK_D=tile[0], BLOCK_H=tile[1],
                BLOCK_W=tile[2])  # fmt: skip
    m = held[0] if held else None
    if grad is None:
        launch.launch_kernel(penalty_kernels._loss_kernel, programs, source, target, tuple(components), m, sums,
                             *common, **meta)  # fmt: skip
    else:
        launch.launch_kernel(penalty_kernels._slopes_kernel, programs, source, target, tuple(components), m, sums,
                             grad, *common, **meta)  # fmt: skip
    return sums, programs


def _contiguous_if_needed(plan: KernelPlan, tensors: list[Optional[Tensor]]) -> list[Optional[Tensor]]:
    """The tensors as they are when their layouts merge (with float buffers like the first), else contiguous."""
    present = [t for t in tensors if t is not None]
    like = [torch.empty_like(present[0], dtype=accumulator_dtype(present[0]), device="meta")]  # strides only
    held = [t.view(torch.uint8) if t.dtype == torch.bool else t for t in present]
    if kernel_layout(held + like, plan.ndim) is not None:
        return tensors
    return [None if t is None else t.contiguous() for t in tensors]


def triton_loss(
    op: Separable,
    x: Tensor,
    y: Optional[Tensor],
    mask: Optional[Tensor],
    penalty: int,
    params: Sequence[float],
    weights: Sequence[float],
    mean: bool,
    elements: int,
    dtype: torch.dtype,
) -> tuple[Tensor, Tensor]:
    """The loss ``sum_c weights[c] sum penalty(A_c ...)`` in ``dtype``, over the number of elements that count
    when ``mean`` (under ``mask``, else ``elements``; at least 1), and each component's scale (its weight over
    that number), which :func:`triton_loss_backward` takes."""
    plan = _served_loss_plan(op, x, penalty, y)
    params = tuple(float(p) for p in params)
    x, mask, components, target = _operands(plan, penalty, x, y, mask)
    work = accumulator_dtype(x)
    sums, programs = _launch_loss(plan, x, components, mask, None, None, penalty, params, bool(components), target)
    out = torch.empty((), dtype=dtype, device=x.device)
    scales = torch.empty((plan.n_outputs,), dtype=work, device=x.device)
    launch.launch_kernel(
        penalty_kernels._total_kernel, 1, sums, out, scales, programs, elements,
        OUTPUTS=plan.n_outputs, WEIGHTS=tuple(float(w) for w in weights), MEAN=mean, LOSS_MASK=mask is not None,
        BLOCK=min(TOTAL_BLOCK, launch.next_power_of_2(programs)),
    )  # fmt: skip
    return out, scales


def triton_loss_backward(
    op: Separable,
    x: Tensor,
    y: Optional[Tensor],
    mask: Optional[Tensor],
    scales: Tensor,
    grad: Tensor,
    penalty: int,
    params: Sequence[float],
    need_y: bool,
) -> tuple[Tensor, Optional[Tensor]]:
    """The gradients of :func:`triton_loss` for ``x`` and (``need_y``, linear penalties) ``y``: two launches
    (after one for ``A target`` or the edge-aware weights)."""
    plan = _served_loss_plan(op, x, penalty, y)
    params = tuple(float(p) for p in params)
    x, mask, slopes, target = _operands(plan, penalty, x, y, mask)
    refs = bool(slopes)  # the slopes overwrite the components they are computed from
    signs = penalty == penalty_codes.L1 and not refs  # the L1 slope is a sign: an int16, scaled by the adjoint
    if not refs:
        slopes = [
            torch.empty_like(x, dtype=torch.int16 if signs else accumulator_dtype(x)) for _ in range(plan.n_outputs)
        ]
    _launch_loss(plan, x, slopes, mask, grad, scales, penalty, params, refs, target)
    gx = torch.empty_like(x)
    negated = None
    if need_y and y is not None:
        negated = torch.empty_like(gx, dtype=y.dtype)
    _adjoint(plan, slopes, gx, negated, (scales, grad) if signs else None)
    return gx, negated


def _adjoint(
    plan: KernelPlan,
    grads: list[Tensor],
    out: Tensor,
    negated: Optional[Tensor],
    factors: Optional[tuple[Tensor, Tensor]],
) -> None:
    """``out = A^T g`` (and ``negated = -A^T g``) from one launch, each cotangent scaled by ``factors``."""
    layout = kernel_layout(grads + [out] + ([] if negated is None else [negated]), plan.ndim)
    if layout is None:
        raise Unsupported("the cotangents and the gradient share no layout")
    launch.launch_adjoint(plan, layout, grads, out, None, negated, factors)
