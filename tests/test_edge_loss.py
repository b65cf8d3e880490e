"""EdgeLoss: values and gradients against MPRNet's code, the band operator's adjoint, shapes, autocast, torch.func
(compile, half precision, uneven slabs, accuracy of totals: tests/test_fused_penalty.py, with every fused loss)."""

from __future__ import annotations

import pytest
import torch
from helpers import saved_tensors
from hypothesis import given
from hypothesis import strategies as st
from references import DEVICES, mprnet_edge_loss, mprnet_gaussian_kernel, mprnet_laplacian

from torchgrad._internal import apply_operator
from torchgrad.losses import EdgeLoss
from torchgrad.losses.edge_loss import BAND
from torchgrad.losses.functional import edge_loss

REDUCTIONS = ["mean", "sum", "none"]


def _pair(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(shape, dtype=dtype, generator=gen).requires_grad_() for _ in range(2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("size", [(8, 8), (9, 7), (6, 11), (5, 5)])
def test_matches_mprnet(size: tuple[int, int], channels: int, dtype: torch.dtype) -> None:
    """Values and gradients (input and target) of every reduction against MPRNet's EdgeLoss code."""
    x, y = _pair((2, channels, *size), dtype, seed=channels + size[0])
    gen = torch.Generator().manual_seed(1)
    tolerance = {} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}
    # in float32 the slope d / sqrt(d^2 + eps^2) turns the bands' rounding (1e-7) into 1e-4 where |d| ~ eps = 1e-3
    grad_tolerance = {} if dtype == torch.float64 else {"rtol": 1e-3, "atol": 1e-4}
    for reduction in REDUCTIONS:
        for eps in (1e-3, 0.3):
            ours = edge_loss(x, y, eps=eps, reduction=reduction)
            ref = mprnet_edge_loss(x, y, eps=eps, reduction=reduction)
            assert ours.dtype == dtype and ours.shape == ref.shape
            torch.testing.assert_close(ours, ref, **tolerance)
            probe = torch.randn(ours.shape, dtype=dtype, generator=gen)
            got, want = (torch.autograd.grad((loss * probe).sum(), (x, y)) for loss in (ours, ref))
            torch.testing.assert_close(got, want, **grad_tolerance)
    assert edge_loss(x, y) > 1e-3  # the images differ: more than eps


def test_gradcheck_and_gradgradcheck() -> None:
    x, y = _pair((1, 2, 5, 4), torch.float64, seed=6)
    for reduction in REDUCTIONS:
        fn = lambda a, b: edge_loss(a, b, eps=0.2, reduction=reduction)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x, y))
        if reduction != "sum":  # the sum is the mean times a constant
            assert torch.autograd.gradgradcheck(fn, (x, y))


def _dense(apply, shape: tuple[int, int]) -> torch.Tensor:
    """The matrix of a linear map on ``shape`` images, column k its image of the k-th unit image."""
    n = shape[0] * shape[1]
    return apply(torch.eye(n, dtype=torch.float64).reshape(n, *shape)).reshape(n, n).t()


@given(h=st.integers(1, 12), w=st.integers(1, 12), traceable=st.booleans())
def test_band_adjoint_identity(h: int, w: int, traceable: bool) -> None:
    """``<L x, g> == <x, L^T g>`` for every size, eager and traceable; and ``L`` is MPRNet's Laplacian band."""
    gen = torch.Generator().manual_seed(h * 13 + w)
    x = torch.randn(2, 3, h, w, dtype=torch.float64, generator=gen)
    g = torch.randn(2, 3, h, w, dtype=torch.float64, generator=gen)
    (lx,) = BAND.apply(x, traceable)
    lt_g = BAND.adjoint([g], traceable)
    torch.testing.assert_close((lx * g).sum(), (x * lt_g).sum())
    torch.testing.assert_close(lx, mprnet_laplacian(x, mprnet_gaussian_kernel(3, torch.float64, x.device)))


