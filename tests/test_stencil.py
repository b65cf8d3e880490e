"""The shared stencil: 1 to 7 taps, every padding mode against padded convolutions, ``numpy.pad`` (sizes below the
kernel included) and SciPy, its adjoint the exact (conjugate) transpose of its matrix for every padding, size and
kind of weight, and size-free descriptions under ``torch.compile(dynamic=True)``."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F
from references import PADDINGS, pad

import torchgrad
from torchgrad._internal import apply_operator
from torchgrad._separable import Separable
from torchgrad._stencil import Row, Stencil, padded_stencil

MODES = PADDINGS + ("valid",)
TAPS = {
    1: [(3,)],
    3: [(1, 2, 1), (-1, 0, 1), (0, -1, 1), (3, 10, 3)],
    5: [(1, 4, 6, 4, 1), (-1, -2, 0, 2, 1), (0, 0, -1, 1, 2)],
    7: [(1, 6, 15, 20, 15, 6, 1), (-1, -4, -5, 0, 5, 4, 1), (2, 0, 0, 0, 0, 0, -3)],
}
ALL_TAPS = [taps for group in TAPS.values() for taps in group]


def _matrix(stencil: Stencil, n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Column k is A e_k."""
    return stencil.apply(torch.eye(n, dtype=dtype)).t()


def _correlate(x: torch.Tensor, taps: tuple[int, ...], padding: str) -> torch.Tensor:
    """``x`` padded along its last axis as ``numpy.pad`` pads it, correlated with ``taps`` by conv1d."""
    h = len(taps) // 2
    xp = pad(x, h, padding, 1)
    kernel = torch.tensor(taps, dtype=x.dtype).reshape(1, 1, -1)
    return F.conv1d(xp.reshape(-1, 1, xp.shape[-1]), kernel).reshape(x.shape)


@pytest.mark.parametrize("padding", MODES)
def test_border_rows_are_the_rows_folded_for_each_size(padding: str) -> None:
    """A padded stencil's border rows, which hold no size (counted from the nearer end), are the rows that
    ``Stencil.row`` folds for an axis of a given size long enough for them: term by term, in the same order."""
    for taps in ALL_TAPS + [(0, 0, 2, 0, 0, 0, 1), (1, 0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0, 0, -1)]:
        stencil = padded_stencil(-1, taps, padding, divisor=4)
        for n in range(stencil.min_size(), stencil.min_size() + 3):
            on_axis = lambda row: Row(tuple((k % n, w) for k, w in row.terms), row.divisor)  # noqa: E731
            T = len(stencil.tail)
            for i, row in enumerate(stencil.head + stencil.tail):
                at = i if i < len(stencil.head) else n - T + i - len(stencil.head)
                assert on_axis(row) == stencil.row(at, n), (taps, n, at)


@pytest.mark.parametrize("padding", MODES)
@pytest.mark.parametrize("n", range(1, 10))
def test_adjoint_is_the_transpose(padding: str, n: int) -> None:
    """Eager and traceable, exactly (a divisor of 4 rounds nothing)."""
    if padding == "reflect" and n < 2:
        pytest.skip("reflect padding needs two samples")
    for taps in ALL_TAPS:
        stencil = padded_stencil(-1, taps, padding, divisor=4)
        a = _matrix(stencil, n)
        for traceable in (False, True):
            adjoint = stencil.adjoint(torch.eye(n, dtype=torch.float64), traceable=traceable).t()
            torch.testing.assert_close(adjoint, a.t(), rtol=0, atol=0, msg=str(taps))


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("n", range(1, 10))
def test_padding_matches_a_padded_convolution(padding: str, k: int, n: int) -> None:
    """Against ``F.pad`` + ``conv1d`` where ``F.pad`` takes the mode and the size (reflect: pad < n, circular:
    pad <= n), else against ``numpy.pad``, which reflects and wraps again and again past a short axis."""
    if padding == "reflect" and n < 2:
        pytest.skip("reflect padding needs two samples")
    taps = (2, -1, 5, 0, -3, 1, 4)[:k]
    x = torch.randn(3, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    h = k // 2
    torch_mode = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}
    fits = padding in torch_mode and not (padding == "reflect" and h >= n) and not (padding == "circular" and h > n)
    if fits:
        xp = F.pad(x[None], (h, h), mode=torch_mode[padding])[0]
        expected = F.conv1d(xp[:, None], torch.tensor(taps, dtype=x.dtype).reshape(1, 1, -1))[:, 0]
    else:
        expected = _correlate(x, taps, padding)
    stencil = padded_stencil(-1, taps, padding)
    for traceable in (False, True):
        torch.testing.assert_close(stencil.apply(x, traceable=traceable), expected)


