"""hessian: (dyy, dyx, dxx) against padded convolutions and cv2.Sobel, the polynomial test of ``normalized``,
half precision rounded once on every executor, errors, the module."""

from __future__ import annotations

import math
from typing import Callable

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from references import PADDINGS, pad

from torchgrad import Hessian, hessian
from torchgrad._filters import build_operator
from torchgrad._registry import REGISTRY
from torchgrad._separable import Separable

SECOND = torch.tensor([1.0, -2.0, 1.0], dtype=torch.float64)
SMOOTH = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
DIFF = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
KERNELS = [SECOND[:, None] * SMOOTH[None, :], DIFF[:, None] * DIFF[None, :], SMOOTH[:, None] * SECOND[None, :]]
CV2_BORDERS = {
    "reflect": cv2.BORDER_REFLECT_101,
    "replicate": cv2.BORDER_REPLICATE,
    "zeros": cv2.BORDER_CONSTANT,
    "symmetric": cv2.BORDER_REFLECT,
}


@pytest.mark.parametrize("padding", PADDINGS)
def test_matches_padded_convolution(padding: str) -> None:
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64)
    xp = pad(x, 1, padding, 2)
    refs = [F.conv2d(xp, k.expand(3, 1, 3, 3), groups=3) for k in KERNELS]
    for normalized, scale in ((False, 1), (True, 4)):
        outputs = hessian(x, padding=padding, normalized=normalized)
        assert len(outputs) == 3
        for ours, ref in zip(outputs, refs):
            torch.testing.assert_close(ours, ref / scale)


@pytest.mark.parametrize("padding", list(CV2_BORDERS))
def test_matches_opencv_sobel(padding: str) -> None:
    """cv2.Sobel with derivative orders (0, 2), (1, 1), (2, 0) (OpenCV counts x first)."""
    image = np.random.default_rng(1).normal(size=(8, 11))
    orders = [(0, 2), (1, 1), (2, 0)]
    for ours, (dx, dy) in zip(hessian(torch.from_numpy(image), padding=padding), orders):
        ref = cv2.Sobel(image, cv2.CV_64F, dx, dy, ksize=3, borderType=CV2_BORDERS[padding])
        torch.testing.assert_close(ours, torch.from_numpy(ref))


def test_normalized_is_the_hessian_of_a_quadratic() -> None:
    """f = a x^2 + b x y + c y^2: dyy = 2c, dyx = b, dxx = 2a, exactly, inside."""
    a, b, c = 1.5, -2.0, 0.25
    y, x = torch.meshgrid(torch.arange(7.0, dtype=torch.float64), torch.arange(8.0, dtype=torch.float64), indexing="ij")
    f = (a * x**2 + b * x * y + c * y**2).expand(2, 1, 7, 8)
    for out, expected in zip(hessian(f, normalized=True), (2 * c, b, 2 * a)):
        inner = out[..., 1:-1, 1:-1]
        assert torch.equal(inner, torch.full_like(inner, expected))


Outputs = tuple[torch.Tensor, ...]
Run = tuple[Outputs, torch.Tensor]
"""An operator's outputs and the gradient of ``sum(<output, cotangent>)``."""
EXECUTORS = ["eager", "eager slabs", "traceable", "triton"]


def _autograd(fn: Callable[[torch.Tensor], Outputs], x: torch.Tensor, grads: Outputs) -> Run:
    x = x.detach().requires_grad_()
    outputs = fn(x)
    return tuple(o.detach() for o in outputs), torch.autograd.grad(outputs, x, grads)[0]


def _on_executor(
    executor: str,
    fn: Callable[[torch.Tensor], Outputs],
    op: Separable,
    x: torch.Tensor,
    grads: Outputs,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Run, bool]:
    """:func:`_autograd` of ``fn`` (the public call of ``op``) on one executor: the CPU eager executor (in one slab,
    or in uneven slabs), the traceable code (which ``torch.compile`` traces, and tensors on devices without the
    kernels take) or the Triton kernels (CUDA tensors, or CPU tensors under Triton's interpreter; both launches
    checked), on the CPU; and whether it rounds to nearest (Triton's interpreter converts float32 to bfloat16 by
    truncation, where a GPU rounds to nearest)."""
    monkeypatch.delenv("TORCHGRAD_FORCE_TRITON", raising=False)
    if executor == "traceable":
        return (op.apply(x, traceable=True), op.adjoint(grads, traceable=True)), True
    if executor == "eager slabs":
        monkeypatch.setattr("torchgrad._separable.SLAB_BYTES", 2 * x[0].numel() * x.element_size())
    if executor != "triton":
        return _autograd(fn, x, grads), True
    pytest.importorskip("triton")
    from launches import count_launches, kernel_device

    device = kernel_device()
    if device == "cpu":
        monkeypatch.setenv("TORCHGRAD_FORCE_TRITON", "1")
    monkeypatch.delenv("TORCHGRAD_EXECUTOR", raising=False)
    launches = count_launches(monkeypatch)
    outputs, gx = _autograd(fn, x.to(device), tuple(g.to(device) for g in grads))
    assert launches == ["_apply_kernel", "_adjoint_kernel"]
    return (tuple(o.cpu() for o in outputs), gx.cpu()), device == "cuda" or x.dtype != torch.bfloat16


