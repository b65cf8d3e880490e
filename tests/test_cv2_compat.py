"""cv2_compat: OpenCV's derivative filters, checked against cv2 itself."""

from __future__ import annotations

import enum
import itertools
from typing import Any, Callable

import numpy as np
import pytest
import torch

from torchgrad import cv2_compat

cv2 = pytest.importorskip("cv2")

KSIZES = (1, 3, 5, 7, cv2_compat.FILTER_SCHARR)
BORDERS = (
    cv2.BORDER_CONSTANT,
    cv2.BORDER_REPLICATE,
    cv2.BORDER_REFLECT,
    cv2.BORDER_REFLECT_101,
    cv2.BORDER_REFLECT_101 | cv2.BORDER_ISOLATED,
)
# Sizes smaller than every kernel, odd and even sizes, single- and multi-channel (H, W, C) images (OpenCV returns
# an (H, W, 1) image's results as (H, W)).
SHAPES = ((1, 1, 1), (2, 3), (3, 2, 1), (6, 5), (9, 8, 3))
DTYPES = {torch.float32: np.float32, torch.float64: np.float64}
ORDERS = tuple(itertools.product(range(4), repeat=2))  # (dx, dy), with the ones OpenCV rejects


def _image(shape: tuple[int, ...], dtype: torch.dtype, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-2, 2, size=shape).astype(DTYPES[dtype])


def _opencv(call: Callable[[], np.ndarray]) -> np.ndarray | None:
    """cv2's result, or None where cv2 raises."""
    try:
        return call()
    except cv2.error:
        return None


def _same(result: torch.Tensor, expected: np.ndarray, src: np.ndarray, gain: float) -> None:
    """``result`` equals cv2's ``expected`` to the rounding of its dtype, shape included (cv2 returns an (H, W, 1)
    ``src`` as (H, W)): ``gain`` bounds |kernel| * |scale|."""
    assert result.shape == expected.shape and result.dtype == torch.from_numpy(expected).dtype
    eps = np.finfo(expected.dtype).eps
    tolerance = 8 * eps * gain * max(1.0, float(np.abs(src).max()))
    np.testing.assert_allclose(result.numpy(), expected, rtol=0, atol=tolerance)


def _gain(ksize: int, dx: int, dy: int, scale: float) -> float:
    kx, ky = cv2.getDerivKernels(dx, dy, ksize, ktype=cv2.CV_64F)
    return float(np.abs(kx).sum() * np.abs(ky).sum() * abs(scale))


@pytest.mark.parametrize("ksize", (*KSIZES, 0, -3))
def test_kernels_are_opencvs(ksize: int) -> None:
    for dx, dy in itertools.product(range(8), repeat=2):  # every order OpenCV takes with these sizes, and beyond
        expected = _opencv(lambda: cv2.getDerivKernels(dx, dy, ksize, ktype=cv2.CV_64F))
        if expected is None:
            with pytest.raises(ValueError, match="cv2_compat.getDerivKernels: `d"):
                cv2_compat.getDerivKernels(dx, dy, ksize)
            continue
        kx, ky = cv2_compat.getDerivKernels(dx, dy, ksize)
        assert kx == tuple(expected[0].ravel()) and ky == tuple(expected[1].ravel()), (dx, dy)
        assert all(isinstance(k, int) for k in kx + ky)


# Each filter with the keyword arguments it runs with (orders that OpenCV refuses too; any order below ksize that
# it takes), and cv2_compat's refusal
FILTERS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    **{f"Sobel ksize={k}": ("Sobel", [dict(dx=dx, dy=dy, ksize=k) for dx, dy in ORDERS]) for k in KSIZES},
    "Sobel ksize=7, high orders": ("Sobel", [dict(dx=dx, dy=dy, ksize=7) for dx, dy in ((6, 0), (3, 4), (0, 5))]),
    "Scharr": ("Scharr", [dict(dx=dx, dy=dy, scale=0.5, delta=1.0) for dx, dy in ORDERS]),
    **{
        f"Laplacian ksize={k}": ("Laplacian", [dict(ksize=k), dict(ksize=k, scale=0.25, delta=3.0)])
        for k in (1, 3, 5, 7)
    },
}
REFUSALS = {
    "Sobel": "cv2_compat.Sobel: `d",
    "Scharr": r"cv2_compat.Scharr: `dx` and `dy` must be \(1, 0\) or \(0, 1\), as Scharr's",
}


