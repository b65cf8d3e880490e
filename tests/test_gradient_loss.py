"""GradientLoss: values and gradients against a naive autograd version, TensorFlow equivalences,
masks, the fused Function's backward, torch.func, compile and autocast (bad input: tests/test_validation.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from references import DEVICES, naive_gradients, tensorflow_sobel_edges

from torchgrad import sobel, tf_compat
from torchgrad.losses import GradientLoss
from torchgrad.losses.functional import gradient_loss

OPERATORS = ["diff", "sobel", "scharr", "central", "prewitt", "laplacian", "hessian"]


def naive_loss(x, y, operator, p, reduction, mask=None, padding="reflect", normalized=False, eps=None):
    """The loss by its formula; ``eps`` given: the Charbonnier penalty ``sqrt((a - b)^2 + eps^2)`` (``p`` unused)."""
    gx, gy = naive_gradients(x, operator, padding, normalized), naive_gradients(y, operator, padding, normalized)
    if eps is None:
        per = torch.stack([(a - b).abs() ** p for a, b in zip(gx, gy)], dim=2)
    else:
        per = torch.stack([torch.sqrt((a - b) ** 2 + eps**2) for a, b in zip(gx, gy)], dim=2)
    if mask is not None:
        # an element counts where no pixel its stencil reads is invalid
        invalid = (~mask.expand(x.shape)).to(x.dtype)
        reads = naive_gradients(invalid, operator, padding, normalized, absolute=True)
        valid = torch.stack([r == 0 for r in reads], dim=2)
        per = torch.where(valid, per, 0.0)
        count = valid.sum().clamp_min(1)
    else:
        count = per.numel()
    return {"none": per, "sum": per.sum(), "mean": per.sum() / count}[reduction]


@pytest.mark.parametrize("operator", OPERATORS)
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_naive_autograd(operator: str, p: int, reduction: str) -> None:
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 3, 7, 9, dtype=torch.float64, requires_grad=True)
    ours = GradientLoss(operator, p=p, reduction=reduction)(x, y)
    ref = naive_loss(x, y, operator, p, reduction)
    torch.testing.assert_close(ours, ref)
    probe = torch.randn_like(ours)
    g_ours = torch.autograd.grad((ours * probe).sum(), (x, y))
    g_ref = torch.autograd.grad((ref * probe).sum(), (x, y))
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("operator", OPERATORS)
@pytest.mark.parametrize("masked", [False, True])
def test_charbonnier_matches_its_formula(operator: str, masked: bool) -> None:
    """``penalty="charbonnier"``: values and gradients (input and target) of every reduction against
    ``sqrt((g(x) - g(y))^2 + eps^2)``, with and without a mask; the module is the function."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.randn(2, 3, 7, 9, dtype=torch.float64, generator=gen, requires_grad=True)
    mask = torch.rand(2, 1, 7, 9, generator=gen) > 0.2 if masked else None
    for reduction in ("mean", "sum", "none"):
        for eps in (1e-3, 0.7):
            ours = gradient_loss(x, y, mask, operator=operator, penalty="charbonnier", eps=eps, reduction=reduction)
            ref = naive_loss(x, y, operator, None, reduction, mask=mask, eps=eps)
            torch.testing.assert_close(ours, ref)
            probe = torch.randn(ours.shape, dtype=ours.dtype, generator=gen)
            for a, b in zip(
                torch.autograd.grad((ours * probe).sum(), (x, y)), torch.autograd.grad((ref * probe).sum(), (x, y))
            ):
                torch.testing.assert_close(a, b)
            module = GradientLoss(operator, penalty="charbonnier", eps=eps, reduction=reduction)
            torch.testing.assert_close(module(x, y, mask), ours, rtol=0, atol=0)
    default = gradient_loss(x, y, mask, operator=operator, penalty="charbonnier")
    torch.testing.assert_close(default, naive_loss(x, y, operator, None, "mean", mask=mask, eps=1e-3))


