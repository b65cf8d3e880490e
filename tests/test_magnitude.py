"""gradient_magnitude: the norm of each operator's components, finite gradients on flat images."""

from __future__ import annotations

import kornia
import pytest
import torch
from torch.func import jacfwd, jacrev, vmap

from torchgrad import GradientMagnitude, gradient_magnitude, image_gradients, scharr, sobel


def _reference(components: tuple[torch.Tensor, ...], eps: float) -> torch.Tensor:
    return torch.sqrt(sum(c * c for c in components) + eps)


@pytest.mark.parametrize(
    "kwargs, components",
    [
        (dict(), lambda x: sobel(x)),
        (
            dict(operator="scharr", padding="zeros", normalized=True),
            lambda x: scharr(x, padding="zeros", normalized=True),
        ),
        (dict(operator="diff"), lambda x: image_gradients(x)),
        (
            dict(operator="sobel", spatial_dims=3, padding="circular"),
            lambda x: sobel(x, padding="circular", spatial_dims=3),
        ),
        (dict(operator="diff", spatial_dims=3), lambda x: image_gradients(x, spatial_dims=3)),
    ],
)
def test_values_and_gradients(kwargs: dict, components) -> None:
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(gradient_magnitude(x, eps=1e-3, **kwargs), _reference(components(x), 1e-3))
    assert torch.autograd.gradcheck(lambda x: gradient_magnitude(x, eps=1e-3, **kwargs), x)
    assert torch.autograd.gradgradcheck(lambda x: gradient_magnitude(x, eps=1e-3, **kwargs), x)


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
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        gradient_magnitude(x)
    assert len(saved) == 1 and saved[0].data_ptr() == x.data_ptr()


def test_torch_func_and_compile() -> None:
    x = torch.randn(3, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(vmap(gradient_magnitude)(x), gradient_magnitude(x))
    torch.testing.assert_close(jacfwd(gradient_magnitude)(x[0]), jacrev(gradient_magnitude)(x[0]))
    torch._dynamo.reset()
    compiled = torch.compile(gradient_magnitude, fullgraph=True)
    xc = x.clone().requires_grad_()
    xe = x.clone().requires_grad_()
    torch.testing.assert_close(compiled(xc), gradient_magnitude(xe))
    compiled(xc).sum().backward()
    gradient_magnitude(xe).sum().backward()
    torch.testing.assert_close(xc.grad, xe.grad)


def test_bad_arguments() -> None:
    x = torch.randn(4, 4)
    with pytest.raises(ValueError, match="`operator` must be one of 'sobel', 'scharr', 'diff', got 'canny'"):
        gradient_magnitude(x, operator="canny")
    with pytest.raises(ValueError, match="`eps` must be a non-negative number"):
        gradient_magnitude(x, eps=-1.0)
    with pytest.raises(ValueError, match="`padding` and `normalized` apply to 'sobel' and 'scharr'"):
        gradient_magnitude(x, operator="diff", padding="zeros")
    with pytest.raises(ValueError, match="`spatial_dims` must be 2"):
        gradient_magnitude(torch.randn(4, 4, 4), operator="scharr", spatial_dims=3)
    with pytest.raises(TypeError, match="real floating dtype, got torch.complex64"):
        gradient_magnitude(x.to(torch.complex64))
    with pytest.raises(TypeError, match="real floating dtype, got torch.int64"):
        gradient_magnitude(x.long(), operator="diff")
    with pytest.raises(ValueError, match="`padding`"):
        gradient_magnitude(x, padding="same")
    with pytest.raises(ValueError, match="`operator`"):
        GradientMagnitude(operator="laplace")
    with pytest.raises(ValueError, match="`eps`"):
        GradientMagnitude(eps=-1e-3)
    with pytest.raises(ValueError, match="`spatial_dims` must be 2"):
        GradientMagnitude(operator="scharr", spatial_dims=3)


def test_module() -> None:
    x = torch.randn(2, 5, 5)
    module = GradientMagnitude(operator="scharr", eps=1e-4)
    assert torch.equal(module(x), gradient_magnitude(x, operator="scharr", eps=1e-4))
    assert "operator='scharr'" in repr(module)
