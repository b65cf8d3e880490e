"""GradientLoss: values and gradients against its formula, TensorFlow equivalences, masks, the fused Function's
backward, torch.func and autocast (compile, half precision: tests/test_fused_penalty.py; bad input:
tests/test_validation.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import saved_bytes
from references import DEVICES, naive_gradients, tensorflow_sobel_edges
from torch.func import grad, jvp, vmap

from torchgrad import sobel, tf_compat
from torchgrad.losses import GradientLoss
from torchgrad.losses.functional import gradient_loss

OPERATORS = ["diff", "sobel", "scharr", "central", "prewitt", "laplacian", "hessian"]
REDUCTIONS = ["mean", "sum", "none"]


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


# the options of each penalty, and its p and eps in the formula (Charbonnier's eps is 1e-3 by default)
PENALTIES = {
    "l1": (dict(p=1), 1, None),
    "l2": (dict(p=2), 2, None),
    "charbonnier": (dict(penalty="charbonnier"), None, 1e-3),
    "charbonnier-eps0.7": (dict(penalty="charbonnier", eps=0.7), None, 0.7),
}


@pytest.mark.parametrize("operator", OPERATORS)
@pytest.mark.parametrize("penalty", PENALTIES)
def test_matches_the_formula(operator: str, penalty: str) -> None:
    """Values and gradients (input and target) of every reduction, with and without a mask."""
    options, p, eps = PENALTIES[penalty]
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.randn(2, 3, 7, 9, dtype=torch.float64, generator=gen, requires_grad=True)
    for mask in (None, torch.rand(2, 1, 7, 9, generator=gen) > 0.2):
        for reduction in REDUCTIONS:
            ours = gradient_loss(x, y, mask, operator=operator, reduction=reduction, **options)
            ref = naive_loss(x, y, operator, p, reduction, mask=mask, eps=eps)
            torch.testing.assert_close(ours, ref)
            probe = torch.randn(ours.shape, dtype=ours.dtype, generator=gen)
            got, want = (torch.autograd.grad((loss * probe).sum(), (x, y)) for loss in (ours, ref))
            torch.testing.assert_close(got, want)


@pytest.mark.parametrize("operator", OPERATORS)
@pytest.mark.parametrize("penalty", ["l1", "l2", "charbonnier-eps0.3"])
def test_gradcheck_and_gradgradcheck(operator: str, penalty: str) -> None:
    """On the smallest shape where each axis holds both border rows of a 3-tap stencil and an interior row (each
    check's cost grows with the number of elements); L1's second derivative is 0 wherever it exists."""
    options = {"l1": dict(p=1), "l2": dict(p=2), "charbonnier-eps0.3": dict(penalty="charbonnier", eps=0.3)}[penalty]
    x = torch.randn(1, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    y = torch.randn(1, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    for reduction, mask in (("mean", torch.rand(4, 5) > 0.2), ("none", None)):
        fn = lambda x, y: gradient_loss(x, y, mask, operator=operator, reduction=reduction, **options)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x, y))
        if penalty != "l1":
            assert torch.autograd.gradgradcheck(fn, (x, y))


def test_p_and_penalty_name_one_penalty() -> None:
    """``p=1`` is ``penalty="l1"``, ``p=2`` is ``"l2"``; either spelling gives the same loss, and both may be given
    when they agree (a combination that contradicts itself is an error: tests/test_validation.py)."""
    x, y = torch.randn(2, 1, 6, 6, dtype=torch.float64), torch.randn(2, 1, 6, 6, dtype=torch.float64)
    for p, name in ((1, "l1"), (2, "l2")):
        expected = gradient_loss(x, y, p=p)
        for kwargs in (dict(penalty=name), dict(p=p, penalty=name)):
            torch.testing.assert_close(gradient_loss(x, y, **kwargs), expected, rtol=0, atol=0)
            assert GradientLoss(**kwargs).p == p
    torch.testing.assert_close(gradient_loss(x, y), gradient_loss(x, y, p=1), rtol=0, atol=0)


# (operator, spatial dims, options): volumes, and the paddings and divisors of the filters that take them
OPTION_CASES = [
    *[(operator, 3, {}) for operator in ("diff", "central", "prewitt", "laplacian")],
    *[("sobel", 3, dict(padding=padding, normalized=True)) for padding in ("reflect", "zeros", "circular")],
    *[
        (operator, 2, dict(padding=padding, normalized=True))
        for operator in ("prewitt", "laplacian", "hessian")
        for padding in ("replicate", "zeros", "circular")
    ],
]


@pytest.mark.parametrize("operator, spatial_dims, options", OPTION_CASES)
def test_volumes_paddings_and_divisors(operator: str, spatial_dims: int, options: dict) -> None:
    """Values and input gradients against the formula: L1 per element under a mask, the L2 mean without one."""
    gen = torch.Generator().manual_seed(1)
    shape = (2, 2) + (4, 5, 6)[-spatial_dims:]
    x = torch.randn(shape, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.randn(shape, dtype=torch.float64, generator=gen)
    mask = torch.rand((2, 1) + shape[2:], generator=gen) > 0.1
    for m, p, reduction in ((mask, 1, "none"), (None, 2, "mean")):
        ours = gradient_loss(x, y, m, operator=operator, p=p, reduction=reduction, **options)
        ref = naive_loss(x, y, operator, p, reduction, mask=m, **options)
        torch.testing.assert_close(ours, ref)
        torch.testing.assert_close(torch.autograd.grad(ours.sum(), x)[0], torch.autograd.grad(ref.sum(), x)[0])


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
    x_pair, y_pair = (tf_compat.image_gradients(torch.from_numpy(t)) for t in (x_nhwc, y_nhwc))
    stacked = torch.stack([(a - b) ** 2 for a, b in zip(x_pair, y_pair)])
    torch.testing.assert_close(GradientLoss("diff", p=2)(x, y), stacked.mean())


def test_saves_at_most_references() -> None:
    """Nothing is saved for backward but references to input, target and mask, and a scalar (the masked mean's
    count)."""
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    y = torch.randn(2, 3, 16, 16)
    mask = torch.rand(2, 1, 16, 16) > 0.5
    for kwargs in (dict(operator="sobel", p=1), dict(operator="diff", p=2), dict(operator="central", p=2)):
        assert saved_bytes(lambda: gradient_loss(x, y, mask, **kwargs), (x, y, mask)) <= 8


# (options, masked): penalties, reductions and operators under torch.func, a mask batched as the input is
FUNC_CASES = [
    (dict(operator="sobel", p=1), False),
    (dict(operator="diff", p=2, reduction="none"), False),
    (dict(operator="scharr", p=2, reduction="sum"), False),
    (dict(operator="central", p=2), False),
    (dict(operator="sobel", p=1), True),
    (dict(operator="sobel", p=2, reduction="sum"), True),
    (dict(operator="sobel", p=2, reduction="none"), True),
    *[(dict(operator="sobel", penalty="charbonnier", eps=0.5, reduction=r), True) for r in REDUCTIONS],
]


@pytest.mark.parametrize("options, masked", FUNC_CASES)
def test_torch_func(options: dict, masked: bool) -> None:
    """vmap of the loss and of its gradient, and batched gradients, against a loop; forward mode against the
    formula's."""
    gen = torch.Generator().manual_seed(5)
    x, y, t = (torch.randn(4, 2, 1, 6, 7, dtype=torch.float64, generator=gen) for _ in range(3))
    mask = torch.rand(4, 2, 1, 6, 7, generator=gen) > 0.2 if masked else None
    loss = lambda a, b, m: gradient_loss(a, b, m, **options)  # noqa: E731
    dims = (0, 0, 0 if masked else None)
    per_mask = [None if mask is None else mask[i] for i in range(4)]
    torch.testing.assert_close(
        vmap(loss, in_dims=dims)(x, y, mask), torch.stack([loss(x[i], y[i], per_mask[i]) for i in range(4)])
    )
    per_sample = vmap(grad(lambda a, b, m: loss(a, b, m).sum()), in_dims=dims)(x, y, mask)
    for i in range(4):
        xi = x[i].clone().requires_grad_()
        torch.testing.assert_close(per_sample[i], torch.autograd.grad(loss(xi, y[i], per_mask[i]).sum(), xi)[0])
    m0 = None if mask is None else mask[:, 0]
    _, tangent = jvp(lambda a: loss(a, y[:, 0], m0), (x[:, 0],), (t[:, 0],))
    p, reduction, eps = options.get("p"), options.get("reduction", "mean"), options.get("eps")
    formula = lambda a: naive_loss(a, y[:, 0], options["operator"], p, reduction, mask=m0, eps=eps)  # noqa: E731
    torch.testing.assert_close(tangent, torch.autograd.functional.jvp(formula, x[:, 0], t[:, 0])[1])
    xr = x[:, 0].clone().requires_grad_()  # batched gradients, as jacobian(vectorize=True) takes them
    value = loss(xr, y[:, 0], m0)
    batch = torch.randn((3,) + value.shape, dtype=value.dtype, generator=gen)
    (batched,) = torch.autograd.grad(value, xr, batch, is_grads_batched=True, retain_graph=True)
    for i in range(3):
        torch.testing.assert_close(batched[i], torch.autograd.grad(value, xr, batch[i], retain_graph=True)[0])


def test_a_target_alone_receives_its_gradient() -> None:
    x = torch.randn(1, 1, 5, 5, dtype=torch.float64)
    y = torch.randn(1, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    (gy,) = torch.autograd.grad(gradient_loss(x, y, p=1), y)
    torch.testing.assert_close(gy, torch.autograd.grad(naive_loss(x, y, "sobel", 1, "mean"), y)[0])


def test_autocast() -> None:
    """A bfloat16 input under CPU autocast gives a float32 loss; a float64 one keeps float64."""
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
    x64, y64 = x.double(), target.double()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = gradient_loss(x64, y64)
    assert loss.dtype == torch.float64 and loss == gradient_loss(x64, y64)


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
