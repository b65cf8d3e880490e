"""OpenCV's derivative filters in OpenCV's ``(H, W[, C])`` layout, for line-by-line ports.

``cv2.Sobel(src, ddepth, dx, dy, ksize)`` becomes ``torchgrad.cv2_compat.Sobel(src, ddepth, dx, dy, ksize)``, and
likewise ``Scharr``, ``Laplacian`` and ``spatialGradient``: the same arguments, border constants and kernels
(derived as OpenCV's ``getDerivKernels`` derives them), the same numbers, on float tensors, differentiable with
torchgrad's hand-written backward. Arguments that OpenCV rejects raise ``TypeError`` or ``ValueError`` saying why.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ._linear import apply_operator
from ._separable import HALF, Separable, work_dtype
from ._stencil import Stencil, padded_stencil
from ._validation import (
    BORDER_CONSTANT,
    BORDER_DEFAULT,
    BORDER_ISOLATED,
    BORDER_REFLECT,
    BORDER_REFLECT101,
    BORDER_REFLECT_101,
    BORDER_REPLICATE,
    CV_32F,
    CV_64F,
    FILTER_SCHARR,
    check_opencv_affine,
    check_opencv_ddepth,
    check_opencv_ksize,
    check_opencv_orders,
    check_opencv_spatial_gradient,
    check_opencv_src,
)

__all__ = [
    "BORDER_CONSTANT",
    "BORDER_DEFAULT",
    "BORDER_ISOLATED",
    "BORDER_REFLECT",
    "BORDER_REFLECT101",
    "BORDER_REFLECT_101",
    "BORDER_REPLICATE",
    "CV_32F",
    "CV_64F",
    "FILTER_SCHARR",
    "Laplacian",
    "Scharr",
    "Sobel",
    "getDerivKernels",
    "spatialGradient",
]


def getDerivKernels(dx: int, dy: int, ksize: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``cv2.getDerivKernels(dx, dy, ksize)`` (unnormalised): the 1-D kernels ``(kx, ky)`` as tuples of ints.

    ``ksize`` 1 is a 3-tap derivative kernel along an axis with ``order > 0`` and no smoothing (``(1,)``) along
    the other; ``ksize <= 0`` (``FILTER_SCHARR``) gives Scharr's kernels. Otherwise the kernel of ``order`` is
    the coefficients of ``(1 + z) ** (ksize - order - 1) * (z - 1) ** order``: binomial smoothing times
    differences, as OpenCV builds it.

    Args:
        dx: derivative order along x (the columns), at least 0.
        dy: derivative order along y (the rows), at least 0; ``dx + dy > 0``.
        ksize: 1, 3, 5, 7 (odd, more than ``dx`` and ``dy``), or ``FILTER_SCHARR`` with ``dx + dy == 1``.

    Returns:
        ``(kx, ky)``: the kernel applied along the columns and the one along the rows; tap ``t`` of a ``k``-tap
        kernel multiplies the sample ``t - k // 2`` away (OpenCV correlates).

    Example:
        >>> getDerivKernels(1, 0, 5)
        ((-1, -2, 0, 2, 1), (1, 4, 6, 4, 1))
        >>> getDerivKernels(0, 1, FILTER_SCHARR)
        ((3, 10, 3), (-1, 0, 1))
    """
    caller = "cv2_compat.getDerivKernels"
    dx, dy, ksize = check_opencv_orders(caller, dx, dy, ksize)
    return _kernel(dx, ksize), _kernel(dy, ksize)