def _bound(fn: str, dx: int = 2, dy: int = 0, ksize: int = 3, scale: float = 1, delta: float = 0) -> float:
    """|kernel| * |scale| + |delta| of ``fn`` with these arguments (the Laplacian: the sum of two second
    derivatives, its 1-tap kernel bounded by the 3-tap one)."""
    if fn == "Laplacian":
        return 2 * _gain(max(ksize, 3), 2, 0, scale) + abs(delta)
    return _gain(cv2_compat.FILTER_SCHARR if fn == "Scharr" else ksize, dx, dy, scale) + abs(delta)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("name", FILTERS)
def test_filters_match_opencv(name: str, border: int, dtype: torch.dtype) -> None:
    fn, cases = FILTERS[name]
    accepted = 0
    for kwargs, shape in itertools.product(cases, SHAPES):
        src = _image(shape, dtype)
        expected = _opencv(lambda: getattr(cv2, fn)(src, -1, borderType=border, **kwargs))
        if expected is None:
            with pytest.raises(ValueError, match=REFUSALS[fn]):
                getattr(cv2_compat, fn)(torch.from_numpy(src), -1, borderType=border, **kwargs)
            continue
        result = getattr(cv2_compat, fn)(torch.from_numpy(src), -1, borderType=border, **kwargs)
        _same(result, expected, src, _bound(fn, **kwargs))
        accepted += 1
    assert accepted >= 2 * len(SHAPES)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale, delta", ((1, 0), (0.3, -2.5), (-2, 1)))
@pytest.mark.parametrize("ksize", KSIZES)
def test_sobel_scale_delta_and_depth(ksize: int, scale: float, delta: float, dtype: torch.dtype) -> None:
    src = _image((7, 6, 3), dtype, seed=1)
    for (dx, dy), ddepth in itertools.product(((1, 0), (0, 1), (1, 1)), (-1, cv2.CV_64F)):
        if ksize == cv2_compat.FILTER_SCHARR and dx + dy != 1:
            continue
        expected = cv2.Sobel(src, ddepth, dx, dy, ksize=ksize, scale=scale, delta=delta)
        result = cv2_compat.Sobel(torch.from_numpy(src), ddepth, dx, dy, ksize=ksize, scale=scale, delta=delta)
        _same(result, expected, src, _gain(ksize, dx, dy, scale) + abs(delta))


@pytest.mark.parametrize("border", (cv2.BORDER_DEFAULT, cv2.BORDER_REPLICATE))
@pytest.mark.parametrize("shape", ((1, 1), (2, 5), (7, 6), (1, 1, 1), (5, 4, 1)))
def test_spatial_gradient_matches_opencv(shape: tuple[int, ...], border: int) -> None:
    """OpenCV takes 8-bit images only; the same pixels as floats give its int16 results exactly."""
    pixels = np.random.default_rng(4).integers(0, 256, size=shape, dtype=np.uint8)
    expected_dx, expected_dy = cv2.spatialGradient(pixels, ksize=3, borderType=border)
    dx, dy = cv2_compat.spatialGradient(torch.from_numpy(pixels).float(), 3, border)
    assert torch.equal(dx, torch.from_numpy(expected_dx).float())
    assert torch.equal(dy, torch.from_numpy(expected_dy).float())
    colour = torch.from_numpy(_image((*shape[:2], 3), torch.float64))
    dx, dy = cv2_compat.spatialGradient(colour, borderType=border)
    assert torch.equal(dx, cv2_compat.Sobel(colour, -1, 1, 0, borderType=border))
    assert torch.equal(dy, cv2_compat.Sobel(colour, -1, 0, 1, borderType=border))


