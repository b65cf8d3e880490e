"""The Triton executor's entry points: ``A x``, ``A^T g`` and the fused magnitude, one launch each
(two for the magnitude's backward), whatever the batch."""

from __future__ import annotations

import functools
import inspect
from typing import Any, NamedTuple, Optional, Sequence

import torch
import triton
import triton.language as tl
from torch import Tensor

from .._separable import Separable
from .._torch_private import is_transformed
from . import kernels
from .layout import INT32_MAX, Layout, kernel_layout
from .plan import KernelPlan, Unsupported, kernel_plan

NUM_WARPS = 4
TILE = {
    "forward": {2: 1024, 3: 1024},
    "adjoint": {2: 1024, 3: 256},
    "loss": {2: 1024, 3: 256},
    "loss reading components": {2: 256, 3: 256},
}
"""Elements of one program's tile per job and kernel dimensionality: eight per thread (the per-program index
arithmetic spread thin, and the loss's per-program partial sums), two for the 3-D adjoint and the 3-D loss,
which hold many partial sums or a mask rule per element, and for a loss that reads components (``A target``,
the edge-aware weights) or a mask, which more per thread spill on ``sm_80`` (``benchmarks/kernel_report.py``;
``--kinds`` checks that none spills)."""
WIDE_ADJOINT_TILE = 512
"""The 2-D adjoint's tile where a stencil reaches three samples along two axes (7 x 7 taps, OpenCV's
``ksize=7``): eight elements per thread spill there in half precision."""
PLANE = {2: (32, 32), 3: (8, 32)}
"""A tile's largest extent in a plane, more planes where planes are small. Square plane tiles keep most
tiles clear of the borders (77% of a 512 x 512 image's for the 2-D adjoint)."""

Block = Optional[tuple[int, int, int]]
FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class Tuning(NamedTuple):
    """The configurations a launch of an operator kernel may take (``(tile, num_warps)``, the default first)
    over ``layout``: :func:`launch_kernel` times them on a GPU with ``triton.autotune``."""

    configs: tuple[tuple[tuple[int, int, int], int], ...]
    layout: Layout

    def grid(self, meta: dict[str, Any]) -> tuple[int]:
        return (_programs(self.layout, (meta["BLOCK_D"], meta["BLOCK_H"], meta["BLOCK_W"])),)


TRY_EVERY_CONFIG = False
"""Set by the tests and the kernel report, under the interpreter: a launch with a :class:`Tuning` runs each
of its configurations in turn (the last one's results stay) instead of none but the default."""


def launch_kernel(kernel: Any, programs: int, *args: Any, tuning: Optional[Tuning] = None, **meta: Any) -> None:
    """Every kernel launch of the executor goes through here (a one-dimensional grid of ``programs``, the
    tile in ``meta`` and ``NUM_WARPS``; or, with ``tuning``, the fastest of its configurations on a GPU).

    Triton compiles a kernel at its first launch for each specialisation; where it cannot compile or load
    it on this device (:func:`~torchgrad._executor.compile_failure`), this raises
    :class:`~torchgrad._executor.KernelsUnavailable` from Triton's error, before the kernel wrote anything,
    and the ops compute with the operator's own executors. Other errors, and every error under Triton's
    interpreter (which compiles nothing), are raised as they are."""
    try:
        if tuning is None:
            kernel[(programs,)](*args, num_warps=NUM_WARPS, **meta)
        elif TRY_EVERY_CONFIG:
            meta = {k: v for k, v in meta.items() if not k.startswith("BLOCK_")}  # each configuration's tile
            for (bd, bh, bw), warps in tuning.configs:
                tile = dict(BLOCK_D=bd, BLOCK_H=bh, BLOCK_W=bw)
                kernel[tuning.grid(tile)](*args, num_warps=warps, **tile, **meta)
        else:
            _launch_tuned(kernel, tuning, args, {k: v for k, v in meta.items() if not k.startswith("BLOCK_")})
    except Exception as error:
        from .._executor import KernelsUnavailable, compile_failure

        if interpreting() or not compile_failure(error):
            raise
        raise KernelsUnavailable(f"{type(error).__name__}: {error}") from error


