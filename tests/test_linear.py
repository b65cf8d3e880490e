"""Every linear operator: hand-written backward proven by gradcheck, gradgradcheck and the adjoint
identity; forward mode and torch.func; dtypes, memory layouts, devices, torch.compile."""

from __future__ import annotations

import pytest
import torch
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


def _saved_bytes(fn, x: torch.Tensor) -> int:
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return total


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
    """One channel (the adjoint identity covers batch and channel axes); in 3-D, 4 x 5 x 3 samples whatever the
    padding: each axis holds both border rows of a 3-tap stencil and an interior row, and the lengths differ."""
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
    """<A x, g> == <x, A^T g> for the hand-written A^T, on random shapes and options."""
    fn, spatial, small = LINEAR_OPERATORS[op]
    shape = tuple(batch) + tuple(small + e for e in extra[:spatial])
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, dtype=torch.float64, generator=gen, requires_grad=True)
    outputs = fn(x)
    gs = [torch.randn(o.shape, dtype=o.dtype, generator=gen) for o in outputs]
    (gx,) = torch.autograd.grad(outputs, x, gs)
    lhs = sum((o * g).sum() for o, g in zip(outputs, gs))
    rhs = (x * gx).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-10, atol=1e-10), (lhs.item(), rhs.item())


@pytest.mark.parametrize("op", OPS)
def test_adjoint_identity_of_every_operator(op: str, cpu_executor: str) -> None:
    """The identity once per operator (the random search above samples from all of them), on a shape with
    sizes 1 to 3 beyond the smallest so that border rows and the interior meet differently along each axis."""
    fn, spatial, small = LINEAR_OPERATORS[op]
    gen = torch.Generator().manual_seed(len(op))
    x = torch.randn((2,) + (small + 3, small + 1, small + 2)[-spatial:], dtype=torch.float64, generator=gen)
    x.requires_grad_()
    outputs = fn(x)
    gs = [torch.randn(o.shape, dtype=o.dtype, generator=gen) for o in outputs]
    (gx,) = torch.autograd.grad(outputs, x, gs)
    lhs = sum((o * g).sum() for o, g in zip(outputs, gs))
    torch.testing.assert_close(lhs, (x * gx).sum(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("op", OPS)
def test_backward_of_one_output(op: str) -> None:
    """Outputs that do not reach the loss get no cotangent; the others are still right."""
    fn = LINEAR_OPERATORS[op][0]
    x = torch.randn(_shape(op), dtype=torch.float64, requires_grad=True)
    (g_last,) = torch.autograd.grad(fn(x)[-1].pow(2).sum(), x)
    reference = torch.autograd.functional.vjp(lambda x: fn(x)[-1].pow(2).sum(), x.detach())[1]
    torch.testing.assert_close(g_last, reference)
    total = sum(o.pow(2).sum() for o in fn(x))
    (g_all,) = torch.autograd.grad(total, x)
    parts = [torch.autograd.grad(fn(x)[k].pow(2).sum(), x)[0] for k in range(len(fn(x)))]
    torch.testing.assert_close(g_all, sum(parts))


@pytest.mark.parametrize("op", OPS)
def test_saves_no_tensors(op: str) -> None:
    fn = LINEAR_OPERATORS[op][0]
    x = torch.randn(_shape(op), requires_grad=True)
    assert _saved_bytes(fn, x) == 0


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_dtypes(op: str, dtype: torch.dtype) -> None:
    fn = LINEAR_OPERATORS[op][0]
    x = torch.rand(_shape(op), dtype=torch.float64)
    expected = fn(x)
    got = fn(x.to(dtype).requires_grad_())
    tol = {torch.float16: 2e-2, torch.bfloat16: 1e-1, torch.float32: 1e-5}[dtype]
    for e, g in zip(expected, got):
        assert g.dtype == dtype
        torch.testing.assert_close(g.double(), e, rtol=tol, atol=tol * max(1.0, e.abs().max().item()))
    xr = x.to(dtype).requires_grad_()
    outs = fn(xr)
    sum(o.float().sum() for o in outs).backward()
    assert xr.grad is not None and xr.grad.dtype == dtype and torch.isfinite(xr.grad.float()).all()


@pytest.mark.parametrize("op", OPS)
def test_memory_layouts(op: str) -> None:
    """channels_last and non-contiguous inputs give the numbers of a contiguous input."""
    fn, spatial, _ = LINEAR_OPERATORS[op]
    x = torch.randn(_shape(op, (2, 3)), dtype=torch.float64)
    expected = fn(x)
    variants = [
        x.transpose(-1, -2).contiguous().transpose(-1, -2),
        torch.randn(_shape(op, (2, 6)), dtype=torch.float64)[:, ::2],
    ]
    variants[1].copy_(x)
    if spatial == 2:
        variants.append(x.contiguous(memory_format=torch.channels_last))
    for v in variants:
        assert torch.equal(v, x)
        for e, g in zip(expected, fn(v.requires_grad_())):
            torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)
    xs = [x.clone().requires_grad_(), variants[-1].detach().clone().requires_grad_()]
    grads = [torch.autograd.grad(sum((o * o).sum() for o in fn(v)), v)[0] for v in xs]
    torch.testing.assert_close(grads[0], grads[1])


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
    """vmap, jvp, jacrev/jacfwd and per-sample gradients agree with plain autograd."""
    fn = LINEAR_OPERATORS[op][0]
    x = torch.randn(_shape(op, (3,)), dtype=torch.float64)
    expected = fn(x)
    for e, g in zip(expected, vmap(fn)(x)):
        torch.testing.assert_close(g, e)
    for e, g in zip(expected, vmap(fn, in_dims=1, out_dims=1)(x.movedim(0, 1))):
        torch.testing.assert_close(g.movedim(1, 0), e)

    t = torch.randn_like(x)
    primal, tangent = jvp(fn, (x,), (t,))
    for p, tg, e, et in zip(primal, tangent, expected, fn(t)):  # linear: the tangent of A x is A t
        torch.testing.assert_close(p, e)
        torch.testing.assert_close(tg, et)

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
        (gi,) = torch.autograd.grad(loss(xi), xi)
        torch.testing.assert_close(per_sample[i], gi)


def test_torch_func_grad_of_grad() -> None:
    """A gradient penalty: the backward is itself differentiable (hand-written both ways)."""
    from torchgrad import sobel

    x = torch.randn(2, 6, 5, dtype=torch.float64, requires_grad=True)
    penalty = lambda z: torch.autograd.grad(sum((o**3).sum() for o in sobel(z)), z, create_graph=True)[0].pow(2).sum()  # noqa: E731
    assert torch.autograd.gradcheck(lambda z: penalty(z), x)


def test_vmap_of_the_adjoint_with_a_shared_cotangent() -> None:
    """``vmap`` of the backward over per-sample cotangents of one output (batched along dim 1) and one cotangent
    shared by every sample for the other: the shared one is expanded to the batch, the result batched in front.
    Equal to a loop up to rounding (the batched call runs plain tensor code, the loop the eager executor)."""
    x = torch.randn(5, 6, dtype=torch.float64)
    _, pullback = vjp(torchgrad.sobel, x)
    per_sample, shared = torch.randn(5, 3, 6, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    got = vmap(lambda g: pullback((g, shared))[0], in_dims=1, out_dims=2)(per_sample)
    expected = torch.stack([pullback((per_sample[:, i], shared))[0] for i in range(3)], 2)
    torch.testing.assert_close(got, expected)


def test_batch_in_front() -> None:
    """The one ``vmap`` rule of the Functions and ops: batch dims moved to dim 0, unbatched tensors expanded where
    some is batched (``None`` kept), out dim 0; nothing moved and out dim ``None`` where nothing is batched."""

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
    """Each compilation costs seconds: one per kind of stencil (one-sided differences, per-row weights, multi-stage
    chains in 2-D and 3-D, sums of terms, a mixed term), and every padding mode and the divisor among them."""
    fn = LINEAR_OPERATORS[op][0]
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True)
    x = torch.randn(_shape(op), requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    eager, traced = fn(x), compiled(x2)
    for e, t in zip(eager, traced):
        torch.testing.assert_close(t, e)
    gs = [torch.randn_like(e) for e in eager]
    torch.autograd.backward(eager, gs)
    torch.autograd.backward(traced, gs)
    torch.testing.assert_close(x2.grad, x.grad)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", OPS)
def test_devices(op: str, device: str) -> None:
    fn = LINEAR_OPERATORS[op][0]
    x = torch.randn(_shape(op), dtype=torch.float64)
    xd = x.to(device, copy=True).requires_grad_()
    outputs = fn(xd)
    for e, g in zip(fn(x), outputs):
        assert g.device.type == device
        torch.testing.assert_close(g.cpu(), e)
    sum(o.pow(2).sum() for o in outputs).backward()
    xc = x.clone().requires_grad_()
    sum(o.pow(2).sum() for o in fn(xc)).backward()
    assert xd.grad is not None and xc.grad is not None
    torch.testing.assert_close(xd.grad.cpu(), xc.grad)


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
    import torchgrad._separable as separable

    fn = LINEAR_OPERATORS[op][0]
    x = torch.randn(_shape(op, (5, 2)), dtype=torch.float64, requires_grad=True)
    outputs = fn(x)
    gs = [torch.randn_like(o) for o in outputs]
    (gx,) = torch.autograd.grad(outputs, x, gs)
    monkeypatch.setattr(separable, "SLAB_BYTES", 2 * x[0].numel() * x.element_size())
    sliced = fn(x)
    (gx_sliced,) = torch.autograd.grad(sliced, x, gs)
    for a, b in zip(outputs, sliced):
        assert torch.equal(a, b)
    torch.testing.assert_close(gx_sliced, gx, rtol=1e-14, atol=1e-14)


def test_torch_compile_dynamic_shapes() -> None:
    from torchgrad import sobel

    torch._dynamo.reset()
    compiled = torch.compile(sobel, fullgraph=True)
    gen = torch.Generator().manual_seed(0)
    for shape in [(2, 3, 8, 9), (2, 3, 10, 11), (1, 2, 12, 7)]:
        # float64: Inductor and the eager executors sum the adjoint's terms (up to 100 times the gradient,
        # which cancels) in different orders, which float32 rounding tells apart
        x = torch.randn(shape, dtype=torch.float64, generator=gen, requires_grad=True)
        xe = x.detach().clone().requires_grad_()
        for a, b in zip(compiled(x), sobel(xe)):
            torch.testing.assert_close(a, b)
        sum(o.pow(2).sum() for o in compiled(x)).backward()
        sum(o.pow(2).sum() for o in sobel(xe)).backward()
        torch.testing.assert_close(x.grad, xe.grad)


@pytest.mark.parametrize(
    "op", ["image_gradients", "sobel_reflect", "sobel_3d_zeros", "gradient_edge2_spacing", "laplacian_3d_reflect"]
)
def test_batched_gradients(op: str) -> None:
    """torch.autograd.grad(is_grads_batched=True), as jacobian(vectorize=True) uses it."""
    fn = LINEAR_OPERATORS[op][0]
    x = torch.randn(_shape(op, (2,)), dtype=torch.float64, requires_grad=True)
    outputs = fn(x)
    batch = [torch.randn((3,) + o.shape, dtype=o.dtype) for o in outputs]
    (batched,) = torch.autograd.grad(outputs, x, batch, is_grads_batched=True, retain_graph=True)
    for i in range(3):
        (single,) = torch.autograd.grad(outputs, x, [b[i] for b in batch], retain_graph=True)
        torch.testing.assert_close(batched[i], single)


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
