"""The depth losses against MiDaS's loss and BTS's silog_loss (tests/references.py): values and gradients on
random inputs with random masks, images without valid pixels, singular fits, scales beyond the image, both dtypes;
holes, slabs, the second backward, autocast, compile, torch.func and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from references import DEVICES, compute_scale_and_shift, midas_gradient_matching, midas_loss, silog_loss

import torchgrad
import torchgrad._separable
from torchgrad._internal import slabs
from torchgrad.losses import GradientMatchingLoss, ScaleAndShiftInvariantLoss, ScaleInvariantLogLoss, scale_and_shift
from torchgrad.losses.functional import (
    gradient_matching_loss,
    scale_and_shift_invariant_loss,
    scale_invariant_log_loss,
)

REDUCTIONS = ["batch-based", "image-based"]
DTYPES = [torch.float64, torch.float32]


def tolerances(dtype: torch.dtype) -> dict:
    # float32: the reference's own rounding (its normal equations are not centred) is the larger part
    return {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-9, "atol": 1e-12}


def batch(dtype: torch.dtype, n: int = 7, h: int = 11, w: int = 13, seed: int = 0, channel: bool = False):
    """Random maps and a ~70% mask with the hard cases: image 1 without valid pixels, 2 all valid, 3 one valid
    pixel, 4 a constant prediction (an exact value, so that MiDaS's det is exactly 0 too)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(n, h, w, generator=g, dtype=dtype) * 2 + 0.5
    t = torch.rand(n, h, w, generator=g, dtype=dtype) * 3 + 1
    m = torch.rand(n, h, w, generator=g) > 0.3
    m[1] = False
    m[2] = True
    m[3] = False
    m[3, h // 2, w // 2] = True
    p[4] = 2.0
    if channel:
        p, t, m = p[:, None], t[:, None], m[:, None]
    return p.requires_grad_(), t.requires_grad_(), m


def squeeze(*tensors):
    return [x[:, 0] if x.dim() == 4 else x for x in tensors]


def grads(value, inputs):
    return torch.autograd.grad(value, inputs, allow_unused=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channel", [False, True])
def test_scale_and_shift_matches_midas(dtype: torch.dtype, channel: bool) -> None:
    p, t, m = batch(dtype, channel=channel)
    scale, shift = scale_and_shift(p, t, m)
    ref_scale, ref_shift = compute_scale_and_shift(*squeeze(p, t, m))
    torch.testing.assert_close(scale, ref_scale, **tolerances(dtype))
    torch.testing.assert_close(shift, ref_shift, **tolerances(dtype))
    assert (scale[[1, 3, 4]] == 0).all() and (shift[[1, 3, 4]] == 0).all()  # no, one valid value; constant
    weights = torch.randn(2, p.shape[0], dtype=dtype)
    ours = grads((scale * weights[0] + shift * weights[1]).sum(), (p, t))
    ref = grads((ref_scale * weights[0] + ref_shift * weights[1]).sum(), (p, t))
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, **tolerances(dtype))


def test_scale_and_shift_recovers_an_affine_map_and_stays_accurate_with_an_offset() -> None:
    g = torch.Generator().manual_seed(1)
    truth = torch.rand(3, 20, 30, generator=g, dtype=torch.float64)
    mask = torch.rand(3, 20, 30, generator=g) > 0.5
    prediction = 1000 + 0.01 * truth  # float32 resolution at 1000 is 6e-5: a hard case for the raw normal equations
    target = 2 * truth - 1
    exact_scale, exact_shift = scale_and_shift(prediction, target, mask)
    scale, shift = scale_and_shift(prediction.float(), target.float(), mask)
    torch.testing.assert_close(exact_scale, torch.full((3,), 200.0, dtype=torch.float64))
    torch.testing.assert_close(scale.double(), exact_scale, rtol=1e-3, atol=0)
    ref_scale, _ = compute_scale_and_shift(prediction.float(), target.float(), mask)
    assert not torch.allclose(ref_scale.double(), exact_scale, rtol=0.1)  # the raw normal equations cancel out


def test_a_nearly_constant_prediction_is_singular_only_when_exactly_constant() -> None:
    target = torch.rand(2, 5, 5, dtype=torch.float64)
    mask = torch.ones(2, 5, 5, dtype=torch.bool)
    prediction = torch.full((2, 5, 5), 0.1, dtype=torch.float64)  # 0.1 is inexact: MiDaS's det need not be 0
    prediction[1, 2, 2] = math.nextafter(0.1, 1.0)  # one value a single ulp higher
    scale, shift = scale_and_shift(prediction, target, mask)
    assert scale[0] == 0 and shift[0] == 0
    assert scale[1] != 0 and torch.isfinite(scale[1]) and torch.isfinite(shift[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("alpha, scales", [(0.5, 4), (0.0, 4), (2.0, 1), (1.0, 6)])
def test_scale_and_shift_invariant_loss_matches_midas(dtype, reduction: str, alpha: float, scales: int) -> None:
    p, t, m = batch(dtype, channel=True)
    ours, aligned = ScaleAndShiftInvariantLoss(alpha, scales, reduction)(p, t, m, return_aligned=True)
    ref, ref_aligned = midas_loss(*squeeze(p, t, m), alpha=alpha, scales=scales, reduction=reduction)
    torch.testing.assert_close(ours, ref, **tolerances(dtype))
    torch.testing.assert_close(aligned[:, 0], ref_aligned.detach(), **tolerances(dtype))
    assert aligned.shape == p.shape and not aligned.requires_grad
    for a, b in zip(grads(ours, (p, t)), grads(ref, (p, t))):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, **tolerances(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("scales", [1, 4, 6])
def test_gradient_matching_loss_matches_midas(dtype: torch.dtype, reduction: str, scales: int) -> None:
    p, t, m = batch(dtype)
    ours = GradientMatchingLoss(scales, reduction)(p, t, m)
    ref = midas_gradient_matching(p, t, m, scales, reduction)
    torch.testing.assert_close(ours, ref, **tolerances(dtype))
    for a, b in zip(grads(ours, (p, t)), grads(ref, (p, t))):
        torch.testing.assert_close(a, b, **tolerances(dtype))


@pytest.mark.parametrize("shape", [(2, 5, 3), (3, 1, 9), (2, 9, 1), (1, 1, 1), (2, 16, 16)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_scales_larger_than_the_image_allows(shape: tuple, reduction: str) -> None:
    g = torch.Generator().manual_seed(2)
    p = torch.rand(shape, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.rand(shape, generator=g, dtype=torch.float64)
    m = torch.rand(shape, generator=g) > 0.2
    options = dict(scales=6, reduction=reduction)
    for loss, ref in (
        (gradient_matching_loss(p, t, m, **options), midas_gradient_matching(p, t, m, **options)),
        (scale_and_shift_invariant_loss(p, t, m, alpha=1.0, **options), midas_loss(p, t, m, alpha=1.0, **options)[0]),
    ):
        torch.testing.assert_close(loss, torch.as_tensor(ref, dtype=torch.float64))
        if isinstance(ref, torch.Tensor) and ref.requires_grad:
            torch.testing.assert_close(grads(loss, p)[0], grads(ref, p)[0])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradient_matching_is_image_gradients_on_the_pairs_of_valid_pixels(reduction: str) -> None:
    """The eager loss and its gradients against the same sums built on torchgrad.image_gradients (its forward
    differences, and their adjoint through autograd) kept where both pixels of a pair are valid."""
    p, t, m = batch(torch.float64)
    residual = torch.where(m, p - t, 0)
    counts = torch.stack([m[:, :: 2**s, :: 2**s].sum((1, 2)) for s in range(4)]).double()
    counts = counts.sum(1, keepdim=True).expand_as(counts) if reduction == "batch-based" else counts * len(m)
    expected = residual.new_zeros(())
    for s in range(4):
        r, valid = residual[:, :: 2**s, :: 2**s], m[:, :: 2**s, :: 2**s]
        for dim, d in zip((-2, -1), torchgrad.image_gradients(r)):
            pairs = torch.zeros_like(valid)
            n = valid.shape[dim]
            pairs.narrow(dim, 0, n - 1).copy_(valid.narrow(dim, 0, n - 1) & valid.narrow(dim, 1, n - 1))
            per_image = torch.where(pairs, d.abs(), 0).sum((1, 2))
            expected = expected + torch.where(counts[s] > 0, per_image / counts[s].clamp_min(1), 0).sum()
    ours = gradient_matching_loss(p, t, m, reduction=reduction)
    # float64; the same terms, summed in another order
    torch.testing.assert_close(ours, expected, rtol=1e-13, atol=0)
    ours_grads = grads(ours, (p, t))
    for a, b in zip(ours_grads, grads(expected, (p, t))):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-17)
    assert ours > 0 and ours_grads[0].abs().sum() > 0


def test_the_depth_losses_slab_rule(monkeypatch) -> None:
    """Whole images of SLAB_BYTES of float32 per thread on the CPU (whatever the dtype); no slab for no images, and
    the whole batch off the CPU."""
    monkeypatch.setattr(torchgrad._separable, "SLAB_BYTES", 3 * 4 * 8 * 8)  # three float32 8x8 images per thread
    step = 3 * torch.get_num_threads()
    for dtype in (torch.float64, torch.bool):
        cuts = slabs(torch.empty(2 * step + 1, 8, 8, dtype=dtype), 2, per_thread=True)
        assert [c.indices(2 * step + 1)[:2] for c in cuts] == [(0, step), (step, 2 * step), (2 * step, 2 * step + 1)]
    assert slabs(torch.empty(0, 8, 8), 2, per_thread=True) == []
    assert slabs(torch.empty(3 * step, 8, 8, device="meta"), 2, per_thread=True) == [slice(None)]


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_slabs_of_several_images_and_uneven_cuts(monkeypatch, reduction: str) -> None:
    p, t, m = batch(torch.float64, n=7, h=6, w=5)
    # three images a slab (per thread: the slabs grow with torch's threads): 3 + 3 + 1
    monkeypatch.setattr(torchgrad._separable, "SLAB_BYTES", math.ceil(3 * 6 * 5 * 4 / torch.get_num_threads()))
    assert [s.indices(7) for s in slabs(p, 2, per_thread=True)] == [(0, 3, 1), (3, 6, 1), (6, 7, 1)]
    for ours, ref in (
        (scale_and_shift_invariant_loss(p, t, m, reduction=reduction), midas_loss(p, t, m, reduction=reduction)[0]),
        (gradient_matching_loss(p, t, m, reduction=reduction), midas_gradient_matching(p, t, m, 4, reduction)),
        (sum(scale_and_shift(p, t, m)).sum(), sum(compute_scale_and_shift(p, t, m)).sum()),
        (scale_invariant_log_loss(p, t, m), silog_loss(p, t, m)),
    ):
        torch.testing.assert_close(ours, ref)
        for a, b in zip(grads(ours, (p, t)), grads(ref, (p, t))):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck(reduction: str) -> None:
    g = torch.Generator().manual_seed(3)
    p = torch.rand(3, 1, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    t = (torch.rand(3, 1, 5, 6, generator=g, dtype=torch.float64) + 0.5).requires_grad_()
    m = torch.rand(3, 1, 5, 6, generator=g) > 0.25
    m[1] = False
    checks = [
        lambda a, b: scale_and_shift(a, b, m),
        lambda a, b: gradient_matching_loss(a, b, m, scales=3, reduction=reduction),
        lambda a, b: scale_and_shift_invariant_loss(a, b, m, alpha=0.7, scales=3, reduction=reduction),
        lambda a, b: scale_invariant_log_loss(a + 0.1, b, m),
    ]
    for fn in checks:
        assert torch.autograd.gradcheck(fn, (p, t), fast_mode=True)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_invalid_images_give_zero_and_never_nan(reduction: str) -> None:
    p = torch.rand(3, 1, 8, 8, requires_grad=True)
    t = torch.rand(3, 1, 8, 8, requires_grad=True)
    none = torch.zeros(3, 1, 8, 8, dtype=torch.bool)
    for loss in (
        scale_and_shift_invariant_loss(p, t, none, reduction=reduction),
        gradient_matching_loss(p, t, none, reduction=reduction),
        scale_invariant_log_loss(p, t, none),
        sum(scale_and_shift(p, t, none)).sum(),
    ):
        assert loss.item() == 0
        for gradient in grads(loss, (p, t)):
            assert torch.equal(gradient, torch.zeros_like(gradient))
    empty = torch.rand(0, 8, 8, requires_grad=True)
    loss = scale_and_shift_invariant_loss(empty, empty.detach(), torch.zeros(0, 8, 8, dtype=torch.bool))
    assert loss.item() == 0 and grads(loss, empty)[0].shape == (0, 8, 8)


def all_depth_losses(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Every depth loss, both reductions, and the fit (each image's scale and shift weighted apart), summed."""
    scale, shift = scale_and_shift(a, b, c)
    weights = torch.arange(1.0, len(a) + 1, dtype=a.dtype)
    return (
        scale_and_shift_invariant_loss(a, b, c, scales=2)
        + gradient_matching_loss(a, b, c, scales=2, reduction="image-based")
        + scale_invariant_log_loss(a, b, c)
        + (scale * weights).sum()
        + (shift * (weights + 1)).sum()
    )


def test_holes_never_leak_and_nan_in_valid_pixels_propagates() -> None:
    """NaN, inf and -inf at invalid pixels change no value or gradient, eager or under torch.func; NaN at a
    valid pixel makes the loss NaN, and its gradient what the references' is."""
    p, t, m = batch(torch.float64)
    expected = all_depth_losses(p, t, m)
    expected_grads = grads(expected, (p, t))
    assert all(torch.isfinite(g).all() for g in expected_grads)
    pattern = torch.tensor([math.nan, math.inf, -math.inf], dtype=p.dtype)[torch.arange(p.numel()) % 3].view(p.shape)
    holes = [torch.where(m, x, fill).detach() for x, fill in ((p, pattern), (t, pattern.roll(1)))]
    eager_inputs = [h.clone().requires_grad_() for h in holes]
    eager = all_depth_losses(*eager_inputs, m)
    traced_grads, traced = torch.func.grad_and_value(all_depth_losses, argnums=(0, 1))(*holes, m)
    for value, gradients in ((eager, grads(eager, eager_inputs)), (traced, traced_grads)):
        torch.testing.assert_close(value, expected)  # the same sums in another order: float64 rounding
        for ours, reference in zip(gradients, expected_grads):
            torch.testing.assert_close(ours, reference)
    p2 = p.detach().clone()
    y, x = m[0].nonzero()[0]
    p2[0, y, x] = math.nan
    references = (
        (scale_and_shift_invariant_loss, lambda *a: midas_loss(*a)[0]),
        (gradient_matching_loss, midas_gradient_matching),  # sign(NaN) = 0: its gradient stays finite
        (scale_invariant_log_loss, silog_loss),
    )
    for fn, reference in references:
        nan = p2.clone().requires_grad_()
        loss, ref = fn(nan, t, m), reference(nan, t, m)
        assert loss.isnan() and ref.isnan()
        torch.testing.assert_close(grads(loss, nan)[0], grads(ref, nan)[0], equal_nan=True)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_second_backward_and_a_scaled_loss(reduction: str) -> None:
    p, t, m = batch(torch.float64)
    for fn in (scale_and_shift_invariant_loss, gradient_matching_loss):
        ref = grads(fn(p, t, m, reduction=reduction), (p, t))
        loss = 3 * fn(p, t, m, reduction=reduction)
        first = torch.autograd.grad(loss, (p, t), retain_graph=True)
        second = torch.autograd.grad(loss, (p, t))
        for a, b, r in zip(first, second, ref):
            torch.testing.assert_close(a, 3 * r)
            torch.testing.assert_close(b, 3 * r)
        (only_p,) = torch.autograd.grad(fn(p, t.detach(), m, reduction=reduction), p)
        torch.testing.assert_close(only_p, ref[0])
    loss = scale_invariant_log_loss(p + 1, t, m)
    first = torch.autograd.grad(loss, p, retain_graph=True)[0]
    torch.testing.assert_close(torch.autograd.grad(loss, p)[0], first)


def test_non_contiguous_inputs() -> None:
    p, t, m = batch(torch.float64, h=9, w=9)
    pt, tt, mt = (x.transpose(1, 2) for x in (p, t, m))
    for fn in (scale_and_shift_invariant_loss, gradient_matching_loss):
        ours = fn(pt, tt, mt)
        expected = fn(pt.contiguous(), tt.contiguous(), mt.contiguous())
        torch.testing.assert_close(ours, expected)
        for a, b in zip(grads(ours, (p, t)), grads(expected, (p, t))):
            torch.testing.assert_close(a, b)
    last = p.detach()[:, None].contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(scale_and_shift_invariant_loss(last, t[:, None], m[:, None]), midas_loss(p, t, m)[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variance_focus", [0.85, 0.0, 1.0])
def test_scale_invariant_log_loss_matches_bts(dtype: torch.dtype, variance_focus: float) -> None:
    p, t, m = batch(dtype, channel=True)
    p = (p.detach() + 0.1).requires_grad_()
    ours = ScaleInvariantLogLoss(variance_focus)(p, t, m)
    ref = silog_loss(p, t, m, variance_focus)
    torch.testing.assert_close(ours, ref, **tolerances(dtype))
    for a, b in zip(grads(ours, (p, t)), grads(ref, (p, t))):
        torch.testing.assert_close(a, b, **tolerances(dtype))
    scaled = scale_invariant_log_loss(p, t, m, variance_focus=variance_focus, scale=2.5)
    torch.testing.assert_close(scaled, ref / 10 * 2.5, **tolerances(dtype))


def test_scale_invariant_log_loss_needs_positive_values_at_valid_pixels_only() -> None:
    """``prediction`` and ``target`` (plus eps, where given) positive at valid pixels; invalid ones never read."""
    p, t, m = batch(torch.float64)
    zeros = torch.where(m, p, 0).detach()
    zeros[0][m[0]] = torch.linspace(0, 1, int(m[0].sum()), dtype=torch.float64)  # a zero at a valid pixel
    y, x = m[0].nonzero()[-1]
    below, at_zero = p.detach().clone(), t.detach().clone()
    below[0, y, x], at_zero[0, y, x] = -0.5, -0.25  # -0.5 + 0.1 < 0; -0.25 + 0.25 == 0 exactly: log 0
    for args, eps, message in (
        ((zeros, t, m), None, r"`prediction` must be positive at valid pixels .* got 1 values <= 0"),
        (
            (p, torch.where(m, -t, -1), m),
            None,
            r"`target` must be positive .* got 538 values <= 0 there, the smallest -3.99",
        ),
        ((below, t, m), 0.1, r"^scale_invariant_log_loss: `prediction` \+ eps must be positive at valid "),
        ((p, at_zero, m), 0.25, r"`target` \+ eps must be positive .* got 1 values <= -0.25 there"),
    ):
        with pytest.raises(ValueError, match=message):
            scale_invariant_log_loss(*args, eps=eps)
    zeros.requires_grad_()
    ours = scale_invariant_log_loss(zeros, t, m, eps=1e-3)
    ref = silog_loss(zeros + 1e-3, t + 1e-3, m)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(grads(ours, zeros)[0], grads(ref, zeros)[0])
    for eps in (None, 0.1):  # values at invalid pixels are never read, with eps as without
        loss = scale_invariant_log_loss(torch.where(m, p, -5), torch.where(m, t, -1), m, eps=eps)
        torch.testing.assert_close(loss, silog_loss(p + (eps or 0), t + (eps or 0), m))


def test_scale_invariant_log_loss_has_a_finite_gradient_at_zero() -> None:
    t = torch.rand(2, 6, 6, dtype=torch.float64) + 0.5
    m = torch.rand(2, 6, 6) > 0.3
    p = t.clone().requires_grad_()
    loss = scale_invariant_log_loss(p, t, m)
    assert loss.item() == 0 and torch.equal(grads(loss, p)[0], torch.zeros_like(p))
    assert torch.isnan(grads(silog_loss(p, t, m), p)[0]).any()  # BTS's: sqrt'(0) = inf times 0
    # fully scale-invariant, a scaled prediction: a root of (almost) zero, still a finite gradient
    p = (3 * t).requires_grad_()
    loss = scale_invariant_log_loss(p, t, m, variance_focus=1.0)
    assert loss.item() < 1e-6 and torch.isfinite(grads(loss, p)[0]).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype: torch.dtype) -> None:
    p, t, m = batch(torch.float32, channel=True)
    expected = scale_and_shift_invariant_loss(p.double(), t.double(), m)
    ph = p.detach().to(dtype).requires_grad_()
    got = scale_and_shift_invariant_loss(ph, t.detach().to(dtype), m)
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), expected, rtol=3e-2, atol=1e-3)
    got.backward()
    assert ph.grad.dtype == dtype and torch.isfinite(ph.grad.float()).all()


def test_autocast_runs_in_float32() -> None:
    model = torch.nn.Conv2d(1, 1, 3, padding=1)
    x, target = torch.rand(2, 1, 12, 12), torch.rand(2, 1, 12, 12) + 0.5
    mask = torch.rand(2, 1, 12, 12) > 0.2
    criteria = (ScaleAndShiftInvariantLoss(), GradientMatchingLoss(), ScaleInvariantLogLoss(eps=1.0))
    for criterion in criteria:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output = model(x)
            assert output.dtype == torch.bfloat16
            loss = criterion(output, target, mask)
        assert loss.dtype == torch.float32
        expected = criterion(output.float(), target, mask)
        torch.testing.assert_close(loss, expected)
        (gradient,) = torch.autograd.grad(loss, model.weight)
        assert torch.isfinite(gradient).all()


def test_compiled_training_step() -> None:
    torch.manual_seed(0)
    model = torch.nn.Conv2d(1, 1, 3, padding=1)
    x, target = torch.rand(3, 1, 10, 12), torch.rand(3, 1, 10, 12) + 0.5
    mask = torch.rand(3, 1, 10, 12) > 0.2
    mask[1] = False
    target[~mask] = math.nan  # holes in the ground truth and in the prediction never reach the loss or its gradient
    ssi, matching, silog = (
        ScaleAndShiftInvariantLoss(),
        GradientMatchingLoss(reduction="image-based"),
        ScaleInvariantLogLoss(),
    )

    def loss_fn(x: torch.Tensor) -> torch.Tensor:
        prediction = torch.where(mask, model(x), math.nan)
        return (
            ssi(prediction, target, mask) + matching(prediction, target, mask) + silog(prediction.exp(), target, mask)
        )

    torch._dynamo.reset()
    compiled = torch.compile(loss_fn, fullgraph=True)
    loss = compiled(x)
    eager = loss_fn(x)
    torch.testing.assert_close(loss, eager)
    parameters = list(model.parameters())
    for a, b in zip(torch.autograd.grad(loss, parameters), torch.autograd.grad(eager, parameters)):
        assert torch.isfinite(b).all()
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_torch_func_per_sample_gradients() -> None:
    from torch.func import grad, vmap

    p, t, m = batch(torch.float64, n=5, channel=True)
    p, t = p.detach(), t.detach()
    fns = (
        lambda a, b, c: scale_and_shift_invariant_loss(a[None], b[None], c[None]),
        lambda a, b, c: gradient_matching_loss(a[None], b[None], c[None]),
        lambda a, b, c: scale_invariant_log_loss(a[None] + 1, b[None], c[None]),
    )
    for fn in fns:
        values = vmap(fn)(p, t, m)
        per_sample = vmap(grad(fn))(p, t, m)
        for i in range(5):
            pi = p[i].clone().requires_grad_()
            value = fn(pi, t[i], m[i])
            torch.testing.assert_close(values[i], value)
            torch.testing.assert_close(per_sample[i], grads(value, pi)[0])


@pytest.mark.parametrize("device", DEVICES)
def test_devices(device: str) -> None:
    p, t, m = (x.to(device) for x in batch(torch.float32, channel=True))
    loss = scale_and_shift_invariant_loss(p, t, m)
    torch.testing.assert_close(loss.cpu(), midas_loss(*squeeze(*(x.cpu() for x in (p, t, m))))[0], rtol=1e-4, atol=1e-6)


P, T, M = (x.detach() for x in batch(torch.float32, channel=True))
SSI = scale_and_shift_invariant_loss
BAD_INPUTS = [  # (the entry point, its arguments, keyword arguments, error, what its message holds after "name: ")
    (ScaleAndShiftInvariantLoss, (), {"alpha": -1}, ValueError, "`alpha` must be a non-negative number, got -1"),
    (ScaleAndShiftInvariantLoss, (), {"alpha": math.nan}, ValueError, "`alpha` must be finite, got nan"),
    (ScaleAndShiftInvariantLoss, (), {"alpha": True}, TypeError, "`alpha` must be a real number, got True"),
    (ScaleAndShiftInvariantLoss, (), {"scales": 0}, ValueError, "`scales` must be at least 1, got 0"),
    (GradientMatchingLoss, (), {"scales": 2.0}, TypeError, "`scales` must be an int, got 2.0"),
    (
        GradientMatchingLoss,
        (),
        {"reduction": "mean"},
        ValueError,
        "`reduction` must be one of 'batch-based', 'image-based', got 'mean'",
    ),
    (ScaleInvariantLogLoss, (), {"variance_focus": 1.5}, ValueError, "`variance_focus` must be at most 1, got 1.5"),
    (ScaleInvariantLogLoss, (), {"scale": 0}, ValueError, "`scale` must be a positive number, got 0"),
    (ScaleInvariantLogLoss, (), {"eps": -1e-3}, ValueError, "`eps` must be a positive number, got -0.001"),
    (ScaleInvariantLogLoss, (), {"eps": math.inf}, ValueError, "`eps` must be finite, got inf"),
    (ScaleInvariantLogLoss, (), {"eps": "1"}, TypeError, "`eps` must be a real number, got '1'"),
    (SSI, (P.tolist(), T, M), {}, TypeError, "`prediction` must be a torch.Tensor, got list"),
    (SSI, (P, T, None), {}, TypeError, "`mask` must be a bool torch.Tensor .*, got NoneType"),
    (SSI, (P, T, M.float()), {}, TypeError, "`mask` must be a bool torch.Tensor .*, got torch.float32"),
    (
        SSI,
        (P, T, M[:, 0]),
        {},
        ValueError,
        r"`mask` must have the shape of `prediction` \(7, 1, 11, 13\), got \(7, 11, 13\)",
    ),
    (
        SSI,
        (P.expand(7, 2, 11, 13), T, M),
        {},
        ValueError,
        r"`prediction` must be \(N, H, W\) or \(N, 1, H, W\) depth maps, got shape \(7, 2, 11, 13\)",
    ),
    (SSI, (P[0, 0], T, M), {}, ValueError, r"got shape \(11, 13\)"),
    (
        SSI,
        (P, T[:, :, :5], M),
        {},
        ValueError,
        r"`prediction` and `target` must have the same shape, got \(7, 1, 11, 13\) and \(7, 1, 5, 13\)",
    ),
    (
        SSI,
        (P, T.double(), M),
        {},
        TypeError,
        "`prediction` and `target` must have the same dtype, got torch.float32 and torch.float64",
    ),
    (SSI, (P.long(), T.long(), M), {}, TypeError, "`prediction` must have a real floating dtype, got torch.int64"),
    (SSI, (P[:, :, :0], T[:, :, :0], M[:, :, :0]), {}, ValueError, "`prediction` must have at least one pixel"),
    (SSI, (P, T, M), {"return_aligned": 1}, TypeError, "`return_aligned` must be True or False, got 1"),
    (SSI, (P, T, M), {"reduction": "sum"}, ValueError, "`reduction` must be one of"),
    (gradient_matching_loss, (P, 1.0, M), {}, TypeError, "`target` must be a torch.Tensor, got float"),
    (scale_and_shift, (P, T, M[:1]), {}, ValueError, "`mask` must have the shape"),
    (scale_invariant_log_loss, (P, T, M), {"variance_focus": -0.1}, ValueError, "`variance_focus`"),
    *[
        (fn, args, {}, TypeError, rf"`{name}` must be a dense \(strided\) tensor")
        for fn in (SSI, gradient_matching_loss, scale_invariant_log_loss, scale_and_shift)
        for name, args in (
            ("prediction", (P.to_sparse(), T, M)),
            ("target", (P, T.to_sparse(), M)),
            ("mask", (P, T, M.to_sparse())),
        )
    ],
]


@pytest.mark.parametrize("fn, args, kwargs, error, message", BAD_INPUTS)
def test_bad_input_is_refused_by_name(fn, args: tuple, kwargs: dict, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message) as info:
        fn(*args, **kwargs)
    assert str(info.value).startswith(f"{fn.__name__}: "), info.value


# Scales past the image, meta, extreme magnitudes, first-order backward ----------------------------------------


# Holes under torch.func and torch.compile, the eps of the log loss, scales past the image, layouts and meta,
# extreme magnitudes, first-order backward ---------------------------------------------------------------------


@pytest.mark.parametrize("scales", [62, 63, 64, 1000])
def test_scales_past_the_image_add_nothing(scales: int) -> None:
    """On an 8x8 map scales 0, 1 and 2 have pixel pairs; any more scales give what 3 give."""
    p, t, m = batch(torch.float64, n=5, h=8, w=8)
    for fn in (gradient_matching_loss, scale_and_shift_invariant_loss):
        ours, expected = fn(p, t, m, scales=scales), fn(p, t, m, scales=3)
        torch.testing.assert_close(ours, expected, rtol=0, atol=0)
        expected_grads = grads(expected, (p, t))
        for a, b in zip(grads(ours, (p, t)), expected_grads):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        traced = torch.func.grad(lambda a, fn=fn: fn(a, t.detach(), m, scales=scales))(p.detach())
        torch.testing.assert_close(traced, expected_grads[0])  # other code, other rounding: float64 tolerance


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_depth_losses_give_shapes_on_meta(dtype: torch.dtype) -> None:
    p = torch.empty(2, 1, 8, 8, device="meta", dtype=dtype)
    m = torch.empty(2, 1, 8, 8, device="meta", dtype=torch.bool)
    for loss in (
        scale_and_shift_invariant_loss(p, p, m),
        gradient_matching_loss(p, p, m),
        scale_invariant_log_loss(p, p, m),
        scale_invariant_log_loss(p, p, m, eps=1e-3),
        ScaleAndShiftInvariantLoss(alpha=0.0)(p, p, m),
    ):
        assert loss.device.type == "meta" and loss.shape == () and loss.dtype == dtype
    loss, aligned = scale_and_shift_invariant_loss(p, p, m, return_aligned=True)
    assert aligned.device.type == "meta" and aligned.shape == p.shape and aligned.dtype == dtype
    scale, shift = scale_and_shift(p, p, m)
    assert scale.device.type == shift.device.type == "meta" and scale.shape == shift.shape == (2,)


@pytest.mark.parametrize("size", [1e20, 1e-25])
def test_alignment_of_predictions_whose_squares_leave_float32(size: float) -> None:
    """A prediction around 1e20 (its squares overflow float32) or 1e-25 (they underflow): in float32 the fit, the
    loss and its gradients agree with float64 to float32's rounding."""
    g = torch.Generator().manual_seed(5)
    truth = torch.rand(3, 6, 7, generator=g, dtype=torch.float64)
    m = torch.rand(3, 6, 7, generator=g) > 0.3
    prediction, target = size * (truth + 3), 2 * truth - 1 + 0.1 * torch.rand(3, 6, 7, generator=g, dtype=torch.float64)
    for traceable in (False, True):
        exact, got = [], []
        for dtype, results in ((torch.float64, exact), (torch.float32, got)):
            p, t = prediction.to(dtype).requires_grad_(), target.to(dtype)

            def fit_and_loss(a: torch.Tensor) -> torch.Tensor:
                scale, shift = scale_and_shift(a, t, m)
                return torch.stack([*scale, *shift, scale_and_shift_invariant_loss(a, t, m, scales=2)])

            values = fit_and_loss(p)
            if traceable:
                gradient = torch.func.grad(lambda a: fit_and_loss(a)[-1])(p.detach())
            else:
                gradient = grads(values[-1], p)[0]
            results += [values.detach(), gradient]
        assert all(torch.isfinite(x).all() for x in got)
        # float32 rounding of inputs and sums; the gradient is compared relative to its largest entry
        torch.testing.assert_close(got[0].double(), exact[0], rtol=1e-4, atol=0)
        torch.testing.assert_close(got[1].double(), exact[1], rtol=0, atol=1e-4 * exact[1].abs().max().item())


@pytest.mark.parametrize("fn", [SSI, gradient_matching_loss, scale_invariant_log_loss, scale_and_shift])
def test_create_graph_is_refused_at_the_first_backward(fn) -> None:
    p, t, m = batch(torch.float64)
    value = fn(p, t, m)
    loss = sum(value).sum() if isinstance(value, tuple) else value
    with pytest.raises(RuntimeError, match=rf"{fn.__name__}: .*first-order gradients only.*create_graph=True"):
        torch.autograd.grad(loss, (p, t), create_graph=True)
    # without create_graph the same graph still gives the gradients
    assert all(torch.isfinite(g).all() for g in torch.autograd.grad(loss, (p, t)))
