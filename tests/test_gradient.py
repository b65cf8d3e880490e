"""gradient: a drop-in for torch.gradient, checked against it on every accepted form of input."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchgrad import GradientError, gradient

T = torch.tensor([[1, 2, 4, 8], [10, 20, 40, 80]])


def _same(ours: tuple[torch.Tensor, ...], theirs: tuple[torch.Tensor, ...], atol: float = 1e-6) -> None:
    assert isinstance(ours, tuple) and len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype and a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-5, atol=atol, equal_nan=True)


def _rounding(x: torch.Tensor) -> float:
    """How far two correct implementations may differ on ``x`` (the same terms summed in another order): a few
    ulps of its largest value over the smallest step the strategies draw (0.25); complex64 in float32's precision."""
    precision = x.real.dtype if x.is_floating_point() or x.is_complex() else torch.float32
    return max(1e-6, 8 * torch.finfo(precision).eps * float(x.abs().max()) / 0.25) if x.numel() else 1e-6


def test_reference_page_examples() -> None:
    """The worked examples of the torch.gradient page, whose lost calls are restored here."""
    coordinates = (torch.tensor([-2.0, -1.0, 1.0, 4.0]),)
    values = torch.tensor([4.0, 1.0, 1.0, 16.0])
    assert torch.equal(gradient(values, spacing=coordinates)[0], torch.tensor([-3.0, -2.0, 2.0, 5.0]))

    d0, d1 = gradient(T)
    assert torch.equal(d0, torch.tensor([[9.0, 18.0, 36.0, 72.0]] * 2))
    assert torch.equal(d1, torch.tensor([[1.0, 1.5, 3.0, 4.0], [10.0, 15.0, 30.0, 40.0]]))

    d0, d1 = gradient(T, spacing=2.0)
    assert torch.equal(d0, torch.tensor([[4.5, 9.0, 18.0, 36.0]] * 2))
    assert torch.equal(d1, torch.tensor([[0.5, 0.75, 1.5, 2.0], [5.0, 7.5, 15.0, 20.0]]))

    (d1,) = gradient(T, dim=1)
    assert torch.equal(d1, torch.tensor([[1.0, 1.5, 3.0, 4.0], [10.0, 15.0, 30.0, 40.0]]))


def test_list_spacing_applies_spacing_i_to_dim_i() -> None:
    """The page prints, under spacing=[3., 2.], the output of spacing=[2., 3.]: torch.gradient
    (and torchgrad) divide dim i by spacing[i]."""
    d0, d1 = gradient(T, spacing=[3.0, 2.0])
    torch.testing.assert_close(d0, torch.tensor([[3.0, 6.0, 12.0, 24.0]] * 2))
    torch.testing.assert_close(d1, torch.tensor([[0.5, 0.75, 1.5, 2.0], [5.0, 7.5, 15.0, 20.0]]))
    _same(gradient(T, spacing=[3.0, 2.0]), torch.gradient(T, spacing=[3.0, 2.0]))
    printed = (
        torch.tensor([[4.5, 9.0, 18.0, 36.0]] * 2),
        torch.tensor([[0.3333, 0.5, 1.0, 1.3333], [3.3333, 5.0, 10.0, 13.3333]]),
    )
    for ours, page in zip(gradient(T, spacing=[2.0, 3.0]), printed):
        torch.testing.assert_close(ours, page, rtol=0, atol=1e-4)
    # The page's explicit-coordinates replica of that output, with integer coordinates:
    coords = (torch.tensor([0, 2]), torch.tensor([0, 3, 6, 9]))
    for ours, page in zip(gradient(T, spacing=coords), printed):
        torch.testing.assert_close(ours, page, rtol=0, atol=1e-4)


def _spacing_for(draw: Any, shape: tuple[int, ...], dims: list[int], kind: str, complex_ok: bool) -> Any:
    if kind == "default":
        return None
    if kind == "scalar":
        return draw(st.sampled_from([2, 0.5, -1.5, 3.0] + ([2j] if complex_ok else [])))
    if kind == "tensor_scalar":
        return torch.tensor(draw(st.sampled_from([0.25, 4.0])))
    if kind == "list":
        return [draw(st.sampled_from([1, 0.5, 2.0, -3.0])) for _ in dims]
    coords = []
    for d in dims:
        steps = draw(st.lists(st.floats(0.25, 3.0), min_size=shape[d] - 1, max_size=shape[d] - 1))
        dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.int64]))
        coords.append(torch.tensor([0.0] + steps, dtype=torch.float64).cumsum(0).to(dtype))
    return coords


@st.composite
def torch_gradient_calls(draw: Any) -> tuple[torch.Tensor, dict[str, Any]]:
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=4)))
    dtype = draw(
        st.sampled_from([torch.float32, torch.float64, torch.int64, torch.int16, torch.complex64, torch.float16])
    )
    seed = draw(st.integers(0, 2**32 - 1))  # from hypothesis, so that a failing example replays exactly
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * 10
    x = x.to(dtype) if dtype.is_complex or dtype.is_floating_point else x.round().to(dtype)
    ndim = len(shape)
    style = draw(st.sampled_from(["none", "int", "list", "tuple"]))
    if style == "none":
        dim, dims = None, list(range(ndim))
    elif style == "int":
        dim = draw(st.integers(-ndim, ndim - 1))
        dims = [dim % ndim]
    else:
        dims = draw(st.lists(st.integers(-ndim, ndim - 1), min_size=0, max_size=ndim, unique_by=lambda d: d % ndim))
        dim = dims if style == "list" else tuple(dims)
        dims = [d % ndim for d in dims]
    edge_order = draw(st.sampled_from([1, 2]))
    kind = draw(st.sampled_from(["default", "scalar", "tensor_scalar", "list", "coords"]))
    kwargs: dict[str, Any] = {"edge_order": edge_order}
    if dim is not None:
        kwargs["dim"] = dim
    spacing = _spacing_for(draw, shape, dims, kind, complex_ok=dtype != torch.float16)  # no complex-half division
    if spacing is not None:
        kwargs["spacing"] = spacing
    return x, kwargs


