"""A :class:`~torchgrad._separable.Separable` read as the Triton kernels run it.

The kernels see a tensor as ``(batch, D, H, W)`` with three kernel axes ``z, y, x`` (the operator's
spatial dims ``-3, -2, -1``; an axis the operator does not have is of size 1). Each *chain* of the
operator is a product of one 1-D operator per axis, and each output the sum of its chains (one chain
per output, except for the Laplacian). Along an axis of radius ``r`` (the longest stencil along it
reaches ``r`` samples to either side, ``r <= 3``), row ``i`` of a 1-D operator reads ``2 r + 1``
samples (slots ``t = 0 .. 2 r``) with as many weights:

- interior rows read ``i - r + t`` with the stencil's taps (shorter stencils padded with zero taps);
- the border rules say where the rows near the edges read: a padding mode remaps the out-of-range
  index (reflect, symmetric, replicate, circular, as often as a short axis needs), drops it (zeros),
  or zeroes the whole row (valid, as ``tf.image.image_gradients``); ``ROWS`` reads rows ``0`` and
  ``n - 1`` from the description itself (``torch.gradient``'s one-sided differences, three taps).

The samples an axis reads are shared by all chains (one load serves every output); the weights are
per chain and axis. Weights are the stencils' numerators; each chain is divided once, at the end, by
the product of its stencils' divisors, as the CPU executor divides each stencil's sum.

Sizes come from the shape a plan is made for (the descriptions hold none). This file reads the
description only; it never imports Triton.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from typing import NamedTuple, Optional, Sequence

from .._separable import Separable
from .._stencil import Stencil, padded_stencil

NONE, REFLECT, REPLICATE, ZEROS, CIRCULAR, VALID, ROWS, SYMMETRIC, INTERIOR = range(9)
"""Border rules of a kernel axis; ``NONE``: no chain has a stencil along it (identity, radius 0);
``INTERIOR``: the rule of every axis with a stencil on a tile whose stencils reach no border (the
interior taps, no index folding)."""

_PADDED = {
    "reflect": REFLECT,
    "replicate": REPLICATE,
    "zeros": ZEROS,
    "circular": CIRCULAR,
    "valid": VALID,
    "symmetric": SYMMETRIC,
}
_STEPPED = (REFLECT, REPLICATE, ZEROS, CIRCULAR, SYMMETRIC)
"""The border rules a stepped x axis folds (:meth:`KernelPlan.interleaved`)."""
_AXES = 3
MAX_CHAINS = 3
_NO_TERMS = (0.0, 0.0, 0.0)

Triple = tuple[float, float, float]
Indices = tuple[int, int, int]


@dataclass(frozen=True)
class AxisWeights:
    """One chain's weights along one axis: ``2 r + 1`` interior taps and, for ``ROWS``, the border rows."""

    taps: tuple[float, ...]
    first: Triple = _NO_TERMS
    last: Triple = _NO_TERMS


def identity(radius: int) -> AxisWeights:
    """The identity along an axis of ``radius``: weight 1 on the centre slot."""
    return AxisWeights(tuple(1.0 if t == radius else 0.0 for t in range(2 * radius + 1)))


