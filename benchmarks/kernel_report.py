"""How fast the Triton kernels would run on an H100, estimated from their compiled machine code (no GPU needed).

    python benchmarks/kernel_report.py                  # every call at (16, 3, 512, 512), float32 and bfloat16
    python benchmarks/kernel_report.py --write          # and its section of benchmarks/RESULTS.md
    python benchmarks/kernel_report.py --only sobel     # the calls whose name contains "sobel"
    python benchmarks/kernel_report.py --kinds          # every kernel kind at a small shape; exits 1 on a spill

Three steps, each in the process it needs:

1. Capture. A child process with ``TRITON_INTERPRET=1 TORCHGRAD_FORCE_TRITON=1`` runs the public API on CPU
   tensors of the real shape with every kernel launch recorded and skipped (the interpreter would take hours to
   run them): the kernel, the grid, every argument (sizes and strides as the JIT would see them) and the
   compile-time constants. A dispatch mode records the torch operations between the launches (a subtraction, a
   cast, a reduction: each a kernel of its own on a GPU) with the bytes they read and write. Each call runs
   forward, then backward with random cotangents.
2. Compile. Each distinct launch goes through the JIT's own path, ``JITFunction.warmup`` (its binder,
   ``specialize_impl`` and ``_pack_args``, then ``triton.compile``), for ``sm_90a`` and ``sm_80``, with a stand-in
   driver that names the target: ints equal to 1 become constants, ints divisible by 16 and 16-byte aligned
   pointers get ``tt.divisibility=16``, ``None`` becomes a constant, ``num_warps`` is the launch's. Pointers carry
   their tensor's dtype and its address modulo 16 from the capture (a CUDA allocation is at least 256-byte
   aligned: the offset of a view decides).
3. Read. ``cuobjdump`` (bundled with Triton) gives each kernel's registers and SASS; the SASS gives the spills
   (the bytes of local-memory stores and loads, ``STL``/``LDL``: ptxas's "spill stores" and "spill loads"), the
   global loads and stores by width and the instructions an interior tile executes; the PTX gives 64-bit integer
   remainders and divisions; the Triton IR gives which pointer arguments are loaded and stored (hence the bytes a
   launch moves) and the trip counts of run-time loops.

The interior tile's path through the SASS: from the entry, at every conditional branch, the way that stores the
most global bytes per thread, then runs the most iterations of run-time loops, then executes the fewest
instructions (an interior tile writes its whole tile and skips the border logic; a predicated ``EXIT`` is not
taken, nor a ``BRA.DIV``). A subroutine call adds the callee's path; a loop adds its body ``trip - 1`` more times,
the trip count read from the Triton IR's ``scf.for`` bounds (constants or kernel arguments) when the SASS has as
many loops as the IR, else the body counts once and the row says so.

The model (every number it prints is an estimate from compiled code, not a measurement; constants in ``H100``):
a kernel launch takes the largest of its memory time (bytes moved at the copy's bandwidth: each tensor it loads
read once, its halo re-reads assumed to hit the caches, each tensor it stores written once), its issue time
(warp-instructions, every program on the interior path, over the schedulers in use) and its L1 time (the bytes
its loads and stores request, global and shared, all lanes active, over the SMs in use); a torch operation, its
bytes at the copy's bandwidth; a call, the sum of its launches. The fraction of copy is the call's minimum bytes
at the copy's bandwidth over that time: forward of an operator, read the input and write each output; its
backward, read each cotangent (and the input again where the operator is nonlinear) and write the gradient; a
loss forward+backward, read its inputs twice and write the gradient of each input that requires one
(``benchmarks/_harness.py``'s ``forward_bytes`` and ``step_bytes``). Left out: launch gaps and latency
(one-program kernels, dependent loads), tail effects of the last wave, bank conflicts, misaligned loads that
touch a second cache line, border tiles, DRAM traffic beyond the compulsory (L2 misses of halos).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import forward_bytes, markdown_table, step_bytes, verdict_rows, write_section  # noqa: E402

SHAPE = (16, 3, 512, 512)
VOLUME = (1, 3, 64, 256, 256)  # as many elements as SHAPE
KINDS_SHAPE = (16, 3, 32, 64)  # the tiles and divisibility of SHAPE, in far fewer elements
KINDS_VOLUME = (1, 3, 8, 32, 64)
ARCHS = (90, 80)  # sm_90a (the model's) and sm_80
DTYPES = ("float32", "bfloat16")
SECTION = "kernels-predicted"
Json = Any  # what json.loads returns


@dataclass(frozen=True)
class H100:
    """The machine the estimates are for: an H100 SXM (one launch's time is the largest of memory, issue, L1)."""

    hbm_bytes_per_s: float = 3.35e12  # peak HBM3, for reference: the model's memory time uses the copy's
    copy_bytes_per_s: float = 3.0e12  # a device-to-device copy moves about this (read + write)
    sms: int = 132
    schedulers_per_sm: int = 4  # each issues one warp-instruction per clock
    clock_hz: float = 1.755e9  # boost clock
    l1_bytes_per_clock: int = 128  # per SM

    def notes(self) -> str:
        return (
            f"H100 SXM model: HBM {self.hbm_bytes_per_s / 1e12:.2f} TB/s, device-to-device copy "
            f"{self.copy_bytes_per_s / 1e12:.1f} TB/s (the memory time and the reference), {self.sms} SMs x "
            f"{self.schedulers_per_sm} schedulers issuing 1 warp-instruction per clock at {self.clock_hz / 1e9:.3f} "
            f"GHz, L1 {self.l1_bytes_per_clock} B/clock/SM"
        )


MACHINE = H100()


# ---------------------------------------------------------------------------------------------------------------
# 1. Capture (in a child process under TRITON_INTERPRET=1 TORCHGRAD_FORCE_TRITON=1)


@dataclass(frozen=True)
class Case:
    """One public call: ``fn(*inputs)`` on inputs made by ``make(shape, volume, dtype)``; the first input is
    differentiated (and the second too with ``both``). Operators report forward and backward, losses
    forward+backward."""

    name: str
    make: Callable[[tuple[int, ...], tuple[int, ...], torch.dtype], tuple[torch.Tensor, ...]]
    fn: Callable[..., Any]
    loss: bool = False
    nonlinear: bool = False
    both: bool = False


def _image(shape: tuple[int, ...], volume: tuple[int, ...], dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    return (torch.rand(shape, dtype=dtype),)


def _volume(shape: tuple[int, ...], volume: tuple[int, ...], dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    return (torch.rand(volume, dtype=dtype),)


def _opencv(shape: tuple[int, ...], volume: tuple[int, ...], dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """One ``(N H, W, C)`` image in OpenCV's layout, as many elements as ``shape``."""
    n, c, h, w = shape
    return (torch.rand(n * h, w, c, dtype=dtype),)


def _pair(shape: tuple[int, ...], volume: tuple[int, ...], dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    return torch.rand(shape, dtype=dtype), torch.rand(shape, dtype=dtype)


def _masked_pair(shape: tuple[int, ...], volume: tuple[int, ...], dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    return torch.rand(shape, dtype=dtype), torch.rand(shape, dtype=dtype), torch.rand(shape) < 0.9


def _disparity(shape: tuple[int, ...], volume: tuple[int, ...], dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """A one-channel disparity and the image that weighs it."""
    n, c, h, w = shape
    return torch.rand(n, 1, h, w, dtype=dtype), torch.rand(shape, dtype=dtype)


def cases() -> list[Case]:
    """Every call the report predicts: each operator in 2-D and 3-D and every padding, the OpenCV forms that
    run on the kernels, every fused loss."""
    import torchgrad
    from torchgrad import cv2_compat
    from torchgrad._stencil import PADDING_MODES
    from torchgrad.losses import EdgeAwareSmoothnessLoss, GradientDifferenceLoss, GradientLoss, TotalVariationLoss

    out = [
        Case("image_gradients", _image, torchgrad.image_gradients),
        Case("image_gradients 3-D", _volume, lambda v: torchgrad.image_gradients(v, spatial_dims=3)),
        Case("gradient", _image, lambda x: torchgrad.gradient(x, dim=(-2, -1))),
        Case("gradient, edge_order=2", _image, lambda x: torchgrad.gradient(x, dim=(-2, -1), edge_order=2)),
        Case("gradient 3-D", _volume, lambda v: torchgrad.gradient(v, dim=(-3, -2, -1))),
    ]
    for padding in PADDING_MODES:
        suffix = "" if padding == "reflect" else f", {padding}"
        out += [
            Case(f"sobel{suffix}", _image, lambda x, p=padding: torchgrad.sobel(x, padding=p)),
            Case(
                f"sobel 3-D{suffix}",
                _volume,
                lambda v, p=padding: torchgrad.sobel(v, padding=p, spatial_dims=3),
            ),
            Case(f"scharr{suffix}", _image, lambda x, p=padding: torchgrad.scharr(x, padding=p)),
            Case(f"prewitt{suffix}", _image, lambda x, p=padding: torchgrad.prewitt(x, padding=p)),
            Case(f"prewitt 3-D{suffix}", _volume, lambda v, p=padding: torchgrad.prewitt(v, padding=p, spatial_dims=3)),
            Case(f"laplacian{suffix}", _image, lambda x, p=padding: (torchgrad.laplacian(x, padding=p),)),
            Case(
                f"laplacian 3-D{suffix}",
                _volume,
                lambda v, p=padding: (torchgrad.laplacian(v, padding=p, spatial_dims=3),),
            ),
            Case(f"hessian{suffix}", _image, lambda x, p=padding: torchgrad.hessian(x, padding=p)),
            Case(
                f"gradient_magnitude{suffix}",
                _image,
                lambda x, p=padding: (torchgrad.gradient_magnitude(x, padding=p),),
                nonlinear=True,
            ),
            Case(
                f"gradient_magnitude 3-D{suffix}",
                _volume,
                lambda v, p=padding: (torchgrad.gradient_magnitude(v, padding=p, spatial_dims=3),),
                nonlinear=True,
            ),
        ]
    out += [
        Case("cv2_compat.Sobel(dx=1, ksize=5)", _opencv, lambda s: (cv2_compat.Sobel(s, -1, 1, 0, ksize=5),)),
        Case("cv2_compat.Sobel(dx=1, ksize=7)", _opencv, lambda s: (cv2_compat.Sobel(s, -1, 1, 0, ksize=7),)),
        Case("cv2_compat.Laplacian(ksize=3)", _opencv, lambda s: (cv2_compat.Laplacian(s, -1, ksize=3),)),
        Case('GradientLoss("sobel")', _pair, GradientLoss("sobel"), loss=True),
        Case('GradientLoss("sobel"), both gradients', _pair, GradientLoss("sobel"), loss=True, both=True),
        Case('GradientLoss("sobel", p=2)', _pair, GradientLoss("sobel", p=2), loss=True),
        Case('GradientLoss(penalty="charbonnier")', _pair, GradientLoss(penalty="charbonnier"), loss=True),
        Case('GradientLoss("diff", p=2)', _pair, GradientLoss("diff", p=2), loss=True),
        Case('GradientLoss("diff", p=2), mask', _masked_pair, GradientLoss("diff", p=2), loss=True),
        Case("GradientDifferenceLoss()", _pair, GradientDifferenceLoss(), loss=True),
        Case("TotalVariationLoss()", _image, TotalVariationLoss(), loss=True),
        Case("TotalVariationLoss(p=2)", _image, TotalVariationLoss(p=2), loss=True),
        Case("TotalVariationLoss(isotropic=True)", _image, TotalVariationLoss(isotropic=True), loss=True),
        Case("EdgeAwareSmoothnessLoss()", _disparity, EdgeAwareSmoothnessLoss(), loss=True),
    ]
    return out


KIND_CALLS = {
    # Together they launch every kernel kind: A x, the magnitude and its backward, the loss's sums and slopes, the
    # edge-aware weights, the adjoint with and without its negated output, each
    # penalty (L1, squared L2 with a mask, Charbonnier, gradient difference, edge-aware), the final reduction, a
    # volume's tiles; in float32, and the paths that differ in bfloat16 (reads and writes in half precision, A
    # target in float32) and float64 (float64 arithmetic, its square root). The full report compiles every call.
    "float32": (
        "sobel",
        "sobel 3-D, zeros",
        "gradient_magnitude",
        'GradientLoss("sobel"), both gradients',
        'GradientLoss("diff", p=2), mask',
        'GradientLoss(penalty="charbonnier")',
        "GradientDifferenceLoss()",
        "EdgeAwareSmoothnessLoss()",
    ),
    "bfloat16": ('GradientLoss("sobel")',),
    "float64": ("gradient_magnitude",),
}


def _span_bytes(t: torch.Tensor) -> int:
    """Bytes of memory a tensor's elements span (an expanded dimension spans one element)."""
    if t.numel() == 0:
        return 0
    return (1 + sum((s - 1) * abs(st) for s, st in zip(t.shape, t.stride()))) * t.element_size()


class _Recorder:
    """Records each launch of a kernel instead of running it (the interpreter's ``run``, patched), and the
    torch operations between the launches (:class:`_TorchOps`)."""

    def __init__(self) -> None:
        self.launches: list[Json] = []

    def torch_op(self, name: str, reads: Sequence[torch.Tensor], writes: Sequence[torch.Tensor]) -> None:
        """A torch operation that reads ``reads`` and writes ``writes``: a kernel of its own on a GPU."""
        moved = {(t.data_ptr(), _span_bytes(t), "r") for t in reads} | {
            (t.data_ptr(), _span_bytes(t), "w") for t in writes
        }
        self.launches.append({"torch": name, "bytes": sum(b for _, b, _ in moved)})

    def __call__(self, kernel: Any, *args: Any, grid: Any, warmup: bool, **kwargs: Any) -> None:
        if warmup:
            return
        tensors: dict[tuple[int, int], int] = {}
        table: list[Json] = []

        def encode(value: Any) -> Json:
            if isinstance(value, torch.Tensor):
                key = (value.data_ptr(), _span_bytes(value))
                if key not in tensors:
                    tensors[key] = len(table)
                    table.append(
                        {"dtype": str(value.dtype).removeprefix("torch."), "offset16": key[0] % 16, "bytes": key[1]}
                    )
                return {"tensor": tensors[key]}
            if type(value) is tuple:  # a tuple argument (of tensors, of strides)
                return {"tuple": [encode(v) for v in value]}
            return _encode_constant(value)

        grid = grid({**dict(zip(kernel.arg_names, args)), **kwargs}) if callable(grid) else grid
        self.launches.append(
            {
                "kernel": f"{kernel.fn.__module__}:{kernel.fn.__qualname__}",
                "grid": list(grid),
                "args": [encode(a) for a in args],
                "kwargs": {k: encode(v) for k, v in kwargs.items()},
                "tensors": table,
            }
        )


def _encode_constant(value: Any) -> Json:
    """A launch argument that is not a tensor, in JSON that keeps its type (ints, floats, bools, None, tuples,
    ``tl.constexpr`` and ``tl.dtype`` values)."""
    import triton.language as tl

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple: the plan, the penalty
        kind = type(value)
        return {"named": f"{kind.__module__}:{kind.__qualname__}", "fields": [_encode_constant(v) for v in value]}
    if isinstance(value, tuple):
        return {"tuple": [_encode_constant(v) for v in value]}
    if isinstance(value, tl.constexpr):
        return {"constexpr": _encode_constant(value.value)}
    if isinstance(value, tl.dtype):
        return {"dtype": str(value)}
    raise TypeError(f"a launch argument of type {type(value).__name__} cannot be carried to the compiler: {value!r}")


# Operations that allocate without writing, and in-place ones that write their first argument without reading it.
ALLOCATIONS = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"}
OVERWRITES = {"copy_", "fill_", "zero_"}


def _torch_ops(recorder: _Recorder) -> Any:
    """A dispatch mode that records every torch operation that writes memory (not views, not allocations) with
    the bytes it reads and writes; an operator's own implementation (a ``torch.library`` op) runs under it, so
    the operations inside it are recorded too."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    cpu_kernels = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU)

    class TorchOps(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Optional[dict] = None) -> Any:
            kwargs = kwargs or {}
            if func.namespace != "aten":
                with self:
                    return func.redispatch(cpu_kernels, *args, **kwargs)
            out = func(*args, **kwargs)
            name = func.overloadpacket.__name__
            if name in ALLOCATIONS:
                return out
            inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
            written = [
                value
                for argument, value in zip(
                    func._schema.arguments, [*args, *(kwargs.get(a.name) for a in func._schema.arguments[len(args) :])]
                )
                if isinstance(value, torch.Tensor) and argument.alias_info is not None and argument.alias_info.is_write
            ]
            held = {t.untyped_storage().data_ptr() for t in inputs}
            new = [
                t
                for t in tree_leaves(out)
                if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in held
            ]
            if written or new:
                unread = {id(t) for t in written} if name in OVERWRITES or "out" in kwargs else set()
                recorder.torch_op(str(func), [t for t in inputs if id(t) not in unread], written + new)
            return out

    return TorchOps()


def capture(
    names: Optional[Sequence[str]], dtypes: Sequence[str], shape: tuple[int, ...], volume: tuple[int, ...], kinds: bool
) -> Json:
    """Runs the calls (those named, or every kind with ``kinds``) forward and backward, recording the launches
    (with ``kinds``, every configuration a GPU may tune an operator kernel's launch to)."""
    if os.environ.get("TRITON_INTERPRET") != "1" or os.environ.get("TORCHGRAD_FORCE_TRITON") != "1":
        raise RuntimeError("the capture runs under TRITON_INTERPRET=1 TORCHGRAD_FORCE_TRITON=1")
    from triton.runtime.interpreter import InterpretedFunction

    from torchgrad._triton import launch

    launch.TRY_EVERY_CONFIG = kinds

    recorder = _Recorder()
    InterpretedFunction.run = lambda self, *a, **k: recorder(self, *a, **k)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    records = []
    for dtype_name in dtypes:
        for case in cases():
            if kinds and case.name not in KIND_CALLS[dtype_name]:
                continue
            if not kinds and names is not None and case.name not in names:
                continue
            records.append(_capture_case(case, dtype_name, shape, volume, recorder))
    return {"shape": list(shape), "volume": list(volume), "calls": records, "launches": recorder.launches}


def _capture_case(
    case: Case, dtype_name: str, shape: tuple[int, ...], volume: tuple[int, ...], recorder: _Recorder
) -> Json:
    """One call, forward then backward: its launches (by index) and the minimum bytes of each phase."""
    inputs = case.make(shape, volume, getattr(torch, dtype_name))
    grads = [inputs[0]] + ([inputs[1]] if case.both else [])
    for t in grads:
        t.requires_grad_()
    start = len(recorder.launches)
    with _torch_ops(recorder):
        outputs = case.fn(*inputs)
    middle = len(recorder.launches)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    cotangents = [torch.rand_like(o) for o in outputs]
    with _torch_ops(recorder):
        torch.autograd.backward(outputs, cotangents)
    end = len(recorder.launches)
    if middle == start or (end == middle and not case.loss):
        raise RuntimeError(f"{case.name} recorded no launch in a phase: the report's cases no longer match the API")
    inputs = tuple(t.detach() for t in inputs)
    outputs = tuple(o.detach() for o in outputs)
    forward = forward_bytes(inputs, outputs)
    step = step_bytes(inputs, outputs, inputs[: len(grads)], rereads=inputs if case.loss or case.nonlinear else ())
    return {
        "name": case.name,
        "dtype": dtype_name,
        "loss": case.loss,
        "elements": inputs[0].numel(),
        "phases": {"forward": [start, middle, forward], "backward": [middle, end, step - forward]},
    }


# ---------------------------------------------------------------------------------------------------------------
# 2. Compile (in processes without TRITON_INTERPRET), as the JIT does at a launch


class _StandInDriver:
    """What ``JITFunction.run`` asks of the active driver on its way to ``triton.compile`` (warmup launches
    nothing): the device (here the compute capability, so each target keeps its own binder cache), a stream
    and the target."""

    def __init__(self, capability: int) -> None:
        self.capability = capability

    def get_current_device(self) -> int:
        return self.capability

    def get_current_stream(self, device: int) -> int:
        return 0

    def get_current_target(self) -> Any:
        """Triton's ``GPUTarget`` for the capability (32 threads a warp)."""
        from triton.backends.compiler import GPUTarget

        return GPUTarget("cuda", self.capability, 32)


class _Pointer:
    """A tensor as the JIT's specialisation sees it: a dtype and an address (its offset modulo 16 kept)."""

    def __init__(self, dtype: torch.dtype, address: int) -> None:
        self.dtype = dtype
        self.address = address

    def data_ptr(self) -> int:
        return self.address


def _decode(value: Json, pointer: Callable[[int], _Pointer]) -> Any:
    """A launch argument as :func:`_encode_constant` wrote it, tensors made by ``pointer`` from their index."""
    import triton.language as tl

    if isinstance(value, dict) and "named" in value:
        module, qualname = value["named"].split(":")
        return getattr(importlib.import_module(module), qualname)(*(_decode(v, pointer) for v in value["fields"]))
    if isinstance(value, dict):
        ((tag, inner),) = value.items()
        if tag == "tensor":
            return pointer(inner)
        if tag == "tuple":
            return tuple(_decode(v, pointer) for v in inner)
        if tag == "constexpr":
            return tl.constexpr(_decode(inner, pointer))
        if tag == "dtype":
            return tl.dtype(inner)
        raise ValueError(f"unknown encoded value {value!r}")
    return value


def _kernel(name: str) -> Any:
    """The ``JITFunction`` named ``module:qualname``."""
    import triton

    module, qualname = name.split(":")
    kernel = getattr(importlib.import_module(module), qualname)
    if not isinstance(kernel, triton.runtime.JITFunction):
        raise RuntimeError(f"{name} is a {type(kernel).__name__}, not a JITFunction (is TRITON_INTERPRET set?)")
    return kernel


def arch_name(capability: int) -> str:
    """The target's name as ptxas takes it (Triton compiles capability 90 for ``sm_90a``)."""
    from triton.backends.nvidia.compiler import sm_arch_from_capability

    return sm_arch_from_capability(capability)


def compile_launch(launch: Json, capability: int) -> Any:
    """The launch compiled for ``sm_<capability>`` through the JIT's own path, ``JITFunction.warmup``."""
    import triton
    from triton.runtime.driver import driver

    if not hasattr(driver, "set_active") or not hasattr(triton.runtime.JITFunction, "warmup"):
        raise RuntimeError(
            f"Triton {triton.__version__} has no driver.set_active or JITFunction.warmup: the report compiles "
            "through them to reproduce the JIT's run-time specialisation; adapt compile_launch to this release"
        )
    kernel = _kernel(launch["kernel"])

    def pointer(index: int) -> _Pointer:
        tensor = launch["tensors"][index]
        return _Pointer(getattr(torch, tensor["dtype"]), (index + 1) * 4096 + tensor["offset16"])

    args = [_decode(a, pointer) for a in launch["args"]]
    kwargs = {k: _decode(v, pointer) for k, v in launch["kwargs"].items()}
    driver.set_active(_StandInDriver(capability))  # this process only compiles: the stand-in stays
    try:
        compiled = kernel.warmup(*args, grid=tuple(launch["grid"]), **kwargs)
    except AttributeError as error:
        if "_StandInDriver" in str(error):
            raise RuntimeError(
                f"Triton {triton.__version__}'s JIT asks its driver for more than _StandInDriver provides ({error}): "
                "adapt the stand-in to this release"
            ) from error
        raise
    missing = {"ttir", "ptx", "cubin"} - set(compiled.asm)
    if missing:
        raise RuntimeError(f"Triton {triton.__version__}'s compiled kernel has no {sorted(missing)} in its asm")
    return compiled


# ---------------------------------------------------------------------------------------------------------------
# 3. Read the machine code


@dataclass(frozen=True)
class Instruction:
    """One SASS instruction as cuobjdump prints it: ``/*0790*/ @P0 BRA 0x16b0 ;``."""

    address: int
    predicate: Optional[str]
    opcode: str
    operands: str

    @property
    def base(self) -> str:
        return self.opcode.split(".")[0]

    @property
    def modifiers(self) -> set[str]:
        return set(self.opcode.split(".")[1:])

    def target(self) -> int:
        """The address a branch, call or ``BSSY`` names (cuobjdump prints it as ``0x...``)."""
        found = re.findall(r"0x([0-9a-f]+)", self.operands)
        if not found:
            raise ValueError(f"no target in {self}")
        return int(found[-1], 16)

    def width(self) -> int:
        """Bytes per thread of a load or store."""
        sizes = {"U8": 1, "S8": 1, "U16": 2, "S16": 2, "64": 8, "128": 16}
        return next((sizes[m] for m in self.opcode.split(".")[1:] if m in sizes), 4)


_SASS = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")
GLOBAL_LOADS = {"LDG", "LD", "LDGSTS"}
GLOBAL_STORES = {"STG", "ST", "RED", "REDG", "ATOM", "ATOMG"}
SHARED = {"LDS", "STS", "LDSM", "ATOMS"}


def sass(cubin: bytes) -> list[Instruction]:
    """The SASS of the one function in ``cubin``."""
    text = _nvidia_tool("cuobjdump", "-sass", cubin)
    found = [
        Instruction(int(m[1], 16), m[2].strip() if m[2] else None, m[3], m[4].strip()) for m in _SASS.finditer(text)
    ]
    if not found:
        raise RuntimeError(f"cuobjdump printed no SASS:\n{text[:2000]}")
    return found


def resource_usage(cubin: bytes) -> dict[str, int]:
    """``cuobjdump -res-usage``'s numbers (``REG``, ``STACK``, ``SHARED``, ``LOCAL``, ...) for the function."""
    text = _nvidia_tool("cuobjdump", "-res-usage", cubin)
    line = next((ln for ln in text.splitlines() if "REG:" in ln), None)
    if line is None:
        raise RuntimeError(f"cuobjdump -res-usage printed no REG:\n{text}")
    return {k: int(v) for k, v in re.findall(r"(\w+(?:\[\d+\])?):(\d+)", line)}


def _nvidia_tool(tool: str, flag: str, cubin: bytes) -> str:
    """What Triton's bundled ``tool`` (``cuobjdump``) prints for ``cubin`` with ``flag``."""
    from triton import knobs

    path = getattr(knobs.nvidia, tool).path
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        return subprocess.run([path, flag, f.name], check=True, capture_output=True, text=True).stdout


@dataclass
class Trace:
    """What one warp executes along a path: instructions, global loads and stores by bytes per thread, bytes
    it requests from L1 (global and shared, all 32 lanes active), global bytes stored per thread, iterations
    of run-time loops."""

    instructions: int = 0
    loads: Counter = field(default_factory=Counter)
    stores: Counter = field(default_factory=Counter)
    l1_bytes: int = 0
    stored: int = 0
    iterations: int = 0

    def key(self) -> tuple[int, int, int]:
        """The interior tile's path has the smallest key: it stores the most, runs its loops, skips the rest."""
        return -self.stored, -self.iterations, self.instructions

    def plus(self, other: Trace, times: int = 1) -> Trace:
        """This path followed by ``times`` copies of ``other`` (a new trace)."""
        return Trace(
            self.instructions + times * other.instructions,
            self.loads + Counter({w: times * n for w, n in other.loads.items()}),
            self.stores + Counter({w: times * n for w, n in other.stores.items()}),
            self.l1_bytes + times * other.l1_bytes,
            self.stored + times * other.stored,
            self.iterations + times * other.iterations,
        )

    def add(self, instruction: Instruction) -> None:
        """One more instruction on the path."""
        self.instructions += 1
        base = instruction.base
        if base in GLOBAL_LOADS:
            self.loads[instruction.width()] += 1
            self.l1_bytes += 32 * instruction.width()
        elif base in GLOBAL_STORES:
            self.stores[instruction.width()] += 1
            self.l1_bytes += 32 * instruction.width()
            self.stored += instruction.width()
        elif base in SHARED:
            self.l1_bytes += 32 * instruction.width()


def _unconditional(instruction: Instruction) -> bool:
    """Whether a branch or exit always happens (no guard predicate, no predicate operand as in ``BRA P1, ...``)."""
    return instruction.predicate in (None, "@PT") and not re.match(r"!?U?P\d", instruction.operands)


class ControlFlow:
    """The SASS of a kernel as a control-flow graph (branches, calls, loops) and the interior tile's path through
    it (see the module's docstring). ``trips``: each run-time loop's trip count, in the IR's order."""

    def __init__(self, code: list[Instruction], trips: Sequence[Optional[int]]) -> None:
        self.code = code
        self.at = {ins.address: i for i, ins in enumerate(code)}
        indirect = [ins for ins in code if ins.base in {"BRX", "JMX", "JMP"}]
        if indirect:
            raise RuntimeError(f"jumps the report cannot follow: {indirect[:3]}")
        reachable = self._reachable()
        self.loops = [
            (self.at[ins.target()], i)
            for i, ins in enumerate(code)
            if i in reachable and ins.base == "BRA" and "DIV" not in ins.modifiers and ins.target() <= ins.address
        ]
        known = len(trips) == len(self.loops) and all(t is not None for t in trips)
        self.trips = [int(t) for t in trips if t is not None] if known else [1] * len(self.loops)
        self.unknown_trips = bool(self.loops) and not known
        self._callees: dict[int, Trace] = {}

    def _reachable(self) -> set[int]:
        """The instructions reachable from the entry (the trap after the last ``EXIT`` is not)."""
        seen, todo = set(), [0]
        while todo:
            i = todo.pop()
            if i in seen or i >= len(self.code):
                continue
            seen.add(i)
            ins = self.code[i]
            if ins.base in {"BRA", "CALL"}:
                todo.append(self.at[ins.target()])
            if not (ins.base in {"BRA", "EXIT", "RET"} and _unconditional(ins)):
                todo.append(i + 1)
        return seen

    def interior(self) -> Trace:
        """The interior tile's path from the entry to an ``EXIT``."""
        return self._best(0, terminal="EXIT")

    def _best(self, start: int, terminal: str, stop: Optional[int] = None) -> Trace:
        """The best path (see :meth:`Trace.key`) from instruction ``start`` to an unconditional ``terminal``, or
        to the end of instruction ``stop`` (a loop's latch), over forward edges in address order."""
        best: dict[int, Trace] = {start: Trace()}
        ends: list[Trace] = []
        latches = {latch: (header, trip) for (header, latch), trip in zip(self.loops, self.trips)}

        def reach(index: int, path: Trace) -> None:
            if index not in best or path.key() < best[index].key():
                best[index] = path

        for i in range(start, len(self.code)):
            if i not in best:
                continue
            path = best.pop(i).plus(Trace())  # a copy
            ins = self.code[i]
            path.add(ins)
            if ins.base == "CALL":
                path = path.plus(self._callee(self.at[ins.target()]))
            if i == stop:
                return path
            if ins.base == terminal and _unconditional(ins):
                ends.append(path)
                continue
            if ins.base == "BRA" and "DIV" not in ins.modifiers:
                target = self.at[ins.target()]
                if target > i:
                    reach(target, path)
                    if _unconditional(ins):
                        continue
                elif i in latches:
                    header, trip = latches[i]
                    path = path.plus(self._best(header, terminal, stop=i), max(trip - 1, 0))
                    path.iterations += trip
                    if _unconditional(ins):
                        raise RuntimeError(f"a loop without a conditional latch at {ins}: the report cannot count it")
            if i + 1 < len(self.code):
                reach(i + 1, path)
        if not ends:
            raise RuntimeError(
                f"no path reaches an unconditional {terminal} from address {self.code[start].address:#x}"
            )
        return min(ends, key=Trace.key)

    def _callee(self, start: int) -> Trace:
        if start not in self._callees:
            self._callees[start] = self._best(start, terminal="RET")
        return self._callees[start]


def ptx_i64_divisions(ptx: str) -> tuple[int, int]:
    """``(remainders, divisions)`` of 64-bit integers in the PTX (each a subroutine or a long sequence)."""
    return len(re.findall(r"\brem\.[su]64\b", ptx)), len(re.findall(r"\bdiv\.[su]64\b", ptx))


_DEF = re.compile(r"^\s*(%[\w.$-]+)(?::\d+)?\s*=\s*([\w.]+)(.*)$")
_TOKEN = re.compile(r"%[\w.$-]+")


@dataclass
class MemoryUse:
    """What the Triton IR says of a kernel's memory: its pointer parameters (``%name``), those its loads and
    its stores reach, the memory operations it could not trace to a parameter (counted as reaching every
    pointer), and each ``scf.for``'s ``(lower, upper, step)``: an integer constant or a parameter's name."""

    pointers: list[str]
    loads: set[str]
    stores: set[str]
    untraced: list[str]
    loops: list[tuple[str, str, str]]


def ttir_memory(ttir: str) -> MemoryUse:
    """Reads :class:`MemoryUse` from the Triton IR: each memory operation's pointer traced back through the
    operations that compute it (and loops' initial values) to the kernel's parameters."""
    header = next((ln for ln in ttir.splitlines() if "tt.func public" in ln), None)
    if header is None:
        raise RuntimeError("no public tt.func in the Triton IR")
    pointers = [name for name, kind in re.findall(r"(%[\w.$-]+): ([^{,)]+)", header) if "!tt.ptr" in kind]
    defs: dict[str, list[str]] = {}
    constants: dict[str, str] = {}
    use = MemoryUse(pointers, set(), set(), [], [])
    for line in ttir.splitlines():
        code = line.split(" loc(")[0]
        loop = re.search(r"scf\.for (%[\w.$-]+) = (%[\w.$-]+) to (%[\w.$-]+) step (%[\w.$-]+)", code)
        if loop:
            use.loops.append((loop[2], loop[3], loop[4]))
            for name, init in re.findall(r"(%[\w.$-]+) = (%[\w.$-]+)", code.split("iter_args", 1)[-1]):
                defs[name] = [init]
        m = _DEF.match(code)
        if m:
            defs[m[1]] = _TOKEN.findall(m[3])
            constant = re.match(r"\s*(-?\d+) : i\d+", m[3]) if m[2] == "arith.constant" else None
            if constant:
                constants[m[1]] = constant[1]
        op = re.search(r"\btt\.(load|store|atomic_rmw|atomic_cas)\b[^%]*(%[\w.$-]+)", code)
        if op:
            reached = _origins(op[2], defs, set(pointers))
            if not reached:
                use.untraced.append(code.strip())
            if op[1] != "store":
                use.loads |= reached or set(pointers)
            if op[1] != "load":
                use.stores |= reached or set(pointers)
    use.loops = [(constants.get(lo, lo), constants.get(hi, hi), constants.get(st, st)) for lo, hi, st in use.loops]
    return use


def _origins(value: str, defs: dict[str, list[str]], pointers: set[str]) -> set[str]:
    """The pointer parameters among the values ``value`` is computed from."""
    seen, todo, found = set(), [value.split("#")[0]], set()
    while todo:
        v = todo.pop()
        if v in seen:
            continue
        seen.add(v)
        if v in pointers:
            found.add(v)
        todo.extend(t.split("#")[0] for t in defs.get(v, []))
    return found


@dataclass
class Resources:
    """Registers and local memory of one compiled launch for one target."""

    kernel: str
    capability: int
    num_warps: int
    registers: int
    stack: int  # bytes of stack frame per thread
    spill_stores: int  # bytes of local-memory stores (STL) in the SASS: ptxas's "bytes spill stores"
    spill_loads: int  # bytes of local-memory loads (LDL): its "bytes spill loads"


@dataclass
class Reading(Resources):
    """And what the model takes from its machine code."""

    rem64: int
    div64: int
    interior: Trace
    loops: int
    unknown_trips: bool
    reads: set[int]  # tensors (indices into the launch's table) the kernel loads
    writes: set[int]  # and stores
    untraced: list[str]  # memory operations whose pointer the IR does not trace to a parameter


def _resources(launch: Json, capability: int, compiled: Any, code: Optional[list[Instruction]]) -> Resources:
    usage = resource_usage(compiled.asm["cubin"])
    if code is None and (usage.get("STACK") or usage.get("LOCAL")):
        code = sass(compiled.asm["cubin"])  # without a stack frame nothing spills: the SASS is read only then
    return Resources(
        kernel=launch["kernel"].split(":")[1],
        capability=capability,
        num_warps=compiled.metadata.num_warps,
        registers=usage["REG"],
        stack=usage.get("STACK", 0),
        spill_stores=sum(i.width() for i in code or () if i.base == "STL"),
        spill_loads=sum(i.width() for i in code or () if i.base == "LDL"),
    )


def read_resources(launch: Json, capability: int) -> Resources:
    """Compiles ``launch`` for ``sm_<capability>`` and reads its registers and spills."""
    return _resources(launch, capability, compile_launch(launch, capability), None)


def read_launch(launch: Json, capability: int) -> Reading:
    """Compiles ``launch`` for ``sm_<capability>`` and reads its machine code."""
    compiled = compile_launch(launch, capability)
    code = sass(compiled.asm["cubin"])
    rem64, div64 = ptx_i64_divisions(compiled.asm["ptx"])
    memory = ttir_memory(compiled.asm["ttir"])
    values = _bound_arguments(launch)
    flow = ControlFlow(code, [_trip_count(loop, values) for loop in memory.loops])
    tensors_of = {
        "%" + name: value["tensor"] for name, value in values.items() if isinstance(value, dict) and "tensor" in value
    }
    missing = [p for p in memory.pointers if p not in tensors_of]
    if missing:
        raise RuntimeError(f"pointer parameters {missing} of {launch['kernel']} are not tensors of the launch")
    return Reading(
        **vars(_resources(launch, capability, compiled, code)),
        rem64=rem64,
        div64=div64,
        interior=flow.interior(),
        loops=len(flow.loops),
        unknown_trips=flow.unknown_trips,
        reads={tensors_of[p] for p in memory.loads},
        writes={tensors_of[p] for p in memory.stores},
        untraced=memory.untraced,
    )


def _bound_arguments(launch: Json) -> dict[str, Json]:
    """The launch's (encoded) arguments by parameter name, defaults included."""
    import inspect

    kernel = _kernel(launch["kernel"])
    signature = inspect.signature(kernel.fn)
    named = {k: v for k, v in launch["kwargs"].items() if k in signature.parameters}
    bound = signature.bind(*launch["args"], **named)
    bound.apply_defaults()
    flat: dict[str, Json] = {}

    def add(name: str, value: Json) -> None:  # a tuple argument's members are ``name.0``, ``name.1``, ... in the IR
        if isinstance(value, dict) and "tuple" in value:
            for k, member in enumerate(value["tuple"]):
                add(f"{name}.{k}", member)
        else:
            flat[name] = value

    for name, value in bound.arguments.items():
        add(name, value)
    return flat


def _trip_count(loop: tuple[str, str, str], values: dict[str, Json]) -> Optional[int]:
    """Iterations of ``scf.for lower to upper step step``, each an int or a kernel argument's name."""
    numbers = []
    for operand in loop:
        value = values.get(operand.lstrip("%"), operand)
        try:
            numbers.append(int(value))
        except (TypeError, ValueError):
            return None
    lower, upper, step = numbers
    return max(0, -(-(upper - lower) // step))


# ---------------------------------------------------------------------------------------------------------------
# The model


@dataclass
class Estimate:
    """One launch of a call, estimated on the model: a kernel (its sm_90a reading, and its registers and spills
    on every target) or a torch operation (assumed to run at the copy's bandwidth)."""

    label: str
    moved: int
    t_mem: float
    t_issue: float = 0.0
    t_l1: float = 0.0
    programs: int = 0
    readings: list[Reading] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return max(self.t_mem, self.t_issue, self.t_l1)

    @property
    def bound(self) -> str:
        return max((self.t_mem, "memory"), (self.t_issue, "issue"), (self.t_l1, "L1"))[1]

    @property
    def instructions(self) -> int:
        """Warp-instructions of the launch, every program taking the interior path (0 for a torch operation)."""
        if not self.readings:
            return 0
        return self.readings[0].interior.instructions * self.readings[0].num_warps * self.programs


def estimate(launch: Json, readings: list[Reading]) -> Estimate:
    """A launch on the model: the largest of its memory, issue and L1 times."""
    if "torch" in launch:
        return Estimate(launch["torch"], launch["bytes"], launch["bytes"] / MACHINE.copy_bytes_per_s)
    reading = readings[0]
    programs = math.prod(launch["grid"])
    warps = reading.num_warps
    tensors = launch["tensors"]
    moved = sum(tensors[t]["bytes"] for t in reading.reads) + sum(tensors[t]["bytes"] for t in reading.writes)
    schedulers = min(MACHINE.sms * MACHINE.schedulers_per_sm, programs * warps)
    sms = min(MACHINE.sms, programs)
    l1_bytes = reading.interior.l1_bytes * warps * programs
    out = Estimate(reading.kernel, moved, moved / MACHINE.copy_bytes_per_s, programs=programs, readings=readings)
    out.t_issue = out.instructions / (schedulers * MACHINE.clock_hz)
    out.t_l1 = l1_bytes / (sms * MACHINE.l1_bytes_per_clock * MACHINE.clock_hz)
    return out


@dataclass
class Row:
    """One call's phase (operators: forward, backward; losses: forward+backward) with its launches."""

    call: str
    dtype: str
    phase: str
    elements: int
    minimum: int
    launches: list[Estimate]

    @property
    def name(self) -> str:
        return f"{self.call}, {self.phase}"

    @property
    def kernels(self) -> int:
        """Kernel launches (the others are torch operations)."""
        return sum(bool(e.readings) for e in self.launches)

    @property
    def seconds(self) -> float:
        return sum(launch.seconds for launch in self.launches)

    @property
    def fraction(self) -> float:
        return self.minimum / MACHINE.copy_bytes_per_s / self.seconds


def rows(captured: Json, readings: dict[int, list[Reading]]) -> list[Row]:
    """The rows of the captured calls, their launches estimated with ``readings`` (per launch, one per target)."""
    launches = captured["launches"]
    out = []
    for call in captured["calls"]:
        phases = call["phases"]
        if call["loss"]:
            start, _, forward = phases["forward"]
            _, end, backward = phases["backward"]
            spans = {"forward+backward": (start, end, forward + backward)}
        else:
            spans = {phase: tuple(span) for phase, span in phases.items()}
        for phase, (start, end, minimum) in spans.items():
            estimates = [estimate(launches[i], readings.get(i, [])) for i in range(start, end)]
            out.append(Row(call["name"], call["dtype"], phase, call["elements"], minimum, estimates))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Tables


def _widths(counts: Counter) -> str:
    return " ".join(f"{n}x{w}B" for w, n in sorted(counts.items())) or "-"


def call_table(rows: Sequence[Row]) -> str:
    """Per call: launches, bytes moved per element against the minimum, warp-instructions, time, fraction."""
    body = [
        [
            row.name,
            f"{row.kernels} + {len(row.launches) - row.kernels}",
            f"{sum(e.moved for e in row.launches) / row.elements:.2f} / {row.minimum / row.elements:.2f}",
            f"{sum(e.instructions for e in row.launches) / row.elements:.3f}",
            f"{row.seconds * 1e6:.1f}",
            f"{row.minimum / MACHINE.copy_bytes_per_s * 1e6:.1f}",
            f"{row.fraction:.0%}",
        ]
        for row in rows
    ]
    header = [
        "call",
        "launches: kernels + torch",
        "bytes / element: moved / minimum",
        "warp-instructions / element",
        "predicted us",
        "minimum bytes at copy speed, us",
        "fraction of copy",
    ]
    return markdown_table(header, body)


def launch_table(rows: Sequence[Row]) -> str:
    """Per launch of each call: the kernel's machine code and its three times."""
    body = []
    for row in rows:
        for k, e in enumerate(row.launches):
            label, times = f"{row.name} [{k}]", f"{e.t_mem * 1e6:.1f} / {e.t_issue * 1e6:.1f} / {e.t_l1 * 1e6:.1f}"
            moved = f"{e.moved / row.elements:.2f}"
            if not e.readings:
                body.append([label, f"torch {e.label}", *["-"] * 7, moved, times, "memory (assumed)"])
                continue
            r = e.readings[0]
            loops = "" if not r.loops else f"; {r.loops} loop(s)" + (", body once" if r.unknown_trips else "")
            loops += f"; {len(r.untraced)} memory ops untraced (every pointer counted)" if r.untraced else ""
            body.append(
                [
                    label,
                    r.kernel + loops,
                    f"{e.programs} x {r.num_warps}",
                    " / ".join(str(t.registers) for t in e.readings),
                    " / ".join(str(t.spill_stores + t.spill_loads) for t in e.readings),
                    _widths(r.interior.loads),
                    _widths(r.interior.stores),
                    f"{r.rem64} / {r.div64}",
                    f"{e.instructions / row.elements:.3f}",
                    moved,
                    times,
                    e.bound,
                ]
            )
    header = [
        "launch",
        "kernel",
        "programs x warps",
        "registers sm_90a / sm_80",
        "spill bytes sm_90a / sm_80",
        "global loads per thread, interior tile",
        "global stores per thread, interior tile",
        "i64 rem / div (PTX)",
        "warp-instructions / element",
        "bytes moved / element",
        "us: memory / issue / L1",
        "bound",
    ]
    return markdown_table(header, body)


TARGET_CALLS = ("sobel", 'GradientLoss("sobel")')


def checks(rows: Sequence[Row], readings: Iterable[Reading]) -> list[tuple[str, float, str]]:
    """The targets: Sobel forward and backward, GradientLoss("sobel"), every operator forward, no spills."""
    by = {(r.call, r.dtype, r.phase): r for r in rows}
    out = []
    for dtype, forward_target in (("float32", ">= 0.70"), ("bfloat16", ">= 0.60")):
        for call, phase, target in (
            ("sobel", "forward", forward_target),
            ("sobel", "backward", ">= 0.60"),
            ('GradientLoss("sobel")', "forward+backward", ">= 0.50"),
        ):
            if (call, dtype, phase) in by:
                out.append((f"{call}, {phase}, {dtype}: fraction of copy", by[call, dtype, phase].fraction, target))
        forwards = [r for r in rows if r.dtype == dtype and r.phase == "forward" and r.kernels]
        if forwards:
            worst = min(forwards, key=lambda r: r.fraction)
            label = f"every operator forward on the kernels, {dtype}: the lowest ({worst.call})"
            out.append((label, worst.fraction, ">= 0.60"))
    spilled = sum(r.spill_stores + r.spill_loads for r in readings)
    out.append(("spill bytes, every kernel, sm_90a and sm_80", float(spilled), "<= 0"))
    return out


def kind_table(labels: Sequence[str], readings: Sequence[list[Resources]]) -> str:
    """Per distinct kernel launch: registers and spills on each target."""
    body = [
        [label, rs[0].kernel, *[f"{r.registers} / {r.spill_stores} / {r.spill_loads}" for r in rs]]
        for label, rs in zip(labels, readings)
    ]
    header = [
        "first launched by",
        "kernel",
        *[f"{arch_name(a)}: registers / spill stores B / spill loads B" for a in ARCHS],
    ]
    return markdown_table(header, body)


# ---------------------------------------------------------------------------------------------------------------
# Driving the steps


def run_capture(args: argparse.Namespace) -> Json:
    """Step 1 in a child process with the interpreter and the forced Triton executor."""
    environment = dict(os.environ, TRITON_INTERPRET="1", TORCHGRAD_FORCE_TRITON="1")
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "launches.json"
        command = [sys.executable, __file__, "--capture-to", str(out), "--dtypes", *args.dtypes]
        command += ["--shape", *map(str, args.shape), "--volume", *map(str, args.volume)]
        command += ["--kinds"] if args.kinds else []
        command += [] if args.only is None else ["--only", *args.only]
        subprocess.run(command, env=environment, check=True)
        return json.loads(out.read_text())


def read_distinct(
    launches: Sequence[Json], workers: int, reader: Callable[[Json, int], Any] = read_launch
) -> tuple[dict[int, list[Any]], list[int]]:
    """Each kernel launch's ``reader`` results (one per target in ``ARCHS``: a :class:`Reading`, or with
    :func:`read_resources` its :class:`Resources`), compiling each distinct launch once; and the first launch of
    each distinct one."""
    first: dict[str, int] = {}
    of: dict[int, int] = {}
    for i, launch in enumerate(launches):
        if "kernel" in launch:
            of[i] = first.setdefault(json.dumps(launch, sort_keys=True), i)
    firsts = sorted(set(of.values()))
    jobs = [(launches[i], capability) for i in firsts for capability in ARCHS]
    if workers <= 1:
        read = [reader(launch, capability) for launch, capability in jobs]
    else:
        # Forked workers start with the kernels' modules imported here (no torch operation has run in this
        # process, so no thread pool is copied half-way).
        for name in {launch["kernel"] for launch, _ in jobs}:
            _kernel(name)
        method = "fork" if "fork" in get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(workers, mp_context=get_context(method)) as pool:
            read = list(pool.map(reader, *zip(*jobs)))
    by_first = {i: read[k * len(ARCHS) : (k + 1) * len(ARCHS)] for k, i in enumerate(firsts)}
    return {i: by_first[f] for i, f in of.items()}, firsts


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=4, default=None, help=f"images (default {SHAPE})")
    parser.add_argument("--volume", type=int, nargs=5, default=None, help=f"3-D calls' volumes (default {VOLUME})")
    parser.add_argument("--only", nargs="*", default=None, help="calls whose name contains one of these")
    parser.add_argument("--dtypes", nargs="*", default=list(DTYPES), choices=("float32", "bfloat16", "float64"))
    parser.add_argument("--kinds", action="store_true", help="every kernel kind at a small shape, fails on a spill")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="compiling processes")
    parser.add_argument("--write", action="store_true", help="write the section of benchmarks/RESULTS.md")
    parser.add_argument("--capture-to", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.shape = tuple(args.shape or (KINDS_SHAPE if args.kinds else SHAPE))
    args.volume = tuple(args.volume or (KINDS_VOLUME if args.kinds else VOLUME))
    if args.kinds:
        args.dtypes = list(KIND_CALLS)
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.capture_to:
        names = None if args.only is None else [c.name for c in cases() if any(w in c.name for w in args.only)]
        Path(args.capture_to).write_text(json.dumps(capture(names, args.dtypes, args.shape, args.volume, args.kinds)))
        return 0
    if os.environ.get("TRITON_INTERPRET"):
        raise SystemExit("run the report without TRITON_INTERPRET: it compiles the kernels for a GPU")
    import triton
    from triton.backends import backends

    if "nvidia" not in backends:
        raise SystemExit(f"Triton {triton.__version__} has no NVIDIA backend: nothing to compile for")
    started = time.perf_counter()
    captured = run_capture(args)
    captured_s = time.perf_counter() - started
    reader = read_resources if args.kinds else read_launch
    readings, firsts = read_distinct(captured["launches"], args.jobs, reader)
    kernels = sum("kernel" in launch for launch in captured["launches"])
    summary = (
        f"{kernels} kernel launches ({len(firsts)} distinct) captured in {captured_s:.0f} s, compiled for "
        f"{' and '.join(map(arch_name, ARCHS))} and read in {time.perf_counter() - started - captured_s:.0f} s"
    )
    if args.kinds:
        return kinds_report(captured, readings, firsts, summary)
    return report(args, captured, readings, firsts, summary)


def _first_caller(captured: Json, index: int) -> str:
    for call in captured["calls"]:
        for phase, (start, end, _) in call["phases"].items():
            if start <= index < end:
                return f"{call['name']}, {call['dtype']}, {phase} [{index - start}]"
    raise ValueError(f"launch {index} belongs to no call")


def kinds_report(captured: Json, readings: dict[int, list[Resources]], firsts: list[int], summary: str) -> int:
    """Registers and spills of every distinct kernel; 1 when one spills."""
    labels = [_first_caller(captured, i) for i in firsts]
    print(kind_table(labels, [readings[i] for i in firsts]))
    spilled = [(label, r) for label, i in zip(labels, firsts) for r in readings[i] if r.spill_stores or r.spill_loads]
    for label, r in spilled:
        print(
            f"spills: {label}, {r.kernel} on {arch_name(r.capability)}: {r.spill_stores} B stored, "
            f"{r.spill_loads} B loaded"
        )
    print(f"\n{summary}; {len(firsts) * len(ARCHS)} kernels compiled, {len(spilled)} with spills")
    return 1 if spilled else 0


def kernels_source() -> str:
    """Which kernels were read: the checkout's commit, and whether its torchgrad/ or losses/ have uncommitted
    changes."""
    root = str(Path(__file__).resolve().parents[1])
    try:
        commit = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--", "torchgrad", "losses"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "kernels outside a git checkout"
    return f"kernels of commit {commit}" + (" with uncommitted changes" if changed else "")


def report(
    args: argparse.Namespace, captured: Json, readings: dict[int, list[Reading]], firsts: list[int], summary: str
) -> int:
    """The tables, the targets, and with ``--write`` the section of RESULTS.md."""
    import triton
    from triton import knobs

    table_rows = rows(captured, readings)
    calls, launches, spotlight = [], [], []
    for dtype in args.dtypes:
        selected = [r for r in table_rows if r.dtype == dtype]
        calls.append(f"### {dtype}: calls\n\n" + call_table(selected))
        launches.append(f"### {dtype}: launches\n\n" + launch_table(selected))
        targeted = [r for r in selected if r.call in TARGET_CALLS]
        spotlight.append(f"### {dtype}: launches of the calls with a target\n\n" + launch_table(targeted))
    distinct_readings = [r for i in firsts for r in readings[i]]
    verdicts = markdown_table(
        ["estimate from compiled code (not a measurement)", "predicted", "target", "met"],
        verdict_rows(checks(table_rows, distinct_readings)),
    )
    notes = (
        f"estimates from compiled code, no GPU: {kernels_source()}, Triton {triton.__version__}, ptxas "
        f"{knobs.nvidia.ptxas.version}, torch {torch.__version__}; {summary}. {MACHINE.notes()}. A kernel launch "
        "takes the largest of its memory time (bytes moved / copy bandwidth: each tensor it loads read once, each "
        "it stores written once), its issue time (the warp-instructions of an interior tile's path through the SASS "
        "x programs / schedulers in use / clock) and its L1 time (bytes its loads and stores request / SMs in use / "
        "L1 bytes per clock / clock); a torch operation between the launches (a subtraction, a cast, a reduction) "
        "its bytes at the copy's bandwidth; a call the sum. Fraction of copy: the call's minimum bytes at the "
        "copy's bandwidth over that time. Minimum bytes: forward, read the input and write each output; backward, "
        "read each cotangent (and the input again for gradient_magnitude) and write the gradient; a loss, read its "
        "inputs in forward and again in backward and write the gradient of each input that requires one. Per "
        f"element: of the call's first input. 3-D calls on {'x'.join(map(str, args.volume))}, OpenCV's on one "
        "(N H, W, C) image, the edge-aware loss on a one-channel disparity. A call with no kernel launch is one the "
        "Triton executor does not serve (torch.gradient's border rows in half precision keep torch's rounding). "
        "Left out: launch gaps and latency, "
        "border tiles, tail effects, misaligned loads, L2 misses of halos (see benchmarks/kernel_report.py)"
    )
    print("\n\n".join([*calls, *launches, verdicts]))
    print(f"\n({notes})")
    if args.write:
        shape = "x".join(map(str, args.shape))
        write_section(
            SECTION,
            f"## GPU, predicted from compiled code: {shape}, H100 model\n\n"
            f"`python benchmarks/kernel_report.py --write` ({notes}). Every launch of every call: the command "
            "prints them.\n\n" + "\n\n".join([verdicts, *calls, *spotlight]),
        )
        print("\nwrote benchmarks/RESULTS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