@pytest.mark.parametrize("operator", OPERATORS)
def test_charbonnier_gradgradcheck(operator: str) -> None:
    """On the smallest shape where each axis holds both border rows of a 3-tap stencil and an interior row (every
    check's cost grows with the number of elements; channels and batches are the formula tests' part)."""
    x = torch.randn(1, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    y = torch.randn(1, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(4, 5) > 0.2
    for reduction, m in (("mean", mask), ("none", None)):
        fn = lambda x, y: gradient_loss(  # noqa: E731
            x, y, m, operator=operator, penalty="charbonnier", eps=0.3, reduction=reduction
        )
        assert torch.autograd.gradcheck(fn, (x, y))
        assert torch.autograd.gradgradcheck(fn, (x, y))


def test_p_and_penalty_name_one_penalty() -> None:
    """``p=1`` is ``penalty="l1"``, ``p=2`` is ``"l2"``; either spelling gives the same loss, and both may be given
    when they agree (a combination that contradicts itself is an error: tests/test_validation.py)."""
    x, y = torch.randn(2, 1, 6, 6, dtype=torch.float64), torch.randn(2, 1, 6, 6, dtype=torch.float64)
    for p, name in ((1, "l1"), (2, "l2")):
        expected = gradient_loss(x, y, p=p)
        torch.testing.assert_close(expected, naive_loss(x, y, "sobel", p, "mean"))
        for kwargs in (dict(penalty=name), dict(p=p, penalty=name)):
            torch.testing.assert_close(gradient_loss(x, y, **kwargs), expected, rtol=0, atol=0)
            assert GradientLoss(**kwargs).p == p
    torch.testing.assert_close(gradient_loss(x, y), gradient_loss(x, y, p=1), rtol=0, atol=0)


@pytest.mark.parametrize("operator", ["diff", "sobel", "central"])
@pytest.mark.parametrize("padding", [None, "zeros", "circular"])
def test_volumes_and_paddings(operator: str, padding) -> None:
    if operator != "sobel" and padding is not None:
        pytest.skip("padding applies to sobel and scharr")
    x = torch.randn(2, 2, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 2, 4, 5, 6, dtype=torch.float64)
    ours = gradient_loss(
        x, y, operator=operator, p=1, reduction="none", padding=padding, normalized=operator == "sobel"
    )
    assert ours.shape == (2, 2, 3, 4, 5, 6)
    ref = naive_loss(x, y, operator, 1, "none", padding=padding or "reflect", normalized=operator == "sobel")
    torch.testing.assert_close(ours, ref)
    g = torch.autograd.grad(ours.sum(), x)[0]
    torch.testing.assert_close(g, torch.autograd.grad(ref.sum(), x)[0])


@pytest.mark.parametrize("operator", ["prewitt", "laplacian", "hessian"])
@pytest.mark.parametrize("padding", ["replicate", "zeros", "circular"])
def test_second_order_and_prewitt_options(operator: str, padding: str) -> None:
    """The filters added to the registry with their options, under a mask, against padded convolutions."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, 6, 7, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.randn(2, 2, 6, 7, dtype=torch.float64, generator=gen)
    mask = torch.rand(2, 1, 6, 7, generator=gen) > 0.1
    ours = gradient_loss(x, y, mask, operator=operator, p=1, reduction="none", padding=padding, normalized=True)
    assert ours.shape == (2, 2, {"prewitt": 2, "laplacian": 1, "hessian": 3}[operator], 6, 7)
    ref = naive_loss(x, y, operator, 1, "none", mask=mask, padding=padding, normalized=True)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(torch.autograd.grad(ours.sum(), x)[0], torch.autograd.grad(ref.sum(), x)[0])


@pytest.mark.parametrize("operator", ["prewitt", "laplacian"])
def test_second_order_and_prewitt_volumes(operator: str) -> None:
    x = torch.randn(2, 1, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 1, 4, 5, 6, dtype=torch.float64)
    mask = torch.rand(2, 1, 4, 5, 6, generator=torch.Generator().manual_seed(2)) > 0.1
    ours = gradient_loss(x, y, mask, operator=operator, p=2)
    ref = naive_loss(x, y, operator, 2, "mean", mask=mask)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(torch.autograd.grad(ours, x)[0], torch.autograd.grad(ref, x)[0])


@pytest.mark.parametrize("operator", OPERATORS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mask(operator: str, reduction: str) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 6, 7, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.randn(2, 1, 6, 7, dtype=torch.float64, generator=gen)
    mask = torch.rand(2, 1, 6, 7, generator=gen) > 0.15
    ours = gradient_loss(x, y, mask, operator=operator, p=2, reduction=reduction)
    ref = naive_loss(x, y, operator, 2, reduction, mask=mask)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(torch.autograd.grad(ours.sum(), x)[0], torch.autograd.grad(ref.sum(), x)[0])


def test_mask_excludes_holes_holding_nan() -> None:
    """Depth maps mark holes with NaN or inf: a masked hole contributes nothing, not NaN."""
    x = torch.rand(1, 1, 8, 8, requires_grad=True)
    y = torch.rand(1, 1, 8, 8)
    y[0, 0, 3, 4] = float("nan")
    y[0, 0, 6, 1] = float("inf")
    mask = torch.isfinite(y)
    loss = gradient_loss(x, y, mask, operator="sobel")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    ref = gradient_loss(x.detach(), torch.nan_to_num(y, 0.0, 0.0, 0.0), mask, operator="sobel")
    torch.testing.assert_close(loss.detach(), ref)


def test_nan_in_the_input_propagates() -> None:
    """No silent masking: NaN reaches the loss, and the gradient is autograd's (NaN for p=2)."""
    x = torch.rand(1, 1, 6, 6, dtype=torch.float64)
    x[0, 0, 2, 2] = float("nan")
    y = torch.rand(1, 1, 6, 6, dtype=torch.float64)
    for p in (1, 2):
        xr, xn = x.clone().requires_grad_(), x.clone().requires_grad_()
        loss = gradient_loss(xr, y, p=p)
        assert torch.isnan(loss)
        loss.backward()
        # autograd through the operator itself (a padded conv2d would also spread NaN through its zero weights)
        torch.stack([(a - b).abs() ** p for a, b in zip(sobel(xn), sobel(y))]).mean().backward()
        torch.testing.assert_close(xr.grad, xn.grad, equal_nan=True)
        assert torch.isnan(xr.grad).any() == (p == 2)
    y[0, 0, 0, 0] = float("inf")
    assert not torch.isfinite(gradient_loss(torch.rand(1, 1, 6, 6, dtype=torch.float64), y, operator="diff", p=2))


def test_fully_masked_mean_is_zero() -> None:
    x, y = torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4)
    assert gradient_loss(x, y, torch.zeros(1, 1, 4, 4, dtype=torch.bool)) == 0


def test_tensorflow_equivalences() -> None:
    """GradientLoss("sobel", p=1) is reduce_mean(abs(sobel_edges(x) - sobel_edges(y))); GradientLoss
    ("diff", p=2) the mean over the stacked (dy, dx) of the squared differences."""
    rng = np.random.default_rng(3)
    x_nhwc, y_nhwc = rng.random((2, 9, 7, 3)), rng.random((2, 9, 7, 3))
    x = torch.from_numpy(x_nhwc).permute(0, 3, 1, 2)
    y = torch.from_numpy(y_nhwc).permute(0, 3, 1, 2)
    expected = np.abs(tensorflow_sobel_edges(x_nhwc) - tensorflow_sobel_edges(y_nhwc)).mean()
    torch.testing.assert_close(GradientLoss("sobel", p=1)(x, y), torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(
        GradientLoss("sobel", p=1)(x, y),
        (tf_compat.sobel_edges(torch.from_numpy(x_nhwc)) - tf_compat.sobel_edges(torch.from_numpy(y_nhwc)))
        .abs()
        .mean(),
    )
    dx_pair, dy_pair = (
        tf_compat.image_gradients(torch.from_numpy(x_nhwc)),
        tf_compat.image_gradients(torch.from_numpy(y_nhwc)),
    )
    stacked = torch.stack([(a - b) ** 2 for a, b in zip(dx_pair, dy_pair)])
    torch.testing.assert_close(GradientLoss("diff", p=2)(x, y), stacked.mean())


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("operator", OPERATORS)
def test_gradcheck(p: int, operator: str) -> None:
    """The shape of ``test_charbonnier_gradgradcheck``, for the same reason."""
    x = torch.randn(1, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    y = torch.randn(1, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(4, 5) > 0.2
    for reduction in ("mean", "none"):
        fn = lambda x, y: gradient_loss(x, y, mask, operator=operator, p=p, reduction=reduction)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x, y))
        if p == 2:
            assert torch.autograd.gradgradcheck(fn, (x, y))


def test_saves_at_most_references() -> None:
    """Nothing new is saved for backward but a scalar (the masked mean's count): references to
    input, target and mask are all."""
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    y = torch.randn(2, 3, 16, 16)
    mask = torch.rand(2, 1, 16, 16) > 0.5
    for kwargs in (dict(operator="sobel", p=1), dict(operator="diff", p=2), dict(operator="central", p=2)):
        saved: list[torch.Tensor] = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
            gradient_loss(x, y, mask, **kwargs)
        new = [t for t in saved if t.data_ptr() not in {x.data_ptr(), y.data_ptr(), mask.data_ptr()}]
        assert sum(t.numel() * t.element_size() for t in new) <= 8


def test_torch_func() -> None:
    from torch.func import grad, jvp, vmap

    x = torch.randn(4, 2, 6, 7, dtype=torch.float64)
    y = torch.randn(4, 2, 6, 7, dtype=torch.float64)
    for kwargs in (
        dict(operator="sobel", p=1),
        dict(operator="diff", p=2, reduction="none"),
        dict(operator="scharr", p=2, reduction="sum"),
    ):
        per_sample = vmap(lambda a, b: gradient_loss(a[None], b[None], **kwargs))(x, y)
        loop = torch.stack([gradient_loss(x[i : i + 1], y[i : i + 1], **kwargs) for i in range(4)])
        torch.testing.assert_close(per_sample, loop)
    # per-sample gradients
    per_sample_grads = vmap(grad(lambda a, b: gradient_loss(a[None], b[None], p=2)))(x, y)
    for i in range(4):
        xi = x[i : i + 1].clone().requires_grad_()
        torch.testing.assert_close(
            per_sample_grads[i], torch.autograd.grad(gradient_loss(xi, y[i : i + 1], p=2), xi)[0][0]
        )
    # forward mode against a finite difference (p=2 is smooth)
    t = torch.randn_like(x)
    value, tangent = jvp(lambda a: gradient_loss(a, y, p=2, operator="central"), (x,), (t,))
    eps = 1e-6
    fd = (
        gradient_loss(x + eps * t, y, p=2, operator="central") - gradient_loss(x - eps * t, y, p=2, operator="central")
    ) / (2 * eps)
    torch.testing.assert_close(tangent, fd, rtol=1e-5, atol=1e-8)
    masked = torch.rand(4, 1, 6, 7) > 0.3
    _, tangent = jvp(lambda a: gradient_loss(a, y, masked, p=2, reduction="none"), (x,), (t,))
    ref = torch.autograd.functional.jvp(lambda a: gradient_loss(a, y, masked, p=2, reduction="none"), x, t)[1]
    torch.testing.assert_close(tangent, ref)


def test_target_receives_gradient() -> None:
    x = torch.randn(1, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    y = torch.randn(1, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    gx, gy = torch.autograd.grad(gradient_loss(x, y, p=2), (x, y))
    torch.testing.assert_close(gy, -gx)
    (gy_only,) = torch.autograd.grad(gradient_loss(x.detach(), y, p=1), y)
    assert gy_only.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_accumulates_in_float32(dtype: torch.dtype) -> None:
    x = torch.rand(2, 3, 32, 32)
    y = torch.rand(2, 3, 32, 32)
    expected = gradient_loss(x.double(), y.double(), p=2)
    xh = x.to(dtype).requires_grad_()
    got = gradient_loss(xh, y.to(dtype), p=2)
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), expected, rtol=2e-2, atol=1e-3)
    got.backward()
    assert xh.grad.dtype == dtype and torch.isfinite(xh.grad.float()).all()


def test_autocast_cpu_bfloat16() -> None:
    model = torch.nn.Conv2d(3, 3, 3, padding=1)
    x, target = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(x)
        assert output.dtype == torch.bfloat16
        loss = GradientLoss("sobel")(output, target)
    assert loss.dtype == torch.float32
    loss.backward()
    torch.testing.assert_close(loss, GradientLoss("sobel")(model(x), target), rtol=3e-2, atol=1e-3)
    assert model.weight.grad is not None and torch.isfinite(model.weight.grad).all()


@pytest.mark.parametrize("operator, p", [("sobel", 1), ("diff", 2)])
def test_compiled_training_step(operator: str, p: int) -> None:
    """One compilation per penalty (each costs seconds): every operator is the same fused Function."""
    torch.manual_seed(0)
    model = torch.nn.Conv2d(2, 2, 3, padding=1)
    criterion = GradientLoss(operator, p=p)
    x, target = torch.rand(2, 2, 12, 12), torch.rand(2, 2, 12, 12)
    mask = torch.rand(2, 1, 12, 12) > 0.1

    def loss_fn(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return criterion(model(x), target, mask)

    torch._dynamo.reset()
    compiled = torch.compile(loss_fn, fullgraph=True)
    loss = compiled(x, target)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    eager = loss_fn(x, target)
    eager_grads = torch.autograd.grad(eager, list(model.parameters()))
    torch.testing.assert_close(loss, eager)
    for a, b in zip(grads, eager_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_devices(device: str) -> None:
    x = torch.rand(2, 3, 10, 10, device=device, requires_grad=True)
    y = torch.rand(2, 3, 10, 10, device=device)
    loss = GradientLoss("sobel")(x, y, torch.ones(10, 10, dtype=torch.bool, device=device))
    loss.backward()
    xc = x.detach().cpu().requires_grad_()
    ref = GradientLoss("sobel")(xc, y.cpu())
    ref.backward()
    torch.testing.assert_close(loss.cpu(), ref)
    torch.testing.assert_close(x.grad.cpu(), xc.grad)


def test_repr() -> None:
    assert repr(GradientLoss("diff", p=2)) == "GradientLoss(operator='diff', p=2, reduction='mean')"
    assert (
        repr(GradientLoss("sobel", padding="zeros", normalized=True))
        == "GradientLoss(operator='sobel', p=1, reduction='mean', padding='zeros', normalized=True)"
    )
    assert repr(GradientLoss(penalty="l2")) == "GradientLoss(operator='sobel', p=2, reduction='mean')"
    assert (
        repr(GradientLoss("diff", penalty="charbonnier", eps=0.25, reduction="sum"))
        == "GradientLoss(operator='diff', penalty='charbonnier', eps=0.25, reduction='sum')"
    )


def test_vmap_with_a_batched_mask() -> None:
    from torch.func import grad, vmap

    x, y = torch.randn(4, 2, 1, 6, 7, dtype=torch.float64), torch.randn(4, 2, 1, 6, 7, dtype=torch.float64)
    mask = torch.rand(4, 2, 1, 6, 7) > 0.2
    for reduction in ("mean", "sum", "none"):
        batched = vmap(lambda a, b, m: gradient_loss(a, b, m, p=2, reduction=reduction))(x, y, mask)
        loop = torch.stack([gradient_loss(x[i], y[i], mask[i], p=2, reduction=reduction) for i in range(4)])
        torch.testing.assert_close(batched, loop)
    per_sample = vmap(grad(lambda a, b, m: gradient_loss(a, b, m, p=1)))(x, y, mask)
    for i in range(4):
        xi = x[i].clone().requires_grad_()
        torch.testing.assert_close(per_sample[i], torch.autograd.grad(gradient_loss(xi, y[i], mask[i], p=1), xi)[0])


def test_batched_gradients_of_the_loss() -> None:
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    per = gradient_loss(x, y, operator="sobel", p=2, reduction="none")
    batch = torch.randn((3,) + per.shape, dtype=per.dtype)
    (batched,) = torch.autograd.grad(per, x, batch, is_grads_batched=True, retain_graph=True)
    for i in range(3):
        torch.testing.assert_close(batched[i], torch.autograd.grad(per, x, batch[i], retain_graph=True)[0])


def test_autocast_keeps_float64() -> None:
    x, y = torch.rand(1, 1, 8, 8, dtype=torch.float64), torch.rand(1, 1, 8, 8, dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = gradient_loss(x, y)
    assert loss.dtype == torch.float64
    assert loss == gradient_loss(x, y)
