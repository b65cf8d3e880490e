"""Central differences with ``torch.gradient``'s signature and numbers, and a hand-written backward."""

from __future__ import annotations

import numbers
from typing import Sequence, Union

import torch
from torch import Tensor, nn

from ._checks import check_image, check_min_size, check_spatial_dims, check_tensor
from ._linear import apply_operator
from ._separable import Separable
from ._stencil import Row, Stencil

Spacing = Union[int, float, complex, Tensor, Sequence[Union[int, float, complex]], Sequence[Tensor]]
Dim = Union[int, Sequence[int], None]


class GradientError(ValueError, RuntimeError):
    """An input that ``torch.gradient`` rejects with ``RuntimeError``.

    It is a ``ValueError`` as torchgrad's other errors are, and a ``RuntimeError`` so that code written
    to catch ``torch.gradient``'s errors keeps working.
    """


def gradient(input: Tensor, *, spacing: Spacing = 1, dim: Dim = None, edge_order: int = 1) -> tuple[Tensor, ...]:
    r"""A drop-in for :func:`torch.gradient`, whose backward is written by hand.

    Interior points use second-order central differences,
    ``(h_l^2 f(x + h_r) - h_r^2 f(x - h_l) + (h_r^2 - h_l^2) f(x)) / (h_r h_l^2 + h_r^2 h_l)``
    (``(f(x + h) - f(x - h)) / 2h`` on a uniform grid); the two ends use one-sided differences of
    order ``edge_order``. Same arguments, same outputs and dtypes as ``torch.gradient``; where
    ``torch.gradient`` raises ``RuntimeError`` this raises :class:`GradientError` (both a
    ``ValueError`` and a ``RuntimeError``), and ``IndexError`` for a dimension out of range. One
    deliberate difference: coordinates whose length differs from the size of their dimension raise
    :class:`GradientError` (``torch.gradient`` returns meaningless numbers for them).

    Args:
        input: the samples of the function, of any dtype but bool and uint8 (integers give the
            default floating dtype).
        spacing: a scalar (the distance between samples along every dimension), one scalar per
            dimension, or one 1-D tensor of coordinates per dimension (a non-uniform grid).
        dim: the dimension(s) to differentiate along; every dimension when ``None``.
        edge_order: 1 or 2, the order of accuracy at the ends.

    Returns:
        One tensor per dimension in ``dim``, each shaped like ``input``.

    Example:
        >>> t = torch.tensor([[1.0, 2.0, 4.0, 8.0], [10.0, 20.0, 40.0, 80.0]])
        >>> gradient(t, dim=1)
        (tensor([[ 1.0000,  1.5000,  3.0000,  4.0000],
                [10.0000, 15.0000, 30.0000, 40.0000]]),)
        >>> coordinates = (torch.tensor([-2.0, -1.0, 1.0, 4.0]),)
        >>> gradient(torch.tensor([4.0, 1.0, 1.0, 16.0]), spacing=coordinates)
        (tensor([-3., -2.,  2.,  5.]),)
    """
    input = check_tensor(input, "input", "gradient")
    if input.dtype == torch.bool:
        raise TypeError("gradient: `input` must not be bool (differences of bools are undefined), got torch.bool")
    if input.dtype == torch.uint8:
        raise GradientError("gradient: `input` must not be uint8 (torch.gradient does not support uint8 input)")
    ndim = input.dim()
    dims = _dims(dim, ndim)
    values = _spacing(spacing)
    if isinstance(values, list) and dim is None and len(values) != ndim:
        raise GradientError(
            f"gradient: `spacing` must be a scalar or a list of length input.dim() = {ndim} when `dim` is "
            f"not given, got a list of length {len(values)}"
        )
    if isinstance(values, list) and dim is not None and len(values) != len(dims):
        raise GradientError(
            f"gradient: `spacing` and `dim` must have the same length, got {len(values)} spacings for {len(dims)} dims"
        )
    if edge_order not in (1, 2) or isinstance(edge_order, bool):
        raise GradientError(f"gradient: `edge_order` must be 1 or 2, got {edge_order!r}")
    _check_no_repeats(dims, ndim)
    for d in dims:
        if input.shape[d] < edge_order + 1:
            raise GradientError(
                f"gradient: each dimension in `dim` needs at least edge_order + 1 = {edge_order + 1} samples, "
                f"got size {input.shape[d]} along dim {d + ndim} of an input of shape {tuple(input.shape)}"
            )
    if not dims:
        return ()
    steps = values if isinstance(values, list) else [values] * len(dims)
    stencils = [
        _coordinate_stencil(input, d, h, edge_order)
        if isinstance(h, Tensor)
        else _uniform_stencil(input, d, h, edge_order)
        for d, h in zip(dims, steps)
    ]
    op = Separable(tuple((s,) for s in stencils))
    if torch.is_grad_enabled() and any(isinstance(h, Tensor) and h.requires_grad for h in steps):
        # Gradients w.r.t. the coordinates too: the same arithmetic with autograd through it.
        return op.apply(input, traceable=True)
    return apply_operator(op, input)


