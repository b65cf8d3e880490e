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

The switch (:func:`kernels_enabled`): ``TORCHGRAD_EXECUTOR=eager`` (read at each call) or
:class:`use_kernels` ``(False)`` keeps every tensor off the kernels, CUDA ones and those that
``TORCHGRAD_FORCE_TRITON=1`` sends there alike (that variable says which tensors the kernels take; the
switch, whether they run at all). A kernel that cannot be compiled or loaded on this device
(:func:`compile_failure`) switches them off for the rest of the process with one
:class:`KernelFallbackWarning` (:func:`kernels_failed`); the op that met it computes with the operator's
own executors. The switch is process-wide, not thread-local: autograd runs the backward of CUDA tensors
in threads of its own, which must see the setting that the forward saw.
"""

from __future__ import annotations

import os
import subprocess
import threading
import warnings
from dataclasses import dataclass
from functools import lru_cache
from types import TracebackType
from typing import Any, Callable, Optional, TypeVar

import torch
from torch import Tensor

from . import _triton
from ._separable import HALF, Separable
from ._torch_private import is_func_wrapped, plain_tensor_like, transforms_active
from ._validation import check_bool, check_environment_choice

FORCE_TRITON = "TORCHGRAD_FORCE_TRITON"
EXECUTOR = "TORCHGRAD_EXECUTOR"
EXECUTORS = ("auto", "eager")
"""The values of ``TORCHGRAD_EXECUTOR``: ``"auto"`` (also set to nothing, or unset) lets the device choose the
executor, ``"eager"`` keeps every tensor off the Triton kernels."""


class KernelFallbackWarning(RuntimeWarning):
    """torchgrad's Triton kernels could not be compiled or loaded on this device: the call that found it, and
    every later one in the process, computes with the plain-tensor executor (the same numbers, up to
    rounding). Issued once per process; ``TORCHGRAD_EXECUTOR=eager`` or :class:`use_kernels` ``(False)``
    choose that executor from the start."""

    __module__ = "torchgrad"


class KernelsUnavailable(RuntimeError):
    """A kernel launch that failed because the kernels cannot be compiled or loaded on this device
    (``launch_kernel`` raises it from Triton's error, :func:`compile_failure` says which errors those are),
    or a fused-loss op called while the kernels are switched off: the caller computes with the operator's
    own executors instead."""


class _Switch:
    """The process-wide state of the kernels: ``enabled`` is the innermost active :class:`use_kernels`'
    setting (``None`` outside any: ``TORCHGRAD_EXECUTOR`` decides), ``failure`` why they cannot run in this
    process (``None`` until a launch fails to compile). Dynamo guards on both when it traces
    :func:`kernels_enabled`, so a change recompiles a function compiled before it (and setting one back
    serves the graph traced with it again: both are always the object's own attributes)."""

    def __init__(self) -> None:
        self.enabled: Optional[bool] = None
        self.failure: Optional[str] = None


_SWITCH = _Switch()
_FAILURE_LOCK = threading.Lock()


def kernels_enabled() -> bool:
    """Whether the Triton kernels may run: not after one failed to compile in this process; else as the
    innermost active :class:`use_kernels` says; else unless ``TORCHGRAD_EXECUTOR=eager`` (read at each call;
    another value than ``"auto"``, ``"eager"`` or nothing raises ``ValueError``)."""
    if _SWITCH.failure is not None:
        return False
    if _SWITCH.enabled is not None:
        return _SWITCH.enabled
    return check_environment_choice("torchgrad", EXECUTOR, os.environ.get(EXECUTOR, ""), EXECUTORS) == "auto"


class use_kernels:
    """Switch torchgrad's Triton kernels off (or back on) inside a ``with`` block.

    ``use_kernels(False)`` keeps CUDA tensors on the plain-tensor executor, as ``TORCHGRAD_EXECUTOR=eager``
    does for the whole process; ``use_kernels(True)`` restores the kernels where they serve the call, whatever
    ``TORCHGRAD_EXECUTOR`` says, unless they failed to compile in this process. The block's setting holds
    for the backward passes run inside it too; blocks nest, the innermost one deciding.

    The setting is process-wide, like ``torch.backends.cudnn.flags``, not thread-local like
    ``torch.no_grad``: autograd runs the backward of CUDA tensors in threads of its own, which must see it.
    Enter the block from one thread at a time. A function compiled with ``torch.compile`` is traced again
    when the setting differs from the one it was traced with (Dynamo guards on it), and the graph traced
    before serves again once the setting is back.

    Args:
        enabled: ``False`` for the plain-tensor executor, ``True`` for the kernels where they serve.

    Example:
        >>> image = torch.rand(2, 1, 16, 16)
        >>> with use_kernels(False):  # CUDA tensors too would take the plain-tensor executor here
        ...     edges = gradient_magnitude(image)
        >>> torch.allclose(edges, gradient_magnitude(image))
        True
    """

    __module__ = "torchgrad"

    def __init__(self, enabled: bool) -> None:
        self.enabled = check_bool("use_kernels", "enabled", enabled)
        self._outer: list[Optional[bool]] = []

    def __enter__(self) -> None:
        self._outer.append(_SWITCH.enabled)
        _SWITCH.enabled = self.enabled

    def __exit__(
        self, kind: Optional[type[BaseException]], error: Optional[BaseException], trace: Optional[TracebackType]
    ) -> None:
        _SWITCH.enabled = self._outer.pop()


def compile_failure(error: Exception) -> bool:
    """Whether ``error``, raised by Triton while it compiled, loaded or launched a kernel on a GPU (not under
    its interpreter), says that the kernels cannot run on this device.

    Those are Triton's compilation errors (``CompilationError``, ``OutOfResources``, ``PTXASError``: an
    architecture it does not support, more registers or shared memory than the device has, ``ptxas``
    refusing the code); ``RuntimeError``, which its compiler passes, older ``ptxas`` failures and the CUDA
    driver raise (a driver too old for the generated code, no kernel image for this GPU, a missing C
    compiler for Triton's launcher); ``OSError`` and ``subprocess.SubprocessError`` (a tool missing or
    failing, an unwritable cache). Not ``torch.OutOfMemoryError``, nor the ``TypeError``, ``ValueError``
    and others raised while Triton binds the arguments: those are errors of the call, raised as they are.
    """
    from triton.compiler.errors import CompilationError
    from triton.runtime import errors

    if isinstance(error, torch.OutOfMemoryError):
        return False
    failures = (CompilationError, errors.OutOfResources, RuntimeError, OSError, subprocess.SubprocessError)
    ptxas = getattr(errors, "PTXASError", None)  # Triton 3.2 on; before, ptxas failures are RuntimeError
    return isinstance(error, failures) or (ptxas is not None and isinstance(error, ptxas))


def kernels_failed(error: KernelsUnavailable) -> None:
    """Switch the kernels off for the rest of the process, warning once (:class:`KernelFallbackWarning`)."""
    with _FAILURE_LOCK:
        if _SWITCH.failure is not None:
            return
        _SWITCH.failure = str(error)
    warnings.warn(
        "torchgrad's Triton kernels cannot be compiled or loaded on this device, so torchgrad computes with "
        "its plain-tensor executor for the rest of the process (the same numbers, up to rounding; slower). "
        f"To choose that executor from the start, set {EXECUTOR}=eager in the environment or run the calls "
        f"inside torchgrad.use_kernels(False). The error was {_SWITCH.failure}",
        KernelFallbackWarning,
        stacklevel=2,
    )


T = TypeVar("T")


def with_kernels(kernels: Callable[[], T], fallback: Optional[Callable[[], T]]) -> T:
    """``kernels()`` (a call that launches the kernels) while they may run; ``fallback()`` where they are
    switched off (:func:`kernels_enabled`) or cannot be compiled on this device (:class:`KernelsUnavailable`,
    raised before any kernel ran: they are then switched off for the rest of the process, with one
    warning). Without a ``fallback``, :class:`KernelsUnavailable` reaches the caller (the fused-loss ops,
    whose eager code lives in the losses)."""
    if not kernels_enabled():
        if fallback is None:
            raise KernelsUnavailable(
                "torchgrad's Triton kernels are switched off, but this fused-loss op was traced with them: "
                "compile the function again (torch._dynamo.reset()) after switching them off"
            )
        return fallback()
    try:
        return kernels()
    except KernelsUnavailable as error:
        kernels_failed(error)
        if fallback is None:
            raise
        return fallback()


def forget_kernel_failure() -> None:
    """Let the kernels run again after a failure (for tests: a process that met one keeps it)."""
    _SWITCH.failure = None


@dataclass(frozen=True)
class Route:
    """Where one call runs, decided once by :func:`route` and read by everything downstream."""

    description: Optional[str]
    """The operator as the Triton ops take it (a string: :mod:`torchgrad._triton.description`, cached both
    ways), or ``None``: the operator's own executors (:class:`~torchgrad._separable.Separable`)."""
    direct: bool
    """Whether the Triton ops are called directly (eager autograd, ``torch.compile``) rather than inside the
    autograd Functions of :mod:`torchgrad._linear` (``torch.func`` transforms, forward-mode AD:
    :func:`ops_directly`). A fused loss's route takes the kernels only when it is direct."""

    @property
    def kernels(self) -> bool:
        """Whether the call runs on the Triton kernels."""
        return self.description is not None


def route(op: object, x: Tensor, *, loss: Optional[tuple[Optional[int], Optional[Tensor]]] = None) -> Route:
    """The route of ``op`` on ``x``: the one place that decides between the Triton kernels and the operator's
    own executors (see the module's docstring), for an operator's call, its adjoint (``x`` a cotangent) and
    its magnitude, and with ``loss=(penalty code, target)`` for a fused loss, whose ops the kernels serve when
    they serve the operator, called directly, on a non-empty input, for a penalty with a kernel code (``None``:
    none), a target that needs a gradient only with a penalty linear in ``input - target``, and an input and
    target the loss kernels read (:func:`~torchgrad._triton.loss_launch.loss_refusal`).

    Raises ``RuntimeError`` when ``TORCHGRAD_FORCE_TRITON=1`` asks for the Triton executor on a CPU
    tensor and Triton is missing or the kernels were compiled for a GPU instead of its interpreter.
    """
    direct = ops_directly()
    if loss is not None and not _loss_served(x, direct, *loss):
        return Route(None, direct)
    description = _operator_description(op, x)
    if loss is not None and description is not None:
        from ._triton import loss_ops  # noqa: F401  (registers torch.ops.torchgrad.fused_loss)
        from ._triton.loss_launch import loss_refusal

        penalty, target = loss
        if loss_refusal(penalty, x, target) is not None:  # type: ignore[arg-type]  # a code, checked above
            description = None
    return Route(description, direct)


def _operator_description(op: object, x: Tensor) -> Optional[str]:
    """The description of ``op`` when the Triton ops compute it on ``x`` (and the kernels are switched on)."""
    device = x.device.type
    forced = device == "cpu" and os.environ.get(FORCE_TRITON) == "1"
    if (device != "cuda" and not forced) or not isinstance(op, Separable) or not kernels_enabled():
        return None
    if torch.compiler.is_compiling():
        from ._triton.description import plain

        return _traced_description(plain(op), device, x.dtype, x.dim(), forced)
    return _decide(op, _stand_in(x), forced)


def _loss_served(x: Tensor, direct: bool, penalty: Optional[int], target: Optional[Tensor]) -> bool:
    """What a fused loss needs before the operator is asked (see :func:`route`)."""
    from ._triton import penalty_codes

    if penalty is None or not direct or x.numel() == 0:
        return False
    return target is None or not target.requires_grad or penalty in penalty_codes.LINEAR


def _constant_result(function: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.compiler.assume_constant_result`` without importing ``torch._dynamo`` (and Triton with it)
    when torchgrad is imported: the decorator only marks the function, with the attribute that
    ``tests/test_packaging.py`` checks against torch's own decorator."""
    function._dynamo_marked_constant = True  # type: ignore[attr-defined]
    return function


@_constant_result
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
            raise RuntimeError(
                f"{FORCE_TRITON}=1 needs Triton {_triton.MINIMUM_TRITON_TEXT} or newer, which is not installed "
                "(pip install -U triton)"
            )
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
    return plain_tensor_like(x) if is_func_wrapped(x) else x


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
    return not transforms_active()
