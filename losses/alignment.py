"""Least-squares alignment: the per-image scale and shift that align a relative depth prediction with the truth."""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional

import torch
from torch import Tensor

from torchgrad._internal import Workspace, check_depth_batch, slabs

from ._autocast import autocast_off, depth_dtypes
from ._depth_batch import dots, keep_valid_, plain_code, refuse_create_graph, valid_counts, valid_maps


def _exponent_range(dtype: torch.dtype) -> tuple[int, int]:
    """The binary exponents ``e`` (of ``x = m 2**e``, ``m`` in [0.5, 1)) for which ``2**-e`` and ``x 2**-e`` are
    normal numbers of ``dtype``."""
    info = torch.finfo(dtype)
    return math.frexp(info.tiny)[1], math.frexp(info.max)[1] - 2


_EXPONENT_RANGES = {dtype: _exponent_range(dtype) for dtype in (torch.float32, torch.float64)}


def _power_of_two(exponent: Tensor) -> Tensor:
    """``2.0**exponent`` in float64, built from its bits (exact, where ``torch.exp2`` may round); ``exponent`` an
    integer tensor in [-1022, 1023]."""
    return ((exponent.to(torch.int64) + 1023) << 52).view(torch.float64)


def normalising_factors(q: Tensor) -> tuple[Tensor, Tensor]:
    """``(factor, unit)``, each ``(k,)``: per image of ``(k, H, W)`` ``q`` (zero at invalid pixels), the power of two
    ``factor`` in ``q``'s dtype that brings the largest ``|q|`` into [0.5, 1) (1 where it is 0), and
    ``unit = 1 / factor`` in float64.

    Scaling by a power of two is exact, so ``factor * q`` loses nothing and every sum of it, and of its squares and
    products, is the sum for ``q`` scaled exactly, with the same roundings (of normal numbers); but it neither
    overflows nor underflows for a prediction around ``1e20`` or ``1e-25`` in float32. A constant of the fit (no
    gradient).
    """
    with torch.no_grad():
        flat = q.flatten(1)
        largest = torch.maximum(flat.amax(1), flat.amin(1).neg())  # two reductions: several times faster than abs
        _, exponent = torch.frexp(largest)  # largest = mantissa * 2**exponent, mantissa in [0.5, 1); 0 for 0
        low, high = _EXPONENT_RANGES.get(q.dtype) or _exponent_range(q.dtype)
        unit = _power_of_two(exponent.clamp(low, high))  # clamped: also what inf and NaN leave in the exponent
        return unit.reciprocal().to(q.dtype), unit


class Fit(NamedTuple):
    """The fit of a few images, each field ``(k,)``; ``solve`` writes the 2x2 system in float64.

    The system is over the valid pixels of ``q = (prediction - p0) / unit`` and ``r = target - t0``, with ``p0``,
    ``t0`` one valid pixel of each image and ``unit`` the power of two of :func:`normalising_factors`: centring keeps
    ``det`` accurate, and a constant prediction gives ``q = 0`` and so ``det = 0`` exactly (a singular system is
    decided without a tolerance); the unit keeps the sums of a prediction around ``1e20`` or ``1e-25`` inside
    float32. At valid pixels ``aligned - target = slope * q + offset - r``, and ``scale = slope / unit``.
    """

    pixels: Tensor
    p0: Tensor
    t0: Tensor
    unit: Tensor
    sq: Tensor
    sqq: Tensor
    det: Tensor
    singular: Tensor
    slope: Tensor  # the scale in the units of q
    offset: Tensor  # the shift in centred coordinates
    scale: Tensor
    shift: Tensor


