"""laplacian: ksize 1 and 3 against padded convolutions with the explicit kernels, cv2.Laplacian and
scipy.ndimage.laplace, volumes, the polynomial test of ``normalized``, half precision rounded once on every
executor, errors, the module."""

from __future__ import annotations

import math
from typing import Callable

import cv2
import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F
from references import PADDINGS, pad, second_order_kernels

from torchgrad import Laplacian, laplacian
from torchgrad._filters import build_operator
from torchgrad._registry import REGISTRY
from torchgrad._separable import Separable

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


def _padded(x: torch.Tensor, padding: str, spatial_dims: int) -> torch.Tensor:
    return pad(x, 1, padding, spatial_dims)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("ksize", [1, 3])
def test_matches_padded_convolution(padding: str, ksize: int) -> None:
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64)
    kernel = torch.tensor(KERNELS[ksize], dtype=x.dtype).expand(3, 1, 3, 3)
    ref = F.conv2d(_padded(x, padding, 2), kernel, groups=3)
    torch.testing.assert_close(laplacian(x, padding=padding, ksize=ksize), ref)
    torch.testing.assert_close(
        laplacian(x, padding=padding, ksize=ksize, normalized=True), ref / (4 if ksize == 3 else 1)
    )


@pytest.mark.parametrize("padding", PADDINGS)
def test_volumes_match_3d_convolution(padding: str) -> None:
    x = torch.randn(2, 2, 5, 6, 7, dtype=torch.float64)
    kernel = torch.zeros(3, 3, 3, dtype=x.dtype)
    kernel[1, 1, 1] = -6.0
    for index in ((0, 1, 1), (2, 1, 1), (1, 0, 1), (1, 2, 1), (1, 1, 0), (1, 1, 2)):
        kernel[index] = 1.0
    ref = F.conv3d(_padded(x, padding, 3), kernel.expand(2, 1, 3, 3, 3), groups=2)
    torch.testing.assert_close(laplacian(x, padding=padding, spatial_dims=3), ref)


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


@pytest.mark.parametrize("ksize", [1, 3])
def test_normalized_is_the_laplacian_of_a_quadratic(ksize: int) -> None:
    """f = a x^2 + b x y + c y^2: the Laplacian 2a + 2c, exactly, inside."""
    a, b, c = 1.5, -2.0, 0.25
    y, x = torch.meshgrid(torch.arange(7.0, dtype=torch.float64), torch.arange(8.0, dtype=torch.float64), indexing="ij")
    f = a * x**2 + b * x * y + c * y**2
    inner = laplacian(f, ksize=ksize, normalized=True)[1:-1, 1:-1]
    assert torch.equal(inner, torch.full_like(inner, 2 * a + 2 * c))


def test_volume_of_a_quadratic() -> None:
    z, y, x = torch.meshgrid(*[torch.arange(5.0, dtype=torch.float64)] * 3, indexing="ij")
    inner = laplacian(x**2 - 3 * y**2 + 0.5 * z**2 + x * z, spatial_dims=3)[1:-1, 1:-1, 1:-1]
    assert torch.equal(inner, torch.full_like(inner, 2.0 - 6.0 + 1.0))


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
    got, nearest = _on_executor(executor, ours, op, x, (grad,), monkeypatch)
    exact = _autograd(convolution, x.double(), (grad.double(),))
    _assert_rounded_once(got, exact, _autograd(convolution, x, (grad,)), nearest)


def test_complex_input() -> None:
    x = torch.randn(2, 6, 7, dtype=torch.complex128)
    torch.testing.assert_close(
        laplacian(x, ksize=3), torch.complex(laplacian(x.real, ksize=3), laplacian(x.imag, ksize=3))
    )


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="laplacian: `ksize` must be 1 or 3, got 5"):
        laplacian(torch.zeros(3, 3), ksize=5)
    with pytest.raises(TypeError, match="laplacian: `ksize` must be the int 1 or 3, got 3.0"):
        laplacian(torch.zeros(3, 3), ksize=3.0)
    with pytest.raises(ValueError, match="laplacian: `ksize=3` needs spatial_dims=2, got spatial_dims=3"):
        laplacian(torch.zeros(3, 3, 3), ksize=3, spatial_dims=3)
    with pytest.raises(ValueError, match="laplacian: `padding` must be one of .*, got 'edge'"):
        laplacian(torch.zeros(3, 3), padding="edge")
    with pytest.raises(ValueError, match=r"reflect padding needs at least 2 samples.*\(1, 4\)"):
        laplacian(torch.zeros(1, 4))
    with pytest.raises(TypeError, match="floating or complex dtype, got torch.int32"):
        laplacian(torch.zeros(3, 3, dtype=torch.int32))


def test_module() -> None:
    x = torch.randn(1, 2, 6, 7)
    module = Laplacian(padding="replicate", ksize=3, normalized=True)
    assert torch.equal(module(x), laplacian(x, padding="replicate", ksize=3, normalized=True))
    assert repr(module) == "Laplacian(padding='replicate', ksize=3, normalized=True, spatial_dims=2)"
    with pytest.raises(ValueError, match="Laplacian: `ksize=3` needs spatial_dims=2, got spatial_dims=3"):
        Laplacian(ksize=3, spatial_dims=3)
    with pytest.raises(ValueError, match="Laplacian: `ksize`"):
        Laplacian(ksize=2)
