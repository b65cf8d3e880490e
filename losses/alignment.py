"""Least-squares alignment: the per-image scale and shift that align a relative depth prediction with the truth."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import torch
from torch import Tensor

from torchgrad._internal import check_depth_batch, needs_traceable_code

from ._autocast import depth_dtypes
from ._depth_batch import Workspace, image_slabs, keep_valid_, valid_counts


class Fit(NamedTuple):
    """The fit of a few images, each field ``(k,)``; ``solve`` writes the 2x2 system in float64.

    The sums are over the valid pixels of ``q = prediction - p0`` and ``r = target - t0``, with ``p0``, ``t0`` one
    valid pixel of each image: centring keeps ``det`` accurate, and a constant prediction gives ``q = 0`` and so
    ``det = 0`` exactly (a singular system is decided without a tolerance).
    """

    pixels: Tensor
    p0: Tensor
    t0: Tensor
    sq: Tensor
    sqq: Tensor
    det: Tensor
    singular: Tensor
    scale: Tensor
    shift: Tensor
    offset: Tensor  # the shift in centred coordinates: aligned - target = scale * q + offset - r at valid pixels


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
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(q, r, p0, t0)``: ``prediction - p0`` and ``target - t0`` at valid pixels, 0 elsewhere (``bits`` from
    :meth:`Workspace.valid`), in ``work``'s buffers ``"q"`` and ``"r"``; eager code, no graph."""
    p0, t0 = anchors(prediction, target, mask)
    shape = tuple(mask.shape)
    q = keep_valid_(torch.sub(prediction, p0.view(-1, 1, 1), out=work.get("q", shape, prediction.dtype)), bits)
    r = keep_valid_(torch.sub(target, t0.view(-1, 1, 1), out=work.get("r", shape, prediction.dtype)), bits)
    return q, r, p0, t0


def solve(count: Tensor, p0: Tensor, t0: Tensor, sq: Tensor, sr: Tensor, sqq: Tensor, sqr: Tensor, dtype: Any) -> Fit:
    """The normal equations ``[[sqq, sq], [sq, n]] [scale, offset] = [sqr, sr]``, in float64; both 0 where singular."""
    n, p0, t0, sq, sr, sqq, sqr = torch.stack((count.to(sq.dtype), p0, t0, sq, sr, sqq, sqr)).to(torch.float64)
    det = n * sqq - sq * sq
    singular = det <= 0  # no, one, or only equal values (a NaN propagates)
    safe = torch.where(singular, 1, det)
    scale = torch.where(singular, 0, (n * sqr - sq * sr) / safe)
    offset = torch.where(singular, -t0, (sqq * sr - sq * sqr) / safe)
    shift = torch.where(singular, 0, t0 + offset - scale * p0)
    scale_, shift_, offset_ = torch.stack((scale, shift, offset)).to(dtype)
    return Fit(n, p0, t0, sq, sqq, det, singular, scale_, shift_, offset_)


def fit_sums(q: Tensor, r: Tensor, count: Tensor, p0: Tensor, t0: Tensor, work: Workspace) -> Fit:
    """:func:`solve` with the sums of centred ``q``, ``r`` (``(k, H, W)``, zero at invalid pixels)."""
    return solve(count, p0, t0, q.sum((1, 2)), r.sum((1, 2)), work.dots(q, q), work.dots(q, r), dtype=q.dtype)


def pull_back(fit: Fit, grad_scale: Tensor, grad_shift: Tensor) -> tuple[Tensor, Tensor]:
    """``(u, v) = A^{-1} [grad_scale - p0 grad_shift, grad_shift]`` (``A`` the centred system; 0 where singular), in
    the dtype of ``fit.scale``.

    Through the fit, a pixel's prediction then receives ``u (t - aligned - scale q) - v scale`` and its target
    ``u q + v`` (implicit differentiation of the normal equations), both zero at invalid pixels.
    """
    gs, gb = torch.stack((grad_scale, grad_shift)).to(torch.float64)
    gs = gs - fit.p0 * gb
    safe = torch.where(fit.singular, 1, fit.det)
    u = torch.where(fit.singular, 0, (fit.pixels * gs - fit.sq * gb) / safe)
    v = torch.where(fit.singular, 0, (fit.sqq * gb - fit.sq * gs) / safe)
    return u.to(fit.scale.dtype), v.to(fit.scale.dtype)


