"""A :class:`~torchgrad._separable.Separable` read as the Triton kernels run it.

The kernels see a tensor as ``(batch, D, H, W)`` with three kernel axes ``z, y, x`` (the operator's
spatial dims ``-3, -2, -1``; an axis the operator does not have is of size 1). Every output component
is a product of one three-tap 1-D operator per axis, so row ``i`` of the 1-D operator reads three
samples (slots ``t = 0, 1, 2``) with three weights:

- interior rows read ``i - 1 + t`` with the stencil's taps;
- the border rules say where rows ``0`` and ``n - 1`` read: a padding mode remaps the out-of-range
  index (reflect, symmetric, replicate, circular), drops it (zeros), or zeroes the whole row (valid, as
  ``tf.image.image_gradients``); ``ROWS`` reads the border rows from the description itself
  (``torch.gradient``'s one-sided differences).

The samples an axis reads are shared by all components (one load serves every output); the weights
are per component and axis. Weights are the stencils' numerators; each component is divided once,
at the end, by the product of its stencils' divisors, as the CPU executor divides each stencil's sum.

The kernels run three-tap stencils; longer ones are :class:`Unsupported`. Sizes come from the shape
a plan is made for (the descriptions hold none). This file reads the description only; it never
imports Triton.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Optional, Sequence

from .._separable import Separable
from .._stencil import Row, Stencil, padded_stencil

NONE, REFLECT, REPLICATE, ZEROS, CIRCULAR, VALID, ROWS, SYMMETRIC = range(8)
"""Border rules of a kernel axis; ``NONE``: no component has a stencil along it (identity)."""

_PADDED = {
    "reflect": REFLECT,
    "replicate": REPLICATE,
    "zeros": ZEROS,
    "circular": CIRCULAR,
    "valid": VALID,
    "symmetric": SYMMETRIC,
}
_AXES = 3
_NO_TERMS = (0.0, 0.0, 0.0)

Triple = tuple[float, float, float]


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
    weights: tuple[tuple[AxisWeights, ...], ...]
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
        return tuple(tuple(self._forward_slots(self.modes[a], w) for a, w in enumerate(axes)) for axes in self.weights)

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
        s0, s1, s2 = (w.taps[t] != 0 or (mode == ROWS and (w.first[t] != 0 or w.last[t] != 0)) for t in range(3))
        return (s0, s1, s2)


class Unsupported(ValueError):
    """A description the Triton kernels do not run; the message says why."""


@dataclass(frozen=True)
class _Real:
    """A three-tap stencil whose weights are real scalars, as floats: what the kernels can take as
    constants; ``first`` and ``last`` are its rows ``0`` and ``n - 1`` on an axis of ``size`` samples."""

    stencil: Stencil
    size: int
    taps: Triple
    divisor: float
    first: tuple[tuple[int, float], ...]
    first_divisor: float
    last: tuple[tuple[int, float], ...]
    last_divisor: float

    @property
    def dim(self) -> int:
        return self.stencil.dim


def _real(stencil: Stencil, n: int) -> _Real:
    if len(stencil.taps) != 3:
        raise Unsupported(f"stencils of {len(stencil.taps)} taps are not served: the kernels run three-tap stencils")
    if stencil.padding == "reflect" and n < 2:
        raise Unsupported(f"reflect padding needs 2 samples along dim {stencil.dim}, got {n}")

    def real(w: object) -> float:
        if not isinstance(w, (int, float)) or isinstance(w, bool):
            raise Unsupported("per-row, tensor or complex weights (non-uniform coordinates) are not served")
        return float(w)

    def terms(row: Row) -> tuple[tuple[int, float], ...]:
        return tuple((k, real(w)) for k, w in row.terms)

    t0, t1, t2 = (real(t) for t in stencil.taps)
    divisor = real(stencil.divisor)
    if divisor == 0:
        raise Unsupported("a zero divisor")
    rows = (stencil.row(0, n), stencil.row(n - 1, n)) if n > 0 else (Row(()), Row(()))
    first, last = terms(rows[0]), terms(rows[1])
    return _Real(stencil, n, (t0, t1, t2), divisor, first, real(rows[0].divisor), last, real(rows[1].divisor))


def kernel_plan(op: Separable, shape: Sequence[int]) -> KernelPlan:
    """The plan of ``op`` for an input of ``shape``; :class:`Unsupported` when the kernels cannot run it."""
    if not isinstance(op, Separable):
        raise Unsupported(f"the Triton executor runs Separable operators, got {type(op).__name__}")
    ndim, shape = op.spatial_dims, tuple(shape)
    if ndim > len(shape):
        raise Unsupported(f"the kernels run up to 3 spatial dims, the operator has {ndim} for shape {shape}")
    return _plan(tuple(tuple(_real(s, shape[s.dim]) for s in chain) for chain in op.chains), ndim, shape)


def _exact_in_float32(w: float) -> bool:
    return struct.unpack("f", struct.pack("f", w))[0] == w


@lru_cache(maxsize=256)
def _plan(chains: tuple[tuple[_Real, ...], ...], ndim: int, shape: tuple[int, ...]) -> KernelPlan:
    if not 1 <= len(chains) <= 3:
        raise Unsupported(f"the kernels write 1 to 3 components, the operator has {len(chains)}")
    if ndim > _AXES or ndim > len(shape):
        raise Unsupported(f"the kernels run up to 3 spatial dims, the operator has {ndim} for shape {shape}")
    # stencils[c][a]: component c's stencil along kernel axis a (None: identity).
    stencils: list[list[Optional[_Real]]] = []
    for chain in chains:
        per_axis: list[Optional[_Real]] = [None] * _AXES
        for stencil in chain:
            axis = _AXES + stencil.dim
            if per_axis[axis] is not None:
                raise Unsupported(f"two stencils along dim {stencil.dim} in one chain are not served")
            per_axis[axis] = stencil
        stencils.append(per_axis)
    rules = [_axis_rule([s for per_axis in stencils if (s := per_axis[a]) is not None]) for a in range(_AXES)]
    weights = tuple(tuple(_axis_weights(s, *rules[a]) for a, s in enumerate(per_axis)) for per_axis in stencils)
    # Taps and border-row weights become float32 constants in the kernels (divisors keep full precision).
    if not all(_exact_in_float32(v) for axes in weights for w in axes for v in w.taps + w.first + w.last):
        raise Unsupported("weights that float32 does not hold exactly are not served")
    divisors = tuple(math.prod(s.divisor for s in chain) for chain in chains)
    sizes = (1,) * (_AXES - ndim) + tuple(shape[-ndim:])
    adjoint = tuple(
        tuple(_adjoint_slots(s, rules[a][0], sizes[a]) for a, s in enumerate(per_axis)) for per_axis in stencils
    )
    modes = (rules[0][0], rules[1][0], rules[2][0])
    firsts = tuple(rule[1] for rule in rules)
    lasts = tuple(rule[2] for rule in rules)
    return KernelPlan(ndim, modes, firsts, lasts, weights, tuple(float(d) for d in divisors), adjoint)


Slots5 = tuple[bool, bool, bool, bool, bool]


def _adjoint_slots(stencil: Optional[_Real], mode: int, n: int) -> Slots5:
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
        (interior and taps[2] != 0) or first.get(1, 0.0) != 0,
        (interior and taps[1] != 0) or first.get(0, 0.0) != 0 or last.get(n - 1, 0.0) != 0,
        (interior and taps[0] != 0) or last.get(n - 2, 0.0) != 0,
        any(w != 0 for k, w in first.items() if k >= 2),
        any(w != 0 for k, w in last.items() if k <= n - 3),
    )


def _net_weights(terms: tuple[tuple[int, float], ...]) -> dict[int, float]:
    """The weight a border row gives each sample (terms on one sample summed)."""
    net: dict[int, float] = {}
    for k, w in terms:
        net[k] = net.get(k, 0.0) + w
    return net


def _padding_modes(stencil: _Real) -> set[int]:
    """Every padding rule that reproduces the stencil's border rows exactly."""
    found = set()
    source, n = stencil.stencil, stencil.size
    rows = [source.row(i, n) for i in sorted({0, n - 1})] if n > 0 else []
    for name, mode in _PADDED.items():
        if mode == REFLECT and n < 2:
            continue
        candidate = padded_stencil(source.dim, source.taps, name, source.divisor)
        if [candidate.row(i, n) for i in sorted({0, n - 1})] == rows:
            found.add(mode)
    return found


