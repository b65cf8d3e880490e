"""The Triton executor's launches, counted in tests: the one launch function wrapped."""

from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import pytest


def count_launches(
    monkeypatch: pytest.MonkeyPatch, around: Callable[[], ContextManager[object]] = contextlib.nullcontext
) -> list[str]:
    """Wraps ``launch.launch_kernel`` (undone with ``monkeypatch``); the list grows by the kernel's name at
    each launch, which runs inside ``around()``."""
    from torchgrad._triton import launch

    calls: list[str] = []
    original = launch.launch_kernel

    def counting(kernel, programs, *args, **meta):  # type: ignore[no-untyped-def]
        calls.append(kernel.fn.__name__)
        with around():
            original(kernel, programs, *args, **meta)

    monkeypatch.setattr(launch, "launch_kernel", counting)
    return calls


def record_interior_tiles(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Wraps the kernels' choice of path (undone with ``monkeypatch``): the list grows by ``True`` for each
    program that took the interior path, ``False`` for each that took the border path (interpreter only)."""
    from torchgrad._triton import kernels

    taken: list[bool] = []
    original = kernels._interior

    def recording(*args, **kwargs):  # type: ignore[no-untyped-def]
        inside = original(*args, **kwargs)
        handle = getattr(inside, "handle", inside)  # the interpreter's tensor around a NumPy value
        taken.append(bool(getattr(handle, "data", handle)))
        return inside

    monkeypatch.setattr(kernels, "_interior", recording)
    return taken
