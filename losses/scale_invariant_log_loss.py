"""Eigen et al.'s scale-invariant log loss, in the form BTS and AdaBins train with."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

from torchgrad._internal import Workspace, assert_on_device, check_depth_batch, check_number, slabs

from ._autocast import autocast_off, depth_dtypes
from ._depth_batch import dots, keep_valid_, plain_code, refuse_create_graph, valid_counts, valid_maps


def _check_options(caller: str, variance_focus: Any, scale: Any, eps: Any) -> tuple[float, float, Optional[float]]:
    return (
        check_number(caller, "variance_focus", variance_focus, non_negative=True, maximum=1),
        check_number(caller, "scale", scale, positive=True),
        None if eps is None else check_number(caller, "eps", eps, positive=True),
    )


def _positivity_error(caller: str, name: str, value: Tensor, mask: Tensor, eps: Optional[float]) -> ValueError:
    """The error for ``value`` (``+ eps``) ``<= 0`` at valid pixels, whose logarithm is -inf or NaN."""
    if eps is None:
        bad = mask & (value <= 0)
        what = f"`{name}` must be positive at valid pixels (or give `eps` to take log({name} + eps))"
        limit = "0"
    else:
        bad = mask & (value + eps <= 0)
        what, limit = f"`{name}` + eps must be positive at valid pixels (eps={eps:g})", f"{-eps:g}"
    return ValueError(
        f"{caller}: {what}, got {int(bad.sum())} values <= {limit} there, the smallest {value[bad].min().item():g}"
    )


def _check_positive(y: Tensor, caller: str, name: str, x: Tensor, mask: Tensor, eps: Optional[float]) -> None:
    """Refuse ``y`` (``x`` or ``x + eps``, 1 at invalid pixels) with a value ``<= 0``; a NaN at a valid pixel
    propagates. A ``ValueError`` that counts them, except on CUDA, where the check is an assertion queued on the
    device: the host does not wait for the values (a CUDA graph can capture the call), and a failed assertion stops
    the process's CUDA work as an out-of-range index does."""
    if y.numel() == 0:
        return
    bad = y.min() <= 0
    if y.device.type == "cuda":
        limit = "0" if eps is None else f"{-eps:g}"
        assert_on_device(~bad, f"{caller}: `{name}` has values <= {limit} at valid pixels, whose log is not finite")
        return
    if bool(bad):
        raise _positivity_error(caller, name, x, mask, eps)


def _log_difference(p: Tensor, t: Tensor, m: Tensor, eps: Optional[float]) -> Tensor:
    """``log p' - log t'`` at valid pixels, 0 elsewhere, with ``x' = x (+ eps)``; plain differentiable code."""
    pe = torch.where(m, p if eps is None else p + eps, 1)
    te = torch.where(m, t if eps is None else t + eps, 1)
    return torch.log(pe) - torch.log(te)


