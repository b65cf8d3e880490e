"""A :class:`~torchgrad._separable.Separable` read as the Triton kernels run it.

The kernels see a tensor as ``(batch, D, H, W)`` with three kernel axes ``z, y, x`` (the operator's
spatial dims ``-3, -2, -1``; an axis the operator does not have is of size 1). Every output component
is a product of one three-tap 1-D operator per axis, so row ``i`` of the 1-D operator reads three
samples (slots ``t = 0, 1, 2``) with three weights:

- interior rows read ``i - 1 + t`` with the stencil's taps;
- the border rules say where rows ``0`` and ``n - 1`` read: a padding mode remaps the out-of-range
  index (reflect, replicate, circular), drops it (zeros), or zeroes the whole row (valid, as
  ``tf.image.image_gradients``); ``ROWS`` reads the border rows from the description itself
  (``torch.gradient``'s one-sided differences).

The samples an axis reads are shared by all components (one load serves every output); the weights
are per component and axis. Weights are the stencils' numerators; each component is divided once,
at the end, by the product of its stencils' divisors, as the CPU executor divides each stencil's sum.

This file reads the description only; it never imports Triton.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Optional, Sequence, Union

from .._separable import Separable
from .._stencil import PADDING_MODES, Row, Stencil, padded_stencil

NONE, REFLECT, REPLICATE, ZEROS, CIRCULAR, VALID, ROWS = range(7)
"""Border rules of a kernel axis; ``NONE``: no component has a stencil along it (identity)."""

_PADDED = dict(zip(PADDING_MODES + ("valid",), (REFLECT, REPLICATE, ZEROS, CIRCULAR, VALID)))
_AXES = 3
_NO_TERMS = (0.0, 0.0, 0.0)

Triple = tuple[float, float, float]
Scalar = Union[int, float]


@dataclass(frozen=True)
class AxisWeights:
    """One component's weights along one axis: interior taps and, for ``ROWS``, the border rows."""

    taps: Triple
    first: Triple = _NO_TERMS
    last: Triple = _NO_TERMS


IDENTITY = AxisWeights((0.0, 1.0, 0.0))


@dataclass(frozen=True)
class KernelPlan:
    """The kernels' reading of an operator: border rules per axis, weights per component and axis.

    ``first_index[a]`` / ``last_index[a]`` are, for a ``ROWS`` axis, the samples that rows ``0`` and
    ``n - 1`` read in slots 0, 1, 2: counted from the start for row 0, from the end (``-1`` is the
    last sample) for row ``n - 1``. ``adjoint_slots[c][a]`` says which of the five slots of ``A^T``
    (rows ``j - 1, j, j + 1``, then rows 0 and ``n - 1`` read from afar) carry a weight; for axes of
    fewer than four samples it depends on the size.
    """

    ndim: int
    modes: tuple[int, int, int]
    first_index: tuple[tuple[int, int, int], ...]
    last_index: tuple[tuple[int, int, int], ...]
    weights: tuple[tuple[AxisWeights, AxisWeights, AxisWeights], ...]
    divisors: tuple[float, ...]
    adjoint_slots: tuple[tuple[tuple[bool, bool, bool, bool, bool], ...], ...]

    @property
    def components(self) -> int:
        return len(self.weights)

    def select(self, components: Sequence[int]) -> "KernelPlan":
        """The plan of the listed components only (the adjoint of the cotangents that are given)."""
        return replace(
            self,
            weights=tuple(self.weights[c] for c in components),
            divisors=tuple(self.divisors[c] for c in components),
            adjoint_slots=tuple(self.adjoint_slots[c] for c in components),
        )

    def forward_slots(self) -> tuple[tuple[tuple[bool, bool, bool], ...], ...]:
        """Per component and axis: which of the three slots can carry a non-zero weight."""
        return tuple(
            tuple(self._forward_slots(self.modes[a], w) for a, w in enumerate(axes)) for axes in self.weights
        )

    def constexprs(self) -> dict[str, object]:
        """The description as the kernels' compile-time arguments (plain nested tuples)."""
        forward = self.forward_slots()
        used = tuple(tuple(any(f[a][t] for f in forward) for t in range(3)) for a in range(_AXES))
        return {
            "NC": self.components,
            "MODES": self.modes,
            "FK": self.first_index,
            "LK": self.last_index,
            "WTS": tuple(tuple((w.taps, w.first, w.last) for w in axes) for axes in self.weights),
            "NZ": forward,
            "USED": used,
            "SLOTS": self.adjoint_slots,
            "DIVS": self.divisors,
        }

    @staticmethod
    def _forward_slots(mode: int, w: AxisWeights) -> tuple[bool, bool, bool]:
        if mode == NONE:
            return (False, True, False)
        if mode == ROWS:
            return tuple(a != 0 or b != 0 or c != 0 for a, b, c in zip(w.taps, w.first, w.last))  # type: ignore[return-value]
        return tuple(t != 0 for t in w.taps)  # type: ignore[return-value]


