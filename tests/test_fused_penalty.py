"""The fused loss Function under every loss built on it: totals cut into uneven slabs, accuracy of the sums, half
precision, layouts, compiled training steps, the penalties' derivatives, Charbonnier's extremes."""

from __future__ import annotations

from typing import Callable, Optional

import pytest
import torch
from torch import Tensor
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

import torchgrad._separable
from torchgrad._internal import slabs
from torchgrad.losses._penalties import L1, Charbonnier, EdgeAware, GradientDifference, Penalty, SquaredL2
from torchgrad.losses.functional import (
    edge_aware_smoothness_loss,
    edge_loss,
    gradient_difference_loss,
    gradient_loss,
    total_variation_loss,
)

REDUCTIONS = ["mean", "sum", "none"]
Loss = Callable[[Tensor, Tensor, Optional[Tensor], str], Tensor]

# Every fused loss as (input, target, mask, reduction) -> loss; the target of the edge-aware loss is its image,
# that of total variation is unused.
LOSSES: dict[str, Loss] = {
    **{
        f"gradient_loss-{operator}-p{p}": (
            lambda x, y, m, r, o=operator, p=p: gradient_loss(x, y, m, operator=o, p=p, reduction=r)
        )
        for operator in ("diff", "sobel", "scharr", "central")
        for p in (1, 2)
    },
    "gradient_loss-sobel-charbonnier": (
        lambda x, y, m, r: gradient_loss(x, y, m, penalty="charbonnier", eps=0.1, reduction=r)
    ),
    "gradient_difference_loss-diff": lambda x, y, m, r: gradient_difference_loss(x, y, reduction=r),
    "gradient_difference_loss-sobel-alpha1.5": (
        lambda x, y, m, r: gradient_difference_loss(x, y, alpha=1.5, operator="sobel", reduction=r)
    ),
    "total_variation_loss-p1": lambda x, y, m, r: total_variation_loss(x, reduction=r),
    "total_variation_loss-p2": lambda x, y, m, r: total_variation_loss(x, p=2, reduction=r),
    "total_variation_loss-isotropic": lambda x, y, m, r: total_variation_loss(x, isotropic=True, reduction=r),
    "edge_aware_smoothness_loss": lambda x, y, m, r: edge_aware_smoothness_loss(x, y, reduction=r),
    "edge_aware_smoothness_loss-unnormalized": (
        lambda x, y, m, r: edge_aware_smoothness_loss(x, y, normalize=False, reduction=r)
    ),
    "edge_loss": lambda x, y, m, r: edge_loss(x, y, reduction=r),
    "edge_loss-eps0.1": lambda x, y, m, r: edge_loss(x, y, eps=0.1, reduction=r),
}
MASKED = [name for name in LOSSES if name.startswith("gradient_loss")]


def _values_and_gradients(loss: Loss, x: Tensor, y: Tensor, mask: Optional[Tensor], reduction: str) -> list[Tensor]:
    x, y = x.clone().requires_grad_(), y.clone().requires_grad_()
    value = loss(x, y, mask, reduction)
    probe = torch.linspace(-1.0, 2.0, value.numel(), dtype=value.dtype).reshape(value.shape)
    grads = torch.autograd.grad((value * probe).sum(), (x, y), allow_unused=True)
    return [value] + [torch.zeros_like(t) if g is None else g for t, g in zip((x, y), grads)]


