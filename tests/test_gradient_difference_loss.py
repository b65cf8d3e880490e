"""GradientDifferenceLoss against Mathieu et al.'s formula written with plain autograd."""

from __future__ import annotations

import pytest
import torch
from helpers import saved_tensors
from references import naive_gradients

from torchgrad.losses import GradientDifferenceLoss
from torchgrad.losses.functional import gradient_difference_loss


def naive_gdl(x, y, alpha, operator, reduction):
    per = torch.stack(
        [
            (a.abs() - b.abs()).abs() ** alpha
            for a, b in zip(naive_gradients(x, operator), naive_gradients(y, operator))
        ],
        2,
    )
    return {"none": per, "sum": per.sum(), "mean": per.mean()}[reduction]


CASES = [(o, alpha) for o in ("diff", "sobel", "central") for alpha in (1.0, 2.0, 1.5)]
CASES += [(o, 1.5) for o in ("prewitt", "laplacian", "hessian")]  # each with its own padding


@pytest.mark.parametrize("operator, alpha", CASES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_naive_autograd(alpha: float, operator: str, reduction: str) -> None:
    x = torch.randn(2, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    ours = GradientDifferenceLoss(alpha, operator, reduction)(x, y)
    ref = naive_gdl(x, y, alpha, operator, reduction)
    torch.testing.assert_close(ours, ref)
    probe = torch.randn_like(ours)
    for a, b in zip(
        torch.autograd.grad((ours * probe).sum(), (x, y)), torch.autograd.grad((ref * probe).sum(), (x, y))
    ):
        torch.testing.assert_close(a, b)


def test_volumes_and_gradcheck() -> None:
    x = torch.randn(1, 1, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    y = torch.randn(1, 1, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(gradient_difference_loss(x, y, reduction="none"), naive_gdl(x, y, 1.0, "diff", "none"))
    assert torch.autograd.gradcheck(lambda x, y: gradient_difference_loss(x, y, alpha=2.0), (x, y))


def test_sign_of_an_edge_does_not_matter() -> None:
    target = torch.zeros(1, 1, 5, 5)
    target[..., 2:] = 1.0
    assert gradient_difference_loss(-target, target) == 0
    assert gradient_difference_loss(torch.zeros_like(target), target, reduction="sum") == 5.0


def test_saves_only_references() -> None:
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    y = torch.randn(2, 3, 8, 8)
    saved = saved_tensors(lambda: gradient_difference_loss(x, y, alpha=2.0))
    assert {t.data_ptr() for t in saved} <= {x.data_ptr(), y.data_ptr()}


def test_compiled_training_step() -> None:
    model = torch.nn.Conv2d(1, 1, 3, padding=1)
    criterion = GradientDifferenceLoss(alpha=2.0)
    x, target = torch.rand(2, 1, 10, 10), torch.rand(2, 1, 10, 10)
    torch._dynamo.reset()
    compiled = torch.compile(lambda x, t: criterion(model(x), t), fullgraph=True)
    loss = compiled(x, target)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    eager = criterion(model(x), target)
    torch.testing.assert_close(loss, eager)
    for a, b in zip(grads, torch.autograd.grad(eager, list(model.parameters()))):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_double_backward_is_finite_where_gradients_vanish() -> None:
    """|r|^alpha for alpha in (0, 2): the Hessian stays finite where both gradients are 0 (r = 0)."""
    x = torch.randn(1, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    y = torch.randn(1, 1, 6, 6, dtype=torch.float64)
    (g,) = torch.autograd.grad(gradient_difference_loss(x, y, alpha=1.5, operator="sobel"), x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x)
    assert torch.isfinite(h).all()