def _moments(d: Tensor, m: Tensor, variance_focus: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(count, mean(d), mean(d^2) - variance_focus mean(d)^2)`` over the valid pixels, the last written as
    ``var + (1 - variance_focus) mean^2`` (never negative for ``variance_focus <= 1``); 0 without valid pixels."""
    count = m.sum()
    n = count.clamp_min(1)
    mean = d.sum() / n
    centred = torch.where(m, d - mean, 0).flatten()
    var = (centred * centred).sum() / n
    return count, mean, var + (1 - variance_focus) * mean * mean


def _shifted(x: Tensor, eps: Optional[float], bits: Tensor, invalid: Tensor, out: Tensor) -> Tensor:
    """``x (+ eps)`` at valid pixels and 1 elsewhere, into ``out`` (``invalid``: 1.0 where invalid, else 0.0)."""
    y = out.copy_(x) if eps is None else torch.add(x, eps, out=out)
    return keep_valid_(y, bits).add_(invalid)


def _log_pass(
    caller: str,
    p: Tensor,
    t: Tensor,
    m: Tensor,
    variance_focus: float,
    scale: float,
    eps: Optional[float],
    need: tuple[bool, bool],
) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """``(loss, grad_p, grad_t)``, slab by slab in three passes: the log ratios ``d`` (kept, in the gradient's buffer
    when there is one) and their mean, their variance, the gradients."""
    need_p, need_t = need
    dtype, shape = p.dtype, tuple(p.shape)
    work = Workspace(p.device)
    grad_p = torch.empty(shape, dtype=dtype, device=p.device) if need_p else None
    grad_t = torch.empty(shape, dtype=dtype, device=p.device) if need_t else None
    d = grad_p if grad_p is not None else torch.empty(shape, dtype=dtype, device=p.device)
    cuts = slabs(p, 2, per_thread=True)

    def prepared(cut: slice) -> tuple[Tensor, Tensor, Tensor]:
        valid, bits = valid_maps(work, m[cut], dtype)
        return valid, bits, torch.sub(1, valid, out=work.buffer("invalid", valid.shape, dtype))

    total = p.new_zeros(())
    for cut in cuts:
        _, bits, invalid = prepared(cut)
        logs = []
        for x, name in ((p, "prediction"), (t, "target")):
            y = _shifted(x[cut], eps, bits, invalid, work.buffer(name, invalid.shape, dtype))
            _check_positive(y, caller, name, x, m, eps)
            logs.append(y.log_())
        total += torch.sub(*logs, out=d[cut]).sum()
    count = valid_counts(m, 1)[0].sum()
    mean = total / count.clamp_min(1)
    var = p.new_zeros(())
    for cut in cuts:
        valid, _, _ = prepared(cut)
        centred = torch.sub(d[cut], mean, out=work.buffer("centred", valid.shape, dtype)).mul_(valid)
        var += dots(work, centred, centred).sum()
    second = var / count.clamp_min(1) + (1 - variance_focus) * mean * mean
    root = second.sqrt()
    if need_p or need_t:
        # d loss / d d_i = scale (d_i - variance_focus mean) / (count sqrt(second)); 0 where second is 0 (a NaN stays)
        coef = torch.where(second == 0, 0, scale / (count.clamp_min(1) * root))
        for cut in cuts:
            _, bits, invalid = prepared(cut)
            slope = keep_valid_(d[cut].sub_(variance_focus * mean).mul_(coef), bits)  # d's buffer becomes the slope
            if grad_t is not None:
                torch.div(
                    slope,
                    _shifted(t[cut], eps, bits, invalid, work.buffer("target", bits.shape, dtype)),
                    out=grad_t[cut],
                ).neg_()
            if grad_p is not None:
                slope.div_(_shifted(p[cut], eps, bits, invalid, work.buffer("prediction", bits.shape, dtype)))
    return scale * root, grad_p, grad_t


class _ScaleInvariantLog(torch.autograd.Function):
    """The loss and (when a gradient is needed) its gradients, computed together; the first backward hands them over
    scaled in place (a second one, after ``retain_graph=True``, computes them again). First order."""

    @staticmethod
    def forward(
        ctx: Any,
        p: Tensor,
        t: Tensor,
        m: Tensor,
        variance_focus: float,
        scale: float,
        eps: Optional[float],
        grad_mode: bool,
    ) -> Tensor:
        ctx.options = variance_focus, scale, eps
        loss, *ctx.grads = _log_pass(
            "scale_invariant_log_loss",
            p,
            t,
            m,
            variance_focus,
            scale,
            eps,
            (grad_mode and ctx.needs_input_grad[0], grad_mode and ctx.needs_input_grad[1]),
        )
        ctx.save_for_backward(p, t, m)
        return loss

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> Any:
        refuse_create_graph("scale_invariant_log_loss")
        grads, ctx.grads = ctx.grads, None
        if grads is None:
            p, t, m = ctx.saved_tensors
            variance_focus, scale, eps = ctx.options
            need = (ctx.needs_input_grad[0], ctx.needs_input_grad[1])
            grads = _log_pass("scale_invariant_log_loss", p, t, m, variance_focus, scale, eps, need)[1:]
        grad_p, grad_t = (None if g is None else g.mul_(grad_output) for g in grads)
        return grad_p, grad_t, None, None, None, None, None


def _traceable(p: Tensor, t: Tensor, m: Tensor, variance_focus: float, scale: float, eps: Optional[float]) -> Tensor:
    d = _log_difference(p, t, m, eps)
    _, _, second = _moments(d, m, variance_focus)
    zero = second == 0  # the root's gradient there is 0, not inf times 0 (a NaN stays)
    return scale * torch.where(zero, 0, torch.where(zero, 1, second).sqrt())


def scale_invariant_log_loss(
    prediction: Tensor,
    target: Tensor,
    mask: Tensor,
    *,
    variance_focus: float = 0.85,
    scale: float = 10.0,
    eps: Optional[float] = None,
) -> Tensor:
    r"""Eigen et al.'s scale-invariant log loss, as BTS (``silog_loss``) and AdaBins train with it.

    Over the valid pixels of the whole batch, ``d = log(prediction) - log(target)`` and

    .. math::
        \text{scale} \cdot \sqrt{\operatorname{mean}(d^2) - \text{variance_focus} \cdot \operatorname{mean}(d)^2}

    (computed as the variance plus ``(1 - variance_focus) mean(d)^2``, which cannot round below 0). With
    ``variance_focus = 1`` it is fully scale-invariant, with 0 it is the RMS log error. The gradient is finite
    everywhere: 0 where the square root's argument is 0 (a perfect prediction) and without valid pixels (the loss is
    then 0). With ``eps``, ``log(x + eps)`` is taken. A prediction or target ``<= 0`` at a valid pixel (``x + eps
    <= 0`` with ``eps``) raises ``ValueError`` (on CUDA, a device-side assertion, which does not make the host
    wait and, when it fails, stops the process's CUDA work); the check is made in eager mode only: under
    ``torch.compile`` and ``torch.func`` transforms (where reading a value would break the graph or the transform)
    such a pixel gives NaN, as BTS's formula does. One pass computes the value and its gradients; backward is first
    order (a backward with ``create_graph=True`` raises ``RuntimeError``).

    Args:
        prediction: ``(N, H, W)`` or ``(N, 1, H, W)`` predicted depth, positive at valid pixels.
        target: the ground truth, same shape; its values at invalid pixels are never read.
        mask: bool, same shape, True where the ground truth is valid.
        variance_focus: ``lambda`` in ``[0, 1]`` (BTS: 0.85).
        scale: the factor in front of the root, positive (BTS: 10).
        eps: ``None``, or a positive number added before the logarithms.

    Returns:
        A scalar.

    Example:
        >>> target = torch.rand(2, 1, 6, 6) + 0.5
        >>> mask = target > 0.7
        >>> bool(scale_invariant_log_loss(2 * target, target, mask, variance_focus=1.0) < 1e-3)  # a scale is free
        True
        >>> round(float(scale_invariant_log_loss(2 * target, target, mask, variance_focus=0.0)), 4)  # 10 log 2
        6.9315
    """
    caller = "scale_invariant_log_loss"
    variance_focus, scale, eps = _check_options(caller, variance_focus, scale, eps)
    p, t, m = check_depth_batch(caller, prediction, target, mask)
    work, result = depth_dtypes(prediction, target)
    traceable = plain_code(p, t)
    with autocast_off(p.device):
        p, t = p.to(work), t.to(work)
        if traceable:
            loss = _traceable(p, t, m, variance_focus, scale, eps)
        else:
            loss = _ScaleInvariantLog.apply(p, t, m, variance_focus, scale, eps, torch.is_grad_enabled())
    return loss.to(result)


class ScaleInvariantLogLoss(nn.Module):
    """Module form of :func:`scale_invariant_log_loss`; ``forward(prediction, target, mask)``."""

    def __init__(self, variance_focus: float = 0.85, scale: float = 10.0, eps: Optional[float] = None) -> None:
        super().__init__()
        self.variance_focus, self.scale, self.eps = _check_options(type(self).__name__, variance_focus, scale, eps)

    def forward(self, prediction: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        return scale_invariant_log_loss(
            prediction, target, mask, variance_focus=self.variance_focus, scale=self.scale, eps=self.eps
        )

    def extra_repr(self) -> str:
        eps = "" if self.eps is None else f", eps={self.eps}"
        return f"variance_focus={self.variance_focus}, scale={self.scale}{eps}"