@pytest.mark.parametrize("padding", PADDINGS)
def test_two_axes_match_conv2d(padding: str) -> None:
    """A 5-tap stencil along H after a 7-tap one along W: a padded conv2d with their outer product."""
    x = torch.randn(2, 3, 6, 9, dtype=torch.float64)
    ty, tx = (1, -2, 0, 2, -1), (1, 0, -3, 4, 2, -1, 1)
    op = Separable(((padded_stencil(-1, tx, padding), padded_stencil(-2, ty, padding, divisor=8)),))
    if padding == "symmetric":  # not a mode of F.pad
        xp = pad(pad(x, 3, padding, 1).transpose(-1, -2), 2, padding, 1).transpose(-1, -2)
    else:
        xp = F.pad(x, (3, 3, 2, 2), mode="constant" if padding == "zeros" else padding)
    kernel = torch.tensor(ty, dtype=x.dtype)[:, None] * torch.tensor(tx, dtype=x.dtype)
    expected = F.conv2d(xp, kernel.expand(3, 1, 5, 7), groups=3) / 8
    for traceable in (False, True):
        torch.testing.assert_close(op.apply(x, traceable=traceable)[0], expected)


@pytest.mark.parametrize("k, n", [(k, n) for k in (3, 5, 7) for n in (1, 2, 3, 5, 8, 11) if n >= k // 2])
def test_symmetric_matches_scipy(k: int, n: int) -> None:
    """Half-sample symmetric padding is ``scipy.ndimage.correlate1d(mode="reflect")`` on axes as long as the
    stencil's reach (scipy folds once; shorter axes fold as ``numpy.pad`` folds, checked above)."""
    taps = (3, -1, 4, 1, -5, 9, 2)[:k]
    x = np.random.default_rng(n).normal(size=(2, n))
    y = padded_stencil(-1, taps, "symmetric").apply(torch.from_numpy(x)).numpy()
    expected = scipy.ndimage.correlate1d(x, np.array(taps, dtype=np.float64), axis=-1, mode="reflect")
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_sobel_symmetric_matches_scipy() -> None:
    image = np.random.default_rng(0).normal(size=(6, 9))
    dy, dx = torchgrad.sobel(torch.from_numpy(image), padding="symmetric")
    np.testing.assert_allclose(dy.numpy(), scipy.ndimage.sobel(image, axis=0, mode="reflect"), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx.numpy(), scipy.ndimage.sobel(image, axis=1, mode="reflect"), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding", MODES)
@pytest.mark.parametrize("n", [2, 6])
def test_gradcheck_through_long_stencils(padding: str, n: int) -> None:
    op = Separable(
        (
            (padded_stencil(-2, (1, 4, 6, 4, 1), padding), padded_stencil(-1, (-1, -4, -5, 0, 5, 4, 1), padding, 16)),
            (padded_stencil(-1, (0, 0, -1, 1, 2), padding),),
        )
    )
    x = torch.randn(n, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: apply_operator(op, t), (x,))
    assert torch.autograd.gradgradcheck(lambda t: apply_operator(op, t), (x,))


@pytest.mark.parametrize("padding", MODES)
@pytest.mark.parametrize("n", [1, 3, 6, 13])
def test_eager_equals_traceable(padding: str, n: int) -> None:
    if padding == "reflect" and n < 2:
        pytest.skip("reflect padding needs two samples")
    x = torch.randn(3, n, 4, dtype=torch.float64)
    for taps in ALL_TAPS:
        stencil = padded_stencil(-2, taps, padding, divisor=3)
        # The same terms, summed in another order: equal to the last bits.
        torch.testing.assert_close(stencil.apply(x, traceable=True), stencil.apply(x), rtol=1e-15, atol=1e-14)
        torch.testing.assert_close(stencil.adjoint(x, traceable=True), stencil.adjoint(x), rtol=1e-15, atol=1e-14)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("position", [0, 1, 2, 4, 7, 8])
def test_nonfinite_follows_the_taps(padding: str, position: int) -> None:
    """An inf in ``x``: outputs turn non-finite exactly where the support reads it; a zero tap never reads."""
    taps = (-1, 2, 0, 0, 0, 2, 1)  # the zero taps: x[i - 1], x[i], x[i + 1]
    stencil = padded_stencil(-1, taps, padding)
    x = torch.ones(9, dtype=torch.float64)
    x[position] = float("inf")
    indicator = (~torch.isfinite(x)).to(torch.float64)
    reads = stencil.support().apply(indicator) != 0
    y = stencil.apply(x)
    assert torch.equal(~torch.isfinite(y), reads)
    assert torch.equal(~torch.isfinite(stencil.apply(x, traceable=True)), reads)
    if padding == "zeros":  # row i reads x[i] through no tap (a convolution's 0 * inf would make it NaN)
        assert torch.isfinite(y[position])


def test_valid_rows_are_zero() -> None:
    x = torch.randn(6, dtype=torch.float64)
    y = padded_stencil(-1, (0, -1, 1), "valid").apply(x)
    assert y[-1] == 0 and torch.equal(y[:-1], x[1:] - x[:-1])
    z = padded_stencil(-1, (1, 0, 0, 0, -1), "valid").apply(x)
    assert torch.equal(z[:2], torch.zeros(2, dtype=x.dtype)) and torch.equal(z[-2:], torch.zeros(2, dtype=x.dtype))
    assert torch.equal(z[2:-2], x[:-4] - x[4:])


@pytest.mark.parametrize("n", range(1, 10))
def test_per_row_and_complex_weights(n: int) -> None:
    """Explicit border rows (counted from either end) and tensor taps; axes shorter than the rows take them in order."""
    g = torch.Generator().manual_seed(n)
    taps = tuple(torch.randn(max(n - 2, 0), dtype=torch.complex128, generator=g) for _ in range(3))
    first = Row(((0, 1.5 - 1j), (min(2, n - 1), torch.tensor(0.25 + 2j, dtype=torch.complex128))), divisor=2j)
    last = Row(((-1, -1.0), (-min(3, n), 3.0)), divisor=torch.tensor(0.5, dtype=torch.float64))
    stencil = Stencil(-1, taps, 3.0, (first,), (last,))
    a = _matrix(stencil, n, torch.complex128)
    torch.testing.assert_close(stencil.adjoint(torch.eye(n, dtype=torch.complex128)).t(), a.conj().t())
    x = torch.randn(n, dtype=torch.complex128, generator=g)
    torch.testing.assert_close(stencil.apply(x), a @ x)
    torch.testing.assert_close(stencil.apply(x, traceable=True), a @ x)


def test_adjoint_accumulates() -> None:
    stencil = padded_stencil(-2, (1, 4, 6, 4, 1), "reflect")
    g = torch.randn(5, 4, dtype=torch.float64)
    base = torch.randn(5, 4, dtype=torch.float64)
    out = base.clone()
    stencil.adjoint(g, out=out, accumulate=True)
    torch.testing.assert_close(out, base + stencil.adjoint(g))


def test_refuses_even_and_long_taps() -> None:
    with pytest.raises(ValueError, match="odd number of taps up to 7"):
        padded_stencil(-1, (1, 2), "zeros")
    with pytest.raises(ValueError, match="odd number of taps up to 7"):
        padded_stencil(-1, (1,) * 9, "zeros")
    with pytest.raises(ValueError, match="padding must be one of"):
        padded_stencil(-1, (1, 2, 1), "mirror")


COMPILED = {
    "sobel": lambda x: torchgrad.sobel(x),
    "sobel_symmetric": lambda x: torchgrad.sobel(x, padding="symmetric", normalized=True),
    "image_gradients": lambda x: torchgrad.image_gradients(x),
    "gradient": lambda x: torchgrad.gradient(x, dim=(-2, -1)),
}


@pytest.mark.parametrize("name", COMPILED)
def test_one_compilation_for_every_size(name: str) -> None:
    """Size-free descriptions: under ``torch.compile(dynamic=True)`` new heights and widths reuse one graph, forward
    and backward (operators built for one size recompiled for each input that needs a gradient)."""
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    counter = CompileCounter()
    fn = COMPILED[name]
    compiled = torch.compile(fn, backend=counter, dynamic=True, fullgraph=True)
    for h, w in [(9, 11), (12, 10), (17, 23), (10, 31), (25, 14)]:
        x = torch.randn(2, 1, h, w, dtype=torch.float64, requires_grad=True)
        got, expected = compiled(x), fn(x)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b)
        cotangents = [torch.randn_like(o) for o in expected]
        grad = torch.autograd.grad(got, x, cotangents)[0]
        torch.testing.assert_close(grad, torch.autograd.grad(expected, x, cotangents)[0])
    assert counter.frame_count == 1
