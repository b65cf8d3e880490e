"""Every named operator, described once: per output, a sum of separable terms (taps along spatial axes).

A :class:`Term` is a list of ``(axis, taps)`` stages applied in order, ``axis`` counted from the
outermost spatial axis (0 is ``H`` of an image, ``D`` of a volume); an axis a term does not name is
left as it is. An output is the sum of its terms, and an operator has one :class:`Form` per
``(spatial_dims, ksize)`` it supports. ``normalized=True`` divides every output by the form's
``divisor``, chosen so that the filter returns the derivative itself for a polynomial of matching
degree with unit spacing.

:func:`torchgrad._filters.build_operator` turns a description into a
:class:`~torchgrad._separable.Separable`; the functions, the magnitude, the losses and the tests read
this table, so adding an operator is one entry here plus its public function and module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

Taps = tuple[int, ...]
Term = tuple[tuple[int, Taps], ...]
Output = tuple[Term, ...]

DIFFERENCE: Taps = (-1, 0, 1)
SECOND: Taps = (1, -2, 1)
FORWARD: Taps = (0, -1, 1)
SOBEL: Taps = (1, 2, 1)
SCHARR: Taps = (3, 10, 3)
PREWITT: Taps = (1, 1, 1)


@dataclass(frozen=True)
class Form:
    """An operator for one ``(spatial_dims, ksize)``: its outputs, and what ``normalized=True`` divides by."""

    outputs: tuple[Output, ...]
    divisor: int = 1


@dataclass(frozen=True)
class OperatorSpec:
    """A named operator.

    ``border`` is ``None`` for an operator that takes ``padding`` (and ``normalized``), else its fixed
    border rule: ``"valid"`` (a row that would read past the edge is zero, ``tf.image.image_gradients``)
    or ``"one-sided"`` (``torch.gradient``'s one-sided first and last rows, half the central difference
    inside). ``first_order`` operators have one output per spatial axis, the gradient.
    """

    name: str
    forms: tuple[tuple[tuple[int, int], Form], ...]  # ((spatial_dims, ksize), form)
    border: Optional[str] = None
    first_order: bool = True

    @property
    def takes_padding(self) -> bool:
        return self.border is None

    @property
    def spatial_dims(self) -> tuple[int, ...]:
        return tuple(sorted({dims for (dims, _), _ in self.forms}))

    @property
    def ksizes(self) -> tuple[int, ...]:
        return tuple(sorted({ksize for (_, ksize), _ in self.forms}))

    def form(self, spatial_dims: int, ksize: int = 1) -> Optional[Form]:
        """The form for ``spatial_dims`` and ``ksize``; ``None`` where there is none."""
        return dict(self.forms).get((spatial_dims, ksize))


def _gradient(along: Taps, across: Optional[Taps], spatial_dims: int) -> tuple[Output, ...]:
    """One output per axis: ``across`` on each other axis (outermost first), then ``along`` on it."""
    outputs = []
    for axis in range(spatial_dims):
        smoothing = [] if across is None else [(a, across) for a in range(spatial_dims) if a != axis]
        outputs.append((tuple(smoothing + [(axis, along)]),))
    return tuple(outputs)


def _sum_over_axes(along: Taps, spatial_dims: int) -> Output:
    """``along`` on each axis in turn, summed (the Laplacian of ``[1, -2, 1]``)."""
    return tuple(((axis, along),) for axis in range(spatial_dims))


def _first_order(name: str, across: Taps, spatial_dims: tuple[int, ...]) -> OperatorSpec:
    """A difference along each axis times ``across`` smoothing on the others, normalised by the L1 norm."""
    forms = tuple(((d, 1), Form(_gradient(DIFFERENCE, across, d), 2 * sum(across) ** (d - 1))) for d in spatial_dims)
    return OperatorSpec(name, forms)


_SPECS = (
    OperatorSpec("diff", tuple(((d, 1), Form(_gradient(FORWARD, None, d))) for d in (2, 3)), border="valid"),
    _first_order("sobel", SOBEL, (2, 3)),
    _first_order("scharr", SCHARR, (2,)),
    OperatorSpec("central", tuple(((d, 1), Form(_gradient(DIFFERENCE, None, d))) for d in (2, 3)), border="one-sided"),
    _first_order("prewitt", PREWITT, (2, 3)),
    OperatorSpec(
        "laplacian",
        (
            ((2, 1), Form((_sum_over_axes(SECOND, 2),))),
            ((3, 1), Form((_sum_over_axes(SECOND, 3),))),
            # OpenCV's ksize=3 kernel [[2, 0, 2], [0, -8, 0], [2, 0, 2]] (d2/dx2 with [1, 2, 1] across plus
            # d2/dy2 likewise) as its corners plus -8 times the centre: three stages instead of four, and the
            # terms read exactly the kernel's non-zero taps (masks and NaN follow them, not the 3x3 window).
            ((2, 3), Form(((((0, (2, 0, 2)), (1, (1, 0, 1))), ((0, (0, -8, 0)),)),), divisor=4)),
        ),
        first_order=False,
    ),
    OperatorSpec(
        "hessian",
        (
            (
                (2, 1),
                Form(
                    (
                        (((1, SOBEL), (0, SECOND)),),  # dyy: [1, -2, 1] along y times [1, 2, 1] along x
                        (((0, DIFFERENCE), (1, DIFFERENCE)),),  # dyx
                        (((0, SOBEL), (1, SECOND)),),  # dxx
                    ),
                    divisor=4,
                ),
            ),
        ),
        first_order=False,
    ),
)

REGISTRY: dict[str, OperatorSpec] = {spec.name: spec for spec in _SPECS}
"""The operators by name, as :func:`torchgrad._named.operator_by_name` and the losses take them."""