class Constants(NamedTuple):
    """A :class:`KernelPlan` as the kernels take it: one compile-time argument of plain nested tuples, read in
    the kernels as ``P.MODES``, ``P.STENCIL_WEIGHTS[c][a]``, ... (per axis ``z, y, x``; per chain ``c``)."""

    CHAINS: int
    """Chains."""
    OUTPUTS: int
    """Outputs."""
    OUTPUT_OF: tuple[int, ...]
    """The output each chain adds into."""
    FIRST_CHAIN: tuple[int, ...]
    """Each output's first chain."""
    MODES: tuple[int, int, int]
    """Border rules per axis."""
    RADII: tuple[int, int, int]
    FIRST_READS: tuple[Indices, ...]
    """Per axis, the samples that row 0 of a ``ROWS`` axis reads (:attr:`KernelPlan.first_index`)."""
    LAST_READS: tuple[Indices, ...]
    """And row ``n - 1`` (:attr:`KernelPlan.last_index`)."""
    STENCIL_WEIGHTS: tuple[tuple[tuple[tuple[float, ...], Triple, Triple], ...], ...]
    """Per chain and axis: the taps, row 0's and row ``n - 1``'s weights (:class:`AxisWeights`)."""
    NONZERO: tuple[tuple[tuple[bool, ...], ...], ...]
    """Per chain and axis: the slots that can carry a weight."""
    USED: tuple[tuple[bool, ...], ...]
    """Per axis: the slots some chain reads."""
    ADJOINT_SLOTS: tuple[tuple[tuple[bool, ...], ...], ...]
    """Per chain and axis: the adjoint's slots that carry a weight (:attr:`KernelPlan.adjoint_slots`)."""
    DIVISORS: tuple[float, ...]
    """Each chain's divisor."""
    INTERIOR_MODES: tuple[int, int, int]
    """The border rules of a tile that reaches no border (``INTERIOR`` on every axis with a stencil)."""
    MARGINS: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    """:meth:`KernelPlan.margins` of ``A``."""
    ADJOINT_MARGINS: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    """And of ``A^T``."""
    STEP: int
    """:attr:`KernelPlan.step`."""


