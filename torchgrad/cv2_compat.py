"""OpenCV's derivative filters in OpenCV's ``(H, W[, C])`` layout, for line-by-line ports.

``cv2.Sobel(src, ddepth, dx, dy, ksize)`` becomes ``torchgrad.cv2_compat.Sobel(src, ddepth, dx, dy, ksize)``, and
likewise ``Scharr``, ``Laplacian`` and ``spatialGradient``: the same arguments, border constants and kernels
(derived as OpenCV's ``getDerivKernels`` derives them), the same numbers, on float tensors, differentiable with
torchgrad's hand-written backward. Arguments that OpenCV rejects raise ``TypeError`` or ``ValueError`` saying why.
"""

from __future__ import annotations

import reprlib
import sys
from typing import Any, Sequence

import torch
from torch import Tensor

from ._linear import apply_operator
from ._separable import Separable
from ._stencil import Stencil, padded_stencil
from ._validation import FLOATING, check_dtype, check_int, check_not_empty, check_number, check_rank, check_tensor

BORDER_CONSTANT = 0
BORDER_REPLICATE = 1
BORDER_REFLECT = 2
BORDER_REFLECT_101 = 4
BORDER_REFLECT101 = 4
BORDER_DEFAULT = 4
BORDER_ISOLATED = 16
CV_32F = 5
CV_64F = 6
FILTER_SCHARR = -1

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

# OpenCV's border types as torchgrad's padding modes. BORDER_ISOLATED (16) may be or-ed with any of them: it
# tells a filter on a region of a larger image not to read outside the region, so on a whole image it changes
# nothing. BORDER_WRAP (3) is refused by OpenCV's filters, BORDER_TRANSPARENT (5) by its border interpolation.
_PADDINGS = {
    BORDER_CONSTANT: "zeros",
    BORDER_REPLICATE: "replicate",
    BORDER_REFLECT: "symmetric",
    BORDER_REFLECT_101: "reflect",
}
_BORDER_NAMES = {0: "BORDER_CONSTANT", 1: "BORDER_REPLICATE", 2: "BORDER_REFLECT", 4: "BORDER_REFLECT_101"}
_REFUSED_BORDERS = {3: "BORDER_WRAP (3): OpenCV's filters refuse it", 5: "BORDER_TRANSPARENT (5): OpenCV refuses it"}
_INTEGER_DEPTHS = {0: "CV_8U", 1: "CV_8S", 2: "CV_16U", 3: "CV_16S", 4: "CV_32S"}
_MAX_KSIZE = 7  # torchgrad's stencils have at most 7 taps; OpenCV goes to 31
_HALF = (torch.float16, torch.bfloat16)


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
    fn = "cv2_compat.getDerivKernels"
    dx, dy, ksize = _check_orders(fn, dx, dy, ksize)
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
    fn = "cv2_compat.Sobel"
    src = _check_src(fn, "src", src)
    dtype = _check_ddepth(fn, "ddepth", ddepth, src)
    dx, dy, ksize = _check_orders(fn, dx, dy, ksize)
    scale, delta, padding = _check_affine(fn, scale, delta, borderType)
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
    fn = "cv2_compat.Scharr"
    src = _check_src(fn, "src", src)
    dtype = _check_ddepth(fn, "ddepth", ddepth, src)
    dx, dy, ksize = _check_orders(fn, dx, dy, FILTER_SCHARR, "Scharr")
    scale, delta, padding = _check_affine(fn, scale, delta, borderType)
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
    fn = "cv2_compat.Laplacian"
    src = _check_src(fn, "src", src)
    ksize = _check_ksize(fn, "ksize", ksize, scharr=False)
    # 3x3 kernels filter in src's depth; larger ones in float32, or float64 for float64 src, into any depth
    dtype = _check_ddepth(fn, "ddepth", ddepth, src, widen=ksize > 3, narrow=ksize > 3)
    compute = dtype if ksize <= 3 else torch.float64 if src.dtype == torch.float64 else torch.float32
    scale, delta, padding = _check_affine(fn, scale, delta, borderType)
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
    fn = "cv2_compat.spatialGradient"
    src = _check_src(fn, "src", src)
    if check_int(fn, "ksize", ksize) != 3:
        raise ValueError(f"{fn}: `ksize` must be 3 (OpenCV's spatialGradient takes no other size), got {ksize}")
    border = check_int(fn, "borderType", borderType)
    if border not in (BORDER_REPLICATE, BORDER_REFLECT_101):
        raise ValueError(
            f"{fn}: `borderType` must be BORDER_DEFAULT (= BORDER_REFLECT_101, 4) or BORDER_REPLICATE (1), the "
            f"border types OpenCV's spatialGradient takes, got {borderType}"
        )
    padding = _PADDINGS[border]
    src = _plane(src)
    derivative, smoothing = _kernel(1, 3), _kernel(0, 3)
    chains = (_chain(src, derivative, smoothing, padding), _chain(src, smoothing, derivative, padding))
    dx, dy = apply_operator(Separable(chains), src)
    return dx, dy


# Validation ---------------------------------------------------------------------------------------------------


# OpenCV's own rules, in the house form (fn, name, value, ...) and made of the checks of _validation.


def _check_src(fn: str, name: str, value: Any) -> Tensor:
    """An ``(H, W)`` or ``(H, W, C)`` floating tensor with no empty axis."""
    value = check_dtype(fn, name, check_tensor(fn, name, value), FLOATING)
    check_rank(fn, name, value, (2, 3), "an (H, W) or (H, W, C) image")
    return check_not_empty(fn, name, value, " (OpenCV refuses empty images)")


