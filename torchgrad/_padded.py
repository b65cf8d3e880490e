"""The CPU executor of padded stencils: pad once, then every stencil over shifted views of the padded tensor.

The border rows of a :class:`~torchgrad._stencil.Stencil` (a few samples per edge, each a tensor operation
of its own) cost a small image most of its time, and a large one a sizeable share (thin strided rows, one
by one, slab after slab). Here the input (a slab of it) is padded once into a buffer along each axis that
the operator's stencils reach along (the core copied in, then a few slices at each edge copied from the
samples they fold onto, or zeroed), and each chain computes its stencils over views of that buffer with no
border rows at all: along its axis a stencil reads ``k`` shifted views and writes a result ``2 h`` samples
shorter. The adjoint runs the same steps backwards: each stage's transposed taps spread its cotangent over
a longer buffer, and the padding is folded back in place (each edge slice added onto the sample it copied).

The values are those of the border-row executor up to rounding (terms are summed in another order near the
edges), and the non-finite rule of :mod:`torchgrad._stencil` holds unchanged: a zero tap is no term, and
padding reads the samples it copies. It serves real float32 and float64 CPU tensors whose stencils are all
padded (no explicit border rows, no ``"valid"`` rows, no tensor weights), with one padding mode per axis
and at most one stencil per axis in each chain; everything else takes the border-row executor
(:meth:`~torchgrad._separable.Separable.apply`). Each operator runs slab by slab: a slab up to
:data:`FRESH_BYTES` is padded by one :func:`torch.nn.functional.pad` where that pads as torchgrad does, a
larger one into a buffer of the :class:`~torchgrad._separable.Workspace` that the slabs of a call share,
which also holds the intermediates (two slots, which the chains share). Besides them, it holds a padded copy
of the slab: at most about three slabs' worth of scratch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ._stencil import PADDING_MODES, Stencil, _is_zero, source

if TYPE_CHECKING:
    from ._separable import Separable, Workspace

DTYPES = (torch.float32, torch.float64)
"""The dtypes it computes in: half precision goes through the border-row executor, which computes multi-stage
chains and sums of chains in float32 and rounds each result once (:func:`torchgrad._separable._float32_for_chain`)."""

TORCH_MODES = {"reflect": "reflect", "replicate": "replicate", "circular": "circular", "zeros": "constant"}
"""The padding modes that :func:`torch.nn.functional.pad` computes as torchgrad pads (where its reach allows)."""

Axes = dict[int, tuple[str, int]]
"""``{dim: (padding, reach)}``: how far the padded input extends along each axis the stencils reach along."""


@dataclass(frozen=True)
class Stage:
    """One stencil of a chain: its axis, reach, non-zero taps ``(index, weight)`` and divisor."""

    dim: int
    half: int
    terms: tuple[tuple[int, float], ...]
    divisor: float

    @cached_property
    def ordered(self) -> tuple[tuple[int, float], ...]:
        """The terms with a unit weight first, so that the first two share one operation (:func:`_stage`)."""
        return tuple(sorted(self.terms, key=lambda term: term[1] != 1))


@dataclass(frozen=True)
class Chain:
    """One chain of stencils: the output it writes or adds into, its stages, and ``window``: for each axis
    along which it reads less than the padded input (where the padding reaches further than its own stencil
    ``h``), ``(dim, start, 2 h)``: it reads ``2 h`` more samples than the input has, from ``start``."""

    output: int
    window: tuple[tuple[int, int, int], ...]
    stages: tuple[Stage, ...]


@dataclass(frozen=True)
class Plan:
    """What this executor does for one operator, worked out once (:func:`plan`)."""

    axes: Axes
    chains: tuple[Chain, ...]
    n_outputs: int
    torch_mode: Optional[str]
    """The mode of :func:`torch.nn.functional.pad` that pads as ``axes`` say, where one mode pads the last
    ``len(axes)`` axes (up to its reach: ``n - 1`` samples for reflect, ``n`` for circular), else ``None``."""
    widths: tuple[int, ...]
    """The padding of the last axes in :func:`torch.nn.functional.pad`'s order (the last axis first)."""


def usable(op: "Separable", x: Tensor) -> Optional[Plan]:
    """The plan for ``op`` when this executor computes it on the CPU tensor ``x`` (a tensor of the input's
    shape for the adjoint), else ``None`` (see the module's docstring)."""
    if x.dtype not in DTYPES or x.numel() == 0:
        return None
    found = op.padded_plan
    if found is None or any(
        x.dim() < -dim or x.shape[dim] < (2 if mode == "reflect" else 1) for dim, (mode, _) in found.axes.items()
    ):
        return None
    return found