@dataclass(frozen=True)
class KernelPlan:
    """The kernels' reading of an operator: border rules and radii per axis, weights per chain and
    axis, the output each chain adds into.

    ``first_index[a]`` / ``last_index[a]`` are, for a ``ROWS`` axis, the samples that rows ``0`` and
    ``n - 1`` read in slots 0, 1, 2: counted from the start for row 0, from the end (``-1`` is the
    last sample) for row ``n - 1``. ``adjoint_slots[c][a]`` says which of the ``2 r + 3`` slots of
    ``A^T`` (rows ``j - r .. j + r``, then rows 0 and ``n - 1`` read from afar) carry a weight.
    """

    ndim: int
    modes: tuple[int, int, int]
    radii: tuple[int, int, int]
    first_index: tuple[Indices, ...]
    last_index: tuple[Indices, ...]
    weights: tuple[tuple[AxisWeights, ...], ...]
    divisors: tuple[float, ...]
    outputs: tuple[int, ...]
    adjoint_slots: tuple[tuple[tuple[bool, ...], ...], ...]
    step: int = 1
    """Elements between neighbouring samples of the x axis: its index runs over ``n * step`` elements,
    ``step`` interleaved signals (see :meth:`interleaved`)."""

    @property
    def chains(self) -> int:
        return len(self.weights)

    @property
    def n_outputs(self) -> int:
        return max(self.outputs) + 1

    def for_outputs(self, given: Sequence[int]) -> "KernelPlan":
        """The plan of the chains whose outputs are ``given`` (the adjoint of the cotangents that are
        given), their outputs renumbered by position in ``given``."""
        if tuple(given) == tuple(range(self.n_outputs)):
            return self  # every cotangent given: the plan itself, its compile-time arguments already made
        kept = [c for c, o in enumerate(self.outputs) if o in given]
        return replace(
            self,
            weights=tuple(self.weights[c] for c in kept),
            divisors=tuple(self.divisors[c] for c in kept),
            outputs=tuple(list(given).index(self.outputs[c]) for c in kept),
            adjoint_slots=tuple(self.adjoint_slots[c] for c in kept),
        )

    def interleaved(self, width: int) -> Optional["KernelPlan"]:
        """The plan that runs this 3-D plan, whose x axis is the identity, over its y and x axes merged into
        one x axis of ``n_y * width`` elements (a tensor whose rows are contiguous runs of ``width`` samples,
        OpenCV's ``(H, W, C)``): its z and y axes become y and x, the x taps stepping ``width`` elements, so
        the loads run along contiguous memory and a tile's rows are runs of contiguous elements. ``None`` where the y
        axis is not a padding mode (border rows and valid rows keep the unmerged plan)."""
        if self.ndim != 3 or self.modes[2] != NONE or self.modes[1] not in _STEPPED:
            return None
        return _interleaved(self, width)

    def forward_slots(self) -> tuple[tuple[tuple[bool, ...], ...], ...]:
        """Per chain and axis: which of the slots can carry a non-zero weight."""
        return tuple(tuple(self._forward_slots(self.modes[a], w) for a, w in enumerate(axes)) for axes in self.weights)

    @cached_property
    def constants(self) -> "Constants":
        """The plan as the kernels' one compile-time argument (made once per plan)."""
        forward = self.forward_slots()
        used = tuple(tuple(any(f[a][t] for f in forward) for t in range(2 * self.radii[a] + 1)) for a in range(_AXES))
        return Constants(
            CHAINS=self.chains,
            OUTPUTS=self.n_outputs,
            OUTPUT_OF=self.outputs,
            FIRST_CHAIN=tuple(self.outputs.index(o) for o in range(self.n_outputs)),
            MODES=self.modes,
            RADII=self.radii,
            FIRST_READS=self.first_index,
            LAST_READS=self.last_index,
            STENCIL_WEIGHTS=tuple(tuple((w.taps, w.first, w.last) for w in axes) for axes in self.weights),
            NONZERO=forward,
            USED=used,
            ADJOINT_SLOTS=self.adjoint_slots,
            DIVISORS=self.divisors,
            INTERIOR_MODES=(self._inner(0), self._inner(1), self._inner(2)),
            MARGINS=self.margins(adjoint=False),
            ADJOINT_MARGINS=self.margins(adjoint=True),
            STEP=self.step,
        )

    def _inner(self, axis: int) -> int:
        return NONE if self.modes[axis] == NONE else INTERIOR

    def margins(self, adjoint: bool) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """Per axis, ``(lo, hi)``: rows ``lo .. n - 1 - hi`` of ``A`` (columns of ``A^T`` with ``adjoint``)
        are computed by the interior taps alone, so a tile inside that range takes the ``INTERIOR`` rule.

        ``A``'s rows ``r .. n - 1 - r`` read samples ``i - r .. i + r`` with the taps, in every padding
        mode (``ROWS``: every row but the first and the last). A column of ``A^T`` is interior when every
        row that reads it is: rows ``j - r .. j + r`` are interior rows and no border row reads ``j``
        (border rows fold their reads into the first or last ``r`` samples, or ``ROWS`` read the samples
        its rows name)."""
        out = []
        for a in range(_AXES):
            r, mode = self.radii[a], self.modes[a]
            if mode == NONE:
                out.append((0, 0))
            elif mode == ROWS:
                if not adjoint:
                    out.append((1, 1))
                else:
                    out.append((max(r + 1, max(self.first_index[a]) + 1), max(r + 1, -min(self.last_index[a]))))
            else:
                out.append((2 * r, 2 * r) if adjoint else (r, r))
        lo, hi = out[2]  # in elements of a stepped x axis
        return (out[0], out[1], (lo * self.step, hi * self.step))

    @staticmethod
    def _forward_slots(mode: int, w: AxisWeights) -> tuple[bool, ...]:
        if mode == NONE:
            return (True,)
        rows = mode == ROWS
        return tuple(w.taps[t] != 0 or (rows and (w.first[t] != 0 or w.last[t] != 0)) for t in range(len(w.taps)))