_CHOSEN: dict[tuple[Any, ...], Any] = {}
"""The configuration ``triton.autotune`` chose, per kernel, configurations, sizes, compile-time arguments and
dtypes: later launches go straight to the kernel (the autotuner's own bookkeeping costs host time per call)."""


def _launch_tuned(kernel: Any, tuning: Tuning, args: tuple[Any, ...], meta: dict[str, Any]) -> None:
    dtypes = tuple(str(a.dtype) for a in args if isinstance(a, Tensor))
    key = (kernel, tuning.configs, tuning.layout.sizes, tuple(meta.items()), dtypes)
    config = _CHOSEN.get(key)
    if config is None:
        tuner = _autotuner(kernel, tuning.configs)
        tuner[tuning.grid](*args, **meta)
        _CHOSEN[key] = tuner.best_config
    else:
        kernel[tuning.grid(config.kwargs)](*args, num_warps=config.num_warps, **config.kwargs, **meta)


@functools.lru_cache(maxsize=None)
def _autotuner(kernel: Any, configs: tuple[tuple[tuple[int, int, int], int], ...]) -> Any:
    """``kernel`` under ``triton.autotune`` over ``configs``, timed once per operator (``P``), sizes and
    dtypes, briefly (the configurations differ in speed, never in results)."""
    options: dict[str, Any] = {}
    if "do_bench" in inspect.signature(triton.autotune).parameters:
        from triton.testing import do_bench

        options["do_bench"] = lambda call, quantiles: do_bench(call, warmup=5, rep=20, quantiles=quantiles)
    choices = [
        triton.Config(dict(BLOCK_D=bd, BLOCK_H=bh, BLOCK_W=bw), num_warps=warps) for (bd, bh, bw), warps in configs
    ]
    return triton.autotune(choices, key=["sizes", "P"], **options)(kernel)


def _tunes(device: torch.device) -> bool:
    """Whether launches on ``device`` are timed: compiled kernels on a GPU, outside CUDA-graph capture."""
    return device.type == "cuda" and not interpreting() and not torch.cuda.is_current_stream_capturing()


def tuning(layout: Layout, tile: tuple[int, int, int], elements: int, device: torch.device) -> Optional[Tuning]:
    """The configurations an operator kernel's launch on a full tile (of ``elements``) may take on a GPU: the tile
    with ``NUM_WARPS`` and, where the tensor is at least twice as wide, the tile twice as wide with twice the
    warps (as many elements per thread, so the registers, and the absence of spills, carry over; more bytes
    in flight per program, for half precision and the adjoint). ``None`` (the tile as it is) for a tile the
    tensor shrank, under the interpreter (but with :data:`TRY_EVERY_CONFIG`) and while a CUDA graph is being
    captured (timing cannot run there). The fused losses never tune: their partial sums follow the tile, and
    their values must not depend on a timing."""
    if not (TRY_EVERY_CONFIG or _tunes(device)):
        return None
    bd, bh, bw = tile
    if bd * bh * bw < elements or 2 * bw > next_power_of_2(layout.sizes[4]):
        return None
    return Tuning(((tile, NUM_WARPS), ((bd, bh, 2 * bw), 2 * NUM_WARPS)), layout)


def interpreting() -> bool:
    """Whether the kernels run under Triton's interpreter (``TRITON_INTERPRET=1`` when they were defined)."""
    return not isinstance(kernels._apply_kernel, triton.runtime.JITFunction)


def unsupported_reason(op: Separable, x: Tensor) -> Optional[str]:
    """Why the kernels cannot compute ``op`` on ``x``, or ``None`` when they can."""
    return _checked_plan(op, x)[1]