class _ScaleAndShift(torch.autograd.Function):
    """``(scale, shift)`` of the fit; backward by implicit differentiation, recomputing ``q``, ``r`` slab by slab."""

    @staticmethod
    def forward(ctx: Any, prediction: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        fits = []
        work = Workspace(prediction.device)
        counts = valid_counts(mask, 1)[0]
        for cut in image_slabs(prediction):
            p, t, m = prediction[cut], target[cut], mask[cut]
            _, bits = work.valid(m, p.dtype)
            q, r, p0, t0 = centred(p, t, m, bits, work)
            fits.append(fit_sums(q, r, counts[cut], p0, t0, work))
        fit = Fit(*(torch.cat(parts) for parts in zip(*fits))) if fits else None
        ctx.save_for_backward(prediction, target, mask)
        # the outputs, detached: the originals get this node as their grad_fn (no reference cycle through ctx)
        ctx.fit = None if fit is None else fit._replace(scale=fit.scale.detach(), shift=fit.shift.detach())
        if fit is None:
            return prediction.new_zeros(0), prediction.new_zeros(0)
        return fit.scale, fit.shift

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_scale: Optional[Tensor], grad_shift: Optional[Tensor]) -> Any:
        prediction, target, mask = ctx.saved_tensors
        need_p, need_t = ctx.needs_input_grad[:2]
        fit: Optional[Fit] = ctx.fit
        if fit is None or (grad_scale is None and grad_shift is None):
            return None, None, None
        zeros = torch.zeros_like(fit.scale)
        u_all, v_all = pull_back(
            fit, zeros if grad_scale is None else grad_scale, zeros if grad_shift is None else grad_shift
        )
        grad_p = torch.empty_like(prediction, memory_format=torch.contiguous_format) if need_p else None
        grad_t = torch.empty_like(target, memory_format=torch.contiguous_format) if need_t else None
        work = Workspace(prediction.device)
        for cut in image_slabs(prediction):
            p, t, m = prediction[cut], target[cut], mask[cut]
            valid, bits = work.valid(m, p.dtype)
            q, r, _, _ = centred(p, t, m, bits, work)
            u, v, s, offset = (c[cut].view(-1, 1, 1) for c in (u_all, v_all, fit.scale, fit.offset))
            if grad_p is not None:  # u (r - 2 s q - offset) - v s at valid pixels
                out = torch.mul(r, u, out=grad_p[cut])
                out.addcmul_(q, -2 * u * s).addcmul_(valid, -(u * offset + v * s))
            if grad_t is not None:  # u q + v at valid pixels
                torch.mul(q, u, out=grad_t[cut]).addcmul_(valid, v)
        return grad_p, grad_t, None


def fit_traceable(prediction: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """The fit as plain differentiable tensor code (``torch.compile``, ``torch.func``); ``(N,)`` each."""
    p0, t0 = anchors(prediction, target, mask)
    q = torch.where(mask, prediction - p0.view(-1, 1, 1), 0)
    r = torch.where(mask, target - t0.view(-1, 1, 1), 0)
    fit = solve(
        valid_counts(mask, 1)[0],
        p0,
        t0,
        q.sum((1, 2)),
        r.sum((1, 2)),
        (q * q).sum((1, 2)),
        (q * r).sum((1, 2)),
        q.dtype,
    )
    return fit.scale, fit.shift


def scale_and_shift(prediction: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    r"""The per-image least-squares ``scale * prediction + shift ~ target`` over the valid pixels, as MiDaS aligns.

    In closed form from the 2x2 normal equations (solved about one valid pixel of each image, and in float64, so
    that an offset in the prediction costs no accuracy). Where the system is singular (no valid pixel, one, or a
    prediction constant over the valid pixels) both are 0, as in MiDaS. Differentiable: gradients reach
    ``prediction`` and ``target`` through the fit (a hand-written backward; first order).

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
    with torch.autocast(p.device.type, enabled=False):
        p, t = p.to(work), t.to(work)
        if needs_traceable_code(p) or needs_traceable_code(t):
            scale, shift = fit_traceable(p, t, m)
        else:
            scale, shift = _ScaleAndShift.apply(p, t, m)
    return scale.to(result), shift.to(result)