@lru_cache(maxsize=64)
def _interleaved(plan: KernelPlan, width: int) -> KernelPlan:
    def shifted(per_axis: tuple) -> tuple:
        return (per_axis[2], per_axis[0], per_axis[1])

    return replace(
        plan,
        ndim=2,
        modes=shifted(plan.modes),
        radii=shifted(plan.radii),
        first_index=shifted(plan.first_index),
        last_index=shifted(plan.last_index),
        weights=tuple(shifted(axes) for axes in plan.weights),
        adjoint_slots=tuple(shifted(axes) for axes in plan.adjoint_slots),
        step=width,
    )


class Unsupported(ValueError):
    """A description the Triton kernels do not run; the message says why."""


@dataclass(frozen=True)
class _ConstantStencil:
    """A stencil whose weights are real scalars, as floats: what the kernels can take as constants,
    on an axis of ``size`` samples."""

    stencil: Stencil
    size: int
    taps: tuple[float, ...]
    divisor: float

    @property
    def dim(self) -> int:
        return self.stencil.dim

    @property
    def half(self) -> int:
        return len(self.taps) // 2

    @cached_property
    def rows(self) -> dict[int, tuple[tuple[int, float], ...]]:
        """The border rows (rows within the reach of either edge), read from the description, each
        as ``(sample, weight / divisor * self.divisor)`` terms: numerators over the stencil's divisor."""
        n, reach = self.size, 2 * self.half + 1
        out = {}
        for i in sorted(set(range(min(reach, n))) | set(range(max(0, n - reach), n))):
            row = self.stencil.row(i, n)
            scale = self.divisor / _real(row.divisor)
            out[i] = tuple((k, _real(w) * scale) for k, w in row.terms)
        return out


def _real(w: object) -> float:
    if not isinstance(w, (int, float)) or isinstance(w, bool):
        raise Unsupported("per-row, tensor or complex weights (non-uniform coordinates) are not served")
    return float(w)


def _constant_stencil(stencil: Stencil, n: int) -> _ConstantStencil:
    if stencil.padding == "reflect" and n < 2:
        raise Unsupported(f"reflect padding needs 2 samples along dim {stencil.dim}, got {n}")
    taps = tuple(_real(t) for t in stencil.taps)
    divisor = _real(stencil.divisor)
    if divisor == 0:
        raise Unsupported("a zero divisor")
    return _ConstantStencil(stencil, n, taps, divisor)


def kernel_plan(op: Separable, shape: Sequence[int]) -> KernelPlan:
    """The plan of ``op`` for an input of ``shape``; :class:`Unsupported` when the kernels cannot run it.
    Plans are cached by operator and spatial sizes (the batch sizes do not enter them)."""
    if not isinstance(op, Separable):
        raise Unsupported(f"the Triton executor runs Separable operators, got {type(op).__name__}")
    ndim, shape = op.spatial_dims, tuple(shape)
    if ndim > len(shape):
        raise Unsupported(f"the kernels run up to 3 spatial dims, the operator has {ndim} for shape {shape}")
    return _spatial_plan(op, shape[len(shape) - ndim :])


@lru_cache(maxsize=256)
def _spatial_plan(op: Separable, spatial: tuple[int, ...]) -> KernelPlan:
    chains = tuple(tuple(_constant_stencil(s, spatial[s.dim]) for s in chain) for chain in op.chains)
    outputs = op.output_of or tuple(range(len(op.chains)))
    return _plan_of_chains(chains, outputs, len(spatial), spatial)


def _exact_in_float32(w: float) -> bool:
    return struct.unpack("f", struct.pack("f", w))[0] == w


def _net_exact(stencil: _ConstantStencil) -> bool:
    """Whether float32 holds every running sum of the weights that a border row gives one sample."""
    for terms in stencil.rows.values():
        sums: dict[int, float] = {}
        for k, w in terms:
            sums[k] = sums.get(k, 0.0) + w
            if not _exact_in_float32(sums[k]):
                return False
    return True


