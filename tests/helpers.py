"""What several test files share: the tensors a call saves for backward, the tolerance of each dtype, runs on one
executor, the check that half precision is rounded once, and the Triton executor's device, launches and paths.

Test files import from here and from ``references.py`` (the references torchgrad is compared with), never from
each other.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, ContextManager, Iterable

import pytest
import torch

from torchgrad._separable import Separable


def saved_tensors(call: Callable[[], object]) -> list[torch.Tensor]:
    """The tensors that autograd saves for backward while ``call()`` runs."""
    saved: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        call()
    return saved


def saved_bytes(call: Callable[[], object], inputs: Iterable[torch.Tensor] = ()) -> int:
    """The bytes of the tensors ``call()`` saves for backward, beyond references to ``inputs``."""
    known = {t.data_ptr() for t in inputs}
    return sum(t.numel() * t.element_size() for t in saved_tensors(call) if t.data_ptr() not in known)


TOLERANCE = {torch.float64: 1e-12, torch.float32: 2e-6, torch.float16: 4e-3, torch.bfloat16: 3e-2}
"""The tolerance of a result against its reference, relative to the reference's largest value, per dtype: several
units in the last place of each dtype, for sums taken in another order (and, in bfloat16, for the interpreter's
truncation where a GPU rounds to nearest)."""

Outputs = tuple[torch.Tensor, ...]
Run = tuple[Outputs, torch.Tensor]
"""An operator's outputs and the gradient of ``sum(<output, cotangent>)``."""
EXECUTORS = ["eager", "eager slabs", "traceable", "triton"]


def autograd_run(fn: Callable[[torch.Tensor], Outputs], x: torch.Tensor, grads: Outputs) -> Run:
    x = x.detach().requires_grad_()
    outputs = fn(x)
    return tuple(o.detach() for o in outputs), torch.autograd.grad(outputs, x, grads)[0]


def on_executor(
    executor: str,
    fn: Callable[[torch.Tensor], Outputs],
    op: Separable,
    x: torch.Tensor,
    grads: Outputs,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Run, bool]:
    """:func:`autograd_run` of ``fn`` (the public call of ``op``) on one executor: the CPU eager executor (in one slab,
    or in uneven slabs), the traceable code (which ``torch.compile`` traces, and tensors on devices without the
    kernels take) or the Triton kernels (CUDA tensors, or CPU tensors under Triton's interpreter; both launches
    checked), on the CPU; and whether it rounds to nearest (Triton's interpreter converts float32 to bfloat16 by
    truncation, where a GPU rounds to nearest)."""
    monkeypatch.delenv("TORCHGRAD_FORCE_TRITON", raising=False)
    if executor == "traceable":
        return (op.apply(x, traceable=True), op.adjoint(grads, traceable=True)), True
    if executor == "eager slabs":
        monkeypatch.setattr("torchgrad._separable.SLAB_BYTES", 2 * x[0].numel() * x.element_size())
    if executor != "triton":
        return autograd_run(fn, x, grads), True
    pytest.importorskip("triton")
    device = kernel_device()
    if device == "cpu":
        monkeypatch.setenv("TORCHGRAD_FORCE_TRITON", "1")
    monkeypatch.delenv("TORCHGRAD_EXECUTOR", raising=False)
    launches = count_launches(monkeypatch)
    outputs, gx = autograd_run(fn, x.to(device), tuple(g.to(device) for g in grads))
    assert launches == ["_apply_kernel", "_adjoint_kernel"]
    return (tuple(o.cpu() for o in outputs), gx.cpu()), device == "cuda" or x.dtype != torch.bfloat16


