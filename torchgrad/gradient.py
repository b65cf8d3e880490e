"""Central differences with ``torch.gradient``'s signature and numbers, and a hand-written backward."""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor, nn

from ._linear import apply_operator
from ._separable import Separable
from ._stencil import Row, Stencil
from ._validation import (
    GradientError,
    check_dim_argument,
    check_dims,
    check_edge_order,
    check_gradient_input,
    check_image,
    check_min_size,
    check_spacing,
    check_spacing_for,
    check_spatial_dims,
)

Spacing = Union[None, int, float, complex, Tensor, Sequence[Union[int, float, complex]], Sequence[Tensor]]
Dim = Union[int, Sequence[int], None]


def gradient(input: Tensor, *, spacing: Spacing = 1, dim: Dim = None, edge_order: int = 1) -> tuple[Tensor, ...]:
    r"""A drop-in for :func:`torch.gradient`, whose backward is written by hand.

    Interior points use second-order central differences,
    ``(h_l^2 f(x + h_r) - h_r^2 f(x - h_l) + (h_r^2 - h_l^2) f(x)) / (h_r h_l^2 + h_r^2 h_l)``
    (``(f(x + h) - f(x - h)) / 2h`` on a uniform grid); the two ends use one-sided differences of
    order ``edge_order``. Same arguments, same outputs and dtypes as ``torch.gradient``; where
    ``torch.gradient`` raises ``RuntimeError`` (``NotImplementedError`` included) this raises
    :class:`GradientError` (both a ``ValueError`` and a ``RuntimeError``), ``TypeError`` where it
    raises ``TypeError`` and ``IndexError`` for a dimension out of range. Two deliberate differences:
    coordinates whose length differs from the size of their dimension raise :class:`GradientError`
    (``torch.gradient`` returns meaningless numbers for them), and a bool ``spacing`` raises
    ``TypeError`` (``torch.gradient`` takes ``True`` for 1).

    Args:
        input: the samples of the function: floating, complex or signed integer. Integers give the
            default floating dtype, but their differences are taken in the integer dtype, as
            ``torch.gradient`` takes them, and wrap around near its limits (``int8``: ``127 - (-128)``
            is ``-1``); convert such input first. Other dtypes (bool, unsigned, float8, complex32) and
            layouts (sparse) raise :class:`GradientError`.
        spacing: a scalar (the distance between samples along every dimension: a number, or a 0-d
            tensor, which is never read on the host, and receives a gradient where it requires one), one
            scalar per dimension, or one 1-D tensor of coordinates per dimension (a non-uniform grid);
            ``None`` is 1.
        dim: the dimension(s) to differentiate along, ints as torch takes them (NumPy integers and
            0-d integer tensors too); every dimension when ``None``.
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
    caller = "gradient"
    # Types first, as torch's argument parser checks them (TypeError), then values (GradientError).
    if not isinstance(input, Tensor):
        raise TypeError(f"{caller}: `input` must be a torch.Tensor, got {type(input).__name__}")
    values = check_spacing(caller, "spacing", spacing)
    dim_list = check_dim_argument(caller, "dim", dim)
    edge_order = check_edge_order(caller, "edge_order", edge_order)
    input = check_gradient_input(caller, "input", input)
    dims = check_dims(caller, "dim", dim_list, input.dim())
    steps = check_spacing_for(caller, "spacing", values, input, dims, dim_list is not None)
    for d in dims:
        if input.shape[d] < edge_order + 1:
            raise GradientError(
                f"{caller}: each dimension in `dim` needs at least edge_order + 1 = {edge_order + 1} samples, "
                f"got size {input.shape[d]} along dim {d + input.dim()} of an input of shape {tuple(input.shape)}"
            )
    if not dims:
        return ()
    stencils = [
        _coordinate_stencil(input, d, h, edge_order)
        if isinstance(h, Tensor) and h.dim() == 1
        else _uniform_stencil(input, d, h, edge_order)
        for d, h in zip(dims, steps)
    ]
    op = Separable(tuple((s,) for s in stencils))
    if torch.is_grad_enabled() and any(isinstance(h, Tensor) and h.requires_grad for h in steps):
        # Gradients w.r.t. the coordinates too: the same arithmetic with autograd through it.
        return op.apply(input, traceable=True)
    return apply_operator(op, input)


def central_difference_operator(image: Tensor, spatial_dims: int, caller: str) -> Separable:
    """Unit-spacing, first-order-edge central differences along the spatial axes (checked for ``caller``)."""
    spatial_dims = check_spatial_dims(caller, "spatial_dims", spatial_dims)
    image = check_image(caller, "image", image, spatial_dims)
    check_min_size(caller, "image", image, spatial_dims, 2, "a central difference")
    return Separable(tuple((_uniform_stencil(image, d, 1, 1),) for d in range(-spatial_dims, 0)))


def _result_dtype(input: Tensor, weight_dtype: torch.dtype) -> torch.dtype:
    dtype = torch.promote_types(input.dtype, weight_dtype)
    return dtype if dtype.is_floating_point or dtype.is_complex else torch.get_default_dtype()


def _scalar_result_dtype(dtype: torch.dtype, h: Union[int, float, complex, Tensor]) -> torch.dtype:
    """The dtype of ``input / h`` (true division; a 0-d tensor ``h`` as the number it holds), as
    ``torch.result_type`` gives it, traceable by Dynamo."""
    if (h.is_complex() if isinstance(h, Tensor) else isinstance(h, complex)) and not dtype.is_complex:
        real = dtype if dtype.is_floating_point else torch.get_default_dtype()
        return {torch.float16: torch.complex32, torch.float64: torch.complex128}.get(real, torch.complex64)
    return dtype if dtype.is_floating_point or dtype.is_complex else torch.get_default_dtype()


def _uniform_stencil(input: Tensor, dim: int, h: Union[int, float, complex, Tensor], edge_order: int) -> Stencil:
    """Central differences of step ``h`` along ``dim``, for any size there (the border rows count from the ends).
    A 0-d tensor ``h`` divides as a tensor: its value is never read on the host."""
    dtype = _scalar_result_dtype(input.dtype, h)
    if isinstance(h, Tensor) and h.device != input.device and h.device.type != "cpu":
        h = h.to(input.device)  # (a CPU 0-d tensor divides a tensor on any device)
    if edge_order == 1:
        first = Row(((0, -1), (1, 1)), h)
        last = Row(((-2, -1), (-1, 1)), h)
    else:
        first = Row(((0, -1.5), (1, 2), (2, -0.5)), h)
        last = Row(((-3, 0.5), (-2, -2), (-1, 1.5)), h)
    return Stencil(dim, (-1, 0, 1), 2 * h, (first,), (last,), dtype=dtype)


def _coordinate_stencil(input: Tensor, dim: int, coords: Tensor, edge_order: int) -> Stencil:
    step = coords.diff()
    dx1, dx2 = step[:-1], step[1:]
    weights = (-dx2 / (dx1 * (dx1 + dx2)), (dx2 - dx1) / (dx1 * dx2), dx1 / (dx2 * (dx1 + dx2)))
    dtype = _result_dtype(input, weights[0].dtype)
    shape = (-1,) + (1,) * (-dim - 1)
    lower, centre, upper = (w.to(dtype).reshape(shape) for w in weights)
    if edge_order == 1:
        first = Row(((0, -1), (1, 1)), step[0])
        last = Row(((-2, -1), (-1, 1)), step[-1])
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
                (-3, h0 / (h1 * (h0 + h1))),
                (-2, -(h0 + h1) / (h0 * h1)),
                (-1, (2 * h0 + h1) / (h0 * (h0 + h1))),
            )
        )
    return Stencil(dim, (lower, centre, upper), 1, (first,), (last,), dtype=dtype)


class Gradient(nn.Module):
    """Module form of :func:`gradient`."""

    def __init__(self, *, spacing: Spacing = 1, dim: Dim = None, edge_order: int = 1) -> None:
        super().__init__()
        check_spacing("Gradient", "spacing", spacing)
        check_dim_argument("Gradient", "dim", dim)
        check_edge_order("Gradient", "edge_order", edge_order)
        self.spacing, self.dim, self.edge_order = spacing, dim, edge_order

    def forward(self, input: Tensor) -> tuple[Tensor, ...]:
        return gradient(input, spacing=self.spacing, dim=self.dim, edge_order=self.edge_order)

    def extra_repr(self) -> str:
        return f"spacing={self.spacing!r}, dim={self.dim!r}, edge_order={self.edge_order}"