class Unsupported(ValueError):
    """A description the Triton kernels do not run; the message says why."""


def kernel_plan(op: Separable, shape: Sequence[int]) -> KernelPlan:
    """The plan of ``op`` for an input of ``shape``; :class:`Unsupported` when the kernels cannot run it."""
    if not isinstance(op, Separable):
        raise Unsupported(f"the Triton executor runs Separable operators, got {type(op).__name__}")
    for chain in op.chains:
        for stencil in chain:
            _check_scalar_stencil(stencil)
    return _plan(op, tuple(shape))


def _is_real_scalar(w: object) -> bool:
    return isinstance(w, (int, float)) and not isinstance(w, bool)


def _exact_in_float32(w: Scalar) -> bool:
    return struct.unpack("f", struct.pack("f", w))[0] == w


def _check_scalar_stencil(stencil: Stencil) -> None:
    weights = [*stencil.taps, stencil.divisor, stencil.first.divisor, stencil.last.divisor]
    weights += [w for row in (stencil.first, stencil.last) for _, w in row.terms]
    if not all(_is_real_scalar(w) for w in weights):
        raise Unsupported("per-row, tensor or complex weights (non-uniform coordinates) are not served")


@lru_cache(maxsize=256)
def _plan(op: Separable, shape: tuple[int, ...]) -> KernelPlan:
    chains = op.chains
    if not 1 <= len(chains) <= 3:
        raise Unsupported(f"the kernels write 1 to 3 components, the operator has {len(chains)}")
    ndim = op.spatial_dims
    if ndim > _AXES or ndim > len(shape):
        raise Unsupported(f"the kernels run up to 3 spatial dims, the operator has {ndim} for shape {shape}")
    # stencils[c][a]: component c's stencil along kernel axis a (None: identity).
    stencils: list[list[Optional[Stencil]]] = []
    for chain in chains:
        per_axis: list[Optional[Stencil]] = [None] * _AXES
        for stencil in chain:
            axis = _AXES + stencil.dim
            if per_axis[axis] is not None:
                raise Unsupported(f"two stencils along dim {stencil.dim} in one chain are not served")
            if stencil.size != shape[stencil.dim]:
                raise Unsupported(f"the operator is built for size {stencil.size} along dim {stencil.dim}, got {shape}")
            if stencil.divisor == 0:
                raise Unsupported("a zero divisor")
            per_axis[axis] = stencil
        stencils.append(per_axis)
    modes, firsts, lasts = [], [], []
    for a in range(_AXES):
        along = [per_axis[a] for per_axis in stencils if per_axis[a] is not None]
        mode, first, last = _axis_rule(along)  # type: ignore[arg-type]
        modes.append(mode)
        firsts.append(first)
        lasts.append(last)
    weights = tuple(
        tuple(_axis_weights(s, modes[a], firsts[a], lasts[a]) for a, s in enumerate(per_axis)) for per_axis in stencils
    )
    # Taps and border-row weights become float32 constants in the kernels (divisors keep full precision).
    if not all(_exact_in_float32(v) for axes in weights for w in axes for v in w.taps + w.first + w.last):
        raise Unsupported("weights that float32 does not hold exactly are not served")
    divisors = []
    for chain in chains:
        divisor: Scalar = 1
        for stencil in chain:
            divisor *= stencil.divisor  # type: ignore[assignment, operator]
        divisors.append(float(divisor))
    adjoint = tuple(
        tuple(_adjoint_slots(s, modes[a], shape[a - _AXES] if a >= _AXES - ndim else 1) for a, s in enumerate(per_axis))
        for per_axis in stencils
    )
    return KernelPlan(ndim, tuple(modes), tuple(firsts), tuple(lasts), weights, tuple(divisors), adjoint)  # type: ignore[arg-type]