@pytest.mark.parametrize("name, masked", [(name, False) for name in LOSSES] + [(name, True) for name in MASKED])
def test_uneven_slabs_give_the_one_slab_result(
    name: str, masked: bool, monkeypatch: pytest.MonkeyPatch, cpu_executor: str
) -> None:
    """Batch 5 cut into slabs of 2, 2 and 1 items: values and gradients (input and target) as in one slab."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 2, 6, 7, dtype=torch.float64, generator=gen) + 0.5
    y = torch.rand(5, 2, 6, 7, dtype=torch.float64, generator=gen)
    mask = torch.rand(5, 1, 6, 7, generator=gen) > 0.2 if masked else None
    whole = {r: _values_and_gradients(LOSSES[name], x, y, mask, r) for r in REDUCTIONS}
    monkeypatch.setattr(torchgrad._separable, "SLAB_BYTES", 2 * x[0].numel() * x.element_size())
    assert [s.indices(5)[:2] for s in slabs(x, 2)] == [(0, 2), (2, 4), (4, 5)]
    for reduction in REDUCTIONS:
        for got, expected in zip(_values_and_gradients(LOSSES[name], x, y, mask, reduction), whole[reduction]):
            torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert whole["sum"][0] > 0 and whole["sum"][1].abs().sum() > 0


class _FreshBuffers(TorchDispatchMode):
    """Counts the tensors of at least ``nbytes`` that operations return in storage of their own (not a view,
    not an ``out=`` argument): the buffers a call allocates."""

    def __init__(self, nbytes: int) -> None:
        super().__init__()
        self.nbytes, self.count = nbytes, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        inputs = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, Tensor)]
        seen = {t.untyped_storage().data_ptr() for t in inputs}
        result = func(*args, **(kwargs or {}))
        for t in pytree.tree_leaves(result):
            if isinstance(t, Tensor) and t.untyped_storage().nbytes() >= self.nbytes:
                self.count += t.untyped_storage().data_ptr() not in seen
        return result


@pytest.mark.parametrize("name", ["gradient_loss-sobel-p1", "gradient_loss-scharr-p2", "gradient_loss-diff-p1"])
def test_the_slabs_of_a_call_share_their_buffers(name: str, monkeypatch: pytest.MonkeyPatch, cpu_executor: str) -> None:
    """A loss's forward plus backward allocates its temporaries once per call, not once per slab: as many buffers
    of at least a slab's size for 6 slabs as for 2 (Charbonnier's slope still takes a temporary a slab)."""
    monkeypatch.setattr("torchgrad._padded.FRESH_BYTES", 0)  # slabs padded as large ones are, into the workspace
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 2, 16, 16, dtype=torch.float64, generator=gen).requires_grad_()
    y = torch.rand(6, 2, 16, 16, dtype=torch.float64, generator=gen)
    item = x[0].numel() * x.element_size()
    counts = []
    for per_slab in (1, 3):
        monkeypatch.setattr(torchgrad._separable, "SLAB_BYTES", per_slab * item)
        with _FreshBuffers(item) as fresh:
            LOSSES[name](x, y, None, "mean").backward()
        counts.append(fresh.count)
    assert counts[0] == counts[1], counts


def test_a_large_ramp_sums_as_accurately_as_torch() -> None:
    """16x3x512x512 copies of one ramp (a float32 sum in sequential steps is off by 5e-3), against the exact
    total of the same float32 values: ``dy`` is zero, ``dx`` the ramp's steps."""
    row = torch.arange(512.0) * 1e-3
    r = row.expand(16, 3, 512, 512)
    exact = (row[1:].double() - row[:-1].double()).abs().sum().item() * 16 * 3 * 512
    zero = torch.zeros(()).expand_as(r)
    for reduction, total in (("sum", exact), ("mean", exact / (2 * r.numel()))):
        got = gradient_loss(r, zero, operator="diff", reduction=reduction)
        assert abs(got.item() / total - 1) <= 1e-5
    for reduction, total in (("sum", exact), ("mean", exact / r.numel())):
        assert abs(total_variation_loss(r, reduction=reduction).item() / total - 1) <= 1e-5


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize(
    "name, masked",
    [(name, False) for name in LOSSES] + [("gradient_loss-sobel-p1", True), ("gradient_loss-diff-p2", True)],
)
def test_totals_are_accurate(name: str, masked: bool, reduction: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Float32 totals within 1e-5 of the exact (float64) loss of the same float32 values, in one slab and in
    one slab per item (partial sums added in float64). Ramps are the hard case: every element rounds alike."""
    ramps = torch.arange(256.0) * 1e-3 + torch.arange(128.0)[:, None] * 2e-3
    x = ramps.expand(2, 3, 128, 256).contiguous()
    y = 0.5 * x
    mask = torch.rand(2, 1, 128, 256, generator=torch.Generator().manual_seed(0)) > 0.1 if masked else None
    exact = LOSSES[name](x.double(), y.double(), mask, reduction).item()
    assert abs(LOSSES[name](x, y, mask, reduction).item() / exact - 1) <= 1e-5
    monkeypatch.setattr(torchgrad._separable, "SLAB_BYTES", x[0].numel() * x.element_size())
    assert len(slabs(x, 2)) == 2
    assert abs(LOSSES[name](x, y, mask, reduction).item() / exact - 1) <= 1e-5


PENALTIES = [L1(), SquaredL2(), GradientDifference(1.0), GradientDifference(1.5), EdgeAware(), Charbonnier(0.5)]


@pytest.mark.parametrize("penalty", PENALTIES, ids=lambda p: repr(p))
def test_derivatives_are_those_of_the_values(penalty: Penalty) -> None:
    """Traceable derivatives equal autograd's of the traceable values; eager code (in place) agrees with both."""
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(2, 3, 5, 6, dtype=torch.float64, generator=gen).requires_grad_()
    b = None if penalty.linear else torch.randn(2, 3, 5, 6, dtype=torch.float64, generator=gen).requires_grad_()
    if b is not None:
        (b,) = penalty.reference((b,))
    values = penalty.values(a, b, traceable=True)
    traced = penalty.derivatives(a, b, traceable=True)
    expected = list(torch.autograd.grad(values.sum(), (a,) if traced[1] is None else (a, b)))
    clone = lambda t: None if t is None else t.detach().clone()  # noqa: E731
    torch.testing.assert_close(penalty.values(clone(a), clone(b), traceable=False), values.detach())
    for derivatives in (traced, penalty.derivatives(clone(a), clone(b), traceable=False)):
        torch.testing.assert_close([d for d in derivatives if d is not None], expected)  # as many, as close


# The Charbonnier penalty is hypot(a, eps): exact where a = 0 (the value eps, the slope 0), finite for an eps
# or a difference whose square leaves the dtype's range. Each case: (dtype, eps, differences a).
_HYPOT_CASES = {
    "float32-eps1e-30": (torch.float32, 1e-30, [0.0, 1e-35, -2e-30, 1e-3, -3.0]),
    "float64-eps1e-200": (torch.float64, 1e-200, [0.0, 1e-210, -2e-200, 1e-3, -3.0]),
    "float32-eps1e-200": (torch.float32, 1e-200, [0.0, 1e-44, -1e-30, 1.0]),  # eps below float32's range
    "float32-eps1e20": (torch.float32, 1e20, [0.0, -1e15, 3e20, 1e25]),
    "float64-eps1e200": (torch.float64, 1e200, [0.0, 1.0, -3e200, 1e250]),
    "float32-differences1e30": (torch.float32, 1e-3, [1e30, -2e30, 3e37, 0.0]),
    "float64-eps1e-3": (torch.float64, 1e-3, [0.0, 1e-4, -1e-3, 0.5, -7.0]),
}


@pytest.mark.parametrize("case", list(_HYPOT_CASES))
def test_charbonnier_is_the_hypot_of_the_difference_and_eps(case: str) -> None:
    """Values ``hypot(a, eps)`` and slopes ``a / hypot(a, eps)`` (Python's correctly rounded ``math.hypot``
    in float64, then rounded to the dtype) in the eager and the traceable code, for eps and differences
    whose squares under- or overflow the dtype."""
    import math

    dtype, eps, points = _HYPOT_CASES[case]
    a = torch.tensor(points, dtype=dtype)
    values = torch.tensor([math.hypot(v, eps) for v in a.tolist()], dtype=torch.float64).to(dtype)
    slopes = torch.tensor([v / math.hypot(v, eps) if v else 0.0 for v in a.tolist()], dtype=torch.float64).to(dtype)
    penalty = Charbonnier(eps)
    # a few roundings of the dtype (hypot's own, the slope's division); subnormal results are compared absolutely
    tolerance = {"rtol": 4 * torch.finfo(dtype).eps, "atol": torch.finfo(dtype).tiny}
    for traceable in (True, False):
        torch.testing.assert_close(penalty.values(a.clone(), None, traceable), values, **tolerance)
        slope, none = penalty.derivatives(a.clone(), None, traceable)
        assert none is None
        torch.testing.assert_close(slope, slopes, **tolerance)


def _charbonnier_loss(name: str, eps: float) -> Callable[[Tensor, Tensor], Tensor]:
    if name == "edge_loss":
        return lambda x, y: edge_loss(x, y, eps=eps)
    return lambda x, y: gradient_loss(x, y, penalty="charbonnier", eps=eps)


def _eager_and_traced(loss: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor) -> list[list[Tensor]]:
    """``[value, input's gradient, target's gradient, a second derivative]`` by eager autograd (the first-order
    backward's eager code; the second derivative, of the gradient's sum along ``x``, from the differentiable
    backward) and by ``torch.func`` (the traceable code)."""
    u, v = x.clone().requires_grad_(), y.clone().requires_grad_()
    value = loss(u, v)
    gu, gv = torch.autograd.grad(value, (u, v))
    (first,) = torch.autograd.grad(loss(u, v), u, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), u)
    eager = [value.detach(), gu, gv, second]
    (gx, gy), value = torch.func.grad_and_value(loss, argnums=(0, 1))(x, y)
    second = torch.func.grad(lambda t: torch.func.grad(loss)(t, y).sum())(x)
    return [eager, [value, gx, gy, second]]


