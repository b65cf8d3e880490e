"""The CPU executor of padded stencils (``torchgrad._padded``): the border-row executor's numbers on every operator
it takes, slab by slab at any size; the border-row executor for every call it does not take."""

from __future__ import annotations

import pytest
import torch
from references import LINEAR_OPERATORS

import torchgrad
import torchgrad._separable as separable
from torchgrad import _padded
from torchgrad._separable import Separable
from torchgrad._stencil import padded_stencil
from torchgrad.losses.functional import gradient_loss

OPS = sorted(LINEAR_OPERATORS)


@pytest.fixture(autouse=True)
def _cpu_executors(monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU tensors take the CPU executors even where ``TORCHGRAD_FORCE_TRITON=1`` sends them to the kernels."""
    monkeypatch.delenv("TORCHGRAD_FORCE_TRITON", raising=False)


def _both(fn, x: torch.Tensor, monkeypatch: pytest.MonkeyPatch):
    """``fn(x)`` and its vector-Jacobian product with random cotangents: padded, then border rows."""
    results, gs = [], None
    for usable in (_padded.usable, lambda op, x: None):
        monkeypatch.setattr(_padded, "usable", usable)
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


@pytest.mark.parametrize("route", ["F.pad", "workspace"])
@pytest.mark.parametrize("op", OPS)
def test_padded_executor_matches_the_border_rows(op: str, route: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Values and vector-Jacobian products within a few ulps of float64 (terms near the edges summed in another
    order); padded by ``F.pad`` where it pads as torchgrad does (small slabs), or into the workspace's buffer."""
    if route == "workspace":
        monkeypatch.setattr(_padded, "FRESH_BYTES", 0)
    fn, spatial, small = LINEAR_OPERATORS[op]
    for shape in _shapes(spatial, small):
        x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        (padded_out, padded_gx), (rows_out, rows_gx) = _both(fn, x, monkeypatch)
        for a, b in zip(padded_out, rows_out):
            torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(padded_gx, rows_gx, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("op", ["sobel_reflect", "laplacian_ksize3_symmetric", "hessian_circular", "sobel_3d_zeros"])
def test_uneven_slabs_and_layouts(op: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slabs of 2, 2 and 1 items share one workspace (the last one a view of its buffers), and a channels_last or
    transposed input is read in place: the numbers of one slab, bit for bit."""
    fn, spatial, _ = LINEAR_OPERATORS[op]
    x = torch.randn((5, 3) + (7, 6, 8)[-spatial:], dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    gs = [torch.randn_like(o) for o in fn(x)]

    def run(t: torch.Tensor) -> list[torch.Tensor]:
        t = t.detach().requires_grad_()
        outputs = fn(t)
        return list(outputs) + list(torch.autograd.grad(outputs, t, gs))

    whole = run(x)
    monkeypatch.setattr(separable, "SLAB_BYTES", 2 * x[0].numel() * x.element_size())
    assert len(separable.slabs(x, spatial)) == 3
    layouts = [x, x.transpose(-1, -2).contiguous().transpose(-1, -2)]
    if spatial == 2:
        layouts.append(x.contiguous(memory_format=torch.channels_last))
    for t in layouts:
        for a, b in zip(run(t), whole):
            assert torch.equal(a, b)


def _taken(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each slab the padded executor computes."""
    calls: list[str] = []
    apply, adjoint = _padded.apply, _padded.adjoint
    # "apply small": in one call without a workspace, every buffer fresh
    monkeypatch.setattr(
        _padded, "apply", lambda *a: calls.append("apply" if a[3] is not None else "apply small") or apply(*a)
    )
    monkeypatch.setattr(_padded, "adjoint", lambda *a: calls.append("adjoint") or adjoint(*a))
    return calls


TAKERS = {
    "sobel": lambda x: torchgrad.sobel(x),
    "laplacian": lambda x: torchgrad.laplacian(x, padding="symmetric", ksize=3),
    "hessian": lambda x: torchgrad.hessian(x, padding="circular"),
    "loss": lambda x: gradient_loss(x, torch.zeros_like(x), operator="scharr"),
}


@pytest.mark.parametrize("name", list(TAKERS))
@pytest.mark.parametrize("size", [16, 600])
def test_float_inputs_take_it(name: str, size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small and large (several slabs) float32 inputs; a small contiguous input in one call without a workspace
    (a loss passes its own to its forward's slabs; its backward computes ``A (x - y)`` again, in one call)."""
    calls = _taken(monkeypatch)
    x = torch.rand(2, 3, size, size, requires_grad=True)
    out = TAKERS[name](x)
    sum(o.sum() for o in (out if isinstance(out, tuple) else (out,))).backward()
    if size == 600:
        assert set(calls) == {"apply", "adjoint"}
    else:
        assert set(calls) == ({"apply", "apply small", "adjoint"} if name == "loss" else {"apply small", "adjoint"})


@pytest.mark.parametrize(
    "case", ["bfloat16", "explicit_rows", "valid_rows", "grid", "reflect_on_one_sample", "compile"]
)
def test_other_inputs_take_the_border_rows(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Half precision, explicit border rows (``torch.gradient``'s one-sided ends, TensorFlow's valid rows),
    coordinate grids, an axis that reflect padding refuses (the border-row executor raises the error), and
    traced code (``torch.compile``) never reach it."""
    calls = _taken(monkeypatch)
    x = torch.rand(2, 3, 16, 16)
    run = {
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


@pytest.mark.parametrize("op", ["sobel_reflect", "sobel_3d_symmetric", "hessian_zeros", "laplacian_ksize3_circular"])
def test_scratch_is_at_most_three_slabs(op: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The padded copy of a slab and two intermediates, which the chains share, forward and adjoint alike:
    an input that makes one slab (batch 1) never costs more than three times its padded size in scratch
    (these operators reach one sample along each axis)."""
    monkeypatch.setattr(_padded, "FRESH_BYTES", 0)
    workspaces: list[separable.Workspace] = []
    init = separable.Workspace.__init__

    def recording(self: separable.Workspace) -> None:
        init(self)
        workspaces.append(self)

    monkeypatch.setattr(separable.Workspace, "__init__", recording)
    fn, spatial, _ = LINEAR_OPERATORS[op]
    x = torch.rand((1, 2) + (12, 40, 36)[-spatial:], dtype=torch.float64, requires_grad=True)
    outputs = fn(x)
    torch.autograd.grad(outputs, x, [torch.ones_like(o) for o in outputs])
    assert len(workspaces) == 2  # one for the forward, one for the adjoint
    padded = x[0].numel() // x[0, 0].numel() * x.element_size()
    for n in x.shape[-spatial:]:
        padded *= n + 2
    for workspace in workspaces:
        scratch = sum(b.untyped_storage().nbytes() for b in workspace._buffers.values())
        assert scratch <= 3 * padded, scratch / padded


@pytest.mark.parametrize("executor", ["padded", "border rows", "traceable"])
def test_minus_is_the_operator_of_the_difference(executor: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``apply(x, minus=y)`` is ``A (x - y)``, the difference formed as the padded executor pads (a target
    expanded over the batch included), on every executor; a target of another dtype is promoted as ``x - y``."""
    if executor == "border rows":
        monkeypatch.setattr(_padded, "usable", lambda op, x: None)
    op = Separable(
        (
            (padded_stencil(-2, (1, 2, 1), "symmetric"), padded_stencil(-1, (-1, 0, 1), "symmetric")),
            (padded_stencil(-1, (1, -2, 1), "symmetric"),),
        ),
        (0, 0),
    )
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(3, 2, 9, 8, dtype=torch.float64, generator=gen)
    for y in (torch.rand(3, 2, 9, 8, dtype=torch.float64, generator=gen), torch.rand(1, 2, 9, 8).expand(3, 2, 9, 8)):
        expected = op.apply(x - y, traceable=executor == "traceable")
        for workspace in (None, separable.Workspace()):
            got = op.apply(x, traceable=executor == "traceable", workspace=workspace, minus=y)
            assert got[0].dtype == expected[0].dtype
            torch.testing.assert_close(got[0], expected[0], rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("size", [8, 600])
def test_a_stencil_of_zero_taps(size: int) -> None:
    """A stage whose taps are all zero writes zeros (into a fresh result for a small input, into the output slab
    by slab for a large one), and a later stage reads them; its adjoint is zero."""
    op = Separable(((padded_stencil(-1, (0.0, 0.0, 0.0), "reflect"), padded_stencil(-2, (1.0, 2.0, 1.0), "zeros")),))
    x = torch.rand(2, 3, size, size)
    assert _padded.usable(op, x) is not None
    (out,) = op.apply(x)
    assert torch.equal(out, torch.zeros_like(x))
    assert torch.equal(op.adjoint([torch.rand_like(x)]), torch.zeros_like(x))