def Sobel(
    src: Tensor,
    ddepth: int,
    dx: int,
    dy: int,
    ksize: int = 3,
    scale: float = 1,
    delta: float = 0,
    borderType: int = BORDER_DEFAULT,
) -> Tensor:
    """``cv2.Sobel``: the ``(dx, dy)`` derivative of an image, smoothed across it, in OpenCV's layout.

    Correlates ``src`` with the separable kernel ``ky kx^T`` of :func:`getDerivKernels`, multiplies by
    ``scale`` and adds ``delta``, extending the border as ``borderType`` says.

    Args:
        src: ``(H, W)`` or ``(H, W, C)`` floating tensor (float16, bfloat16, float32 or float64).
        ddepth: ``-1`` (``src``'s dtype), ``CV_32F`` (from float32 or half precision) or ``CV_64F``.
        dx: derivative order along x (the columns).
        dy: derivative order along y (the rows); ``dx + dy > 0``.
        ksize: 1, 3, 5 or 7, more than ``dx`` and ``dy``; ``FILTER_SCHARR`` (-1) for Scharr's 3x3 kernel.
        scale: factor applied to the derivative: an int or a float (Python's or NumPy's), as OpenCV takes.
        delta: value added to the result, of the same types.
        borderType: ``BORDER_DEFAULT`` (= ``BORDER_REFLECT_101``), ``BORDER_CONSTANT`` (zeros),
            ``BORDER_REPLICATE`` or ``BORDER_REFLECT``, optionally or-ed with ``BORDER_ISOLATED``.

    Returns:
        A tensor shaped like ``src`` (``(H, W)`` for an ``(H, W, 1)`` ``src``, as OpenCV returns it), of
        ``ddepth``'s dtype.

    Example:
        >>> src = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 3)
        >>> Sobel(src, -1, 1, 0)
        tensor([[0., 4., 4., 0.],
                [0., 4., 4., 0.],
                [0., 4., 4., 0.]])
        >>> Sobel(src, CV_64F, 1, 0, ksize=5, scale=1 / 16)[0]
        tensor([0., 3., 3., 0.], dtype=torch.float64)
    """
    caller = "cv2_compat.Sobel"
    src = check_opencv_src(caller, "src", src)
    dtype = check_opencv_ddepth(caller, "ddepth", ddepth, src)
    dx, dy, ksize = check_opencv_orders(caller, dx, dy, ksize)
    scale, delta, padding = check_opencv_affine(caller, scale, delta, borderType)
    kx, ky = _kernel(dx, ksize), _kernel(dy, ksize)
    return _filter(src, dtype, dtype, [(kx, ky)], scale, delta, padding)


def Scharr(
    src: Tensor,
    ddepth: int,
    dx: int,
    dy: int,
    scale: float = 1,
    delta: float = 0,
    borderType: int = BORDER_DEFAULT,
) -> Tensor:
    """``cv2.Scharr``: the first derivative along x (``dx=1, dy=0``) or y with Scharr's 3x3 kernel.

    The same as :func:`Sobel` with ``ksize=FILTER_SCHARR``: the ``[-1, 0, 1]`` difference along the
    derivative's axis times ``[3, 10, 3]`` smoothing across it.

    Args:
        src: ``(H, W)`` or ``(H, W, C)`` floating tensor.
        ddepth: ``-1``, ``CV_32F`` or ``CV_64F``, as for :func:`Sobel`.
        dx: 1 for the derivative along x, else 0.
        dy: 1 for the derivative along y, else 0; ``dx + dy == 1``.
        scale: factor applied to the derivative: an int or a float (Python's or NumPy's), as OpenCV takes.
        delta: value added to the result, of the same types.
        borderType: as for :func:`Sobel`.

    Returns:
        A tensor shaped like ``src`` (``(H, W)`` for an ``(H, W, 1)`` ``src``, as OpenCV returns it), of
        ``ddepth``'s dtype.

    Example:
        >>> src = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 3)
        >>> Scharr(src, -1, 1, 0)
        tensor([[ 0., 16., 16.,  0.],
                [ 0., 16., 16.,  0.],
                [ 0., 16., 16.,  0.]])
    """
    caller = "cv2_compat.Scharr"
    src = check_opencv_src(caller, "src", src)
    dtype = check_opencv_ddepth(caller, "ddepth", ddepth, src)
    dx, dy, ksize = check_opencv_orders(caller, dx, dy, FILTER_SCHARR, "Scharr")
    scale, delta, padding = check_opencv_affine(caller, scale, delta, borderType)
    return _filter(src, dtype, dtype, [(_kernel(dx, ksize), _kernel(dy, ksize))], scale, delta, padding)