def central_difference_operator(image: Tensor, spatial_dims: int, fn: str) -> Separable:
    """Unit-spacing, first-order-edge central differences along the spatial axes (checked for ``fn``)."""
    spatial_dims = check_spatial_dims(spatial_dims, fn)
    image = check_image(image, fn, spatial_dims)
    check_min_size(image, fn, spatial_dims, 2, "a central difference")
    return Separable(tuple((_uniform_stencil(image, d, 1, 1),) for d in range(-spatial_dims, 0)))


def _dims(dim: Dim, ndim: int) -> list[int]:
    """``dim`` as a list of negative dimensions (so that ``vmap``'s leading batch dimension is harmless)."""
    if dim is None:
        return [d - ndim for d in range(ndim)]
    if ndim == 0 and dim != []:
        raise IndexError(f"Dimension specified as {dim} but tensor has no dimensions")
    dims = [dim] if isinstance(dim, int) else dim
    if (
        isinstance(dims, (str, bytes))
        or not isinstance(dims, Sequence)
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims)
    ):
        raise TypeError(f"gradient: `dim` must be an int or a list or tuple of ints, got {dim!r}")
    wrapped = []
    for d in dims:
        if not -max(ndim, 1) <= d < max(ndim, 1):
            raise IndexError(
                "Dimension out of range "
                f"(expected to be in range of [{-max(ndim, 1)}, {max(ndim, 1) - 1}], but got {d})"
            )
        wrapped.append(d - ndim if d >= 0 else d)
    return wrapped


def _check_no_repeats(dims: list[int], ndim: int) -> None:
    seen = set()
    for d in dims:
        if d in seen:
            raise GradientError(f"gradient: dim {d + ndim} appears multiple times in the list of dims")
        seen.add(d)


def _spacing(spacing: Spacing) -> Union[int, float, complex, list]:
    """One scalar for every dim, or a list with one scalar or coordinate tensor per dim."""
    if isinstance(spacing, Tensor):
        if spacing.dim() == 0:
            return spacing.item()
        raise TypeError(
            "gradient: `spacing` must be a scalar, a list of scalars or a list of 1-D coordinate tensors, "
            f"got a tensor of shape {tuple(spacing.shape)} (pass coordinates as a list or tuple of tensors)"
        )
    if isinstance(spacing, numbers.Number) and not isinstance(spacing, bool):
        return spacing  # type: ignore[return-value]
    if isinstance(spacing, (list, tuple)):
        if all(isinstance(s, Tensor) for s in spacing):
            return list(spacing)
        if all(isinstance(s, numbers.Number) and not isinstance(s, bool) for s in spacing):
            return list(spacing)
    raise TypeError(
        f"gradient: `spacing` must be a scalar, a list of scalars or a list of 1-D coordinate tensors, got {spacing!r}"
    )


def _result_dtype(input: Tensor, weight_dtype: torch.dtype) -> torch.dtype:
    dtype = torch.promote_types(input.dtype, weight_dtype)
    return dtype if dtype.is_floating_point or dtype.is_complex else torch.get_default_dtype()