def _adjoint_slots(stencil: Optional[Stencil], mode: int, n: int) -> tuple[bool, bool, bool, bool, bool]:
    """Which slots of the 1-D ``A^T`` carry a weight: slot ``k < 3`` reads row ``j + k - 1`` (interior
    rows with tap ``2 - k``, border rows with their net weight on ``x[j]``), slots 3 and 4 read rows 0
    and ``n - 1`` for columns two or more samples away."""
    if stencil is None or mode == NONE:
        return (False, True, False, False, False)
    taps = stencil.taps
    if mode == CIRCULAR:
        # A circulant matrix: its transpose is the reversed taps, wrapped around, at every size.
        return (taps[2] != 0, taps[1] != 0, taps[0] != 0, False, False)
    first = _net_weights(stencil.first)
    last = _net_weights(stencil.last) if n > 1 else {}
    interior = n >= 3
    return (
        (interior and taps[2] != 0) or first.get(1, 0) != 0,
        (interior and taps[1] != 0) or first.get(0, 0) != 0 or last.get(n - 1, 0) != 0,
        (interior and taps[0] != 0) or last.get(n - 2, 0) != 0,
        any(w != 0 for k, w in first.items() if k >= 2),
        any(w != 0 for k, w in last.items() if k <= n - 3),
    )


def _net_weights(row: Row) -> dict[int, Scalar]:
    """The weight a border row gives each sample (terms on one sample summed)."""
    net: dict[int, Scalar] = {}
    for k, w in row.terms:
        net[k] = net.get(k, 0) + w  # type: ignore[operator]
    return net


def _padding_modes(stencil: Stencil) -> list[int]:
    """Every padding rule that reproduces the stencil's border rows exactly."""
    found = []
    for name, mode in _PADDED.items():
        if mode == REFLECT and stencil.size < 2:
            continue
        candidate = padded_stencil(stencil.dim, stencil.size, stencil.taps, name, stencil.divisor)  # type: ignore[arg-type]
        if replace(candidate, dtype=stencil.dtype) == stencil:
            found.append(mode)
    return found


def _row_indices(row: Row, n: int, from_end: bool) -> Optional[tuple[int, int, int]]:
    """The samples a border row reads, in slots (at most three terms), or ``None``."""
    if len(row.terms) > 3 or not all(0 <= k < n for k, _ in row.terms):
        return None
    indices = [k - n if from_end else k for k, _ in row.terms]
    own = -1 if from_end else 0
    return tuple(indices + [own] * (3 - len(indices)))  # type: ignore[return-value]


def _axis_rule(along: list[Stencil]) -> tuple[int, tuple[int, int, int], tuple[int, int, int]]:
    """The border rule shared by every stencil along one axis: (mode, first-row, last-row samples)."""
    unused = (0, 0, 0)
    if not along:
        return NONE, unused, unused
    common = set(_padding_modes(along[0]))
    for stencil in along[1:]:
        common &= set(_padding_modes(stencil))
    if common:
        return min(common), unused, unused
    n = along[0].size
    first = _row_indices(along[0].first, n, from_end=False)
    last = _row_indices(along[0].last, n, from_end=True)
    same = all(
        _row_indices(s.first, n, from_end=False) == first and _row_indices(s.last, n, from_end=True) == last
        for s in along
    )
    if first is None or last is None or not same or 0 not in first or -1 not in last:
        raise Unsupported(
            f"the border rows along dim {along[0].dim} follow no padding mode and are not three shared samples"
        )
    return ROWS, first, last


def _axis_weights(
    stencil: Optional[Stencil], mode: int, first: tuple[int, int, int], last: tuple[int, int, int]
) -> AxisWeights:
    if stencil is None:
        if mode != ROWS:
            return IDENTITY
        # The identity's border rows on the samples the axis reads: weight 1 on the row's own sample.
        return AxisWeights(IDENTITY.taps, _one_hot(first, 0), _one_hot(last, -1))
    taps = tuple(float(t) for t in stencil.taps)
    if mode != ROWS:
        return AxisWeights(taps)  # type: ignore[arg-type]
    return AxisWeights(
        taps,  # type: ignore[arg-type]
        _row_weights(stencil.first, stencil.divisor),
        _row_weights(stencil.last, stencil.divisor),
    )


def _one_hot(indices: tuple[int, int, int], own: int) -> Triple:
    slot = indices.index(own)
    return tuple(1.0 if t == slot else 0.0 for t in range(3))  # type: ignore[return-value]


def _row_weights(row: Row, divisor: Scalar) -> Triple:
    """A border row's weights in its slots, scaled to the stencil's divisor (applied once at the end)."""
    # The ratio first: (2 h) / h is exactly 2, so gradient's one-sided rows keep exact weights.
    scale = float(divisor) / float(row.divisor)  # type: ignore[arg-type]
    weights = [float(w) * scale for _, w in row.terms]  # type: ignore[arg-type]
    return tuple(weights + [0.0] * (3 - len(weights)))  # type: ignore[return-value]