@lru_cache(maxsize=256)
def _plan_of_chains(
    chains: tuple[tuple[_ConstantStencil, ...], ...], outputs: tuple[int, ...], ndim: int, shape: tuple[int, ...]
) -> KernelPlan:
    if not 1 <= len(chains) <= MAX_CHAINS:
        raise Unsupported(f"the kernels write 1 to {MAX_CHAINS} chains, the operator has {len(chains)}")
    if ndim > _AXES or ndim > len(shape):
        raise Unsupported(f"the kernels run up to 3 spatial dims, the operator has {ndim} for shape {shape}")
    # stencils[c][a]: chain c's stencil along kernel axis a (None: identity).
    stencils: list[list[Optional[_ConstantStencil]]] = []
    for chain in chains:
        per_axis: list[Optional[_ConstantStencil]] = [None] * _AXES
        for stencil in chain:
            axis = _AXES + stencil.dim
            if per_axis[axis] is not None:
                raise Unsupported(f"two stencils along dim {stencil.dim} in one chain are not served")
            per_axis[axis] = stencil
        stencils.append(per_axis)
    rules = [_axis_rule([s for per_axis in stencils if (s := per_axis[a]) is not None]) for a in range(_AXES)]
    radii = tuple(
        max((s.half for per_axis in stencils if (s := per_axis[a]) is not None), default=0) for a in range(_AXES)
    )
    weights = tuple(
        tuple(_axis_weights(s, radii[a], *rules[a]) for a, s in enumerate(per_axis)) for per_axis in stencils
    )
    # Taps and border-row weights become float32 constants in the kernels (divisors keep full precision), and
    # the adjoint adds in float32 the weights that a border row gives one sample.
    exact = all(_exact_in_float32(v) for axes in weights for w in axes for v in w.taps + w.first + w.last)
    if not exact or not all(_net_exact(s) for per_axis in stencils for s in per_axis if s is not None):
        raise Unsupported("weights that float32 does not hold exactly are not served")
    divisors = tuple(float(math.prod(s.divisor for s in chain)) for chain in chains)
    adjoint = tuple(
        tuple(_adjoint_slots(s, rules[a][0], radii[a]) for a, s in enumerate(per_axis)) for per_axis in stencils
    )
    modes = (rules[0][0], rules[1][0], rules[2][0])
    radii3 = (radii[0], radii[1], radii[2])
    firsts = tuple(rule[1] for rule in rules)
    lasts = tuple(rule[2] for rule in rules)
    return KernelPlan(ndim, modes, radii3, firsts, lasts, weights, divisors, outputs, adjoint)


def _adjoint_slots(stencil: Optional[_ConstantStencil], mode: int, radius: int) -> tuple[bool, ...]:
    """Which slots of the 1-D ``A^T`` carry a weight: slot ``k <= 2 r`` reads row ``j + k - r``, slots
    ``2 r + 1`` and ``2 r + 2`` read rows 0 and ``n - 1`` for columns farther than ``r`` from them."""
    if stencil is None or mode == NONE:
        return tuple(k == radius for k in range(2 * radius + 1)) + (False, False)
    pad = radius - stencil.half
    taps = (0.0,) * pad + stencil.taps + (0.0,) * pad
    slots = [w != 0 for w in reversed(taps)] + [False, False]  # interior rows: the taps reversed
    if mode == CIRCULAR:
        return tuple(slots)  # a circulant matrix: its transpose is the reversed taps, wrapped, at every size
    n = stencil.size
    for i, terms in stencil.rows.items():
        for k, w in terms:
            if w == 0:
                continue
            offset = i - k  # row i is read by column k through slot offset + r
            if abs(offset) <= radius:
                slots[offset + radius] = True
            elif i == 0:
                slots[2 * radius + 1] = True
            elif i == n - 1:
                slots[2 * radius + 2] = True
            else:
                raise Unsupported(f"row {i} along dim {stencil.dim} reads sample {k}, beyond the kernels' reach")
    return tuple(slots)


