"""TotalVariationLoss against the anisotropic, squared and isotropic formulas written plainly."""

from __future__ import annotations

import os

import pytest
import torch
from helpers import saved_tensors
from references import naive_gradients

from torchgrad.losses import TotalVariationLoss
from torchgrad.losses.functional import total_variation_loss


def naive_tv(x, p, isotropic, reduction, eps=1e-8):
    g = naive_gradients(x, "diff")
    if isotropic:
        per = torch.sqrt(sum(c**2 for c in g) + eps)
    else:
        per = sum(c.abs() ** p for c in g)
    return {"none": per, "sum": per.sum(), "mean": per.mean()}[reduction]


@pytest.mark.parametrize("p, isotropic", [(1, False), (2, False), (1, True)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(2, 3, 6, 7), (1, 2, 4, 5, 6)])
def test_matches_naive_autograd(p: int, isotropic: bool, reduction: str, shape: tuple) -> None:
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    ours = TotalVariationLoss(p=p, isotropic=isotropic, reduction=reduction)(x)
    ref = naive_tv(x, p, isotropic, reduction)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref)
    probe = torch.randn_like(ours)
    torch.testing.assert_close(
        torch.autograd.grad((ours * probe).sum(), x)[0], torch.autograd.grad((ref * probe).sum(), x)[0]
    )


def test_known_value() -> None:
    image = torch.zeros(1, 1, 3, 3)
    image[..., 1, 1] = 1.0
    assert total_variation_loss(image, reduction="sum") == 4.0


def test_gradcheck_and_saved_memory() -> None:
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    for kwargs in (dict(p=1), dict(p=2), dict(isotropic=True, eps=1e-3)):
        assert torch.autograd.gradcheck(lambda x: total_variation_loss(x, **kwargs), x)
        saved = saved_tensors(lambda: total_variation_loss(x, **kwargs))
        # nothing but the input; the Triton kernels' magnitude also keeps its eps, a float64 scalar tensor
        assert {t.data_ptr() for t in saved if t.dim() > 0} <= {x.data_ptr()}
        scalars = [t.item() for t in saved if t.dim() == 0 and t.dtype == torch.float64]
        forced = os.environ.get("TORCHGRAD_FORCE_TRITON") == "1" and kwargs.get("isotropic", False)
        assert scalars == ([kwargs["eps"]] if forced else []) and len(saved) == 1 + len(scalars)
    assert torch.autograd.gradgradcheck(lambda x: total_variation_loss(x, p=2), x)


def test_half_precision_and_autocast() -> None:
    x = torch.rand(2, 3, 16, 16)
    expected = total_variation_loss(x.double())
    got = total_variation_loss(x.half())
    assert got.dtype == torch.float16
    torch.testing.assert_close(got.double(), expected, rtol=1e-2, atol=1e-3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = total_variation_loss(x.bfloat16())
    assert loss.dtype == torch.float32


def test_compiled_style_transfer_step() -> None:
    pixels = torch.rand(1, 3, 12, 12, requires_grad=True)
    criterion = TotalVariationLoss(isotropic=True)
    torch._dynamo.reset()
    compiled = torch.compile(criterion, fullgraph=True)
    loss = compiled(pixels)
    (g,) = torch.autograd.grad(loss, pixels)
    (g_eager,) = torch.autograd.grad(criterion(pixels), pixels)
    torch.testing.assert_close(g, g_eager)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_isotropic_on_a_flat_image(dtype: torch.dtype) -> None:
    """sqrt(eps) and a finite gradient; eps = 1e-8 underflows in float16, where the form is computed in float32."""
    x = torch.zeros(1, 1, 8, 8, dtype=dtype, requires_grad=True)
    loss = total_variation_loss(x, isotropic=True)
    loss.backward()
    assert loss.dtype == dtype and loss.item() == pytest.approx(1e-4, rel=1e-2)
    assert torch.isfinite(x.grad.float()).all()
