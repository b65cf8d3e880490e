"""The fused loss Function under every loss built on it: totals cut into uneven slabs, accuracy of the
sums, the penalties' derivatives, and the Charbonnier penalty going through it all (forward mode, vmap)."""

from __future__ import annotations

from typing import Callable, Optional

import pytest
import torch
from references import naive_gradients
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
    assert [s[0].indices(5)[:2] for s in slabs(x, 2)] == [(0, 2), (2, 4), (4, 5)]
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
    """A loss's forward plus backward allocates its temporaries once per call, not once per slab (each fresh
    buffer is faulted into memory again): as many buffers of at least a slab's size for 6 slabs as for 2.
    (The L1 and squared L2 penalties compute in place; Charbonnier's slope still takes a temporary a slab.)"""
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


def test_the_ramp_of_the_issue_sums_as_accurately_as_torch() -> None:
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


def _charbonnier(x: Tensor, y: Tensor, mask: Optional[Tensor], reduction: str) -> Tensor:
    return gradient_loss(x, y, mask, operator="sobel", penalty="charbonnier", eps=0.5, reduction=reduction)


def _plain_charbonnier(x: Tensor, y: Tensor, mask: Optional[Tensor], reduction: str) -> Tensor:
    gx, gy = naive_gradients(x, "sobel"), naive_gradients(y, "sobel")
    per = torch.stack([torch.sqrt((a - b) ** 2 + 0.25) for a, b in zip(gx, gy)], 2)
    if mask is None:
        return {"none": per, "sum": per.sum(), "mean": per.mean()}[reduction]
    reads = naive_gradients((~mask.expand(x.shape)).to(x.dtype), "sobel", absolute=True)
    valid = torch.stack([r == 0 for r in reads], dim=2)
    per = torch.where(valid, per, 0.0)
    return {"none": per, "sum": per.sum(), "mean": per.sum() / valid.sum()}[reduction]


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_the_charbonnier_penalty_goes_through_everything(reduction: str, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(5, 2, 6, 7, dtype=torch.float64, generator=gen).requires_grad_()
    y = torch.randn(5, 2, 6, 7, dtype=torch.float64, generator=gen).requires_grad_()
    mask = torch.rand(5, 1, 6, 7, generator=gen) > 0.2
    for m in (None, mask):
        ours, ref = _charbonnier(x, y, m, reduction), _plain_charbonnier(x, y, m, reduction)
        torch.testing.assert_close(ours, ref)
        probe = torch.randn(ours.shape, dtype=torch.float64, generator=gen)
        expected = torch.autograd.grad((ref * probe).sum(), (x, y))
        for got, want in zip(torch.autograd.grad((ours * probe).sum(), (x, y)), expected):
            torch.testing.assert_close(got, want)
    small = (x[:1, :1, :4, :5].detach().requires_grad_(), y[:1, :1, :4, :5].detach().requires_grad_())
    assert torch.autograd.gradgradcheck(lambda a, b: _charbonnier(a, b, mask[:1, :, :4, :5], reduction), small)
    # forward mode, vmap (per-sample losses) and uneven slabs
    t = torch.randn(x.shape, dtype=torch.float64, generator=gen)
    _, tangent = torch.func.jvp(lambda a: _charbonnier(a, y.detach(), mask, reduction), (x.detach(),), (t,))
    ref_tangent = torch.autograd.functional.jvp(lambda a: _plain_charbonnier(a, y.detach(), mask, reduction), x, t)[1]
    torch.testing.assert_close(tangent, ref_tangent)
    batched = torch.func.vmap(lambda a, b, m: _charbonnier(a[None], b[None], m[None], reduction))(x, y, mask)
    loop = [_charbonnier(x[i : i + 1], y[i : i + 1], mask[i : i + 1], reduction) for i in range(5)]
    torch.testing.assert_close(batched, torch.stack(loop))
    whole = _values_and_gradients(_charbonnier, x.detach(), y.detach(), mask, reduction)
    monkeypatch.setattr(torchgrad._separable, "SLAB_BYTES", 2 * x[0].numel() * x.element_size())
    for got, expected in zip(_values_and_gradients(_charbonnier, x.detach(), y.detach(), mask, reduction), whole):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


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
    da, db = penalty.derivatives(a, b, traceable=True)
    inputs = (a,) if db is None else (a, b)
    expected = torch.autograd.grad(values.sum(), inputs)
    torch.testing.assert_close(da, expected[0])
    if db is not None:
        torch.testing.assert_close(db, expected[1])
    clone = lambda t: None if t is None else t.detach().clone()  # noqa: E731
    torch.testing.assert_close(penalty.values(clone(a), clone(b), traceable=False), values.detach())
    eager = penalty.derivatives(clone(a), clone(b), traceable=False)
    torch.testing.assert_close(eager[0], da)
    assert (eager[1] is None) == (db is None)
    if db is not None:
        torch.testing.assert_close(eager[1], db)