def _checked_plan(op: Separable, x: Tensor) -> tuple[Optional[KernelPlan], Optional[str]]:
    """The plan of ``op`` on ``x``, or why the kernels cannot compute it."""
    if not isinstance(x, Tensor):
        return None, f"the input must be a tensor, got {type(x).__name__}"
    if x.dtype not in FLOATING:
        return None, f"the kernels read float16, bfloat16, float32 and float64, got {x.dtype}"
    if x.device.type != "cuda" and not (x.device.type == "cpu" and interpreting()):
        return None, f"the kernels run on CUDA tensors (CPU tensors under TRITON_INTERPRET=1), got device {x.device}"
    if is_transformed(x):
        return None, "tensors wrapped by a torch.func transform are not served by raw kernel launches"
    try:
        plan = kernel_plan(op, x.shape)
    except Unsupported as error:
        return None, str(error)
    if any(stencil.dtype not in (None, x.dtype) for chain in op.chains for stencil in chain):
        return None, "the operator's result dtype differs from the input's"
    if x.shape[-1] * (x.shape[-2] if plan.ndim > 1 else 1) > INT32_MAX:
        return None, f"an image plane of shape {tuple(x.shape)} is beyond int32 offsets"
    return plan, None


def _served_plan(op: Separable, x: Tensor) -> KernelPlan:
    plan, reason = _checked_plan(op, x)
    if plan is None:
        raise Unsupported(f"the Triton executor cannot serve this call: {reason}")
    return plan


def _layout(tensors: list[Tensor], ndim: int) -> tuple[list[Tensor], Layout]:
    """The layout of ``tensors``, copying them contiguous if their strides do not fit one."""
    layout = kernel_layout(tensors, ndim)
    if layout is None:
        tensors = [t.contiguous() for t in tensors]
        layout = kernel_layout(tensors, ndim)
    if layout is None:
        raise Unsupported(f"an image plane of shape {tuple(tensors[0].shape)} is beyond int32 offsets")
    return tensors, layout


def _interleaved(plan: KernelPlan, layout: Layout) -> tuple[KernelPlan, Layout]:
    """``plan`` and ``layout``, or, for a 3-D plan whose x axis is the identity on tensors whose rows are
    contiguous runs of x samples (OpenCV's ``(H, W, C)``: channels interleaved), the plan and layout over y
    and x merged into one stepped axis (:meth:`~torchgrad._triton.plan.KernelPlan.interleaved`), whose
    tiles read contiguous memory."""
    b1, b0, d, h, w = layout.sizes
    merged = plan.interleaved(w)
    if merged is None or any(s[3] != w * s[4] for s in layout.strides):
        return plan, layout
    if any((d - 1) * s[2] + (h * w - 1) * s[4] > INT32_MAX for s in layout.strides):
        return plan, layout  # the merged plane's offsets are int32 in the kernels
    return merged, Layout((b1, b0, 1, d, h * w), tuple((s[0], s[1], 0, s[2], s[4]) for s in layout.strides))


def _accumulator(dtype: torch.dtype) -> Any:
    return tl.float64 if dtype == torch.float64 else tl.float32


def next_power_of_2(n: int) -> int:
    """The least power of 2 at least ``n`` (1 for ``n <= 1``); plain Python, as the host code's other
    arithmetic (Triton's own helper costs microseconds per call outside a kernel)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _elements(job: str, ndim: int) -> int:
    """A full tile's elements for ``job`` in a kernel of ``ndim`` axes (:data:`TILE`)."""
    return TILE[job][3 if ndim == 3 else 2]