def _padding_modes(stencil: _ConstantStencil) -> set[int]:
    """Every padding rule that reproduces the stencil's border rows exactly."""
    found = set()
    source, n = stencil.stencil, stencil.size
    rows = stencil.rows
    for name, mode in _PADDED.items():
        if mode == REFLECT and n < 2:
            continue
        candidate = _constant_stencil(padded_stencil(source.dim, source.taps, name, source.divisor), n)
        if candidate.rows == rows:
            found.add(mode)
    return found


def _row_indices(terms: tuple[tuple[int, float], ...], n: int, from_end: bool) -> Optional[Indices]:
    """The samples a border row reads, in slots (at most three terms), or ``None``."""
    if len(terms) > 3 or not all(0 <= k < n for k, _ in terms):
        return None
    indices = [k - n if from_end else k for k, _ in terms]
    own = -1 if from_end else 0
    i0, i1, i2 = indices + [own] * (3 - len(indices))
    return (i0, i1, i2)


def _axis_rule(along: list[_ConstantStencil]) -> tuple[int, Indices, Indices]:
    """The border rule shared by every stencil along one axis: (mode, first-row, last-row samples)."""
    unused = (0, 0, 0)
    if not along:
        return NONE, unused, unused
    common = set.intersection(*(_padding_modes(s) for s in along))
    own = {_PADDED.get(s.stencil.padding or "", NONE) for s in along}
    if common:
        # The stencils' own mode where they share one (several modes may give the same rows).
        return (own.pop() if len(own) == 1 and own <= common else min(common)), unused, unused
    dim, n = along[0].dim, along[0].size
    if any(s.half != 1 for s in along):
        raise Unsupported(f"explicit border rows along dim {dim} are served for three-tap stencils only")
    for s in along:
        if any(terms != _interior(s, i) for i, terms in s.rows.items() if 0 < i < n - 1):
            raise Unsupported(f"border rows along dim {dim} other than rows 0 and n - 1 follow no padding mode")
    first = _row_indices(along[0].rows.get(0, ()), n, from_end=False)
    last = _row_indices(along[0].rows.get(n - 1, ()), n, from_end=True)
    same = all(
        _row_indices(s.rows.get(0, ()), n, from_end=False) == first
        and _row_indices(s.rows.get(n - 1, ()), n, from_end=True) == last
        for s in along
    )
    if first is None or last is None or not same or 0 not in first or -1 not in last:
        raise Unsupported(f"the border rows along dim {dim} follow no padding mode and are not three shared samples")
    return ROWS, first, last


def _interior(stencil: _ConstantStencil, i: int) -> tuple[tuple[int, float], ...]:
    """Row ``i`` as the taps alone would read it."""
    return tuple((i - stencil.half + t, w) for t, w in enumerate(stencil.taps) if w != 0)


def _axis_weights(
    stencil: Optional[_ConstantStencil], radius: int, mode: int, first: Indices, last: Indices
) -> AxisWeights:
    if stencil is None:
        if mode != ROWS:
            return identity(radius)
        # The identity's border rows on the samples the axis reads: weight 1 on the row's own sample.
        return AxisWeights(identity(radius).taps, _one_hot(first.index(0)), _one_hot(last.index(-1)))
    pad = radius - stencil.half
    taps = (0.0,) * pad + stencil.taps + (0.0,) * pad
    if mode != ROWS:
        return AxisWeights(taps)
    rows, n = stencil.rows, stencil.size
    return AxisWeights(taps, _slots(rows.get(0, ())), _slots(rows.get(n - 1, ())))


def _one_hot(slot: int) -> Triple:
    w0, w1, w2 = (1.0 if t == slot else 0.0 for t in range(3))
    return (w0, w1, w2)


def _slots(terms: tuple[tuple[int, float], ...]) -> Triple:
    w0, w1, w2 = [w for _, w in terms] + [0.0] * (3 - len(terms))
    return (w0, w1, w2)