def Laplacian(
    src: Tensor,
    ddepth: int,
    ksize: int = 1,
    scale: float = 1,
    delta: float = 0,
    borderType: int = BORDER_DEFAULT,
) -> Tensor:
    """``cv2.Laplacian``: the sum of the second derivatives along x and y, in OpenCV's layout.

    ``Sobel(src, ddepth, 2, 0, ksize) + Sobel(src, ddepth, 0, 2, ksize)``, times ``scale`` plus ``delta``.
    ``ksize=1`` is the 5-point kernel ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]`` and ``ksize=3`` the kernel
    ``[[2, 0, 2], [0, -8, 0], [2, 0, 2]]``, as in OpenCV.

    Args:
        src: ``(H, W)`` or ``(H, W, C)`` floating tensor.
        ddepth: ``-1``, ``CV_32F`` or ``CV_64F``; with ``ksize`` 1 or 3 only ``src``'s own depth, as in OpenCV.
        ksize: 1, 3, 5 or 7.
        scale: factor applied to the Laplacian: an int or a float (Python's or NumPy's), as OpenCV takes.
        delta: value added to the result, of the same types.
        borderType: as for :func:`Sobel`.

    Returns:
        A tensor shaped like ``src`` (``(H, W)`` for an ``(H, W, 1)`` ``src``, as OpenCV returns it), of
        ``ddepth``'s dtype.

    Example:
        >>> src = torch.zeros(5, 5)
        >>> src[2, 2] = 1.0
        >>> Laplacian(src, -1)[1:4, 1:4]
        tensor([[ 0.,  1.,  0.],
                [ 1., -4.,  1.],
                [ 0.,  1.,  0.]])
    """
    caller = "cv2_compat.Laplacian"
    src = check_opencv_src(caller, "src", src)
    ksize = check_opencv_ksize(caller, "ksize", ksize, scharr=False)
    # 3x3 kernels filter in src's depth; larger ones in float32, or float64 for float64 src, into any depth
    dtype = check_opencv_ddepth(caller, "ddepth", ddepth, src, widen=ksize > 3, narrow=ksize > 3)
    compute = dtype if ksize <= 3 else torch.float64 if src.dtype == torch.float64 else torch.float32
    scale, delta, padding = check_opencv_affine(caller, scale, delta, borderType)
    d2, smooth = _kernel(2, ksize), _kernel(0, ksize)
    return _filter(src, compute, dtype, [(d2, smooth), (smooth, d2)], scale, delta, padding)


def spatialGradient(src: Tensor, ksize: int = 3, borderType: int = BORDER_DEFAULT) -> tuple[Tensor, Tensor]:
    """``cv2.spatialGradient``: the first derivatives ``(dx, dy)`` with the 3x3 Sobel kernel.

    OpenCV computes it on 8-bit single-channel images; here ``src`` is a float tensor (convert with
    ``.float()``), ``(H, W)`` or ``(H, W, C)``, and the results have its dtype. They equal
    ``Sobel(src, -1, 1, 0)`` and ``Sobel(src, -1, 0, 1)``.

    Args:
        src: ``(H, W)`` or ``(H, W, C)`` floating tensor.
        ksize: 3, the only size OpenCV takes.
        borderType: ``BORDER_DEFAULT`` (= ``BORDER_REFLECT_101``) or ``BORDER_REPLICATE``, the
            two OpenCV takes.

    Returns:
        ``(dx, dy)``, in OpenCV's order, each shaped (``(H, W)`` for an ``(H, W, 1)`` ``src``, as OpenCV returns
        them) and typed like ``src``.

    Example:
        >>> src = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 3)
        >>> dx, dy = spatialGradient(src)
        >>> dx[0], bool(dy.eq(0).all())
        (tensor([0., 4., 4., 0.]), True)
    """
    caller = "cv2_compat.spatialGradient"
    src = check_opencv_src(caller, "src", src)
    padding = check_opencv_spatial_gradient(caller, ksize, borderType)
    src = _plane(src)
    derivative, smoothing = _kernel(1, 3), _kernel(0, 3)
    chains = (_chain(src, derivative, smoothing, padding), _chain(src, smoothing, derivative, padding))
    dx, dy = apply_operator(Separable(chains), src)
    return dx, dy


