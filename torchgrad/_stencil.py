"""Three-tap stencils along one axis, and their exact adjoints.

A :class:`Stencil` maps a tensor to one of the same shape along one axis of size ``n``::

    y[i] = (w0[i] * x[i-1] + w1[i] * x[i] + w2[i] * x[i+1]) / divisor      for 0 < i < n-1
    y[0], y[n-1]: explicit rows, each a short weighted sum of samples of x

The interior taps are scalars (a uniform stencil) or tensors with one value per interior row (a
non-uniform grid). The two border rows say how the stencil meets the edge: a padding mode (reflect,
replicate, zeros, circular) folds the out-of-range taps back onto samples of ``x``, and
``torch.gradient`` puts its one-sided differences there.

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
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

Weight = Union[int, float, complex, Tensor]

PADDING_MODES = ("reflect", "replicate", "zeros", "circular")


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
    """One border row: ``sum(w * x[k] for k, w in terms) / divisor`` (zero when ``terms`` is empty)."""

    terms: tuple[tuple[int, Weight], ...]
    divisor: Weight = 1


@dataclass(frozen=True)
class Stencil:
    """A three-tap stencil along ``dim`` (negative) of a tensor of size ``size`` there."""

    dim: int
    size: int
    taps: tuple[Weight, Weight, Weight]
    divisor: Weight
    first: Row
    last: Row
    dtype: Optional[torch.dtype] = None

    def _tap(self, t: int, row: int) -> Weight:
        """The weight that interior row ``row`` gives to ``x[row - 1 + t]``."""
        w = self.taps[t]
        return w[row - 1] if isinstance(w, Tensor) else w

    def _tap_slice(self, t: int, start: int, length: int) -> Weight:
        w = self.taps[t]
        return w[start : start + length] if isinstance(w, Tensor) else w

    def apply(self, x: Tensor, out: Optional[Tensor] = None, traceable: bool = False) -> Tensor:
        """``A x``, written into ``out`` when one is given; ``traceable`` uses plain tensor code."""
        n, dim = self.size, self.dim
        dtype = self.dtype or x.dtype
        # A border row that is just the interior formula joins the bulk; the others are computed alone.
        lo = 0 if n > 1 and self._regular(0, self.first) else 1
        hi = n - 1 if n > 1 and self._regular(n - 1, self.last) else n - 2
        m = hi - lo + 1
        head = self._row(x, self.first, dtype) if lo == 1 else None
        tail = self._row(x, self.last, dtype) if hi == n - 2 and n > 1 else None
        bulk = [(w, x.narrow(dim, lo - 1 + t, m)) for t, w in enumerate(self.taps) if not _is_zero(w)] if m > 0 else []
        if traceable:
            parts = [] if head is None else [head]
            if m > 0:
                total = _weighted_sum(bulk, self.divisor)
                parts.append(torch.zeros_like(x.narrow(dim, lo, m), dtype=dtype) if total is None else total.to(dtype))
            parts += [] if tail is None else [tail]
            return torch.cat(parts, dim) if len(parts) > 1 else parts[0]
        if out is None:
            out = torch.empty_like(x, dtype=dtype)
        if m > 0:
            _weighted_sum_into(out.narrow(dim, lo, m), bulk, self.divisor)
        if head is not None:
            out.narrow(dim, 0, 1).copy_(head)
        if tail is not None:
            out.narrow(dim, n - 1, 1).copy_(tail)
        return out

    def support(self) -> "Stencil":
        """The same stencil with every weight replaced by its absolute value (divisors by 1).

        Applied to a non-negative tensor it is zero exactly where ``apply`` reads only zeros: the
        test of which outputs read only valid samples.
        """

        def magnitude(w: Weight) -> Weight:
            return w.abs() if isinstance(w, Tensor) else abs(w)

        first, last = (Row(tuple((k, magnitude(w)) for k, w in row.terms)) for row in (self.first, self.last))
        taps = tuple(magnitude(w) for w in self.taps)
        return Stencil(self.dim, self.size, taps, 1, first, last)  # type: ignore[arg-type]

    def _regular(self, i: int, row: Row) -> bool:
        """Whether border row ``i`` is the interior formula, reading only samples inside the axis."""
        scalars = all(not isinstance(w, Tensor) for w in (*self.taps, self.divisor, row.divisor))
        expected = tuple((i - 1 + t, w) for t, w in enumerate(self.taps) if not _is_zero(w))
        return bool(
            scalars
            and row.divisor == self.divisor
            and row.terms == expected
            and all(0 <= k < self.size for k, _ in expected)
        )

    def _row(self, x: Tensor, row: Row, dtype: torch.dtype) -> Tensor:
        total = _weighted_sum([(w, x.narrow(self.dim, k, 1)) for k, w in row.terms], row.divisor)
        if total is None:
            return torch.zeros_like(x.narrow(self.dim, 0, 1), dtype=dtype)
        return total.to(dtype)

    def adjoint(
        self, g: Tensor, out: Optional[Tensor] = None, accumulate: bool = False, traceable: bool = False
    ) -> Tensor:
        """``A^T g`` (the conjugate transpose for complex weights), in ``g``'s dtype.

        With ``accumulate``, ``A^T g`` is added to ``out`` instead of overwriting it; ``traceable``
        uses plain tensor code (and takes neither).
        """
        n, dim = self.size, self.dim
        # Columns within three samples of an edge gather their terms one by one: they meet the border
        # rows, whose samples (padding folds, one-sided differences) all lie in that band.
        near = sorted({j for j in (0, 1, 2, n - 3, n - 2, n - 1) if 0 <= j < n})
        edges = {j: self._column(g, j) for j in near}
        m = n - 6  # columns 3 .. n-4 read interior rows only
        interior = []
        if m > 0:
            divisor = _conj(self.divisor)
            interior = [
                (_conj(self._tap_slice(2, 1, m)), g.narrow(dim, 2, m)),
                (_conj(self._tap_slice(1, 2, m)), g.narrow(dim, 3, m)),
                (_conj(self._tap_slice(0, 3, m)), g.narrow(dim, 4, m)),
            ]
        if traceable:
            head = [edges[j] for j in near if j < 3]
            tail = [edges[j] for j in near if j >= 3]
            middle = []
            if interior:
                bulk = _weighted_sum([(w, t) for w, t in interior if not _is_zero(w)], divisor)
                middle = [bulk if bulk is not None else torch.zeros_like(interior[0][1])]
            parts = head + middle + tail
            return torch.cat(parts, dim) if len(parts) > 1 else parts[0]
        if out is None:
            out = torch.empty_like(g)
        if interior and accumulate:
            _accumulate_into(out.narrow(dim, 3, m), interior, divisor)
        elif interior:
            _weighted_sum_into(out.narrow(dim, 3, m), interior, divisor)
        for j, column in edges.items():
            edge = out.narrow(dim, j, 1)
            edge.add_(column) if accumulate else edge.copy_(column)
        return out

    def _column(self, g: Tensor, j: int) -> Tensor:
        """Column ``j`` of ``A^T g``: every row of ``A`` that reads ``x[j]``, weighted."""
        n, dim = self.size, self.dim
        terms: list[tuple[Weight, Tensor]] = []
        for i in (j - 1, j, j + 1):
            if 0 < i < n - 1:
                w = self._tap(j - i + 1, i)
                if not _is_zero(w):
                    terms.append(
                        (_conj(w) / _conj(self.divisor) if not _is_one(self.divisor) else _conj(w), g.narrow(dim, i, 1))
                    )
        border = [(0, self.first)] if n == 1 else [(0, self.first), (n - 1, self.last)]
        for i, row in border:
            for k, w in row.terms:
                if k == j:
                    w = w / row.divisor if not _is_one(row.divisor) else w
                    terms.append((_conj(w), g.narrow(dim, i, 1)))
        total = _weighted_sum(terms, 1)
        return torch.zeros_like(g.narrow(dim, j, 1)) if total is None else total.to(g.dtype)


def padded_stencil(dim: int, size: int, taps: tuple[int, int, int], padding: str, divisor: Weight = 1) -> Stencil:
    """The stencil ``taps`` along ``dim`` with the border handled as ``padding`` pads the input.

    ``padding`` is one of :data:`PADDING_MODES`, or ``"valid"``: a border row that would read past
    the edge is zero (``tf.image.image_gradients``). ``reflect`` needs ``size >= 2``.
    """

    def source(k: int) -> Optional[int]:
        if 0 <= k < size:
            return k
        if padding == "replicate":
            return 0 if k < 0 else size - 1
        if padding == "circular":
            return k % size
        if padding == "reflect":
            return -k if k < 0 else 2 * (size - 1) - k
        return None

    def row(i: int) -> Row:
        terms = []
        for t, w in enumerate(taps):
            if _is_zero(w):
                continue
            k = source(i - 1 + t)
            if k is None:
                if padding == "valid":
                    return Row(())
                continue
            terms.append((k, w))
        return Row(tuple(terms), divisor)

    return Stencil(dim, size, taps, divisor, row(0), row(size - 1))
