"""Every linear operator: hand-written backward proven by gradcheck, gradgradcheck and the adjoint
identity; forward mode and torch.func; dtypes, memory layouts, devices, torch.compile."""

from __future__ import annotations

import pytest
import torch
from helpers import autograd_run, saved_tensors
from hypothesis import given
from hypothesis import strategies as st
from references import DEVICES, LINEAR_OPERATORS, PADDINGS, coordinate_operator
from torch.func import grad, jacfwd, jacrev, jvp, vjp, vmap

import torchgrad
from torchgrad._linear import batch_in_front

OPS = sorted(LINEAR_OPERATORS)


def _shape(op: str, batch: tuple[int, ...] = (2, 2), extra: int = 0) -> tuple[int, ...]:
    _, spatial, small = LINEAR_OPERATORS[op]
    sizes = (small + 3 + extra, small + 4 + extra, small + 2 + extra)[-spatial:]
    return batch + sizes


def _assert_adjoint(op: str, shape: tuple[int, ...], gen: torch.Generator) -> None:
    """``<A x, g> == <x, A^T g>`` for the hand-written ``A^T`` of ``op``, on random ``x`` and ``g``."""
    x = torch.randn(shape, dtype=torch.float64, generator=gen, requires_grad=True)
    outputs = LINEAR_OPERATORS[op][0](x)
    gs = [torch.randn(o.shape, dtype=o.dtype, generator=gen) for o in outputs]
    (gx,) = torch.autograd.grad(outputs, x, gs)
    lhs = sum((o * g).sum() for o, g in zip(outputs, gs))
    torch.testing.assert_close(lhs, (x * gx).sum(), rtol=1e-10, atol=1e-10)


# The double backward runs the forward's stencil code again (A is the adjoint of A^T): in 3-D, where each check
# costs seconds, gradgradcheck runs once per padding mode (across the 3-D operators); gradcheck runs on every one.
GRADGRADCHECK_3D = (
    "image_gradients_3d",
    "sobel_3d_reflect",
    "sobel_3d_symmetric",
    "prewitt_3d_zeros",
    "prewitt_3d_circular",
    "laplacian_3d_replicate",
)


@pytest.mark.parametrize("op", OPS)
def test_gradcheck_and_gradgradcheck(op: str, cpu_executor: str) -> None:
    """One channel (the adjoint identity covers batch and channels); in 3-D, 4 x 5 x 3: each axis holds both border
    rows of a 3-tap stencil and an interior row."""
    fn, spatial, _ = LINEAR_OPERATORS[op]
    x = torch.randn(_shape(op, (1, 1)) if spatial == 2 else (1, 1, 4, 5, 3), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, x)
    if spatial == 2 or op in GRADGRADCHECK_3D:
        assert torch.autograd.gradgradcheck(fn, x)


def test_3d_gradgradchecks_cover_every_padding() -> None:
    three_d = {op for op in OPS if LINEAR_OPERATORS[op][1] == 3}
    assert set(GRADGRADCHECK_3D) <= three_d
    assert {padding for padding in PADDINGS if any(op.endswith(f"_{padding}") for op in GRADGRADCHECK_3D)} == set(
        PADDINGS
    )


@pytest.mark.parametrize("edge_order", [1, 2])
def test_gradcheck_non_uniform_coordinates(edge_order: int) -> None:
    x = torch.randn(2, 5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: coordinate_operator(x, edge_order), x)
    assert torch.autograd.gradgradcheck(lambda x: coordinate_operator(x, edge_order), x)