@pytest.mark.parametrize("ddepth", (-1, cv2.CV_32F, cv2.CV_64F))
@pytest.mark.parametrize("dtype", DTYPES)
def test_depths_as_opencv(dtype: torch.dtype, ddepth: int) -> None:
    """The output depths OpenCV's filters take from each input depth, and the depth they compute in."""
    src = _image((5, 6), dtype)
    calls = [("Sobel", dict(dx=1, dy=1, ksize=k, scale=0.5), 4 * 4 / 2) for k in (1, 3, 5, 7)]
    calls += [("Laplacian", dict(ksize=k, delta=1.0), 2 * 64**2 + 1) for k in (1, 3, 5, 7)]
    for fn, kwargs, gain in calls:
        name = f"{fn} {kwargs}"
        expected = _opencv(lambda: getattr(cv2, fn)(src, ddepth, **kwargs))
        if expected is None:
            with pytest.raises(ValueError, match=r"`ddepth` CV_(32|64)F \([56]\) from a torch.float(32|64) `src`"):
                getattr(cv2_compat, fn)(torch.from_numpy(src), ddepth, **kwargs)
            continue
        result = getattr(cv2_compat, fn)(torch.from_numpy(src), ddepth, **kwargs)
        assert result.dtype == torch.from_numpy(expected).dtype, name
        # float32 where either end is float32 (OpenCV's Laplacian with ksize >= 5 computes in float32 then)
        eps = np.finfo(np.float32 if np.float32 in (src.dtype, expected.dtype) else np.float64).eps
        np.testing.assert_allclose(result.numpy(), expected, rtol=0, atol=8 * eps * gain * 2, err_msg=name)


@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16))
def test_half_precision(dtype: torch.dtype) -> None:
    """OpenCV has no half-precision filters: the results are float32's, rounded once to ``dtype``."""
    src = torch.from_numpy(_image((6, 7, 3), torch.float32)).to(dtype)
    expected = cv2.Sobel(src.float().numpy(), -1, 1, 2, ksize=5)
    result = cv2_compat.Sobel(src, -1, 1, 2, ksize=5)
    assert result.dtype == dtype
    torch.testing.assert_close(result, torch.from_numpy(expected).to(dtype), rtol=0.02, atol=0.1)
    assert cv2_compat.Sobel(src, cv2.CV_32F, 1, 2, ksize=5).dtype == torch.float32


def test_half_precision_scale_before_rounding() -> None:
    """A half-precision result is float32's response times ``scale`` plus ``delta``, rounded once: a response
    beyond float16's range (a ksize 7 derivative of 8-bit values) that ``scale`` brings back is finite."""
    src = torch.from_numpy(255 * np.abs(_image((6, 7, 3), torch.float32))).to(torch.float16)
    expected = cv2.Sobel(src.float().numpy(), -1, 1, 0, ksize=7, scale=1 / 1280, delta=0.5)
    result = cv2_compat.Sobel(src, -1, 1, 0, ksize=7, scale=1 / 1280, delta=0.5)
    assert result.dtype == torch.float16 and bool(result.isfinite().all())
    # float16 rounds to 11 bits: half an ulp of values up to 2 * 255 / 2 + 0.5
    torch.testing.assert_close(result, torch.from_numpy(expected).to(torch.float16), rtol=2**-10, atol=2**-10)


SCALED = [("Sobel", dict(dx=dx, dy=dy, ksize=k)) for k in KSIZES for dx, dy in ((1, 0), (0, 1))]
SCALED += [("Laplacian", dict(ksize=k)) for k in (1, 3, 5, 7)]  # (function, keyword arguments)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", (1e300, -1e300, 1e36, 1e-300, 1e307))
def test_scale_applied_to_the_result(scale: float, dtype: torch.dtype) -> None:
    """``scale`` multiplies the filtered result in its dtype: the response times ``scale`` rounded once (inf where
    that overflows; a zero response, as dx's border columns of BORDER_REFLECT_101, stays zero however large
    ``scale`` is), which is OpenCV's result wherever OpenCV's is finite."""
    # Small integers: every filter sums them exactly, so cv2's float64 response times scale is the exact answer.
    pixels = np.random.default_rng(5).integers(-3, 4, size=(6, 5, 2)).astype(DTYPES[dtype])
    compared = 0
    for (fn, kwargs), ddepth in itertools.product(SCALED, (-1, cv2.CV_32F, cv2.CV_64F)):
        name = f"{fn} {kwargs}"
        direct = _opencv(lambda: getattr(cv2, fn)(pixels, ddepth, scale=scale, **kwargs))
        if direct is None:  # a depth that OpenCV refuses for this filter and source
            continue
        with np.errstate(over="ignore"):
            exact = torch.from_numpy(getattr(cv2, fn)(pixels.astype(np.float64), cv2.CV_64F, **kwargs) * scale)
        result = getattr(cv2_compat, fn)(torch.from_numpy(pixels), ddepth, scale=scale, **kwargs)
        assert result.dtype == torch.from_numpy(direct).dtype, name
        # one rounding to the result's dtype on either side, of products of the same exact integers
        eps = torch.finfo(result.dtype).eps
        torch.testing.assert_close(result, exact.to(result.dtype), rtol=2 * eps, atol=0, msg=lambda m: f"{name}: {m}")
        # OpenCV folds scale into its kernel: where its result is finite, it is that product to the rounding of
        # each scaled tap (8 eps of the largest term); where the product overflows, it is inf of either sign or NaN
        opencv = torch.from_numpy(direct)
        finite, overflow = opencv.isfinite(), result.isinf()
        atol = min(8 * eps * 3 * 4096 * abs(scale), torch.finfo(result.dtype).max)
        torch.testing.assert_close(
            result[finite], opencv[finite], rtol=8 * eps, atol=atol, msg=lambda m: f"{name}: {m}"
        )
        assert not opencv[overflow].isfinite().any(), name
        compared += 1
    assert compared >= 28