def anchors(prediction: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """``(p0, t0)``, each ``(k,)``: the values at a valid pixel of each image (0 for an image without one)."""
    k, _, w = mask.shape
    with torch.no_grad():
        first = mask.view(torch.uint8).reshape(k, -1).max(1).indices  # a valid pixel where there is one
        rows, ys, xs = torch.arange(k, device=mask.device), first // w, first % w
        some = mask[rows, ys, xs]
        return torch.where(some, prediction[rows, ys, xs], 0), torch.where(some, target[rows, ys, xs], 0)


def centred(
    prediction: Tensor, target: Tensor, mask: Tensor, bits: Tensor, work: Workspace
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(q, r, p0, t0, unit)``: ``(prediction - p0) / unit`` and ``target - t0`` at valid pixels, 0 elsewhere
    (``bits`` from :func:`~._depth_batch.valid_maps`), in ``work``'s buffers ``"q"`` and ``"r"``; eager code, no
    graph."""
    p0, t0 = anchors(prediction, target, mask)
    shape = tuple(mask.shape)
    q = keep_valid_(torch.sub(prediction, p0.view(-1, 1, 1), out=work.buffer("q", shape, prediction.dtype)), bits)
    factor, unit = normalising_factors(q)
    q.mul_(factor.view(-1, 1, 1))
    r = keep_valid_(torch.sub(target, t0.view(-1, 1, 1), out=work.buffer("r", shape, prediction.dtype)), bits)
    return q, r, p0, t0, unit


def solve(
    count: Tensor,
    p0: Tensor,
    t0: Tensor,
    unit: Tensor,
    sums: tuple[Tensor, Tensor, Tensor, Tensor],
    dtype: Any,
) -> Fit:
    """The normal equations ``[[sqq, sq], [sq, n]] [slope, offset] = [sqr, sr]`` of ``sums = (sq, sr, sqq, sqr)``, in
    float64; ``slope``, ``scale`` and ``shift`` 0 where singular, and ``offset`` then ``-t0`` (a zero prediction)."""
    n, p0, t0, sq, sr, sqq, sqr = torch.stack((count.to(sums[0].dtype), p0, t0, *sums)).to(torch.float64)
    det = n * sqq - sq * sq
    singular = det <= 0  # no, one, or only equal values (a NaN propagates)
    safe = torch.where(singular, 1, det)
    slope = torch.where(singular, 0, (n * sqr - sq * sr) / safe)
    offset = torch.where(singular, -t0, (sqq * sr - sq * sqr) / safe)
    scale = slope / unit  # exact: unit is a power of two
    shift = torch.where(singular, 0, t0 + offset - scale * p0)
    slope_, offset_, scale_, shift_ = torch.stack((slope, offset, scale, shift)).to(dtype)
    return Fit(n, p0, t0, unit, sq, sqq, det, singular, slope_, offset_, scale_, shift_)


def fit_sums(q: Tensor, r: Tensor, count: Tensor, p0: Tensor, t0: Tensor, unit: Tensor, work: Workspace) -> Fit:
    """:func:`solve` with the sums of centred ``q``, ``r`` (``(k, H, W)``, zero at invalid pixels)."""
    sums = (q.sum((1, 2)), r.sum((1, 2)), dots(work, q, q), dots(work, q, r))
    return solve(count, p0, t0, unit, sums, dtype=q.dtype)


def pull_back(fit: Fit, grad_slope: Tensor, grad_offset: Tensor) -> tuple[Tensor, Tensor]:
    """``(u, v) = A^{-1} [grad_slope, grad_offset]`` in float64, ``A`` the system of ``fit``; 0 where singular.

    Through the fit (implicit differentiation of the normal equations), a pixel's ``q`` then receives
    ``u (r - 2 slope q - offset) - v slope`` and its target ``u q + v``, both zero at invalid pixels; the
    prediction receives what ``q`` receives divided by ``unit``.
    """
    gs, gb = torch.stack((grad_slope, grad_offset)).to(torch.float64)
    safe = torch.where(fit.singular, 1, fit.det)
    u = torch.where(fit.singular, 0, (fit.pixels * gs - fit.sq * gb) / safe)
    v = torch.where(fit.singular, 0, (fit.sqq * gb - fit.sq * gs) / safe)
    return u, v


def through_fit(fit: Fit, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(a, b, c)``, each ``(k, 1, 1)`` in the fit's dtype: what :func:`pull_back`'s ``(u, v)`` give the prediction,
    ``a r + b q + c`` at valid pixels; formed in float64 with the unit folded in (each coefficient is of the size of
    the gradient it makes, whatever the magnitude of the prediction)."""
    slope, offset = torch.stack((fit.slope, fit.offset)).to(torch.float64)
    a = u / fit.unit
    c = (u * offset + v * slope).div_(fit.unit).neg_()
    a, b, c = torch.stack((a, a * slope * -2, c)).to(fit.scale.dtype).view(3, -1, 1, 1)
    return a, b, c


class _ScaleAndShift(torch.autograd.Function):
    """``(scale, shift)`` of the fit; backward by implicit differentiation, recomputing ``q``, ``r`` slab by slab.
    First order."""

    @staticmethod
    def forward(ctx: Any, prediction: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        fits = []
        work = Workspace(prediction.device)
        counts = valid_counts(mask, 1)[0]
        for cut in slabs(prediction, 2, per_thread=True):
            p, t, m = prediction[cut], target[cut], mask[cut]
            _, bits = valid_maps(work, m, p.dtype)
            q, r, p0, t0, unit = centred(p, t, m, bits, work)
            fits.append(fit_sums(q, r, counts[cut], p0, t0, unit, work))
        fit = Fit(*(torch.cat(parts) for parts in zip(*fits))) if fits else None
        ctx.save_for_backward(prediction, target, mask)
        # the outputs, detached: the originals get this node as their grad_fn (no reference cycle through ctx)
        ctx.fit = None if fit is None else fit._replace(scale=fit.scale.detach(), shift=fit.shift.detach())
        if fit is None:
            return prediction.new_zeros(0), prediction.new_zeros(0)
        return fit.scale, fit.shift

    @staticmethod
    def backward(ctx: Any, grad_scale: Optional[Tensor], grad_shift: Optional[Tensor]) -> Any:
        refuse_create_graph("scale_and_shift")
        prediction, target, mask = ctx.saved_tensors
        need_p, need_t = ctx.needs_input_grad[:2]
        fit: Optional[Fit] = ctx.fit
        if fit is None or (grad_scale is None and grad_shift is None):
            return None, None, None
        zeros = torch.zeros_like(fit.p0)
        gs, gb = (
            zeros if grad_scale is None else grad_scale.to(torch.float64),
            zeros if grad_shift is None else grad_shift.to(torch.float64),
        )
        # scale = slope / unit and shift = t0 + offset - scale p0: the gradients of slope and offset
        u_all, v_all = pull_back(fit, (gs - fit.p0 * gb) / fit.unit, gb)
        a_all, b_all, c_all = through_fit(fit, u_all, v_all)
        u_all, v_all = u_all.to(fit.scale.dtype), v_all.to(fit.scale.dtype)
        grad_p = torch.empty_like(prediction, memory_format=torch.contiguous_format) if need_p else None
        grad_t = torch.empty_like(target, memory_format=torch.contiguous_format) if need_t else None
        work = Workspace(prediction.device)
        for cut in slabs(prediction, 2, per_thread=True):
            p, t, m = prediction[cut], target[cut], mask[cut]
            valid, bits = valid_maps(work, m, p.dtype)
            q, r, _, _, _ = centred(p, t, m, bits, work)
            if grad_p is not None:  # a r + b q + c at valid pixels
                torch.mul(r, a_all[cut], out=grad_p[cut]).addcmul_(q, b_all[cut]).addcmul_(valid, c_all[cut])
            if grad_t is not None:  # u q + v at valid pixels
                torch.mul(q, u_all[cut].view(-1, 1, 1), out=grad_t[cut]).addcmul_(valid, v_all[cut].view(-1, 1, 1))
        return grad_p, grad_t, None


def fit_traceable(prediction: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Fit]:
    """``(q, r, fit)`` as plain differentiable tensor code (``torch.compile``, ``torch.func``): ``q`` and ``r`` as
    :func:`centred` gives them; holes are replaced before any arithmetic, so that nothing of them reaches a
    gradient."""
    p0, t0 = anchors(prediction, target, mask)
    q = torch.where(mask, prediction, p0.view(-1, 1, 1)) - p0.view(-1, 1, 1)
    factor, unit = normalising_factors(q)
    q = q * factor.view(-1, 1, 1)
    r = torch.where(mask, target, t0.view(-1, 1, 1)) - t0.view(-1, 1, 1)
    sums = (q.sum((1, 2)), r.sum((1, 2)), (q * q).sum((1, 2)), (q * r).sum((1, 2)))
    return q, r, solve(valid_counts(mask, 1)[0], p0, t0, unit, sums, q.dtype)


def scale_and_shift(prediction: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    r"""The per-image least-squares ``scale * prediction + shift ~ target`` over the valid pixels, as MiDaS aligns.

    In closed form from the 2x2 normal equations (solved about one valid pixel of each image, and in float64, so
    that an offset in the prediction costs no accuracy). Where the system is singular (no valid pixel, one, or a
    prediction constant over the valid pixels) both are 0, as in MiDaS. Differentiable: gradients reach
    ``prediction`` and ``target`` through the fit (a hand-written backward; first order: a backward with
    ``create_graph=True`` raises ``RuntimeError``). A prediction around ``1e20`` or ``1e-25`` is aligned as accurately
    as one around 1 where the scale and shift fit its dtype (each image's centred prediction is scaled by a power of
    two before its sums, of squares too, are formed).

    Args:
        prediction: ``(N, H, W)`` or ``(N, 1, H, W)`` predicted (inverse) depth, any scale and shift.
        target: the ground truth, same shape; its values at invalid pixels are never read.
        mask: bool, same shape, True where the ground truth is valid.

    Returns:
        ``(scale, shift)``, each ``(N,)``.

    Example:
        >>> prediction = torch.rand(2, 1, 4, 4)
        >>> mask = torch.ones(2, 1, 4, 4, dtype=torch.bool)
        >>> scale, shift = scale_and_shift(prediction, 3 * prediction + 1, mask)
        >>> torch.allclose(scale, torch.tensor([3.0, 3.0])), torch.allclose(shift, torch.tensor([1.0, 1.0]))
        (True, True)
    """
    p, t, m = check_depth_batch("scale_and_shift", prediction, target, mask)
    work, result = depth_dtypes(prediction, target)
    with autocast_off(p.device):
        p, t = p.to(work), t.to(work)
        if plain_code(p, t):
            fit = fit_traceable(p, t, m)[2]
            scale, shift = fit.scale, fit.shift
        else:
            scale, shift = _ScaleAndShift.apply(p, t, m)
    return scale.to(result), shift.to(result)