def _check_ddepth(fn: str, name: str, value: Any, src: Tensor, widen: bool = True, narrow: bool = False) -> torch.dtype:
    """The dtype of the result: ``src``'s for -1, float32 for CV_32F, float64 for CV_64F, where OpenCV's filter
    takes it: CV_64F from a narrower ``src`` where ``widen``, CV_32F from float64 where ``narrow``."""
    ddepth = check_int(fn, name, value)
    if ddepth in _INTEGER_DEPTHS:
        raise ValueError(
            f"{fn}: `{name}` {_INTEGER_DEPTHS[ddepth]} ({ddepth}) is an integer depth, which rounds and "
            "saturates and has no gradient; use -1, CV_32F (5) or CV_64F (6) and round the result if needed"
        )
    if ddepth not in (-1, CV_32F, CV_64F):
        raise ValueError(f"{fn}: `{name}` must be -1, CV_32F (5) or CV_64F (6), got {ddepth}")
    dtype = {-1: src.dtype, CV_32F: torch.float32, CV_64F: torch.float64}[ddepth]
    if src.dtype != dtype and ((dtype == torch.float64 and not widen) or (src.dtype == torch.float64 and not narrow)):
        depth = "CV_64F (6)" if ddepth == CV_64F else "CV_32F (5)"
        raise ValueError(
            f"{fn}: `{name}` {depth} from a {src.dtype} `src` is refused by OpenCV for this filter and ksize; "
            "use -1, or convert `src` first"
        )
    return dtype


def _check_ksize(fn: str, name: str, value: Any, scharr: bool) -> int:
    """An odd kernel size from 1 to ``_MAX_KSIZE``; any ``ksize <= 0`` (FILTER_SCHARR) where ``scharr``."""
    ksize = check_int(fn, name, value)
    if scharr and ksize <= 0:
        return FILTER_SCHARR
    if ksize <= 0 or ksize % 2 == 0 or ksize > 31:
        raise ValueError(f"{fn}: `{name}` must be odd, from 1 to 31 in OpenCV, got {ksize}")
    if ksize > _MAX_KSIZE:
        raise ValueError(
            f"{fn}: `{name}` {ksize} is accepted by OpenCV but not here: torchgrad's stencils have at most "
            f"{_MAX_KSIZE} taps (ksize 1, 3, 5 or 7)"
        )
    return ksize


def _check_orders(fn: str, dx: Any, dy: Any, ksize: Any, name: str = "Sobel") -> tuple[int, int, int]:
    """Derivative orders that OpenCV's kernels for ``ksize`` take."""
    dx = check_int(fn, "dx", dx, minimum=0)
    dy = check_int(fn, "dy", dy, minimum=0)
    ksize = _check_ksize(fn, "ksize", ksize, scharr=True)
    if ksize == FILTER_SCHARR:
        if dx + dy != 1:
            raise ValueError(
                f"{fn}: `dx` and `dy` must be (1, 0) or (0, 1), as {name}'s kernel is a first derivative, "
                f"got dx={dx}, dy={dy}"
            )
        return dx, dy, ksize
    if dx + dy == 0:
        raise ValueError(f"{fn}: `dx` and `dy` must not both be 0 (OpenCV needs dx + dy > 0)")
    taps = max(ksize, 3)  # ksize 1 is a 3-tap derivative kernel
    for name_, order in (("dx", dx), ("dy", dy)):
        if order >= taps:
            raise ValueError(
                f"{fn}: `{name_}` must be less than the kernel's {taps} taps (OpenCV needs ksize > order), got "
                f"{name_}={order} with ksize={ksize}"
            )
    return dx, dy, ksize


def _check_scalar(fn: str, name: str, value: Any) -> float:
    """A finite number of a type that OpenCV's bindings take for a ``double``, as a float: an int or a float
    (subclasses too: an ``IntEnum``, NumPy's float64), a NumPy integer, float16 or float32. Not a bool, a
    ``Fraction``, a ``Decimal``, a complex number (OpenCV drops the imaginary part of NumPy's complex128), NumPy's
    longdouble, an array or a tensor."""
    if type(value) is not float and type(value) is not int:  # the common case, without the checks below
        numpy = sys.modules.get("numpy")  # a NumPy scalar comes with NumPy imported; torchgrad does not import it
        numpy_types = () if numpy is None else (numpy.integer, numpy.float16, numpy.float32)
        if isinstance(value, bool) or not isinstance(value, (int, float, *numpy_types)):
            raise TypeError(
                f"{fn}: `{name}` must be an int or a float (Python's or NumPy's, as OpenCV takes), got "
                f"{reprlib.repr(value)}"
            )
    return check_number(fn, name, value)


def _check_affine(fn: str, scale: Any, delta: Any, border: Any) -> tuple[float, float, str]:
    """``scale`` and ``delta`` as finite floats, and ``borderType`` as a padding mode."""
    scale = _check_scalar(fn, "scale", scale)
    delta = _check_scalar(fn, "delta", delta)
    border = check_int(fn, "borderType", border)
    base = border & ~BORDER_ISOLATED
    if base in _REFUSED_BORDERS:
        raise ValueError(f"{fn}: `borderType` must not be {_REFUSED_BORDERS[base]}")
    if base not in _PADDINGS or border < 0:
        accepted = ", ".join(f"{name} ({value})" for value, name in _BORDER_NAMES.items())
        raise ValueError(
            f"{fn}: `borderType` must be one of {accepted}, optionally | BORDER_ISOLATED (16), got {border}"
        )
    return scale, delta, _PADDINGS[base]


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
    (result,) = apply_operator(op.with_output_dtype(torch.float32) if src.dtype in _HALF else op, src)
    result = _times(result.to(torch.float32 if dtype in _HALF else dtype), scale)
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
