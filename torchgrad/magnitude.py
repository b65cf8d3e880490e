"""Gradient magnitude ``sqrt(sum_d g_d^2 + eps)``, finite where the image is flat."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ._executor import route, triton_operator
from ._linear import LinearOperator, apply_adjoint, apply_operator, batch_in_front
from ._linear import cast_like_input as _cast
from ._named import operator_by_name
from ._registry import REGISTRY
from ._separable import HALF, Separable, needs_traceable_code
from ._validation import (
    FLOATING,
    check_bool,
    check_image,
    check_number,
    check_operator,
    check_padding,
    check_spatial_dims,
)

FIRST_ORDER_OPERATORS = tuple(name for name, spec in REGISTRY.items() if spec.first_order)
"""The operators with one output per spatial axis, a gradient whose magnitude is defined."""


def plain_norm(components: Sequence[Tensor], eps: Union[float, Tensor]) -> Tensor:
    """``sqrt(sum c^2 + eps)`` in plain tensor operations (differentiable, traceable, new tensors)."""
    squares = components[0] * components[0]
    for c in components[1:]:
        squares = squares + c * c
    return torch.sqrt(squares + eps)


def _fewest_buffers_norm(components: Sequence[Tensor], eps: Union[float, Tensor], reuse: bool = False) -> Tensor:
    """``sqrt(sum c^2 + eps)``; eager code computes it in one new tensor, or with ``reuse`` in the first component."""
    if needs_traceable_code(components[0]):
        return plain_norm(components, eps)
    total = components[0].square_() if reuse else components[0].square()
    for c in components[1:]:
        total.addcmul_(c, c)
    return total.add_(eps).sqrt_()


def magnitude_gradient(
    components: Sequence[Tensor],
    grad: Tensor,
    eps: Union[float, Tensor],
    adjoint: Callable[[list[Tensor]], Tensor],
    in_place: bool = False,
) -> Tensor:
    """``A^T (grad * A x / |A x|)``: the gradient of ``|A x| = sqrt(sum_c (A x)_c^2 + eps)`` w.r.t. ``x``.

    ``components`` is ``A x`` and ``adjoint`` computes ``A^T``. Plain tensor operations (differentiable,
    traceable); with ``in_place`` (first-order eager code, ``components`` not needed after) the components are
    scaled in place, two temporaries in all.
    """
    if in_place:
        scale = _fewest_buffers_norm(components, eps).reciprocal_().mul_(grad)
        for c in components:
            c.mul_(scale)
        return adjoint(list(components))
    scale = grad / plain_norm(components, eps)
    return adjoint([scale * c for c in components])


class _Magnitude(torch.autograd.Function):
    """``|A x|``. Saves only ``x`` (a reference to the input, no new memory) and recomputes ``A x``.

    ``A`` may write its outputs in a wider dtype than ``x`` (float32 for half precision): the norm is
    computed in that dtype and returned in ``x``'s, and so are the gradients.
    """

    @staticmethod
    def forward(x: Tensor, op: LinearOperator, eps: float) -> Tensor:
        return _fewest_buffers_norm(op.apply(x), eps, reuse=True).to(x.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x, ctx.op, ctx.eps = inputs
        ctx.save_for_backward(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (x,) = ctx.saved_tensors
        op, eps = ctx.op, ctx.eps
        if torch.is_grad_enabled() or needs_traceable_code(grad):
            # Differentiable (double backward) or traced: plain operations through the Functions.
            adjoint = lambda g: apply_adjoint(op, x.dtype, g)  # noqa: E731
            return magnitude_gradient(apply_operator(op, x), grad, eps, adjoint), None, None
        # First-order eager backward: recompute A x and scale it in place.
        return _cast(magnitude_gradient(op.apply(x), grad, eps, op.adjoint, in_place=True), x.dtype), None, None

    @staticmethod
    def vmap(info: Any, in_dims: tuple[Optional[int], ...], x: Tensor, op: LinearOperator, eps: float) -> Any:
        return batch_in_front(info, lambda t: magnitude(op, t, eps), [x], in_dims[:1])


class _MagnitudeWithJvp(_Magnitude):
    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        _Magnitude.setup_context(ctx, inputs, output)
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def jvp(ctx: Any, x_t: Tensor, _op_t: None, _eps_t: None) -> Tensor:
        (x,) = ctx.saved_tensors
        components = apply_operator(ctx.op, x)
        tangents = apply_operator(ctx.op, x_t)
        return (sum(c * t for c, t in zip(components, tangents)) / plain_norm(components, ctx.eps)).to(x.dtype)


def magnitude(op: LinearOperator, x: Tensor, eps: float) -> Tensor:
    function = _Magnitude if torch.compiler.is_compiling() else _MagnitudeWithJvp
    return function.apply(x, op, eps)


def gradient_magnitude(
    image: Tensor,
    *,
    operator: str = "sobel",
    eps: float = 1e-6,
    padding: Optional[str] = None,
    normalized: bool = False,
    spatial_dims: int = 2,
) -> Tensor:
    r"""The magnitude of the image gradient, ``sqrt(sum_d g_d^2 + eps)`` per element.

    ``eps`` keeps the magnitude and its gradient finite where the image is flat (``sqrt`` of zero
    has an infinite derivative, the NaN trap of hand-rolled versions). The backward is written by
    hand and saves only a reference to ``image`` (on the CUDA kernels, also ``eps`` as a one-number
    tensor). For half-precision images the derivatives, their
    squares and sums (the square of 256 overflows float16) and the gradients are computed in float32
    and returned in the image's dtype.

    Args:
        image: ``(..., H, W)`` tensor (``(..., D, H, W)`` for volumes), floating.
        operator: a first-order operator: ``"sobel"``, ``"scharr"`` (2-D only), ``"prewitt"``, ``"diff"``
            (:func:`image_gradients`) or ``"central"`` (:func:`gradient`). The second-order ``"laplacian"``
            and ``"hessian"`` are refused: their outputs are not the components of a gradient.
        eps: added under the square root, non-negative. With 0 the gradient is NaN where the image is flat.
        padding: border mode of ``"sobel"``, ``"scharr"`` and ``"prewitt"``; ``None`` takes their default,
            reflect.
        normalized: divide the Sobel, Scharr or Prewitt kernel by its L1 norm.
        spatial_dims: 2 for images, 3 for volumes (all but ``"scharr"``).

    Returns:
        A tensor shaped and typed like ``image``.

    Example:
        >>> image = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 3)
        >>> gradient_magnitude(image, eps=0.0)
        tensor([[0., 4., 4., 0.],
                [0., 4., 4., 0.],
                [0., 4., 4., 0.]])
    """
    separable, eps = _operator(image, operator, padding, normalized, spatial_dims, eps)
    way = route(separable, image)
    description = way.description
    if description is not None and way.direct:
        # The fused kernels, which square and sum half precision in float32.
        return torch.ops.torchgrad.magnitude(image, description, _eps_tensor(eps, image.device))
    half = image.dtype in HALF
    # Squares of half-precision components overflow float16 (255^2) and round in bfloat16, and so
    # does the double backward's 1 / (|A x|^2 + eps) where the image is flat: all in float32.
    op = separable.with_output_dtype(torch.float32) if half else separable
    if description is not None and not half:
        return magnitude(triton_operator(description), image, eps)
    return magnitude(op, image, eps)


def _eps_tensor(eps: float, device: torch.device) -> Tensor:
    """``eps`` as the Triton ops take it, a float64 scalar on ``device`` (one fill; under ``torch.compile``
    computed in the graph, so that with ``dynamic=True`` a new value is an input, not a recompilation)."""
    if torch.compiler.is_compiling():
        return torch.zeros((), dtype=torch.float64, device=device) + eps
    return torch.full((), eps, dtype=torch.float64, device=device)


def _operator(
    image: Tensor, operator: str, padding: Optional[str], normalized: bool, spatial_dims: int, eps: float
) -> tuple[Separable, float]:
    """The linear operator behind ``operator`` and ``eps`` as a float, the arguments checked."""
    caller = "gradient_magnitude"
    operator, eps, padding, normalized, spatial_dims = _check_options(
        caller, operator, eps, padding, normalized, spatial_dims
    )
    image = check_image(caller, "image", image, spatial_dims, FLOATING)
    return operator_by_name(caller, operator, image, padding, normalized, spatial_dims), eps


def _check_options(
    caller: str, operator: str, eps: float, padding: Optional[str], normalized: bool, spatial_dims: int
) -> tuple[str, float, Optional[str], bool, int]:
    """The options, checked for ``caller``."""
    padding = None if padding is None else check_padding(caller, "padding", padding)
    normalized = check_bool(caller, "normalized", normalized)
    if isinstance(operator, str) and operator in REGISTRY and operator not in FIRST_ORDER_OPERATORS:
        raise ValueError(
            f"{caller}: `operator` must be a first-order operator, one of "
            f"{', '.join(map(repr, FIRST_ORDER_OPERATORS))}, "
            f"got the second-order {operator!r}: its outputs are not the components of a gradient"
        )
    operator = check_operator(caller, "operator", operator, FIRST_ORDER_OPERATORS, padding, normalized)
    spatial_dims = check_spatial_dims(caller, "spatial_dims", spatial_dims, REGISTRY[operator].spatial_dims)
    return operator, check_number(caller, "eps", eps, non_negative=True), padding, normalized, spatial_dims


class GradientMagnitude(nn.Module):
    """Module form of :func:`gradient_magnitude`."""

    def __init__(
        self,
        *,
        operator: str = "sobel",
        eps: float = 1e-6,
        padding: Optional[str] = None,
        normalized: bool = False,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        options = _check_options("GradientMagnitude", operator, eps, padding, normalized, spatial_dims)
        self.operator, self.eps, self.padding, self.normalized, self.spatial_dims = options

    def forward(self, image: Tensor) -> Tensor:
        return gradient_magnitude(
            image,
            operator=self.operator,
            eps=self.eps,
            padding=self.padding,
            normalized=self.normalized,
            spatial_dims=self.spatial_dims,
        )

    def extra_repr(self) -> str:
        return (
            f"operator={self.operator!r}, eps={self.eps}, padding={self.padding!r}, "
            f"normalized={self.normalized}, spatial_dims={self.spatial_dims}"
        )