def test_band_support_is_where_the_band_reads() -> None:
    """The support (the band with absolute weights) is non-zero exactly where the band's matrix reads a sample."""
    shape = (7, 6)
    smooth = _dense(lambda t: t - BAND.apply(t)[0], shape)  # G U D G
    reads = (smooth != 0) | torch.eye(smooth.shape[0], dtype=torch.bool)
    support = _dense(lambda t: BAND.support().apply(t)[0], shape)
    assert (support >= 0).all()
    assert torch.equal(support != 0, reads)
    assert not reads.all()  # G U D G reaches 9 samples along each axis: not every one


def test_uneven_shapes_and_ranks() -> None:
    """``(C, H, W)`` and ``(H, W)`` are the loss of one image; ``"none"`` keeps the input's shape."""
    x, y = _pair((3, 7, 9), torch.float64, seed=8)
    for reduction in REDUCTIONS:
        batched = edge_loss(x[None], y[None], reduction=reduction)
        torch.testing.assert_close(edge_loss(x, y, reduction=reduction), batched[0] if reduction == "none" else batched)
        single = edge_loss(x[:1][None], y[:1][None], reduction=reduction)
        got = edge_loss(x[0], y[0], reduction=reduction)
        torch.testing.assert_close(got, single[0, 0] if reduction == "none" else single)
    assert edge_loss(x, y, reduction="none").shape == (3, 7, 9)
    five = torch.rand(2, 2, 3, 6, 6, dtype=torch.float64), torch.rand(2, 2, 3, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(edge_loss(*five), edge_loss(five[0].flatten(0, 1), five[1].flatten(0, 1)))


def test_saves_only_references() -> None:
    x, y = _pair((2, 3, 16, 16), torch.float32, seed=9)
    for reduction in REDUCTIONS:
        saved = saved_tensors(lambda: edge_loss(x, y, reduction=reduction))
        assert {t.data_ptr() for t in saved} <= {x.data_ptr(), y.data_ptr()}


def test_autocast_gives_float32() -> None:
    x, y = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = edge_loss(x.bfloat16(), y)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, edge_loss(x.bfloat16().float(), y))


def test_torch_func() -> None:
    from torch.func import grad, jvp, vmap

    x, y = (t.detach() for t in _pair((4, 2, 6, 7), torch.float64, seed=11))
    for reduction in REDUCTIONS:
        batched = vmap(lambda a, b: edge_loss(a[None], b[None], eps=0.1, reduction=reduction))(x, y)
        loop = torch.stack([edge_loss(x[i : i + 1], y[i : i + 1], eps=0.1, reduction=reduction) for i in range(4)])
        torch.testing.assert_close(batched, loop)
    per_sample = vmap(grad(lambda a, b: edge_loss(a, b)))(x, y)
    for i in range(4):
        xi = x[i].clone().requires_grad_()
        torch.testing.assert_close(per_sample[i], torch.autograd.grad(edge_loss(xi, y[i]), xi)[0])
    t = torch.randn_like(x)
    _, tangent = jvp(lambda a: edge_loss(a, y, reduction="none"), (x,), (t,))
    ref = torch.autograd.functional.jvp(lambda a: mprnet_edge_loss(a, y, reduction="none"), x, t)[1]
    torch.testing.assert_close(tangent, ref)
    # the band itself through autograd's Function: forward mode is the band of the tangent
    _, band_tangent = jvp(lambda a: apply_operator(BAND, a)[0], (x,), (t,))
    torch.testing.assert_close(band_tangent, BAND.apply(t)[0])


@pytest.mark.parametrize("device", DEVICES)
def test_devices(device: str) -> None:
    """The module with MPRNet's defaults (eps 1e-3, the mean) is MPRNet's EdgeLoss on every device."""
    x = torch.rand(2, 3, 10, 9, device=device, requires_grad=True)
    y = torch.rand(2, 3, 10, 9, device=device)
    loss = EdgeLoss()(x, y)
    loss.backward()
    xc = x.detach().cpu().requires_grad_()
    ref = mprnet_edge_loss(xc, y.cpu())
    ref.backward()
    torch.testing.assert_close(loss.cpu(), ref)
    torch.testing.assert_close(x.grad.cpu(), xc.grad)


def test_repr() -> None:
    assert repr(EdgeLoss()) == "EdgeLoss(eps=0.001, reduction='mean')"
