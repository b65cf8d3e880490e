"""laplacian: ksize 1 and 3 against padded convolutions with the explicit kernels, cv2.Laplacian and
scipy.ndimage.laplace (volumes too), the polynomial test of ``normalized``, half precision rounded once on every
executor."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F
from helpers import EXECUTORS, Outputs, assert_rounded_once, autograd_run, on_executor
from references import PADDINGS, pad, second_order_kernels

from torchgrad import laplacian
from torchgrad._filters import build_operator
from torchgrad._registry import REGISTRY

KERNELS = {
    1: [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]],
    3: [[2.0, 0.0, 2.0], [0.0, -8.0, 0.0], [2.0, 0.0, 2.0]],
}
CV2_BORDERS = {
    "reflect": cv2.BORDER_REFLECT_101,
    "replicate": cv2.BORDER_REPLICATE,
    "zeros": cv2.BORDER_CONSTANT,
    "symmetric": cv2.BORDER_REFLECT,
}


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("ksize", [1, 3])
def test_matches_padded_convolution(padding: str, ksize: int) -> None:
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64)
    kernel = torch.tensor(KERNELS[ksize], dtype=x.dtype).expand(3, 1, 3, 3)
    ref = F.conv2d(pad(x, 1, padding, 2), kernel, groups=3)
    torch.testing.assert_close(laplacian(x, padding=padding, ksize=ksize), ref)
    torch.testing.assert_close(
        laplacian(x, padding=padding, ksize=ksize, normalized=True), ref / (4 if ksize == 3 else 1)
    )


@pytest.mark.parametrize("padding", list(CV2_BORDERS))
@pytest.mark.parametrize("ksize", [1, 3])
def test_matches_opencv(padding: str, ksize: int) -> None:
    image = np.random.default_rng(ksize).normal(size=(8, 11))
    ref = cv2.Laplacian(image, cv2.CV_64F, ksize=ksize, borderType=CV2_BORDERS[padding])
    torch.testing.assert_close(laplacian(torch.from_numpy(image), padding=padding, ksize=ksize), torch.from_numpy(ref))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_matches_scipy_laplace(spatial_dims: int) -> None:
    image = np.random.default_rng(spatial_dims).normal(size=(5, 6, 7)[-spatial_dims:])
    for padding, mode in (
        ("reflect", "mirror"),
        ("replicate", "nearest"),
        ("zeros", "constant"),
        ("circular", "wrap"),
        ("symmetric", "reflect"),
    ):
        ref = torch.from_numpy(scipy.ndimage.laplace(image, mode=mode))
        torch.testing.assert_close(laplacian(torch.from_numpy(image), padding=padding, spatial_dims=spatial_dims), ref)


@pytest.mark.parametrize("spatial_dims, ksize", [(2, 1), (2, 3), (3, 1)])
def test_normalized_is_the_laplacian_of_a_quadratic(spatial_dims: int, ksize: int) -> None:
    """f = sum_i a_i x_i^2 + b x_0 x_-1: the Laplacian 2 sum_i a_i, exactly, inside."""
    axes = torch.meshgrid(
        *[torch.arange(float(n), dtype=torch.float64) for n in (6, 7, 8)[-spatial_dims:]], indexing="ij"
    )
    squares = (0.5, 1.5, -3.0)[-spatial_dims:]
    f = sum(a * x**2 for a, x in zip(squares, axes)) - 2.0 * axes[0] * axes[-1]
    inner = laplacian(f, ksize=ksize, spatial_dims=spatial_dims, normalized=True)[(slice(1, -1),) * spatial_dims]
    assert torch.equal(inner, torch.full_like(inner, 2 * sum(squares)))


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("padding", ["reflect", "zeros"])
@pytest.mark.parametrize("case", ["ksize1", "ksize3", "volume"])
def test_half_precision_is_rounded_once(
    executor: str, dtype: torch.dtype, padding: str, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In half precision the Laplacian (a sum of stencil chains) and its gradient (a sum of the chains'
    adjoints) are accumulated in float32 and rounded once, on every executor, as a padded convolution with the
    explicit kernel rounds them."""
    spatial_dims = 3 if case == "volume" else 2
    ksize = 3 if case == "ksize3" else 1
    if executor == "triton" and spatial_dims == 3:
        pytest.skip("3-D kernels are slow under Triton's interpreter; the 2-D ones sum the chains in the same code")
    batch = 1 if executor == "triton" else 3  # 3 images: uneven slabs of 2 and 1; one under the interpreter
    shape = (batch, 1, 6, 7, 8) if spatial_dims == 3 else (batch, 1, 16, 16)
    g = torch.Generator().manual_seed(ksize + spatial_dims)
    x, grad = (torch.randn(shape, generator=g, dtype=torch.float64).to(dtype) for _ in range(2))
    kernel = (
        torch.tensor(KERNELS[3]) if ksize == 3 else second_order_kernels("laplacian", spatial_dims, torch.float64)[0]
    )
    conv = F.conv3d if spatial_dims == 3 else F.conv2d

    def convolution(t: torch.Tensor) -> Outputs:
        flat = t.reshape(-1, 1, *t.shape[-spatial_dims:])
        return (conv(pad(flat, 1, padding, spatial_dims), kernel[None, None].to(t.dtype)).reshape(t.shape),)

    def ours(t: torch.Tensor) -> Outputs:
        return (laplacian(t, padding=padding, ksize=ksize, spatial_dims=spatial_dims),)

    op = build_operator("laplacian", REGISTRY["laplacian"], x, padding, False, spatial_dims, ksize)
    got, nearest = on_executor(executor, ours, op, x, (grad,), monkeypatch)
    exact = autograd_run(convolution, x.double(), (grad.double(),))
    assert_rounded_once(got, exact, autograd_run(convolution, x, (grad,)), nearest)


def test_complex_input() -> None:
    x = torch.randn(2, 6, 7, dtype=torch.complex128)
    torch.testing.assert_close(
        laplacian(x, ksize=3), torch.complex(laplacian(x.real, ksize=3), laplacian(x.imag, ksize=3))
    )
