"""The small-input CPU executor (``torchgrad._padded``): the slab executor's numbers on every operator it takes,
the slab executor for every call it does not take."""

from __future__ import annotations

import pytest
import torch
from references import LINEAR_OPERATORS

import torchgrad
from torchgrad import _padded
from torchgrad._separable import Separable
from torchgrad._stencil import padded_stencil
from torchgrad.losses.functional import gradient_loss

OPS = sorted(LINEAR_OPERATORS)


def _both(fn, x: torch.Tensor, gs: list[torch.Tensor] | None, monkeypatch: pytest.MonkeyPatch):
    """``fn(x)`` and its vector-Jacobian product with ``gs`` (random when ``None``), small executor then slab."""
    results = []
    for limit in (_padded.SMALL_BYTES, 0):
        monkeypatch.setattr(_padded, "SMALL_BYTES", limit)
        xr = x.detach().requires_grad_()
        outputs = fn(xr)
        if gs is None:
            gen = torch.Generator().manual_seed(1)
            gs = [torch.randn(o.shape, dtype=o.dtype, generator=gen) for o in outputs]
        (gx,) = torch.autograd.grad(outputs, xr, gs)
        results.append((outputs, gx))
    return results


def _shapes(spatial: int, small: int) -> list[tuple[int, ...]]:
    """Axes from the shortest the operator takes (a stencil's reach folds several times) to one with an interior."""
    sizes = [(small, small + 1, small), (small + 1, small + 4, small + 2), (9, 6, 11)]
    return [(2, 3) + s[-spatial:] for s in sizes]


@pytest.mark.parametrize("op", OPS)
def test_small_executor_matches_the_slab_executor(op: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Values and vector-Jacobian products within a few ulps of float64: the terms near the edges are summed in
    another order, nothing else differs."""
    fn, spatial, small = LINEAR_OPERATORS[op]
    for shape in _shapes(spatial, small):
        x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        (small_out, small_gx), (slab_out, slab_gx) = _both(fn, x, None, monkeypatch)
        for a, b in zip(small_out, slab_out):
            torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(small_gx, slab_gx, rtol=1e-13, atol=1e-13)


def _taken(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each call the small executor takes."""
    calls: list[str] = []
    apply, adjoint = _padded.apply, _padded.adjoint
    monkeypatch.setattr(_padded, "apply", lambda *a: calls.append("apply") or apply(*a))
    monkeypatch.setattr(_padded, "adjoint", lambda *a: calls.append("adjoint") or adjoint(*a))
    return calls


@pytest.mark.parametrize(
    "call",
    [
        lambda x: torchgrad.sobel(x),
        lambda x: torchgrad.laplacian(x, padding="symmetric", ksize=3),
        lambda x: torchgrad.hessian(x, padding="circular"),
        lambda x: gradient_loss(x, torch.zeros_like(x), operator="scharr"),
    ],
)
def test_small_float_inputs_take_it(call, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _taken(monkeypatch)
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    out = call(x)
    sum(o.sum() for o in (out if isinstance(out, tuple) else (out,))).backward()
    assert set(calls) == {"apply", "adjoint"}  # (the losses compute A (x - y) again in their backward)


@pytest.mark.parametrize(
    "case",
    ["large", "bfloat16", "explicit_rows", "valid_rows", "grid", "reflect_on_one_sample", "compile"],
)
def test_other_inputs_take_the_slab_executor(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inputs beyond ``SMALL_BYTES``, half precision, explicit border rows (``torch.gradient``'s one-sided
    ends, TensorFlow's valid rows), coordinate grids, an axis that reflect padding refuses (the slab executor
    raises the error), and traced code (``torch.compile``) never reach it."""
    calls = _taken(monkeypatch)
    x = torch.rand(2, 3, 16, 16)
    run = {
        "large": lambda: torchgrad.sobel(torch.rand(1, 1, 512, 512)),
        "bfloat16": lambda: torchgrad.sobel(x.bfloat16()),
        "explicit_rows": lambda: torchgrad.gradient(x, dim=(-2, -1)),
        "valid_rows": lambda: torchgrad.image_gradients(x),
        "grid": lambda: torchgrad.gradient(x, spacing=[torch.arange(16.0) ** 2] * 2, dim=(-2, -1)),
        "reflect_on_one_sample": lambda: Separable(((padded_stencil(-2, (1, 2, 1), "reflect"),),)).apply(
            torch.rand(2, 1, 8)
        ),
        "compile": lambda: torch.compile(torchgrad.sobel, backend="eager", fullgraph=True)(x),
    }[case]
    if case == "reflect_on_one_sample":
        with pytest.raises(ValueError, match="reflect padding needs at least 2 samples"):
            run()
    else:
        run()
    assert calls == []