# Operators ----------------------------------------------------------------------------------------------------


def _kernel(order: int, ksize: int) -> tuple[int, ...]:
    """The 1-D kernel of derivative ``order`` for OpenCV's ``ksize`` (checked already)."""
    if ksize == FILTER_SCHARR:
        return (-1, 0, 1) if order else (3, 10, 3)
    taps = 3 if ksize == 1 and order > 0 else ksize
    coefficients = [1]
    for low, high in [(1, 1)] * (taps - order - 1) + [(-1, 1)] * order:  # times (1 + z), then (z - 1)
        padded = [0, *coefficients, 0]
        coefficients = [low * padded[i + 1] + high * padded[i] for i in range(len(coefficients) + 1)]
    return tuple(coefficients)


def _plane(src: Tensor) -> Tensor:
    """An ``(H, W, 1)`` image as its ``(H, W)`` plane, whose results OpenCV returns (a single-channel image is an
    ``(H, W)`` array to OpenCV's bindings); other images as they are."""
    return src[..., 0] if src.dim() == 3 and src.shape[-1] == 1 else src


def _chain(src: Tensor, kx: Sequence[int], ky: Sequence[int], padding: str) -> tuple[Stencil, ...]:
    """``kx`` along the columns of ``src``, then ``ky`` along its rows (OpenCV's order); a one-tap kernel
    (``(1,)``, no smoothing) is no stage."""
    rows, cols = (-3, -2) if src.dim() == 3 else (-2, -1)
    stages = [(dim, taps) for dim, taps in ((cols, kx), (rows, ky)) if len(taps) > 1]
    return tuple(_stencil(dim, src.shape[dim], taps, padding) for dim, taps in stages)


def _stencil(dim: int, size: int, taps: Sequence[float], padding: str) -> Stencil:
    """``taps`` along ``dim`` of ``size`` samples; on an axis of one sample OpenCV's BORDER_REFLECT_101 repeats it
    (torchgrad's ``"reflect"`` needs two)."""
    return padded_stencil(dim, tuple(taps), "replicate" if size == 1 and padding == "reflect" else padding)


def _filter(
    src: Tensor,
    compute: torch.dtype,
    dtype: torch.dtype,
    kernels: Sequence[tuple[tuple[int, ...], tuple[int, ...]]],
    scale: float,
    delta: float,
    padding: str,
) -> Tensor:
    """The sum of the separable filters ``(kx, ky)`` of ``kernels`` on ``src`` (its plane for an ``(H, W, 1)``
    ``src``), computed in ``compute`` with the kernels' integer taps, then times ``scale`` plus ``delta`` in
    ``dtype``, as OpenCV's ``convertTo`` scales a filtered result: a zero response stays zero whatever ``scale``
    is. OpenCV has no half-precision filters: for a half-precision ``dtype`` the response, scale and delta are
    float32's, rounded to ``dtype`` once."""
    src = _plane(src).to(compute)
    chains = tuple(_chain(src, kx, ky, padding) for kx, ky in kernels)
    op = Separable(chains, output_of=(0,) * len(chains) if len(chains) > 1 else ())
    if scale == 1 and delta == 0:
        (result,) = apply_operator(op, src)
        return result.to(dtype)
    (result,) = apply_operator(op.with_output_dtype(torch.float32) if src.dtype in HALF else op, src)
    result = _times(result.to(work_dtype(dtype)), scale)
    return (result + delta if delta else result).to(dtype)


def _times(result: Tensor, scale: float) -> Tensor:
    """``result * scale``, rounded once to ``result``'s dtype. A ``scale`` outside the dtype's normal range
    multiplies in float64: the dtype's own copy of it would be infinite (``0 * inf``: NaN where the response is
    zero) or lose digits (a subnormal), where the product itself may well be finite."""
    if scale == 1:
        return result
    info = torch.finfo(result.dtype)
    if scale == 0 or info.tiny <= abs(scale) <= info.max:
        return result * scale
    return (result.double() * scale).to(result.dtype)
