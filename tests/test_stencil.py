"""The shared stencil: its adjoint is the exact (conjugate) transpose of its matrix, for every
padding, size and kind of weight."""

from __future__ import annotations

import pytest
import torch
from references import PADDINGS

from torchgrad._stencil import Row, Stencil, padded_stencil


def _matrix(stencil: Stencil, n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Column k is A e_k."""
    return stencil.apply(torch.eye(n, dtype=dtype)).t()


def _adjoint_matrix(stencil: Stencil, n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return stencil.adjoint(torch.eye(n, dtype=dtype)).t()


@pytest.mark.parametrize("padding", PADDINGS + ("valid",))
@pytest.mark.parametrize("taps", [(1, 2, 1), (-1, 0, 1), (0, -1, 1), (3, 10, 3)])
@pytest.mark.parametrize("n", range(1, 10))
def test_adjoint_is_the_transpose(padding: str, taps: tuple[int, int, int], n: int) -> None:
    if padding == "reflect" and n < 2:
        pytest.skip("reflect padding needs two samples")
    stencil = padded_stencil(-1, n, taps, padding, divisor=4)
    a = _matrix(stencil, n)
    torch.testing.assert_close(_adjoint_matrix(stencil, n), a.t(), rtol=0, atol=0)


@pytest.mark.parametrize("padding", PADDINGS)
def test_padding_matches_torch_pad(padding: str) -> None:
    x = torch.randn(3, 7, dtype=torch.float64)
    mode = "constant" if padding == "zeros" else padding
    xp = torch.nn.functional.pad(x[None], (1, 1), mode=mode)[0]
    expected = 2 * xp[:, :-2] - xp[:, 1:-1] + 5 * xp[:, 2:]
    torch.testing.assert_close(padded_stencil(-1, 7, (2, -1, 5), padding).apply(x), expected)


def test_valid_rows_are_zero() -> None:
    x = torch.randn(6, dtype=torch.float64)
    y = padded_stencil(-1, 6, (0, -1, 1), "valid").apply(x)
    assert y[-1] == 0 and torch.equal(y[:-1], x[1:] - x[:-1])


@pytest.mark.parametrize("n", range(3, 10))
def test_per_row_and_complex_weights(n: int) -> None:
    g = torch.Generator().manual_seed(n)
    taps = tuple(torch.randn(n - 2, dtype=torch.complex128, generator=g) for _ in range(3))
    first = Row(((0, 1.5 - 1j), (2, torch.tensor(0.25 + 2j, dtype=torch.complex128))), divisor=2j)
    last = Row(((n - 1, -1.0), (n - 3, 3.0)), divisor=torch.tensor(0.5, dtype=torch.float64))
    stencil = Stencil(-1, n, taps, 3.0, first, last)
    a = _matrix(stencil, n, torch.complex128)
    torch.testing.assert_close(_adjoint_matrix(stencil, n, torch.complex128), a.conj().t())
    x = torch.randn(n, dtype=torch.complex128, generator=g)
    torch.testing.assert_close(stencil.apply(x), a @ x)


def test_adjoint_accumulates() -> None:
    stencil = padded_stencil(-2, 5, (1, 2, 1), "reflect")
    g = torch.randn(5, 4, dtype=torch.float64)
    base = torch.randn(5, 4, dtype=torch.float64)
    out = base.clone()
    stencil.adjoint(g, out=out, accumulate=True)
    torch.testing.assert_close(out, base + stencil.adjoint(g))
