"""gradient_magnitude: the norm of each operator's components, finite gradients on flat images."""

from __future__ import annotations

import os

import kornia
import pytest
import torch
from helpers import saved_tensors
from torch.func import jacfwd, jacrev, jvp, vmap

from torchgrad import GradientMagnitude, gradient, gradient_magnitude, image_gradients, prewitt, scharr, sobel
from torchgrad._filters import build_operator
from torchgrad._registry import REGISTRY
from torchgrad.magnitude import magnitude_gradient, plain_norm

COMPONENTS = {
    "sobel": sobel,
    "scharr": scharr,
    "prewitt": prewitt,
    "diff": image_gradients,
    "central": lambda x: gradient(x, dim=(-2, -1)),
}
"""The public operator whose components each ``operator`` of the magnitude takes, with the same options."""


@pytest.mark.parametrize(
    "operator, options",
    [
        ("sobel", dict()),
        ("scharr", dict(padding="zeros", normalized=True)),
        ("diff", dict()),
        ("sobel", dict(spatial_dims=3, padding="circular")),
        ("diff", dict(spatial_dims=3)),
        ("prewitt", dict(padding="replicate", normalized=True)),
        ("central", dict()),
    ],
)
def test_values_and_gradients(operator: str, options: dict) -> None:
    """``sqrt(sum of squared components + eps)``; on three channels of 4 x 5 pixels (one volume of 3 x 4 x 5), each
    axis holds both border rows of a 3-tap stencil and an interior row (the checks' cost grows with the size)."""
    kwargs = dict(operator=operator, **options)
    x = torch.randn(1, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    expected = torch.sqrt(sum(c * c for c in COMPONENTS[operator](x, **options)) + 1e-3)
    torch.testing.assert_close(gradient_magnitude(x, eps=1e-3, **kwargs), expected)
    assert torch.autograd.gradcheck(lambda x: gradient_magnitude(x, eps=1e-3, **kwargs), x)
    assert torch.autograd.gradgradcheck(lambda x: gradient_magnitude(x, eps=1e-3, **kwargs), x)


def test_one_gradient_formula_in_place_or_not() -> None:
    """``magnitude_gradient`` (every backward of the magnitude, eager, traced and on the kernels' fallback), plain
    or scaling the components in place, is autograd's gradient of ``plain_norm(A x)``, up to rounding."""
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64)
    op = build_operator("t", REGISTRY["sobel"], x, "reflect", False, 2)
    grad = torch.randn_like(x)
    leaf = x.clone().requires_grad_()
    (expected,) = torch.autograd.grad(plain_norm(sobel(leaf), 1e-3), leaf, grad)
    torch.testing.assert_close(magnitude_gradient(op.apply(x), grad, 1e-3, op.adjoint), expected)
    components = op.apply(x)
    torch.testing.assert_close(magnitude_gradient(components, grad, 1e-3, op.adjoint, in_place=True), expected)
    fresh = op.apply(x)
    torch.testing.assert_close(components[0], fresh[0] * grad / plain_norm(fresh, 1e-3))  # scaled in place


def test_matches_kornia_sobel() -> None:
    x = torch.rand(2, 3, 16, 12)
    torch.testing.assert_close(gradient_magnitude(x, padding="replicate", normalized=True), kornia.filters.sobel(x))


def test_flat_image_has_a_finite_gradient() -> None:
    x = torch.ones(1, 1, 6, 6, requires_grad=True)
    magnitude = gradient_magnitude(x)
    torch.testing.assert_close(magnitude, torch.full_like(x, 1e-3))
    magnitude.sum().backward()
    assert torch.isfinite(x.grad).all()
    naive = x.detach().clone().requires_grad_()
    torch.sqrt(sum(c * c for c in sobel(naive))).sum().backward()
    assert torch.isnan(naive.grad).any()  # the trap that eps avoids


def test_saves_only_a_reference_to_the_input() -> None:
    """A reference to the input; the Triton ops (``TORCHGRAD_FORCE_TRITON=1``) also keep their argument
    ``eps``, a 0-d tensor."""
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    saved = saved_tensors(lambda: gradient_magnitude(x))
    assert saved[0].data_ptr() == x.data_ptr()
    if os.environ.get("TORCHGRAD_FORCE_TRITON") == "1":
        assert len(saved) == 2 and saved[1].dim() == 0 and saved[1].dtype == torch.float64
        assert saved[1].item() == 1e-6  # the default eps
    else:
        assert len(saved) == 1