class _Two(enum.IntEnum):
    TWO = 2


class _Float(float):
    pass


# What OpenCV's bindings take for a double: ints and floats (subclasses too), NumPy integers, float16 to float64.
TAKEN_NUMBERS = (
    2,
    -0.5,
    _Two.TWO,
    _Float(0.25),
    np.int8(-2),
    np.uint64(3),
    np.float16(0.5),
    np.float32(1.5),
    np.float64(2.5),
)


@pytest.mark.parametrize("argument", ("scale", "delta"))
def test_scale_and_delta_take_what_opencv_takes(argument: str) -> None:
    """The numbers OpenCV takes for a double; what it refuses, cv2_compat refuses (tests/test_validation.py)."""
    src = _image((5, 6), torch.float32)
    for value in TAKEN_NUMBERS:
        kwargs: dict[str, Any] = {argument: value}
        expected = cv2.Sobel(src, -1, 1, 0, **kwargs)
        result = cv2_compat.Sobel(torch.from_numpy(src), -1, 1, 0, **kwargs)
        _same(result, expected, src, _gain(3, 1, 0, 3) + 3)


def test_numpy_integers_are_ints() -> None:
    src = torch.zeros(4, 5)
    assert torch.equal(cv2_compat.Sobel(src, np.int64(-1), np.int32(1), 0, ksize=np.int8(3)), src)


