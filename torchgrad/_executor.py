"""Which executor runs an operator: the one place that chooses.

- CUDA tensors whose operator the Triton kernels serve take the Triton ops (:mod:`torchgrad._triton.ops`);
  under ``torch.func`` transforms and forward-mode AD (:func:`ops_directly`) the same ops run inside the
  autograd Functions of :mod:`torchgrad._linear`.
- ``TORCHGRAD_FORCE_TRITON=1`` (read at each call) sends CPU tensors to the Triton ops too; the kernels
  must then have been defined under Triton's interpreter (``TRITON_INTERPRET=1``).
- ``torch.gradient``'s differences (the only stencils with explicit border rows) in half precision
  take the other executors: they round after every operation, as ``torch.gradient`` does, where the
  kernels accumulate in float32 and round once (up to an ulp apart, in the interior as at the ends).
- Everything else, and every operator the kernels do not serve (:func:`torchgrad._triton.unsupported_reason`
  says why), takes the :class:`~torchgrad._separable.Separable` executors: the CPU eager executor (slab by
  slab) for CPU tensors, plain tensor code for other devices, under ``torch.compile`` and ``torch.func``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, Optional

import torch
from torch import Tensor

from . import _triton
from ._separable import Separable

FORCE_TRITON = "TORCHGRAD_FORCE_TRITON"
HALF = (torch.float16, torch.bfloat16)


def triton_description(op: object, x: Tensor) -> Optional[str]:
    """The description of ``op`` for the Triton ops when they compute it on ``x``, else ``None``.

    Raises ``RuntimeError`` when ``TORCHGRAD_FORCE_TRITON=1`` asks for the Triton executor on a CPU
    tensor and Triton is missing or the kernels were compiled for a GPU instead of its interpreter.
    """
    device = x.device.type
    forced = device == "cpu" and os.environ.get(FORCE_TRITON) == "1"
    if (device != "cuda" and not forced) or not isinstance(op, Separable):
        return None
    if torch.compiler.is_compiling():
        from ._triton.description import plain

        return _traced_description(plain(op), device, x.dtype, x.dim(), forced)
    return _decide(op, _stand_in(x), forced)


@torch.compiler.assume_constant_result
def _traced_description(op: object, device: str, dtype: torch.dtype, ndim: int, forced: bool) -> Optional[str]:
    """:func:`_decide` while Dynamo traces, run (not traced) on the operator written as plain tuples
    and a one-element stand-in for the input: its sizes are 8, since the descriptions hold no sizes.
    A size the kernels refuse (a plane beyond int32 offsets) is seen when the ops run, which then
    compute with the operator's own executors (:mod:`torchgrad._triton.ops`)."""
    from ._triton.description import from_plain
    from ._triton.plan import Unsupported

    try:
        separable = from_plain(op)
    except Unsupported:
        return None
    return _decide(separable, torch.empty_strided((8,) * ndim, (0,) * ndim, dtype=dtype, device=device), forced)


def _decide(op: Separable, x: Tensor, forced: bool) -> Optional[str]:
    if not _triton.available():
        if forced:
            raise RuntimeError(f"{FORCE_TRITON}=1 needs Triton, which is not installed (pip install triton)")
        return None
    from ._triton import launch

    if forced and not launch.interpreting():
        raise RuntimeError(
            f"{FORCE_TRITON}=1 runs the Triton kernels on CPU tensors only under Triton's interpreter: set "
            "TRITON_INTERPRET=1 in the environment before torchgrad's Triton kernels are first imported"
        )
    if x.dtype in HALF and any(stencil.padding is None for chain in op.chains for stencil in chain):
        return None
    if launch.unsupported_reason(op, x) is not None:
        return None
    return _description(op)


@lru_cache(maxsize=256)
def _description(op: Separable) -> Optional[str]:
    from ._triton import ops  # noqa: F401  (registers torch.ops.torchgrad)
    from ._triton.description import describe
    from ._triton.plan import Unsupported

    try:
        return describe(op)
    except Unsupported:
        return None


def _stand_in(x: Tensor) -> Tensor:
    """``x``, or for a tensor wrapped by ``torch.func`` a one-element tensor of its logical shape, dtype
    and device: the ops' own rules (Functions, ``vmap``) see that shape, so it decides what they serve."""
    if not torch._C._functorch.is_functorch_wrapped_tensor(x):
        return x
    with torch._C._DisableFuncTorch():  # a plain tensor, not one wrapped by the active transforms
        return torch.empty_strided(x.shape, (0,) * x.dim(), dtype=x.dtype, device=x.device)


def fused_loss_description(op: object, x: Tensor, penalty: Optional[int], target: Optional[Tensor]) -> Optional[str]:
    """The description of ``op`` for the fused-loss ops (``torch.ops.torchgrad.fused_loss``) on ``x``, else ``None``.

    They serve what the Triton ops serve (:func:`triton_description`), called directly (not under
    ``torch.func`` transforms or forward-mode AD) and the loss kernels take
    (:func:`~torchgrad._triton.loss_launch.loss_refusal`, which also reads the ``target``), for a penalty
    with a kernel code (``penalty``) and a non-empty input; a target that needs a gradient only with a
    penalty that is linear in ``input - target``.
    """
    from ._triton import penalty_codes

    if penalty is None or not ops_directly() or x.numel() == 0:
        return None
    if target is not None and target.requires_grad and penalty not in penalty_codes.LINEAR:
        return None
    description = triton_description(op, x)
    if description is None:
        return None
    from ._triton import loss_ops  # noqa: F401  (registers torch.ops.torchgrad.fused_loss)
    from ._triton.loss_launch import loss_refusal

    return None if loss_refusal(penalty, x, target) is not None else description


def triton_operator(description: str) -> Any:
    """The Triton ops as a :class:`~torchgrad._linear.LinearOperator`, for the autograd Functions."""
    from ._triton.ops import TritonOperator

    return TritonOperator(description)


def ops_directly() -> bool:
    """Whether the public operators call the Triton ops themselves (eager autograd, ``torch.compile``)
    rather than inside the autograd Functions of :mod:`torchgrad._linear`.

    The Functions serve ``torch.func`` transforms and forward-mode AD: ``custom_op`` provides no
    forward mode, and ops with tensor-list arguments or results do not support ``torch.func.grad``.
    """
    if torch.compiler.is_compiling():
        return True
    return torch.autograd.forward_ad._current_level < 0 and torch._C._functorch.peek_interpreter_stack() is None
