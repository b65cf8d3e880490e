"""The Triton executor in tests: the device its kernels run on, its launches counted (the one launch function
wrapped), the path each program takes."""

from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import pytest


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