@pytest.mark.parametrize("name", ["edge_loss", "gradient_loss"])
@pytest.mark.parametrize(
    "dtype, eps",
    [
        (torch.float32, 1e-30),
        (torch.float64, 1e-200),
        (torch.float32, 1e-200),
        (torch.float32, 1e20),
        (torch.float64, 1e200),
    ],
)
def test_charbonnier_with_an_extreme_eps_is_eps(name: str, dtype: torch.dtype, eps: float) -> None:
    """Eager, traced and twice differentiated. A tiny eps where input equals target: the loss is eps (0 below the
    dtype's range), the gradients 0 (no ``0 * rsqrt(0)``). An eps whose square overflows: the loss is eps
    (differences of order 1 add ``a^2 / (2 eps)``, far below one rounding), the gradient ``A^T (A d) / eps`` tiny."""
    gen = torch.Generator().manual_seed(6)
    x = torch.rand(2, 2, 6, 7, dtype=dtype, generator=gen)
    y = x.clone() if eps < 1 else torch.rand(2, 2, 6, 7, dtype=dtype, generator=gen)
    for value, gx, gy, second in _eager_and_traced(_charbonnier_loss(name, eps), x, y):
        # eps rounded to the dtype; a mean of (nearly) equal values: a few roundings of the sum and the division
        torch.testing.assert_close(value, torch.tensor(eps, dtype=dtype), rtol=1e-5 if eps < 1 else 1e-6, atol=0)
        assert torch.isfinite(second).all()
        if eps < 1:
            assert torch.equal(gx, torch.zeros_like(x)) and torch.equal(gy, torch.zeros_like(x))
        else:  # |A d| <= 64 (Sobel's and the band's weights on samples in [0, 1)): slopes below 64 / eps, summed by A^T
            assert torch.isfinite(gx).all() and 0 < gx.abs().max() <= 64 * 64 / eps
            torch.testing.assert_close(gy, -gx)


