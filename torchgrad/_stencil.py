"""Stencils of up to seven taps along one axis, and their exact adjoints.

A :class:`Stencil` maps a tensor to one of the same shape along one axis of size ``n``. Its ``k``
taps (``k`` odd, at most :data:`MAX_TAPS`; ``h = k // 2``) are centred: tap ``t`` multiplies
``x[i - h + t]``::

    y[i] = sum_t w_t[i] * x[i - h + t] / divisor        interior rows: every tap inside the axis
    rows near the edges: border rows, each a short weighted sum of samples of x

The taps are scalars (a uniform stencil) or, for three taps, tensors with one value per interior row
(``torch.gradient``'s non-uniform grids). The border rows say how the stencil meets the edge: a
padding mode (:data:`PADDING_MODES`) pads the input once, as a convolution pads it, and folds each
out-of-range tap back onto a sample of ``x``; ``torch.gradient`` puts explicit one-sided differences
there. A uniform stencil holds no size: its border rows count samples from the start (``k >= 0``) or
from the end (``k < 0``: ``-1`` is the last sample), and the size is read from the tensor at each
call, so one description serves every shape (under ``torch.compile(dynamic=True)``, a symbolic size;
only axes shorter than a few samples, :meth:`Stencil.min_size`, are specialised).

Padding modes, and what they do where the kernel reaches past a short axis (sizes 1..7 with 7 taps):

- ``reflect`` (``numpy.pad`` ``"reflect"``, OpenCV ``BORDER_REFLECT_101``): ``x[-j] = x[j]``; it
  reflects again and again (period ``2 (n - 1)``) where the reach exceeds ``n - 1``, as ``numpy.pad``
  does (``torch.nn.functional.pad`` refuses that); needs ``n >= 2``.
- ``symmetric`` (``numpy.pad`` ``"symmetric"``, OpenCV ``BORDER_REFLECT``, SciPy's ``"reflect"``):
  ``x[-j] = x[j - 1]``; repeated with period ``2 n``; any ``n >= 1`` (``n = 1`` copies the sample).
- ``replicate``: the edge sample, any ``n``. ``zeros``: zero, any ``n``.
- ``circular``: ``x[j mod n]``, wrapping as many times as needed, any ``n``.
- ``valid`` (internal, ``tf.image.image_gradients``): a row whose non-zero taps reach past the edge is zero.

Every operator of torchgrad is a chain of such stencils, so this file is where the arithmetic lives.
The adjoint ``A^T g`` is computed directly (never by autograd): the interior columns with the
transposed taps, the few columns next to either edge term by term, so padding of any mode is
handled exactly, without copies of the input.

Eager code writes results into preallocated tensors through ``out=``; under ``torch.compile`` the
same arithmetic is written with plain tensor operations, which Dynamo traces and Inductor fuses.

Non-finite values follow the taps. Each term ``w * x[k]`` of a row reads one sample; a zero scalar tap
(the centre of ``[-1, 0, 1]``) is no term, so its sample is never read. An output is therefore
non-finite exactly when one of its terms reads a non-finite sample (in a chain of stencils, when a
path of terms leads to one), barring overflow: exactly where :meth:`Stencil.support` applied to an
indicator of the non-finite samples is non-zero, the same notion of reading that the losses' masks
use. A convolution multiplies its zero taps too (``0 * NaN = NaN``) and turns a superset of outputs
non-finite: its whole window. Padding reads the samples it copies, one read per tap, so where two
taps fold onto one sample (reflect padding's difference in the border row) a non-finite value
propagates although the weights cancel, as in a padded convolution. Tensor taps (coordinate grids)
are terms even where they are zero: all three samples are read, as ``torch.gradient`` reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

Weight = Union[int, float, complex, Tensor]

PADDING_MODES = ("reflect", "replicate", "zeros", "circular", "symmetric")
MAX_TAPS = 7


def _is_zero(w: Weight) -> bool:
    return not isinstance(w, Tensor) and w == 0


def _is_one(w: Weight) -> bool:
    return not isinstance(w, Tensor) and w == 1


def _conj(w: Weight) -> Weight:
    if isinstance(w, Tensor):
        return w.conj() if w.is_complex() else w
    if isinstance(w, complex):
        return w.conjugate()
    return w


def _scaled(t: Tensor, w: Weight) -> Tensor:
    return t if _is_one(w) else w * t


def _weighted_sum(terms: Sequence[tuple[Weight, Tensor]], divisor: Weight) -> Optional[Tensor]:
    """``sum(w * t) / divisor`` with plain operations; ``None`` for no terms."""
    total: Optional[Tensor] = None
    for w, t in terms:
        total = _scaled(t, w) if total is None else total + _scaled(t, w)
    if total is not None and not _is_one(divisor):
        total = total / divisor
    return total


def _weighted_sum_into(out: Tensor, terms: Sequence[tuple[Weight, Tensor]], divisor: Weight) -> None:
    """``out = sum(w * t) / divisor`` in as few passes over memory as possible."""
    terms = [(w, t) for w, t in terms if not _is_zero(w)]
    if not terms:
        out.zero_()
        return
    # A unit weight first lets the first two terms share one kernel (add with alpha, or sub).
    terms.sort(key=lambda term: not _is_one(term[0]))
    (w0, t0), rest = terms[0], terms[1:]
    w1 = rest[0][0] if rest else None
    if rest and _is_one(w0) and w1 is not None and not isinstance(w1, Tensor):
        t1 = rest.pop(0)[1]
        if w1 == -1:
            torch.sub(t0, t1, out=out)
        else:
            torch.add(t0, t1, alpha=w1, out=out)
    elif _is_one(w0):
        out.copy_(t0)
    else:
        torch.mul(t0, w0, out=out)
    for w, t in rest:
        if isinstance(w, Tensor):
            out.addcmul_(t, w)
        else:
            out.add_(t, alpha=w)
    if not _is_one(divisor):
        out.div_(divisor)  # type: ignore[arg-type]  # torch's stubs omit complex divisors, which div_ takes


def _accumulate_into(out: Tensor, terms: Sequence[tuple[Weight, Tensor]], divisor: Weight) -> None:
    """``out += sum(w * t) / divisor``, one pass per term."""
    for w, t in terms:
        if _is_zero(w):
            continue
        if isinstance(w, Tensor):
            out.addcmul_(t, w if _is_one(divisor) else w / divisor)
        else:
            out.add_(t, alpha=w if _is_one(divisor) else w / divisor)  # type: ignore[arg-type]  # w is a scalar here


@dataclass(frozen=True)
class Row:
    """One border row: ``sum(w * x[k] for k, w in terms) / divisor`` (zero when ``terms`` is empty).

    ``k >= 0`` counts from the start of the axis, ``k < 0`` from its end (``-1``: the last sample).
    """

    terms: tuple[tuple[int, Weight], ...]
    divisor: Weight = 1


def source(k: int, n: int, padding: str) -> Optional[int]:
    """The sample that index ``k`` of a padded axis of ``n`` samples copies; ``None``: a zero (or, for
    ``"valid"``, a row that is zero). The one padding rule of the CPU executors: the border rows of
    :func:`padded_stencil`, the rows of short axes (:meth:`Stencil.row`), the edges of :mod:`torchgrad._padded`."""
    if 0 <= k < n:
        return k
    if padding == "replicate":
        return 0 if k < 0 else n - 1
    if padding == "circular":
        return k % n
    if padding == "reflect":
        k %= 2 * (n - 1)
        return k if k < n else 2 * (n - 1) - k
    if padding == "symmetric":
        k %= 2 * n
        return k if k < n else 2 * n - 1 - k
    return None


@dataclass(frozen=True)
class Stencil:
    """A stencil of ``len(taps)`` centred taps along ``dim`` (negative) of a tensor of any size.

    ``head`` holds rows ``0, 1, ...`` and ``tail`` rows ``..., n - 2, n - 1``; the rows between follow
    the taps. ``padding`` (a mode of :data:`PADDING_MODES`, or ``"valid"``) says how ``head`` and
    ``tail`` were folded, so that axes shorter than :meth:`min_size` get their rows from it; ``None``
    for explicit rows (which such axes then take first ``head``, then ``tail``). Build padded stencils
    with :func:`padded_stencil`. ``dtype``: the result dtype (the input's when ``None``).
    """

    dim: int
    taps: tuple[Weight, ...]
    divisor: Weight = 1
    head: tuple[Row, ...] = ()
    tail: tuple[Row, ...] = ()
    padding: Optional[str] = None
    dtype: Optional[torch.dtype] = None

    def __post_init__(self) -> None:
        if len(self.taps) % 2 != 1 or len(self.taps) > MAX_TAPS:
            raise ValueError(f"a stencil has an odd number of taps up to {MAX_TAPS}, got {len(self.taps)}")

    @property
    def half(self) -> int:
        """``h``: the taps reach ``h`` samples to either side."""
        return len(self.taps) // 2

    def min_size(self) -> int:
        """The shortest axis on which ``head`` and ``tail`` serve as given (shorter axes get every row
        explicitly, for their exact size): the border rows and the bands of columns that the adjoint
        computes term by term stay apart, with at least one interior column between them."""
        h, H, T = self.half, len(self.head), len(self.tail)
        reads = [k for row in self.head + self.tail for k, _ in row.terms]
        bh, bt = self._bands(reads)
        return max(2 * h + 1, bh + bt + 1, bh + h + T, bt + h + H)

    def _bands(self, reads: Sequence[int]) -> tuple[int, int]:
        """How many columns at the start and at the end the adjoint computes term by term: those that
        a border row reads, and those that read a border row through the taps."""
        h, H, T = self.half, len(self.head), len(self.tail)
        bh = max([H + h] + [k + 1 for k in reads if k >= 0])
        bt = max([T + h] + [-k for k in reads if k < 0])
        return bh, bt

    def _rows(self, n: Union[int, torch.SymInt]) -> tuple[tuple[Row, ...], tuple[Row, ...], bool]:
        """``(head, tail, regular)`` for an axis of ``n`` samples: the stencil's own rows and ``True`` when
        ``n`` reaches :meth:`min_size` (a guard on a symbolic ``n``, not a specialisation), else every
        row explicitly (in ``head``) and ``False``."""
        if self.padding == "reflect" and n < 2:
            raise ValueError(f"reflect padding needs at least 2 samples along dim {self.dim}, got {n}")
        if n >= self.min_size():
            return self.head, self.tail, True
        size = int(n)
        return tuple(self.row(i, size) for i in range(size)), (), False

    def row(self, i: int, n: int) -> Row:
        """Row ``i`` on an axis of ``n`` samples, as a :class:`Row` reading samples counted from the start."""
        if self.padding is not None:
            terms = []
            for t, w in enumerate(self.taps):
                if _is_zero(w):
                    continue
                k = source(i - self.half + t, n, self.padding)
                if k is None:
                    if self.padding == "valid":
                        return Row((), self.divisor)
                    continue
                terms.append((k, self._tap(t, i, n)))
            return Row(tuple(terms), self.divisor)
        H, T = len(self.head), len(self.tail)
        if i < H or i >= n - T:
            row = self.head[i] if i < H else self.tail[i - n + T]
            return Row(tuple((k if k >= 0 else n + k, w) for k, w in row.terms), row.divisor)
        terms = [(i - self.half + t, self._tap(t, i, n)) for t, w in enumerate(self.taps) if not _is_zero(w)]
        return Row(tuple(terms), self.divisor)

    def _tap(self, t: int, i: int, n: Union[int, torch.SymInt]) -> Weight:
        """The weight that interior row ``i`` (``i < 0``: counted from the end) gives to ``x[i - h + t]``."""
        w = self.taps[t]
        if not isinstance(w, Tensor):
            return w
        return w[(i if i >= 0 else n + i) - self.half]

    def _tap_slice(self, t: int, start: int, length: Union[int, torch.SymInt]) -> Weight:
        """The weights tap ``t`` gives to interior rows ``h + start .. h + start + length - 1``."""
        w = self.taps[t]
        return w.narrow(0, start, length) if isinstance(w, Tensor) else w

    def apply(self, x: Tensor, out: Optional[Tensor] = None, traceable: bool = False) -> Tensor:
        """``A x``, written into ``out`` when one is given; ``traceable`` uses plain tensor code."""
        dim, h = self.dim, self.half
        n = x.shape[dim]
        dtype = self.dtype or x.dtype
        head, tail, regular = self._rows(n)
        H, T = len(head), len(tail)
        m = n - H - T  # interior rows H .. n - T - 1: at least one when regular, none otherwise
        rows = [self._sum_row(x, row, n, dtype) for row in head + tail]
        taps = [t for t, w in enumerate(self.taps) if regular and not _is_zero(w)]
        bulk = [(self._tap_slice(t, H - h, m), x.narrow(dim, H - h + t, m)) for t in taps]
        if traceable:
            parts = rows[:H]
            if regular:
                total = _weighted_sum(bulk, self.divisor)
                parts.append(torch.zeros_like(x.narrow(dim, H, m), dtype=dtype) if total is None else total.to(dtype))
                parts += rows[H:]
            if not parts:
                return torch.empty_like(x, dtype=dtype)
            return torch.cat(parts, dim) if len(parts) > 1 else parts[0]
        if out is None:
            out = torch.empty_like(x, dtype=dtype)
        if regular:
            _weighted_sum_into(out.narrow(dim, H, m), bulk, self.divisor)
        for i, row in enumerate(rows):
            out.narrow(dim, i if i < H else n - H - T + i, 1).copy_(row)
        return out

    def _sum_row(self, x: Tensor, row: Row, n: Union[int, torch.SymInt], dtype: torch.dtype) -> Tensor:
        terms = [(w, x.narrow(self.dim, k if k >= 0 else n + k, 1)) for k, w in row.terms]
        total = _weighted_sum(terms, row.divisor)
        if total is None:
            return torch.zeros_like(x.narrow(self.dim, 0, 1), dtype=dtype)
        return total.to(dtype)

    def support(self) -> "Stencil":
        """The same stencil with every weight replaced by its absolute value (divisors by 1).

        Applied to a non-negative tensor it is zero exactly where ``apply`` reads only zeros: the
        test of which outputs read only valid samples.
        """

        def magnitude(w: Weight) -> Weight:
            return w.abs() if isinstance(w, Tensor) else abs(w)

        def rows(rows: tuple[Row, ...]) -> tuple[Row, ...]:
            return tuple(Row(tuple((k, magnitude(w)) for k, w in row.terms)) for row in rows)

        taps = tuple(magnitude(w) for w in self.taps)
        return Stencil(self.dim, taps, 1, rows(self.head), rows(self.tail), self.padding)

    def adjoint(
        self, g: Tensor, out: Optional[Tensor] = None, accumulate: bool = False, traceable: bool = False
    ) -> Tensor:
        """``A^T g`` (the conjugate transpose for complex weights), in ``g``'s dtype.

        With ``accumulate``, ``A^T g`` is added to ``out`` instead of overwriting it; ``traceable``
        uses plain tensor code (and takes neither).
        """
        dim, h = self.dim, self.half
        n = g.shape[dim]
        head, tail, regular = self._rows(n)
        # Columns next to either edge gather their terms one by one: they meet the border rows, whose
        # samples (padding folds, one-sided differences, circular wraps) all lie in these bands.
        bh, bt = self._bands([k for row in head + tail for k, _ in row.terms]) if regular else (n, 0)
        edges = [self._column(g, j, n, head, tail, regular) for j in list(range(bh)) + list(range(-bt, 0))]
        m = n - bh - bt  # interior columns bh .. n - bt - 1 read interior rows only: at least one when regular
        divisor = _conj(self.divisor)
        taps = [t for t, w in enumerate(self.taps) if regular and not _is_zero(w)]
        interior = [(_conj(self._tap_slice(t, bh - t, m)), g.narrow(dim, bh + h - t, m)) for t in taps]
        if traceable:
            parts = edges[:bh]
            if regular:
                bulk = _weighted_sum(interior, divisor)
                parts.append(torch.zeros_like(g.narrow(dim, bh, m)) if bulk is None else bulk)
                parts += edges[bh:]
            if not parts:
                return torch.empty_like(g)
            return torch.cat(parts, dim) if len(parts) > 1 else parts[0]
        if out is None:
            out = torch.empty_like(g)
        if regular and accumulate:
            _accumulate_into(out.narrow(dim, bh, m), interior, divisor)
        elif regular:
            _weighted_sum_into(out.narrow(dim, bh, m), interior, divisor)
        for c, column in enumerate(edges):
            edge = out.narrow(dim, c if c < bh else n - bh - bt + c, 1)
            edge.add_(column) if accumulate else edge.copy_(column)
        return out

    def _column(
        self,
        g: Tensor,
        j: int,
        n: Union[int, torch.SymInt],
        head: tuple[Row, ...],
        tail: tuple[Row, ...],
        regular: bool,
    ) -> Tensor:
        """Column ``j`` (``j < 0``: counted from the end) of ``A^T g``: every row of ``A`` that reads ``x[j]``.

        Only a regular layout has interior rows; its bands keep them clear of the far end."""
        dim, h, H, T = self.dim, self.half, len(head), len(tail)
        terms: list[tuple[Weight, Tensor]] = []
        for t in range(len(self.taps) if regular else 0):
            i = j + h - t  # the interior row that reads x[j] with tap t, counted from the same end as j
            if _is_zero(self.taps[t]) or not (H <= i if j >= 0 else i < -T):
                continue
            w = _conj(self._tap(t, i, n))
            w = w / _conj(self.divisor) if not _is_one(self.divisor) else w
            terms.append((w, g.narrow(dim, i if i >= 0 else n + i, 1)))
        for r, row in enumerate(head + tail):
            for k, w in row.terms:
                if k == j:
                    w = w / row.divisor if not _is_one(row.divisor) else w
                    terms.append((_conj(w), g.narrow(dim, r if r < H else n - H - T + r, 1)))
        total = _weighted_sum(terms, 1)
        return torch.zeros_like(g.narrow(dim, 0, 1)) if total is None else total.to(g.dtype)


def padded_stencil(dim: int, taps: tuple[Weight, ...], padding: str, divisor: Weight = 1) -> Stencil:
    """The stencil ``taps`` along ``dim`` with the border handled as ``padding`` pads the input.

    ``padding`` is one of :data:`PADDING_MODES`, or ``"valid"``: a border row that would read past
    the edge is zero (``tf.image.image_gradients``). ``reflect`` needs 2 samples along ``dim``.
    Border rows are the rows whose non-zero taps reach past the edge. Stencils of number weights are
    built once (every call of an operator asks for the same few).
    """
    if padding not in PADDING_MODES + ("valid",):
        raise ValueError(f"padding must be one of {PADDING_MODES + ('valid',)}, got {padding!r}")
    taps = tuple(taps)
    if torch.compiler.is_compiling() or isinstance(divisor, Tensor) or any(isinstance(w, Tensor) for w in taps):
        return _padded_stencil(dim, taps, padding, divisor)  # (Dynamo traces through caches, and warns)
    # The types are part of the key: 1 and 1.0 are equal, but the stencils they make are not the same.
    types = tuple(type(w).__name__ for w in (*taps, divisor))
    return _cached_stencil(dim, taps, padding, divisor, types)


@lru_cache(maxsize=1024)
def _cached_stencil(
    dim: int, taps: tuple[Weight, ...], padding: str, divisor: Weight, _types: tuple[str, ...]
) -> Stencil:
    return _padded_stencil(dim, taps, padding, divisor)


def _padded_stencil(dim: int, taps: tuple[Weight, ...], padding: str, divisor: Weight) -> Stencil:
    h = len(taps) // 2
    used = [t for t, w in enumerate(taps) if not _is_zero(w)]
    before = max(0, h - used[0]) if used else 0  # rows whose taps reach before the start
    after = max(0, used[-1] - h) if used else 0
    n = 4 * MAX_TAPS  # the rows hold no size: folded on an axis so long that none reads past its middle

    def row(i: int, from_end: bool) -> Row:
        """Row ``i``, counted from the start or from the end, reading samples counted from the nearer end."""
        terms = []
        for t in used:
            k = source(i - h + t + (n if from_end else 0), n, padding)
            if k is None:
                if padding == "valid":
                    return Row((), divisor)
                continue
            terms.append((k if k < n // 2 else k - n, taps[t]))
        return Row(tuple(terms), divisor)

    head = tuple(row(i, False) for i in range(before))
    tail = tuple(row(i, True) for i in range(-after, 0))
    return Stencil(dim, tuple(taps), divisor, head, tail, padding)