Indices = tuple[int, int, int]


def _row_indices(terms: tuple[tuple[int, float], ...], n: int, from_end: bool) -> Optional[Indices]:
    """The samples a border row reads, in slots (at most three terms), or ``None``."""
    if len(terms) > 3 or not all(0 <= k < n for k, _ in terms):
        return None
    indices = [k - n if from_end else k for k, _ in terms]
    own = -1 if from_end else 0
    i0, i1, i2 = indices + [own] * (3 - len(indices))
    return (i0, i1, i2)


def _axis_rule(along: list[_Real]) -> tuple[int, Indices, Indices]:
    """The border rule shared by every stencil along one axis: (mode, first-row, last-row samples)."""
    unused = (0, 0, 0)
    if not along:
        return NONE, unused, unused
    common = set.intersection(*(_padding_modes(s) for s in along))
    own = {_PADDED.get(s.stencil.padding or "", NONE) for s in along}
    if common:
        # The stencils' own mode where they share one (several modes may give the same rows at three taps).
        return (own.pop() if len(own) == 1 and own <= common else min(common)), unused, unused
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


def _axis_weights(stencil: Optional[_Real], mode: int, first: Indices, last: Indices) -> AxisWeights:
    if stencil is None:
        if mode != ROWS:
            return IDENTITY
        # The identity's border rows on the samples the axis reads: weight 1 on the row's own sample.
        return AxisWeights(IDENTITY.taps, _one_hot(first.index(0)), _one_hot(last.index(-1)))
    if mode != ROWS:
        return AxisWeights(stencil.taps)
    # Border rows scaled to the stencil's divisor, applied once at the end. The ratio first: (2 h) / h
    # is exactly 2, so gradient's one-sided rows keep exact weights.
    return AxisWeights(
        stencil.taps,
        _slots(stencil.first, stencil.divisor / stencil.first_divisor),
        _slots(stencil.last, stencil.divisor / stencil.last_divisor),
    )


def _one_hot(slot: int) -> Triple:
    w0, w1, w2 = (1.0 if t == slot else 0.0 for t in range(3))
    return (w0, w1, w2)


def _slots(terms: tuple[tuple[int, float], ...], scale: float) -> Triple:
    w0, w1, w2 = [w * scale for _, w in terms] + [0.0] * (3 - len(terms))
    return (w0, w1, w2)