CASES = [
    (lambda x: cv2_compat.Sobel(x, -1, 1, 2, ksize=5, scale=0.5, delta=1.0, borderType=cv2.BORDER_REFLECT), (4, 3, 2)),
    (lambda x: cv2_compat.Sobel(x, -1, 1, 1, ksize=7, borderType=cv2.BORDER_REFLECT_101), (3, 5)),
    (lambda x: cv2_compat.Scharr(x, -1, 0, 1, borderType=cv2.BORDER_CONSTANT), (4, 3)),
    (lambda x: cv2_compat.Laplacian(x, -1, ksize=1, borderType=cv2.BORDER_REPLICATE), (3, 4, 1)),
    (lambda x: cv2_compat.Laplacian(x, -1, ksize=7, scale=2.0, borderType=cv2.BORDER_REFLECT), (2, 5)),
    (lambda x: cv2_compat.spatialGradient(x), (3, 4, 2)),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_differentiable(case: int) -> None:
    function, shape = CASES[case]
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(function, x)
    assert torch.autograd.gradgradcheck(function, x)


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("ksize", KSIZES)
def test_adjoint_identity(ksize: int, border: int) -> None:
    """<A x, g> == <x, A^T g> for Sobel and the Laplacian, with A^T g from the hand-written backward, on sizes down
    to one pixel."""
    generator = torch.Generator().manual_seed(ksize + 100 * border)
    for shape, (dx, dy) in itertools.product(((1, 1), (2, 3), (5, 4, 2)), ((1, 0), (0, 1))):
        x = torch.randn(shape, dtype=torch.float64, generator=generator, requires_grad=True)
        g = torch.randn(shape, dtype=torch.float64, generator=generator)
        outputs = [cv2_compat.Sobel(x, -1, dx, dy, ksize=ksize, borderType=border)]
        if ksize > 0:
            outputs.append(cv2_compat.Laplacian(x, -1, ksize=ksize, borderType=border))
        for y in outputs:
            (grad,) = torch.autograd.grad(y, x, g)
            torch.testing.assert_close(torch.vdot(y.flatten(), g.flatten()), torch.vdot(x.flatten(), grad.flatten()))


def test_layout_and_module_surface() -> None:
    """Results are contiguous (H, W, C) tensors like their input; the constants are OpenCV's."""
    src = torch.randn(5, 4, 3)
    assert cv2_compat.Laplacian(src, -1, ksize=3).is_contiguous()
    view = torch.randn(3, 4, 5).permute(2, 1, 0)  # a non-contiguous (H, W, C) view
    torch.testing.assert_close(cv2_compat.Laplacian(view, -1, ksize=3), cv2_compat.Laplacian(view.contiguous(), -1, 3))
    channels = [cv2_compat.Sobel(src[..., c].contiguous(), -1, 1, 1) for c in range(3)]
    torch.testing.assert_close(cv2_compat.Sobel(src, -1, 1, 1), torch.stack(channels, dim=-1))
    for name in cv2_compat.__all__:
        if name.isupper():
            assert getattr(cv2_compat, name) == getattr(cv2, name), name
    assert not hasattr(cv2_compat, "BORDER_WRAP")
    image = _image((4, 5), torch.float64)
    for border in (cv2.BORDER_ISOLATED, cv2.BORDER_REPLICATE | cv2.BORDER_ISOLATED):  # ISOLATED alone: CONSTANT
        expected = cv2.Sobel(image, -1, 1, 1, borderType=border)
        np.testing.assert_allclose(cv2_compat.Sobel(torch.from_numpy(image), -1, 1, 1, borderType=border), expected)
    # positional arguments in OpenCV's order, without its `dst`
    x, reflect = torch.from_numpy(image), cv2.BORDER_REFLECT
    sobel = cv2.Sobel(image, -1, 1, 0, ksize=5, scale=0.5, delta=1.0, borderType=reflect)
    _same(cv2_compat.Sobel(x, -1, 1, 0, 5, 0.5, 1.0, reflect), sobel, image, _gain(5, 1, 0, 0.5) + 1)
    laplacian = cv2.Laplacian(image, -1, ksize=5, scale=0.5, delta=1.0, borderType=reflect)
    _same(cv2_compat.Laplacian(x, -1, 5, 0.5, 1.0, reflect), laplacian, image, 2 * _gain(5, 2, 0, 0.5) + 1)


def _sobel_and_laplacian(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three filters; the last in float32 with a scale beyond float32's range: 0 where the difference is 0 (the
    border columns), else inf."""
    return (
        cv2_compat.Sobel(x, -1, 1, 1, 5, 1, 0.5, cv2.BORDER_REFLECT),
        cv2_compat.Laplacian(x, -1, 3, 2.0, 0.0, cv2.BORDER_CONSTANT),
        cv2_compat.Sobel(x.float(), -1, 1, 0, 1, 1e300),
    )


def test_torch_compile() -> None:
    torch._dynamo.reset()
    compiled = torch.compile(_sobel_and_laplacian, fullgraph=True)
    src = torch.randn(6, 7, 3)
    torch.testing.assert_close(compiled(src), _sobel_and_laplacian(src))


def test_torch_func() -> None:
    images = torch.randn(3, 5, 6, 2, dtype=torch.float64)
    batched = torch.func.vmap(_sobel_and_laplacian)(images)
    for i, image in enumerate(images):
        torch.testing.assert_close(tuple(b[i] for b in batched), _sobel_and_laplacian(image))
    tangent = torch.randn_like(images[0])
    _, derivative = torch.func.jvp(_sobel_and_laplacian, (images[0],), (tangent,))
    sobel, laplacian, scaled = _sobel_and_laplacian(tangent)
    torch.testing.assert_close(derivative, (sobel - 0.5, laplacian, scaled))  # delta is no part of the derivative
    assert not scaled.isnan().any() and not scaled[:, 0].any() and scaled[:, 1:-1].isinf().all()