@settings(max_examples=200)
@given(torch_gradient_calls())
def test_matches_torch_gradient(call: tuple[torch.Tensor, dict[str, Any]]) -> None:
    """Same outputs and dtypes for every accepted input; an error of a compatible class otherwise."""
    x, kwargs = call
    try:
        expected = torch.gradient(x, **kwargs)
    except IndexError:
        with pytest.raises(IndexError):
            gradient(x, **kwargs)
        return
    except RuntimeError:
        with pytest.raises(GradientError):
            gradient(x, **kwargs)
        return
    _same(gradient(x, **kwargs), expected, atol=_rounding(x))


@pytest.mark.parametrize("edge_order", [1, 2])
def test_bitwise_equal_on_uniform_grids_and_to_rounding_on_coordinates(edge_order: int) -> None:
    x = torch.randn(3, 8, 9)
    for spacing in (1, 0.3, [2.0, -0.7]):
        for ours, theirs in zip(
            gradient(x, spacing=spacing, dim=[1, 2], edge_order=edge_order),
            torch.gradient(x, spacing=spacing, dim=[1, 2], edge_order=edge_order),
        ):
            assert torch.equal(ours, theirs)
    # On a non-uniform grid the interior sums three products with fused multiply-adds: equal to rounding.
    coords = torch.rand(9, dtype=torch.float64).cumsum(0)
    x = x.double()
    ours = gradient(x, spacing=[coords], dim=2, edge_order=edge_order)[0]
    theirs = torch.gradient(x, spacing=[coords], dim=2, edge_order=edge_order)[0]
    torch.testing.assert_close(ours, theirs, rtol=1e-13, atol=1e-13)
    assert torch.equal(ours[..., [0, -1]], theirs[..., [0, -1]])


def test_complex_gradcheck() -> None:
    z = torch.randn(4, 5, dtype=torch.complex128, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: gradient(z, spacing=[0.5, 2.0]), z)


def test_empty_dims_and_scalar_input() -> None:
    assert gradient(torch.randn(3, 4), dim=[]) == ()
    assert gradient(torch.tensor(1.0)) == ()


def test_gradient_error_is_a_value_and_a_runtime_error() -> None:
    """Code that catches torch.gradient's RuntimeError catches it (the inputs: tests/test_validation.py)."""
    assert issubclass(GradientError, ValueError) and issubclass(GradientError, RuntimeError)


def test_gradients_reach_coordinate_spacing() -> None:
    """As with torch.gradient, coordinates that require grad receive gradients."""
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    coords = torch.tensor([0.0, 1.0, 2.5, 3.0, 5.0], dtype=torch.float64, requires_grad=True)
    for edge_order in (1, 2):
        ours = gradient(x, spacing=[coords], dim=1, edge_order=edge_order)[0]
        theirs = torch.gradient(x, spacing=[coords], dim=1, edge_order=edge_order)[0]
        torch.testing.assert_close(ours, theirs)
        probe = torch.randn_like(ours)
        g_ours = torch.autograd.grad((ours * probe).sum(), (x, coords))
        g_theirs = torch.autograd.grad((theirs * probe).sum(), (x, coords))
        for a, b in zip(g_ours, g_theirs):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("dtype, h", [(torch.float32, 0.3), (torch.int64, 2), (torch.float32, 2 + 1j)])
def test_a_0d_tensor_spacing_is_never_read_on_the_host(
    dtype: torch.dtype, h: complex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 0-d tensor spacing divides as a tensor: torch.gradient's values and dtypes bit for bit, with no
    ``Tensor.item`` (a host synchronisation on a GPU), a gradient for the spacing and no graph break."""
    x = (torch.randn(4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 10).to(dtype)
    spacing = torch.tensor(h, dtype=torch.complex64 if isinstance(h, complex) else torch.float64)
    expected = torch.gradient(x, spacing=spacing, edge_order=2)
    monkeypatch.setattr(torch.Tensor, "item", lambda self: pytest.fail("the spacing was read on the host"))
    for ours, theirs in zip(gradient(x, spacing=spacing, edge_order=2), expected):
        assert ours.dtype == theirs.dtype and torch.equal(ours, theirs)
    if dtype.is_floating_point:
        step = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
        (dh,) = torch.autograd.grad(sum(o.sum() for o in gradient(x, spacing=step)), step)
        torch.testing.assert_close(dh.float(), -sum(o.sum() for o in torch.gradient(x, spacing=0.5)) / 0.5)
        compiled = torch.compile(lambda x, h: gradient(x, spacing=h), fullgraph=True)
        _same(compiled(x, torch.tensor(0.25)), torch.gradient(x, spacing=0.25))