@pytest.mark.parametrize("name", ["edge_loss", "gradient_loss"])
def test_charbonnier_of_large_float32_differences_is_finite(name: str) -> None:
    """Differences near 1e30 (their squares overflow float32, the loss does not): the loss and its gradients
    equal those of the same values in float64, eager and traced."""
    gen = torch.Generator().manual_seed(7)
    x = (torch.rand(2, 2, 6, 7, generator=gen) + 0.5) * 1e30
    y = -(torch.rand(2, 2, 6, 7, generator=gen) + 0.5) * 1e30
    loss = _charbonnier_loss(name, 1e-3)
    reference = _eager_and_traced(loss, x.double(), y.double())[0]
    for got in _eager_and_traced(loss, x, y):
        # float32 roundings of the operator, the penalty and the sum: 1e-5 relative to the largest value
        for a, e in zip(got[:3], reference[:3]):
            assert torch.isfinite(a).all()
            torch.testing.assert_close(a.double(), e, rtol=1e-5, atol=1e-5 * float(e.abs().max()))
        assert torch.isfinite(got[3]).all()


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_summed_in_float32(name: str, dtype: torch.dtype) -> None:
    """Half precision in, the same dtype out: the total of the same values within a few roundings of the dtype (a
    sum taken in half precision is off by far more), and finite gradients in the input's dtype."""
    gen = torch.Generator().manual_seed(10)
    x, y = (0.5 * torch.rand(2, 3, 16, 16, generator=gen) for _ in range(2))  # sums within float16's range
    xh, yh = x.to(dtype).requires_grad_(), y.to(dtype)
    for reduction in ("mean", "sum"):
        got = LOSSES[name](xh, yh, None, reduction)
        assert got.dtype == dtype
        exact = LOSSES[name](xh.detach().double(), yh.double(), None, reduction)
        torch.testing.assert_close(got.double(), exact, rtol={torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype], atol=0)
    got.backward()
    assert xh.grad.dtype == dtype and torch.isfinite(xh.grad.float()).all() and xh.grad.abs().sum() > 0