@given(
    op=st.sampled_from(OPS),
    batch=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    extra=st.lists(st.integers(0, 7), min_size=3, max_size=3),
    seed=st.integers(0, 2**31 - 1),
)
def test_adjoint_identity(op: str, batch: list[int], extra: list[int], seed: int) -> None:
    """On random shapes of randomly drawn operators."""
    _, spatial, small = LINEAR_OPERATORS[op]
    _assert_adjoint(op, tuple(batch) + tuple(small + e for e in extra[:spatial]), torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("op", OPS)
def test_adjoint_identity_of_every_operator(op: str, cpu_executor: str) -> None:
    """Once per operator, with sizes 1 to 3 beyond the smallest: border rows and interior meet differently per axis."""
    _, spatial, small = LINEAR_OPERATORS[op]
    _assert_adjoint(op, (2,) + (small + 3, small + 1, small + 2)[-spatial:], torch.Generator().manual_seed(len(op)))


@pytest.mark.parametrize("op", OPS)
def test_backward_of_one_output(op: str) -> None:
    """Outputs that do not reach the loss get no cotangent: the gradients of each output alone add up to that of
    all of them."""
    fn = LINEAR_OPERATORS[op][0]
    x = torch.randn(_shape(op), dtype=torch.float64, requires_grad=True)
    total = sum(o.pow(2).sum() for o in fn(x))
    (g_all,) = torch.autograd.grad(total, x)
    parts = [torch.autograd.grad(fn(x)[k].pow(2).sum(), x)[0] for k in range(len(fn(x)))]
    torch.testing.assert_close(g_all, sum(parts))


@pytest.mark.parametrize("op", OPS)
def test_saves_no_tensors(op: str) -> None:
    x = torch.randn(_shape(op), requires_grad=True)
    assert saved_tensors(lambda: LINEAR_OPERATORS[op][0](x)) == []


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_dtypes(op: str, dtype: torch.dtype) -> None:
    fn = LINEAR_OPERATORS[op][0]
    x = torch.rand(_shape(op), dtype=torch.float64)
    xr = x.to(dtype).requires_grad_()
    got = fn(xr)
    tol = {torch.float16: 2e-2, torch.bfloat16: 1e-1, torch.float32: 1e-5}[dtype]
    for e, g in zip(fn(x), got):
        assert g.dtype == dtype
        torch.testing.assert_close(g.double(), e, rtol=tol, atol=tol * max(1.0, e.abs().max().item()))
    sum(o.float().sum() for o in got).backward()
    assert xr.grad is not None and xr.grad.dtype == dtype and torch.isfinite(xr.grad.float()).all()


@pytest.mark.parametrize("op", OPS)
def test_memory_layouts(op: str) -> None:
    """channels_last and non-contiguous inputs give the numbers (values and gradients) of a contiguous input."""
    fn, spatial, _ = LINEAR_OPERATORS[op]
    x = torch.randn(_shape(op, (2, 3)), dtype=torch.float64)
    grads = tuple(torch.randn_like(o) for o in fn(x))
    strided = torch.randn(_shape(op, (2, 6)), dtype=torch.float64)[:, ::2].copy_(x)
    variants = [x.transpose(-1, -2).contiguous().transpose(-1, -2), strided]
    if spatial == 2:
        variants.append(x.contiguous(memory_format=torch.channels_last))
    for v in variants:
        assert torch.equal(v, x)
        torch.testing.assert_close(autograd_run(fn, v, grads), autograd_run(fn, x, grads), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("op", OPS)
def test_empty_batch(op: str) -> None:
    fn = LINEAR_OPERATORS[op][0]
    x = torch.randn(_shape(op, (0, 3)), requires_grad=True)
    outputs = fn(x)
    assert all(o.shape == x.shape for o in outputs)
    sum(o.sum() for o in outputs).backward()
    assert x.grad is not None and x.grad.shape == x.shape


@pytest.mark.parametrize(
    "op",
    [
        "image_gradients",
        "sobel_reflect",
        "scharr_zeros_normalized",
        "sobel_3d_circular",
        "gradient_edge2_spacing",
        "prewitt_3d_reflect",
        "laplacian_ksize3_replicate",
        "hessian_circular_normalized",
    ],
)
def test_torch_func(op: str) -> None:
    """vmap, jvp, jacrev/jacfwd, per-sample gradients, vmap of the backward (over cotangents batched along dim 1,
    others shared) and ``is_grads_batched`` (as ``jacobian(vectorize=True)`` uses it) agree with plain autograd."""
    fn = LINEAR_OPERATORS[op][0]
    x = torch.randn(_shape(op, (3,)), dtype=torch.float64)
    expected = fn(x)
    torch.testing.assert_close(vmap(fn)(x), expected)
    torch.testing.assert_close(tuple(g.movedim(1, 0) for g in vmap(fn, 1, 1)(x.movedim(0, 1))), expected)
    t = torch.randn_like(x)
    torch.testing.assert_close(jvp(fn, (x,), (t,)), (expected, fn(t)))  # linear: the tangent of A x is A t

    sample = x[0]
    first = lambda z: fn(z)[0]  # noqa: E731
    j_rev, j_fwd = jacrev(first)(sample), jacfwd(first)(sample)
    torch.testing.assert_close(j_rev, j_fwd)
    probe = torch.randn_like(sample)
    torch.testing.assert_close((j_rev * probe).flatten(sample.dim()).sum(-1), first(probe))

    loss = lambda z: sum((o * o).sum() for o in fn(z))  # noqa: E731
    per_sample = vmap(grad(loss))(x)
    for i in range(x.shape[0]):
        xi = x[i].clone().requires_grad_()
        torch.testing.assert_close(per_sample[i], torch.autograd.grad(loss(xi), xi)[0])

    # the backward under vmap: cotangents of the first output batched along dim 1, those of the others shared
    _, pullback = vjp(fn, x)
    cotangents = torch.randn((x.shape[0], 4) + x.shape[1:], dtype=x.dtype)
    shared = [torch.randn_like(e) for e in expected[1:]]
    loop = torch.stack([pullback((cotangents[:, i], *shared))[0] for i in range(4)])
    torch.testing.assert_close(vmap(lambda g: pullback((g, *shared))[0], in_dims=1)(cotangents), loop)
    xr = x.clone().requires_grad_()
    batch = (cotangents.movedim(1, 0), *(g.expand(4, *g.shape) for g in shared))
    torch.testing.assert_close(torch.autograd.grad(fn(xr), xr, batch, is_grads_batched=True)[0], loop)


def test_batch_in_front() -> None:
    """The ``vmap`` rule of the Functions and ops: batch dims to dim 0, unbatched tensors expanded (``None`` kept),
    out dim 0; where nothing is batched, nothing moved and out dim ``None``."""

    class Info:
        batch_size = 3

    a, b = torch.arange(6.0).reshape(2, 3), torch.arange(2.0)
    seen, dim = batch_in_front(Info(), lambda *ts: ts, [a, b, None], [1, None, None])
    assert dim == 0 and seen[2] is None
    assert torch.equal(seen[0], a.T) and torch.equal(seen[1], b.expand(3, 2))
    seen, dim = batch_in_front(Info(), lambda *ts: ts, [a, b], [None, None])
    assert dim is None and seen[0] is a and seen[1] is b


@pytest.mark.parametrize(
    "op",
    [
        "image_gradients_3d",
        "gradient_edge2_spacing",
        "sobel_reflect",
        "scharr_symmetric_normalized",
        "sobel_3d_replicate",
        "laplacian_ksize3_zeros_normalized",
        "laplacian_3d_circular",
        "hessian_replicate",
    ],
)
def test_torch_compile_fullgraph(op: str) -> None:
    """One compilation (seconds each) per kind of stencil, every padding mode and the divisor among them."""
    fn = LINEAR_OPERATORS[op][0]
    torch._dynamo.reset()
    x = torch.randn(_shape(op))
    grads = tuple(torch.randn_like(o) for o in fn(x))
    torch.testing.assert_close(autograd_run(torch.compile(fn, fullgraph=True), x, grads), autograd_run(fn, x, grads))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", OPS)
def test_devices(op: str, device: str) -> None:
    fn = LINEAR_OPERATORS[op][0]
    x = torch.randn(_shape(op), dtype=torch.float64)
    grads = tuple(torch.randn_like(o) for o in fn(x))
    outputs, gx = autograd_run(fn, x.to(device), tuple(g.to(device) for g in grads))
    for got, expected in zip((*outputs, gx), (*fn(x), autograd_run(fn, x, grads)[1])):
        assert got.device.type == device
        torch.testing.assert_close(got.cpu(), expected)


@pytest.mark.parametrize(
    "op",
    [
        "sobel_reflect",
        "scharr_zeros_normalized",
        "sobel_3d_circular",
        "laplacian_replicate",
        "laplacian_ksize3_reflect",
        "hessian_zeros",
    ],
)
def test_slab_by_slab_execution(op: str, monkeypatch: pytest.MonkeyPatch, cpu_executor: str) -> None:
    """Multi-stage chains run in slabs along dim 0 (uneven last slab included): same numbers."""
    fn = LINEAR_OPERATORS[op][0]
    x = torch.randn(_shape(op, (5, 2)), dtype=torch.float64)
    grads = tuple(torch.randn_like(o) for o in fn(x))
    outputs, gx = autograd_run(fn, x, grads)
    monkeypatch.setattr("torchgrad._separable.SLAB_BYTES", 2 * x[0].numel() * x.element_size())
    sliced, gx_sliced = autograd_run(fn, x, grads)
    for a, b in zip(outputs, sliced):
        assert torch.equal(a, b)
    torch.testing.assert_close(gx_sliced, gx, rtol=1e-14, atol=1e-14)


def test_torch_compile_dynamic_shapes() -> None:
    """Inductor's code for the sizes after the first (recompiled with dynamic shapes)."""
    torch._dynamo.reset()
    compiled = torch.compile(torchgrad.sobel, fullgraph=True)
    gen = torch.Generator().manual_seed(0)
    for shape in [(2, 3, 8, 9), (2, 3, 10, 11), (1, 2, 12, 7)]:
        # float64: Inductor and the eager executors sum the adjoint's terms (up to 100 times the gradient,
        # which cancels) in different orders, which float32 rounding tells apart
        x = torch.randn(shape, dtype=torch.float64, generator=gen)
        grads = tuple(torch.randn(shape, dtype=torch.float64, generator=gen) for _ in range(2))
        torch.testing.assert_close(autograd_run(compiled, x, grads), autograd_run(torchgrad.sobel, x, grads))


def test_half_precision_intermediates_do_not_overflow() -> None:
    """Scharr smooths by 16 before differencing: the intermediate runs in float32."""
    flat = torch.full((1, 1, 5, 5), 5000.0, dtype=torch.float16, requires_grad=True)
    for component in torchgrad.scharr(flat):
        assert torch.equal(component, torch.zeros_like(component))
    sum(c.float().sum() for c in torchgrad.scharr(flat)).backward()
    assert torch.isfinite(flat.grad.float()).all()


def test_empty_spatial_axis_is_a_clear_error() -> None:
    for fn in (torchgrad.image_gradients, lambda x: torchgrad.sobel(x, padding="zeros")):
        with pytest.raises(ValueError, match=r"spatial axes of `image` must not be empty, got shape \(1, 1, 0, 5\)"):
            fn(torch.rand(1, 1, 0, 5))
