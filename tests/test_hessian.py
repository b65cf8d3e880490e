"""hessian: (dyy, dyx, dxx) against padded convolutions and cv2.Sobel, the polynomial test of ``normalized``,
half precision rounded once on every executor."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import EXECUTORS, Outputs, assert_rounded_once, autograd_run, on_executor
from references import PADDINGS, naive_gradients, pad, second_order_kernels

from torchgrad import hessian
from torchgrad._filters import build_operator
from torchgrad._registry import REGISTRY

CV2_BORDERS = {
    "reflect": cv2.BORDER_REFLECT_101,
    "replicate": cv2.BORDER_REPLICATE,
    "zeros": cv2.BORDER_CONSTANT,
    "symmetric": cv2.BORDER_REFLECT,
}


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("normalized", [False, True])
def test_matches_padded_convolution(padding: str, normalized: bool) -> None:
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64)
    outputs = hessian(x, padding=padding, normalized=normalized)
    assert len(outputs) == 3
    for ours, ref in zip(outputs, naive_gradients(x, "hessian", padding, normalized)):
        torch.testing.assert_close(ours, ref)


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
    kernels = torch.stack(second_order_kernels("hessian", 2, torch.float64))[:, None]  # dyy, dyx, dxx

    def convolution(t: torch.Tensor) -> Outputs:
        flat = t.reshape(-1, 1, *t.shape[-2:])
        out = F.conv2d(pad(flat, 1, padding, 2), kernels.to(t.dtype))
        return tuple(out[:, k].reshape(t.shape) for k in range(3))

    def ours(t: torch.Tensor) -> Outputs:
        return hessian(t, padding=padding)

    op = build_operator("hessian", REGISTRY["hessian"], x, padding, False, 2)
    got, nearest = on_executor(executor, ours, op, x, tuple(grads), monkeypatch)
    exact = autograd_run(convolution, x.double(), tuple(g.double() for g in grads))
    assert_rounded_once(got, exact, autograd_run(convolution, x, tuple(grads)), nearest)


def test_complex_input() -> None:
    x = torch.randn(2, 6, 7, dtype=torch.complex128)
    for c, re, im in zip(hessian(x), hessian(x.real), hessian(x.imag)):
        torch.testing.assert_close(c, torch.complex(re, im))