def _scalar_result_dtype(dtype: torch.dtype, h: Union[int, float, complex]) -> torch.dtype:
    """The dtype of ``input / h`` (true division), as ``torch.result_type`` gives it, traceable by Dynamo."""
    if isinstance(h, complex) and not dtype.is_complex:
        real = dtype if dtype.is_floating_point else torch.get_default_dtype()
        return {torch.float16: torch.complex32, torch.float64: torch.complex128}.get(real, torch.complex64)
    return dtype if dtype.is_floating_point or dtype.is_complex else torch.get_default_dtype()


def _uniform_stencil(input: Tensor, dim: int, h: Union[int, float, complex], edge_order: int) -> Stencil:
    n = input.shape[dim]
    dtype = _scalar_result_dtype(input.dtype, h)
    if edge_order == 1:
        first = Row(((0, -1), (1, 1)), h)
        last = Row(((n - 2, -1), (n - 1, 1)), h)
    else:
        first = Row(((0, -1.5), (1, 2), (2, -0.5)), h)
        last = Row(((n - 3, 0.5), (n - 2, -2), (n - 1, 1.5)), h)
    return Stencil(dim, n, (-1, 0, 1), 2 * h, first, last, dtype)


def _coordinate_stencil(input: Tensor, dim: int, coords: Tensor, edge_order: int) -> Stencil:
    n = input.shape[dim]
    if coords.device != input.device:
        raise GradientError(
            "gradient: every coordinate tensor in `spacing` must be on input's device "
            f"{input.device}, got {coords.device}"
        )
    if coords.dim() != 1:
        raise GradientError(
            f"gradient: each coordinate tensor in `spacing` must be 1-D, got shape {tuple(coords.shape)}"
        )
    if coords.shape[0] != n:
        raise GradientError(
            f"gradient: the coordinates for dim {dim + input.dim()} must have one value per sample ({n}), "
            f"got {coords.shape[0]}"
        )
    step = coords.diff()
    dx1, dx2 = step[:-1], step[1:]
    weights = (-dx2 / (dx1 * (dx1 + dx2)), (dx2 - dx1) / (dx1 * dx2), dx1 / (dx2 * (dx1 + dx2)))
    dtype = _result_dtype(input, weights[0].dtype)
    shape = (-1,) + (1,) * (-dim - 1)
    lower, centre, upper = (w.to(dtype).reshape(shape) for w in weights)
    if edge_order == 1:
        first = Row(((0, -1), (1, 1)), step[0])
        last = Row(((n - 2, -1), (n - 1, 1)), step[-1])
    else:
        h0, h1 = step[0], step[1]
        first = Row(
            (
                (0, -(2.0 * h0 + h1) / (h0 * (h0 + h1))),
                (1, (h0 + h1) / (h0 * h1)),
                (2, (-h0) / (h1 * (h0 + h1))),
            )
        )
        h0, h1 = step[-1], step[-2]
        last = Row(
            (
                (n - 3, h0 / (h1 * (h0 + h1))),
                (n - 2, -(h0 + h1) / (h0 * h1)),
                (n - 1, (2 * h0 + h1) / (h0 * (h0 + h1))),
            )
        )
    return Stencil(dim, n, (lower, centre, upper), 1, first, last, dtype)


class Gradient(nn.Module):
    """Module form of :func:`gradient`."""

    def __init__(self, *, spacing: Spacing = 1, dim: Dim = None, edge_order: int = 1) -> None:
        super().__init__()
        if edge_order not in (1, 2) or isinstance(edge_order, bool):
            raise GradientError(f"Gradient: `edge_order` must be 1 or 2, got {edge_order!r}")
        self.spacing, self.dim, self.edge_order = spacing, dim, edge_order

    def forward(self, input: Tensor) -> tuple[Tensor, ...]:
        return gradient(input, spacing=self.spacing, dim=self.dim, edge_order=self.edge_order)

    def extra_repr(self) -> str:
        return f"spacing={self.spacing!r}, dim={self.dim!r}, edge_order={self.edge_order}"