def plan(op: "Separable") -> Optional[Plan]:
    """How this executor computes ``op``, or ``None`` when it cannot (read once per operator:
    :attr:`~torchgrad._separable.Separable.padded_plan`)."""
    axes: Axes = {}
    for chain in op.chains:
        if len({stencil.dim for stencil in chain}) < len(chain):
            return None
        for stencil in chain:
            if not _plain(stencil):
                return None
            mode, reach = axes.get(stencil.dim, (stencil.padding, 0))
            if mode != stencil.padding:
                return None
            axes[stencil.dim] = (mode, max(reach, stencil.half))  # type: ignore[assignment]
    chains = []
    for chain, output in zip(op.chains, op.output_of or range(len(op.chains))):
        along = {stencil.dim: stencil.half for stencil in chain}
        window = tuple(
            (dim, reach - along.get(dim, 0), 2 * along.get(dim, 0))
            for dim, (_, reach) in axes.items()
            if along.get(dim, 0) < reach
        )
        stages = tuple(
            Stage(
                stencil.dim,
                stencil.half,
                tuple((t, float(w)) for t, w in enumerate(stencil.taps) if not _is_zero(w)),  # type: ignore[arg-type]
                float(stencil.divisor),  # type: ignore[arg-type]
            )
            for stencil in chain
        )
        chains.append(Chain(output, window, stages))
    k = len(axes)
    modes = {mode for mode, _ in axes.values()}
    torch_mode = TORCH_MODES.get(modes.pop()) if len(modes) == 1 and sorted(axes) == list(range(-k, 0)) else None
    widths = tuple(axes[dim][1] for dim in range(-1, -k - 1, -1) for _ in range(2)) if torch_mode else ()
    return Plan(axes, tuple(chains), op.n_outputs, torch_mode, widths)


def _plain(stencil: Stencil) -> bool:
    weights = (*stencil.taps, stencil.divisor)
    return (
        stencil.padding in PADDING_MODES
        and stencil.dtype is None
        and all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights)
    )


def _edges(n: int, reach: int, padding: str) -> list[tuple[int, Optional[int]]]:
    """``(padded index, the input sample it copies)`` for the ``reach`` indices past either edge of an axis
    of ``n`` samples (counted from the padded start; ``None``: a zero)."""
    outside = list(range(-reach, 0)) + list(range(n, n + reach))
    return [(k + reach, source(k, n, padding)) for k in outside]


def _core(t: Tensor, axes: Axes, shape: Sequence[int], along: Sequence[int]) -> Tensor:
    """``t`` (padded along ``axes``) narrowed to the input's extent along the axes ``along``."""
    for dim in along:
        t = t.narrow(dim, axes[dim][1], shape[dim])
    return t


FRESH_BYTES = 2**20
"""Slabs up to this size are padded by one :func:`torch.nn.functional.pad` into a fresh tensor where it pads as
torchgrad does (the allocator serves such sizes from memory it holds); larger ones into the workspace's
buffer, which a fresh allocation of their size would fault into memory again at every slab."""


def _padded_input(x: Tensor, found: Plan, workspace: Optional["Workspace"], minus: Optional[Tensor] = None) -> Tensor:
    """``x`` (less ``minus``, when one is given) padded as ``found`` says: see :data:`FRESH_BYTES` (into a
    fresh buffer where there is no ``workspace``)."""
    axes, mode = found.axes, found.torch_mode
    most = {"reflect": -1, "circular": 0}.get(mode or "", 1 << 30)  # F.pad's reach past n
    if (
        mode is None
        or x.numel() * x.element_size() > FRESH_BYTES
        or any(reach > x.shape[dim] + most for dim, (_, reach) in axes.items())
    ):
        shape = _padded_shape(x.shape, axes)
        buffer = x.new_empty(shape) if workspace is None else workspace.buffer("padded", shape, x.dtype)
        return _pad_into(buffer, x, axes, minus)
    if minus is not None:
        x = x - minus
    k = len(axes)
    if x.dim() == k + 2:  # (N, C, *spatial): as F.pad takes it
        return F.pad(x, found.widths, mode=mode)
    padded = F.pad(x.reshape((-1,) + x.shape[-k:]), found.widths, mode=mode)  # the batch as channels
    return padded.reshape(x.shape[:-k] + padded.shape[-k:])


def _pad_into(buffer: Tensor, x: Tensor, axes: Axes, minus: Optional[Tensor] = None) -> Tensor:
    """``x`` (less ``minus``: formed in place, one pass) padded along ``axes`` into ``buffer``, axis by axis
    (each over what the earlier ones padded)."""
    dims = list(axes)
    core = _core(buffer, axes, x.shape, dims)
    if minus is None:
        core.copy_(x)
    else:
        torch.sub(x, minus, out=core)
    for i, dim in enumerate(dims):
        region = _core(buffer, axes, x.shape, dims[i + 1 :])
        mode, reach = axes[dim]
        for k, copied in _edges(x.shape[dim], reach, mode):
            edge = region.narrow(dim, k, 1)
            if copied is None:
                edge.zero_()
            else:
                edge.copy_(region.narrow(dim, copied + reach, 1))
    return buffer