def test_torch_func_and_compile() -> None:
    x = torch.randn(3, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(vmap(gradient_magnitude)(x), gradient_magnitude(x))
    torch.testing.assert_close(jacfwd(gradient_magnitude)(x[0]), jacrev(gradient_magnitude)(x[0]))
    torch._dynamo.reset()
    compiled = torch.compile(gradient_magnitude, fullgraph=True)  # by Inductor
    xc = x.clone().requires_grad_()
    torch.testing.assert_close(compiled(xc), gradient_magnitude(x))
    torch.testing.assert_close(*(torch.autograd.grad(f(xc).sum(), xc)[0] for f in (compiled, gradient_magnitude)))


def test_compile_dynamic_fullgraph() -> None:
    """``dynamic=True`` makes ``eps`` a symbolic float: its checks become guards (no graph break), one graph
    serves every size and every valid ``eps``, values and gradients as in eager mode."""
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    counter = CompileCounter()
    compiled = torch.compile(gradient_magnitude, backend=counter, dynamic=True, fullgraph=True)
    for shape, eps in [((2, 9, 11), 1e-3), ((3, 12, 10), 0.25), ((2, 10, 13), 1e-6)]:
        x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
        got, expected = compiled(x, eps=eps), gradient_magnitude(x, eps=eps)
        torch.testing.assert_close(got, expected)
        cotangent = torch.randn_like(got)
        torch.testing.assert_close(*(torch.autograd.grad(y, x, cotangent)[0] for y in (got, expected)))
    assert counter.frame_count == 1


def test_eps_of_any_real_type() -> None:
    """``eps`` is used as the float it was checked as (a Fraction or a NumPy float works like a float)."""
    import fractions

    import numpy as np

    x = torch.randn(2, 6, 7, dtype=torch.float64)
    for eps in (fractions.Fraction(1, 1000), np.float64(1e-3), np.float32(0.25)):
        torch.testing.assert_close(gradient_magnitude(x, eps=eps), gradient_magnitude(x, eps=float(eps)))


def test_bad_arguments() -> None:
    x = torch.randn(4, 4)
    with pytest.raises(
        ValueError, match="`operator` must be one of 'diff', 'sobel', 'scharr', 'central', 'prewitt', got 'canny'"
    ):
        gradient_magnitude(x, operator="canny")
    for second_order in ("laplacian", "hessian"):
        with pytest.raises(
            ValueError, match=f"`operator` must be a first-order operator.*got the second-order '{second_order}'"
        ):
            gradient_magnitude(x, operator=second_order)
    with pytest.raises(ValueError, match="`eps` must be a non-negative number"):
        gradient_magnitude(x, eps=-1.0)
    with pytest.raises(
        ValueError, match="`padding` and `normalized` apply to 'sobel', 'scharr', 'prewitt', not to 'diff'"
    ):
        gradient_magnitude(x, operator="diff", padding="zeros")
    with pytest.raises(ValueError, match="`spatial_dims` must be 2"):
        gradient_magnitude(torch.randn(4, 4, 4), operator="scharr", spatial_dims=3)
    with pytest.raises(TypeError, match="real floating dtype, got torch.complex64"):
        gradient_magnitude(x.to(torch.complex64))
    with pytest.raises(ValueError, match="`padding`"):
        gradient_magnitude(x, padding="same")
    with pytest.raises(ValueError, match="`operator`"):
        GradientMagnitude(operator="laplace")
    with pytest.raises(ValueError, match="`eps`"):
        GradientMagnitude(eps=-1e-3)
    with pytest.raises(ValueError, match="`spatial_dims` must be 2"):
        GradientMagnitude(operator="scharr", spatial_dims=3)


HALF = (torch.float16, torch.bfloat16)
HALF_CASES = [
    dict(),
    dict(operator="scharr", padding="zeros"),
    dict(operator="diff"),
    dict(operator="sobel", spatial_dims=3, padding="replicate"),
]


def _assert_close_half(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, spread: bool = False) -> None:
    """``actual`` (in ``dtype``) against a float64 ``expected``, to within one rounding to ``dtype`` of a value
    computed in float32; ``spread`` adds float32's error on sums whose terms cancel, scaled to the largest value."""
    assert actual.dtype == dtype and torch.isfinite(actual).all()
    rtol = torch.finfo(dtype).eps  # twice the unit roundoff
    atol = 1e-2 * rtol * expected.abs().max().item() if spread else 1e-5
    torch.testing.assert_close(actual.double(), expected, rtol=rtol, atol=atol)


def _image(dtype: torch.dtype, spatial_dims: int = 2, seed: int = 0) -> torch.Tensor:
    """An 8-bit image (0..255, exact in both half dtypes) in ``dtype``."""
    gen = torch.Generator().manual_seed(seed)
    shape = (2, 3, 9, 10) if spatial_dims == 2 else (2, 5, 6, 7)
    return torch.randint(0, 256, shape, generator=gen).to(dtype)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("kwargs", HALF_CASES)
def test_half_precision_forward_and_backward(dtype: torch.dtype, kwargs: dict) -> None:
    """Squares and sums in float32: no float16 overflow to inf (and all-zero gradients through it)."""
    x = _image(dtype, kwargs.get("spatial_dims", 2)).requires_grad_()
    x64 = x.detach().double().requires_grad_()
    probe = torch.rand(x.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    out, ref = gradient_magnitude(x, **kwargs), gradient_magnitude(x64, **kwargs)
    assert ref.max() > 256  # its square is beyond float16's range (65504)
    _assert_close_half(out, ref.detach(), dtype)
    (grad,) = torch.autograd.grad(out, x, probe)
    (grad_ref,) = torch.autograd.grad(ref, x64, probe.double())
    assert grad.abs().max() > 0.1
    _assert_close_half(grad, grad_ref, dtype, spread=True)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("flat", [True, False])
def test_half_precision_double_backward(dtype: torch.dtype, flat: bool) -> None:
    """gradgrad of GradientMagnitude: where the image is flat 1 / (|A x|^2 + eps) is far beyond float16's range."""
    module = GradientMagnitude()
    gen = torch.Generator().manual_seed(2)
    x = torch.full((1, 2, 7, 8), 3.0) if flat else torch.rand(1, 2, 7, 8, generator=gen)
    v = torch.rand(x.shape, generator=gen)
    w = torch.rand(x.shape, generator=gen) * (1e-2 if flat else 1.0)  # a flat image's curvature is 1 / sqrt(eps)
    x, v, w = x.to(dtype), v.to(dtype), w.to(dtype)
    results = []
    for t in (x.clone().requires_grad_(), x.double().requires_grad_()):
        (g,) = torch.autograd.grad(module(t), t, v.to(t.dtype), create_graph=True)
        (gg,) = torch.autograd.grad(g, t, w.to(t.dtype))
        results.append((g, gg))
    (g, gg), (g_ref, gg_ref) = results
    assert gg_ref.abs().max() > 1
    _assert_close_half(g.detach(), g_ref.detach(), dtype, spread=True)
    _assert_close_half(gg, gg_ref, dtype, spread=True)


@pytest.mark.parametrize("dtype", HALF)
def test_half_precision_jvp_and_vmap(dtype: torch.dtype) -> None:
    x = _image(dtype)[0]
    t = torch.rand(x.shape, generator=torch.Generator().manual_seed(3)).to(dtype)
    out, tangent = jvp(gradient_magnitude, (x,), (t,))
    out_ref, tangent_ref = jvp(gradient_magnitude, (x.double(),), (t.double(),))
    _assert_close_half(out, out_ref, dtype)
    _assert_close_half(tangent, tangent_ref, dtype, spread=True)
    _assert_close_half(vmap(gradient_magnitude)(x), out_ref, dtype)
    small = x[0, :5, :6]
    jacobian = jacrev(gradient_magnitude)(small)  # vmap over the differentiable backward
    _assert_close_half(jacobian, jacrev(gradient_magnitude)(small.double()), dtype, spread=True)