@pytest.mark.parametrize("name", LOSSES)
def test_the_mean_over_an_empty_batch_is_zero(name: str) -> None:
    """A mean over no elements is 0 (as under a mask where nothing counts), and so is the sum; the gradients are
    empty, eager and traced."""
    x, y = torch.rand(0, 2, 6, 7), torch.rand(0, 2, 6, 7)
    masks = [None, torch.ones(0, 1, 6, 7, dtype=torch.bool)] if name in MASKED else [None]
    for mask in masks:
        for reduction in ("mean", "sum"):
            value, gx, gy = _values_and_gradients(LOSSES[name], x, y, mask, reduction)
            assert value.item() == 0.0 and gx.shape == x.shape and gy.shape == y.shape
            traced = torch.func.grad_and_value(lambda a, b: LOSSES[name](a, b, mask, reduction))(x, y)[1]
            assert traced.item() == 0.0


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("layout", ["channels_last", "transposed"])
def test_losses_do_not_depend_on_the_layout(name: str, layout: str, cpu_executor: str) -> None:
    """A channels_last or transposed input gives the contiguous input's values and gradients, bit for bit (every
    reduction sums in one order, whatever the strides), in one slab and in uneven slabs."""
    gen = torch.Generator().manual_seed(8)
    x = torch.rand(3, 3, 9, 10, generator=gen)
    y = torch.rand(3, 3, 9, 10, generator=gen)
    mask = torch.rand(3, 1, 9, 10, generator=gen) > 0.1 if name in MASKED else None
    change = {
        "channels_last": lambda t: t.contiguous(memory_format=torch.channels_last),
        "transposed": lambda t: t.transpose(-1, -2).contiguous().transpose(-1, -2),
    }[layout]
    for reduction in ("mean", "sum"):
        expected = _values_and_gradients(LOSSES[name], x, y, mask, reduction)
        got = _values_and_gradients(LOSSES[name], change(x), change(y), mask, reduction)
        for a, e in zip(got, expected):
            assert torch.equal(a, e), (reduction, a, e)


@pytest.mark.parametrize("name", ["gradient_loss-sobel-p1", "gradient_loss-diff-p2", "edge_loss"])
def test_a_compiled_training_step(name: str) -> None:
    """``torch.compile(fullgraph=True)`` of a model and its loss (one compilation, seconds each, per penalty and
    operator kind): the eager loss and gradients of the parameters."""
    torch.manual_seed(0)
    model = torch.nn.Conv2d(2, 2, 3, padding=1)
    x, target = torch.rand(2, 2, 12, 10), torch.rand(2, 2, 12, 10)
    mask = torch.rand(2, 1, 12, 10) > 0.1 if name in MASKED else None

    def step(x: Tensor, target: Tensor) -> Tensor:
        return LOSSES[name](model(x), target, mask, "mean")

    torch._dynamo.reset()
    got, expected = torch.compile(step, fullgraph=True)(x, target), step(x, target)
    torch.testing.assert_close(got, expected)
    grads = [torch.autograd.grad(loss, list(model.parameters())) for loss in (got, expected)]
    torch.testing.assert_close(*grads, rtol=1e-4, atol=1e-6)


def test_charbonnier_extremes_and_empty_means_under_compile() -> None:
    """``torch.compile(fullgraph=True)`` traces the same rules: eps and zero gradients where input equals target
    for a tiny eps, about eps for a huge one, 0 for a mean over an empty batch."""
    x = torch.rand(2, 2, 6, 7, generator=torch.Generator().manual_seed(9)).requires_grad_()
    empty = torch.rand(0, 2, 6, 7)

    def losses(x: Tensor, empty: Tensor) -> Tensor:
        tiny = gradient_loss(x, x.detach().clone(), operator="diff", penalty="charbonnier", eps=1e-30)
        huge = gradient_loss(x, x.detach().clone(), operator="diff", penalty="charbonnier", eps=1e200)
        return torch.stack([tiny, huge, gradient_loss(empty, empty.clone(), operator="diff")])

    torch._dynamo.reset()
    got = torch.compile(losses, fullgraph=True, backend="aot_eager")(x, empty)
    (grad,) = torch.autograd.grad(got[:2].sum(), x)
    # float32: eps rounded to it (1e200 to inf, which the loss then is), and a mean of equal values
    torch.testing.assert_close(got, torch.tensor([1e-30, float("inf"), 0.0]), rtol=1e-5, atol=0)
    assert torch.equal(grad, torch.zeros_like(x))