def _assert_rounded_once(got: Run, exact: Run, convolution: Run, nearest: bool) -> None:
    """Every value of ``got`` is its exact value (``exact``: float64 on the same input) rounded once, to one of the
    two values of its dtype around it. Rounded to nearest (``nearest``), the mean error is no worse than that of
    the ``convolution``, which also rounds once: both round the same exact values (float32 holds these sums of
    half-precision samples times small integers exactly), so the errors agree; 2% allows for ties and the rare
    sum that float32 rounds. Rounding each chain's result (or each term) as well about doubles the error."""
    for k, (ours, value, theirs) in enumerate(
        zip((*got[0], got[1]), (*exact[0], exact[1]), (*convolution[0], convolution[1]))
    ):
        what = "the gradient" if k == len(got[0]) else f"output {k}"
        nearest_value = value.to(ours.dtype)
        beyond = torch.where(value > nearest_value.double(), math.inf, -math.inf).to(ours.dtype)
        other = torch.where(nearest_value.double() == value, nearest_value, torch.nextafter(nearest_value, beyond))
        outside = ((ours != nearest_value) & (ours != other)).sum().item()
        assert outside == 0, f"{what}: {outside} of {ours.numel()} values are not their exact value rounded once"
        error, bound = ((t.double() - value).abs().mean().item() for t in (ours, theirs))
        if nearest:
            assert error <= 1.02 * bound, f"{what}: mean error {error:.3g} against the convolution's {bound:.3g}"


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("padding", ["reflect", "zeros"])
def test_half_precision_is_rounded_once(
    executor: str, dtype: torch.dtype, padding: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In half precision each output (one chain of two stencils) and the gradient (the sum of the three chains'
    adjoints) are accumulated in float32 and rounded once, on every executor, as a padded convolution with the
    three kernels rounds them."""
    generator = torch.Generator().manual_seed(0)
    batch = 1 if executor == "triton" else 3  # 3 images: uneven slabs of 2 and 1; one under the interpreter
    x, *grads = (torch.randn(batch, 1, 16, 16, generator=generator, dtype=torch.float64).to(dtype) for _ in range(4))
    kernels = torch.stack(KERNELS)[:, None]

    def convolution(t: torch.Tensor) -> Outputs:
        flat = t.reshape(-1, 1, *t.shape[-2:])
        out = F.conv2d(pad(flat, 1, padding, 2), kernels.to(t.dtype))
        return tuple(out[:, k].reshape(t.shape) for k in range(3))

    def ours(t: torch.Tensor) -> Outputs:
        return hessian(t, padding=padding)

    op = build_operator("hessian", REGISTRY["hessian"], x, padding, False, 2)
    got, nearest = _on_executor(executor, ours, op, x, tuple(grads), monkeypatch)
    exact = _autograd(convolution, x.double(), tuple(g.double() for g in grads))
    _assert_rounded_once(got, exact, _autograd(convolution, x, tuple(grads)), nearest)


def test_complex_input() -> None:
    x = torch.randn(2, 6, 7, dtype=torch.complex128)
    for c, re, im in zip(hessian(x), hessian(x.real), hessian(x.imag)):
        torch.testing.assert_close(c, torch.complex(re, im))


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="hessian: `padding` must be one of .*, got 'edge'"):
        hessian(torch.zeros(3, 3), padding="edge")
    with pytest.raises(ValueError, match=r"reflect padding needs at least 2 samples.*\(1, 4\)"):
        hessian(torch.zeros(1, 4))
    with pytest.raises(TypeError, match="floating or complex dtype, got torch.int64"):
        hessian(torch.zeros(3, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="hessian: `normalized` must be True or False, got 'yes'"):
        hessian(torch.zeros(3, 3), normalized="yes")
    with pytest.raises(ValueError, match=r"at least 2 dimensions \(\.\.\., H, W\), got shape \(3,\)"):
        hessian(torch.zeros(3))


def test_module() -> None:
    x = torch.randn(1, 2, 6, 7)
    module = Hessian(padding="zeros", normalized=True)
    for a, b in zip(module(x), hessian(x, padding="zeros", normalized=True)):
        assert torch.equal(a, b)
    assert repr(module) == "Hessian(padding='zeros', normalized=True)"
    with pytest.raises(TypeError, match="Hessian: `normalized`"):
        Hessian(normalized=None)