def _fold(total: Tensor, axes: Axes, shape: Sequence[int]) -> Tensor:
    """The adjoint of :func:`_pad_into`, in place in ``total``: axis by axis in reverse, each edge slice's
    cotangent added onto the sample it copies; the input's extent of ``total`` is the result."""
    dims = list(axes)
    for i in reversed(range(len(dims))):
        dim = dims[i]
        region = _core(total, axes, shape, dims[i + 1 :])
        mode, reach = axes[dim]
        for k, copied in _edges(shape[dim], reach, mode):
            if copied is not None:
                region.narrow(dim, copied + reach, 1).add_(region.narrow(dim, k, 1))
    return _core(total, axes, shape, dims)


def _padded_shape(shape: Sequence[int], axes: Axes) -> list[int]:
    padded = list(shape)
    for dim, (_, reach) in axes.items():
        padded[dim] += 2 * reach
    return padded


def _window(t: Tensor, chain: Chain, like: Tensor) -> Tensor:
    for dim, start, extra in chain.window:
        t = t.narrow(dim, start, like.shape[dim] + extra)
    return t


def apply(
    x: Tensor,
    found: Plan,
    out: Sequence[Optional[Tensor]],
    workspace: Optional["Workspace"],
    minus: Optional[Tensor] = None,
) -> list[Tensor]:
    """``A x`` (``A (x - minus)`` when ``minus`` is given), ``found`` from :func:`usable`: output ``o`` written
    into ``out[o]`` (of ``x``'s shape), or a fresh tensor where that is ``None``; the padded input and the
    intermediates in ``workspace``'s buffers, or fresh where there is none (a small input in one call: the
    allocator serves such sizes from memory it holds). Returns the outputs."""
    padded = _padded_input(x, found, workspace, minus)
    results = list(out)
    written = [False] * found.n_outputs
    for chain in found.chains:
        o = chain.output
        y = _window(padded, chain, x)
        for s, stage in enumerate(chain.stages):
            n = x.shape[stage.dim]
            if s < len(chain.stages) - 1:
                shape = list(y.shape)
                shape[stage.dim] = n
                # the chains run one after another: two slots serve them all
                y = _stage(
                    y, stage, n, None if workspace is None else workspace.buffer(("stage", s % 2), shape, x.dtype)
                )
            elif written[o]:  # a later chain of a summed output adds into it
                for t, w in stage.terms:
                    results[o].add_(y.narrow(stage.dim, t, n), alpha=w / stage.divisor)  # type: ignore[union-attr]
            else:
                results[o] = _stage(y, stage, n, results[o])
                written[o] = True
    return results  # type: ignore[return-value]  # every output has a chain


def _stage(y: Tensor, stage: Stage, n: int, out: Optional[Tensor] = None) -> Tensor:
    """The stage's stencil over ``y`` (``n`` samples along its axis) into ``out``, or a fresh tensor, in as few
    passes as its terms allow: a unit weight and the next term in one (a difference, or an add with a factor),
    one more per term, one for the divisor."""
    dim, terms = stage.dim, stage.ordered
    if not terms:
        return (
            torch.zeros_like(y.narrow(dim, 0, n), memory_format=torch.contiguous_format) if out is None else out.zero_()
        )
    t0, w0 = terms[0]
    first = y.narrow(dim, t0, n)
    if w0 == 1 and len(terms) > 1:
        t1, w1 = terms[1]
        second = y.narrow(dim, t1, n)
        result = torch.sub(first, second, out=out) if w1 == -1 else torch.add(first, second, alpha=w1, out=out)
        rest = terms[2:]
    else:
        if w0 != 1:
            result = torch.mul(first, w0, out=out)
        else:
            result = first.clone(memory_format=torch.contiguous_format) if out is None else out.copy_(first)
        rest = terms[1:]
    for t, w in rest:
        result.add_(y.narrow(dim, t, n), alpha=w)
    if stage.divisor != 1:
        result.div_(stage.divisor)
    return result


def adjoint(grads: Sequence[Optional[Tensor]], found: Plan, out: Tensor, workspace: "Workspace") -> None:
    """``A^T g`` written into ``out`` (``None`` cotangents are zero; the given ones of ``out``'s shape and
    dtype), ``found`` from :func:`usable`."""
    total = workspace.buffer("padded adjoint", _padded_shape(out.shape, found.axes), out.dtype).zero_()
    for chain in found.chains:
        y = grads[chain.output]
        if y is None:
            continue
        for s, stage in enumerate(reversed(chain.stages)):
            n = y.shape[stage.dim]
            if s < len(chain.stages) - 1:
                grown = list(y.shape)
                grown[stage.dim] = n + 2 * stage.half
                spread = workspace.buffer(("adjoint stage", s % 2), grown, out.dtype).zero_()
            else:
                spread = _window(total, chain, out)
            for t, w in stage.terms:
                spread.narrow(stage.dim, t, n).add_(y, alpha=w / stage.divisor if stage.divisor != 1 else w)
            y = spread
    out.copy_(_fold(total, found.axes, out.shape))