def _block(layout: Layout, ndim: int, block: Block, job: str, elements: int = 0) -> tuple[int, int, int]:
    """The tile ``(BLOCK_D, BLOCK_H, BLOCK_W)``: ``block`` when given, else sized to the tensor, of at most
    ``TILE[job]`` elements (``elements`` where given)."""
    if block is not None:
        return block
    _, _, d, h, w = layout.sizes
    kind = 3 if ndim == 3 else 2
    elements = elements or _elements(job, ndim)
    bw = min(PLANE[kind][1], next_power_of_2(w))
    bh = min(PLANE[kind][0], next_power_of_2(h), max(1, elements // bw))
    return min(next_power_of_2(d), max(1, elements // (bh * bw))), bh, bw


def _programs(layout: Layout, block: tuple[int, int, int]) -> int:
    b1, b0, d, h, w = layout.sizes
    programs = b1 * b0 * cdiv(d, block[0]) * cdiv(h, block[1]) * cdiv(w, block[2])
    if programs > INT32_MAX:  # the kernels number their tiles in int32
        raise Unsupported(f"{programs} tiles of {block} over sizes {layout.sizes} are beyond int32")
    return programs


def _forward_layout(
    plan: KernelPlan, tensors: list[Tensor], block: Block
) -> tuple[list[Tensor], KernelPlan, Layout, tuple[int, int, int], Optional[Tuning]]:
    """The layout of ``tensors`` (the input first, then what the kernel writes and reads alongside it,
    copied contiguous where their strides fit none), the plan over it (:func:`_interleaved`), the tile and
    the configurations to tune over (none for a ``block`` given)."""
    tensors, layout = _layout(tensors, plan.ndim)
    plan, layout = _interleaved(plan, layout)
    tile = _block(layout, plan.ndim, block, "forward")
    tuned = None if block else tuning(layout, tile, _elements("forward", plan.ndim), tensors[0].device)
    return tensors, plan, layout, tile, tuned


def _launch_forward(
    kernel: Any, plan: KernelPlan, layout: Layout, tile: tuple[int, int, int], tuned: Optional[Tuning], *args: Any
) -> None:
    """``kernel`` (one of the forward kernels: their tensors and strides first, as ``args``) over ``layout``."""
    launch_kernel(
        kernel, _programs(layout, tile), *args, tuning=tuned, P=plan.constants, ACC=_accumulator(args[0].dtype),
        BLOCK_D=tile[0], BLOCK_H=tile[1], BLOCK_W=tile[2],
    )  # fmt: skip


def sizes_of(layout: Layout) -> tuple[int, int, int, int]:
    """What the kernels take as ``sizes``: ``(B0, D, H, W)`` (the outer batch size enters only the grid)."""
    _, b0, d, h, w = layout.sizes
    return (b0, d, h, w)


def apply_into(plan: KernelPlan, x: Tensor, outputs: list[Tensor], block: Block = None) -> None:
    """``A x`` into ``outputs`` (laid out like ``x``): one launch."""
    tensors, plan, layout, tile, tuned = _forward_layout(plan, [x] + outputs, block)
    if any(a is not b for a, b in zip(tensors[1:], outputs)):
        raise Unsupported("the outputs must share the input's layout")
    x = tensors[0]
    strides = layout.strides
    _launch_forward(kernels._apply_kernel, plan, layout, tile, tuned, x, tuple(outputs), sizes_of(layout),
                    strides[0], strides[1])  # fmt: skip


def triton_apply(op: Separable, x: Tensor, *, block: Block = None) -> tuple[Tensor, ...]:
    """``A x``, every component from one kernel launch; each output is shaped, typed and laid out like ``x``."""
    plan = _served_plan(op, x)
    outputs = [torch.empty_like(x) for _ in range(plan.n_outputs)]
    if x.numel() == 0:
        return tuple(outputs)
    if kernel_layout([x] + outputs, plan.ndim) is None:
        x = x.contiguous()
        outputs = [torch.empty_like(x) for _ in outputs]
    apply_into(plan, x, outputs, block)
    return tuple(outputs)


def triton_adjoint(op: Separable, grads: Sequence[Optional[Tensor]], *, block: Block = None) -> Tensor:
    """``A^T g`` from one kernel launch; ``None`` stands for a zero cotangent. Shaped, typed and laid
    out like the first cotangent given."""
    given = [c for c, g in enumerate(grads) if g is not None]
    if not given:
        raise ValueError("the adjoint needs a cotangent for at least one output")
    present = [g for g in grads if g is not None]
    first = present[0]
    if any(g.shape != first.shape or g.dtype != first.dtype or g.device != first.device for g in present):
        raise ValueError(
            "the cotangents must share one shape, dtype and device, got "
            + ", ".join(f"{tuple(g.shape)} {g.dtype} on {g.device}" for g in present)
        )
    plan = _served_plan(op, first).for_outputs(given)
    out = torch.empty_like(first)
    if out.numel() == 0:
        return out
    tensors, layout = _layout(present + [out], plan.ndim)
    out = tensors[-1]
    launch_adjoint(plan, layout, tensors[:-1], out, block)
    return out


def launch_adjoint(
    plan: KernelPlan,
    layout: Layout,
    grads: Sequence[Tensor],
    out: Tensor,
    block: Block,
    negated: Optional[Tensor] = None,
    factors: Optional[tuple[Tensor, Tensor]] = None,
) -> None:
    """One adjoint launch: ``out = A^T g`` (and ``negated = -A^T g``), ``grads`` one cotangent per output of
    ``plan``, then ``out`` (then ``negated``) laid out as ``layout`` says; with ``factors`` ``(scales, grad)``,
    output ``o``'s cotangent is ``grad * scales[o] * grads[o]``."""
    plan, layout = _interleaved(plan, layout)
    # Chain c reads the cotangent of its output.
    pointers = tuple(grads[o] for o in plan.outputs)
    strides = tuple(layout.strides[o] for o in plan.outputs)
    wide = plan.ndim == 2 and sorted(plan.radii)[1] >= 3
    elements = WIDE_ADJOINT_TILE if wide else _elements("adjoint", plan.ndim)
    tile = _block(layout, plan.ndim, block, "adjoint", elements)
    tuned = None if block else tuning(layout, tile, elements, out.device)
    launch_kernel(
        kernels._adjoint_kernel,
        _programs(layout, tile),
        pointers, out, out if negated is None else negated, *(factors or (out, out)), sizes_of(layout), strides,
        layout.strides[len(grads)], tuning=tuned, P=plan.constants, NEG=negated is not None,
        FACTORS=factors is not None, ACC=_accumulator(out.dtype), BLOCK_D=tile[0], BLOCK_H=tile[1],
        BLOCK_W=tile[2],
    )  # fmt: skip


def triton_magnitude(op: Separable, x: Tensor, eps: Tensor, *, block: Block = None) -> Tensor:
    """``sqrt(sum_c (A x)_c^2 + eps)`` from one launch, the components never written (``eps``: a float64
    scalar tensor on ``x``'s device, which the kernel reads at run time)."""
    plan = _served_plan(op, x)
    out = torch.empty_like(x)
    if x.numel() == 0:
        return out
    if kernel_layout([x, out], plan.ndim) is None:
        x = x.contiguous()
        out = torch.empty_like(x)
    (x, out), plan, layout, tile, tuned = _forward_layout(plan, [x, out], block)
    strides = layout.strides
    _launch_forward(kernels._magnitude_kernel, plan, layout, tile, tuned, x, out, eps, sizes_of(layout),
                    strides[0], strides[1])  # fmt: skip
    return out


def accumulator_dtype(x: Tensor) -> torch.dtype:
    """The dtype of intermediates (components, partial sums, scales): float32, float64 for float64."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def triton_magnitude_backward(op: Separable, x: Tensor, grad: Tensor, eps: Tensor, *, block: Block = None) -> Tensor:
    """The gradient of :func:`triton_magnitude` w.r.t. ``x``: ``A^T (grad * A x / |A x|)``, two launches.

    The first recomputes the components and scales them (float32 intermediates for half precision),
    the second is the adjoint."""
    plan = _served_plan(op, x)
    work = accumulator_dtype(x)
    if x.numel() == 0:
        return torch.empty_like(x)
    scaled = [torch.empty_like(x, dtype=work) for _ in range(plan.n_outputs)]
    if kernel_layout([x, scaled[0], grad], plan.ndim) is None:
        x, grad = x.contiguous(), grad.contiguous()
        scaled = [torch.empty_like(x, dtype=work) for _ in range(plan.n_outputs)]
    tensors, merged, layout, tile, tuned = _forward_layout(plan, [x, scaled[0], grad], block)
    if tensors[1] is not scaled[0]:
        raise Unsupported("the scaled components must share the input's layout")
    strides = layout.strides
    _launch_forward(kernels._magnitude_backward_kernel, merged, layout, tile, tuned, tensors[0], tensors[2], eps,
                    tuple(scaled), sizes_of(layout), strides[0], strides[2], strides[1])  # fmt: skip
    return triton_adjoint(op, scaled, block=block).to(x.dtype)