def assert_rounded_once(got: Run, exact: Run, convolution: Run, nearest: bool) -> None:
    """Every value of ``got`` is its exact value (``exact``: float64 on the same input) rounded once, to one of the
    two values of its dtype around it. Rounded to nearest (``nearest``), the mean error is no worse than that of
    the ``convolution``, which also rounds once: both round the same exact values (float32 holds these sums of
    half-precision samples times small integers exactly), so the errors agree; 2% allows for ties and the rare
    sum that float32 rounds. Rounding each chain's result (or each term) as well about doubles the error."""
    for k, (ours, value, theirs) in enumerate(
        zip((*got[0], got[1]), (*exact[0], exact[1]), (*convolution[0], convolution[1]))
    ):
        what = "the gradient" if k == len(got[0]) else f"output {k}"
        nearest_value = value.to(ours.dtype)
        beyond = torch.where(value > nearest_value.double(), math.inf, -math.inf).to(ours.dtype)
        other = torch.where(nearest_value.double() == value, nearest_value, torch.nextafter(nearest_value, beyond))
        outside = ((ours != nearest_value) & (ours != other)).sum().item()
        assert outside == 0, f"{what}: {outside} of {ours.numel()} values are not their exact value rounded once"
        error, bound = ((t.double() - value).abs().mean().item() for t in (ours, theirs))
        if nearest:
            assert error <= 1.02 * bound, f"{what}: mean error {error:.3g} against the convolution's {bound:.3g}"


def kernel_device() -> str:
    """``"cuda"`` where there is a GPU and the kernels were compiled for it, ``"cpu"`` under Triton's interpreter;
    skips the calling test module otherwise."""
    import torch

    from torchgrad._triton import launch

    if launch.interpreting():
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    pytest.skip("no GPU, and the kernels were defined without TRITON_INTERPRET=1", allow_module_level=True)


def count_launches(
    monkeypatch: pytest.MonkeyPatch,
    around: Callable[[], ContextManager[object]] = contextlib.nullcontext,
    run: bool = True,
) -> list[str]:
    """Wraps ``launch.launch_kernel`` (undone with ``monkeypatch``); the list grows by the kernel's name at
    each launch, which runs inside ``around()``. With ``run=False`` the kernels are counted, not run (their
    outputs stay as allocated): for the tests of how many launches a call makes, which no value may change
    (no call branches on a tensor's values), at batch sizes the interpreter would take long over."""
    from torchgrad._triton import launch

    calls: list[str] = []
    original = launch.launch_kernel

    def counting(kernel, programs, *args, **meta):  # type: ignore[no-untyped-def]
        calls.append(kernel.fn.__name__)
        if run:
            with around():
                original(kernel, programs, *args, **meta)

    monkeypatch.setattr(launch, "launch_kernel", counting)
    return calls


def record_interior_tiles(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Wraps the kernels' choice of path (undone with ``monkeypatch``): the list grows by ``True`` for each
    program that took the interior path, ``False`` for each that took the border path (interpreter only)."""
    from torchgrad._triton import kernels, penalty_kernels

    taken: list[bool] = []
    original = kernels.interior

    def recording(*args, **kwargs):  # type: ignore[no-untyped-def]
        inside = original(*args, **kwargs)
        handle = getattr(inside, "handle", inside)  # the interpreter's tensor around a NumPy value
        taken.append(bool(getattr(handle, "data", handle)))
        return inside

    for module in (kernels, penalty_kernels):  # the loss kernels call it by their own name
        monkeypatch.setattr(module, "interior", recording)
    return taken


def random_input(
    shape: tuple[int, ...], dtype: torch.dtype = torch.float64, seed: int = 0, device: str = "cpu"
) -> torch.Tensor:
    """Standard normal samples drawn in float64 from ``seed``, then cast: the same numbers on every device."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x.to(dtype=dtype, device=device)


def assert_close_in_dtype(actual: torch.Tensor, expected: torch.Tensor, device: str | None = None) -> None:
    """``actual`` has ``expected``'s dtype and shape (and lies on ``device``, where given) and equals it within the
    dtype's :data:`TOLERANCE`, relative to ``expected``'s largest value (at least 1)."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    assert device is None or actual.device.type == device, actual.device
    tol = TOLERANCE[expected.dtype]
    actual, expected = actual.detach().cpu().double(), expected.detach().cpu().double()
    scale = max(float(expected.abs().max()), 1.0)
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol * scale)
