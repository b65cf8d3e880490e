"""The CPU executor for small inputs: pad once, then every stencil over the padded tensor.

On a small image the slab executor of :class:`~torchgrad._separable.Separable` spends its time in Python
and in tiny tensor operations (border rows one by one), not in memory. Here the input is padded once
along each axis that the operator's stencils reach along (one gather of the folded indices per axis, or
zeros), and each chain then computes its stencils over the padded tensor with no border rows at all:
along its axis a stencil reads ``k`` shifted views and writes a result ``2 h`` samples shorter. The
adjoint runs the same steps backwards: each stage's transposed taps spread its cotangent over a
longer buffer, and the padding is folded back by one ``index_add_`` per axis (the gather's adjoint).

The values are those of the slab executor up to rounding (terms are summed in another order near the
edges), and the non-finite rule of :mod:`torchgrad._stencil` holds unchanged: a zero tap is no term,
and padding reads the samples it copies. It serves real float32 and float64 inputs of at most
:data:`SMALL_BYTES` whose stencils are all padded (no explicit border rows, no ``"valid"`` rows, no
tensor weights), with one padding mode per axis and at most one stencil per axis in each chain;
everything else takes the slab executor.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ._stencil import PADDING_MODES, Stencil, _accumulate_into, _is_zero, _weighted_sum_into, source

if TYPE_CHECKING:
    from ._separable import Separable

SMALL_BYTES = 512 * 2**10
"""The largest input (in bytes) that this executor takes. Below it, the slab executor's fixed cost per call
(tens of small operations per stencil) outweighs the extra pass over memory that padding costs; the input,
its padded copy and an intermediate then fit in a core's L2 cache (1 MiB on the machine it was measured on,
where the two executors break even between 1 and 1.2 MiB: ``benchmarks/bench_host.py``)."""

DTYPES = (torch.float32, torch.float64)


Axes = dict[int, tuple[str, int]]
"""``{dim: (padding, reach)}``: how far the padded input extends along each axis the stencils reach along."""


@dataclass(frozen=True)
class Stage:
    """One stencil of a chain: its axis, reach, non-zero taps ``(index, weight)`` and divisor."""

    dim: int
    half: int
    terms: tuple[tuple[int, float], ...]
    divisor: float


@dataclass(frozen=True)
class Chain:
    """One chain of stencils: the output it writes or adds into, its stages, and ``window``: the
    ``(dim, start)`` of each axis along which it reads less than the padded input (``2 h`` more samples
    than the input has, where the padding reaches further than its own stencil ``h``, or none)."""

    output: int
    window: tuple[tuple[int, int, int], ...]
    stages: tuple[Stage, ...]


@dataclass(frozen=True)
class Plan:
    """What this executor does for one operator, worked out once (:func:`plan`)."""

    axes: Axes
    chains: tuple[Chain, ...]
    n_outputs: int


def usable(op: "Separable", x: Tensor) -> Optional[Plan]:
    """The plan for ``op`` when this executor computes it on the CPU tensor ``x`` (a tensor of the input's
    shape for the adjoint), else ``None`` (see the module's docstring)."""
    if x.dtype not in DTYPES or x.numel() == 0 or x.numel() * x.element_size() > SMALL_BYTES:
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
                tuple((t, w) for t, w in enumerate(stencil.taps) if not _is_zero(w)),  # type: ignore[misc]
                stencil.divisor,  # type: ignore[arg-type]
            )
            for stencil in chain
        )
        chains.append(Chain(output, window, stages))
    return Plan(axes, tuple(chains), op.n_outputs)


def _plain(stencil: Stencil) -> bool:
    weights = (*stencil.taps, stencil.divisor)
    return (
        stencil.padding in PADDING_MODES
        and stencil.dtype is None
        and all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights)
    )


@lru_cache(maxsize=512)
def _folded(n: int, reach: int, padding: str) -> Tensor:
    """The sample that each index ``-reach .. n + reach - 1`` of a padded axis copies (not for zeros)."""
    return torch.tensor([source(k, n, padding) for k in range(-reach, n + reach)], dtype=torch.int64)


TORCH_MODES = {"reflect": "reflect", "replicate": "replicate", "circular": "circular", "zeros": "constant"}
"""The padding modes that :func:`torch.nn.functional.pad` computes as torchgrad pads, where its reach allows."""


def _pad_input(x: Tensor, modes: Axes) -> Tensor:
    """``x`` padded along every axis of ``modes``: by one :func:`torch.nn.functional.pad` call over the last
    axes where their modes agree and it takes the reach (reflect up to ``n - 1``, circular up to ``n``),
    else one gather per axis."""
    k = len(modes)
    names = {mode for mode, _ in modes.values()}
    mode = TORCH_MODES.get(names.pop()) if len(names) == 1 else None
    most = {"reflect": -1, "circular": 0}.get(mode or "", 1 << 30)
    if mode is None or sorted(modes) != list(range(-k, 0)) or any(r > x.shape[d] + most for d, (_, r) in modes.items()):
        for dim, (padding, reach) in modes.items():
            x = _pad(x, dim, reach, padding)
        return x
    widths = [r for d in range(-1, -k - 1, -1) for r in (modes[d][1],) * 2]
    flat = x.reshape((-1,) + x.shape[-k:])  # the batch as channels: the form F.pad takes for these modes
    padded = F.pad(flat, widths, mode=mode)
    return padded.reshape(x.shape[:-k] + padded.shape[-k:])


def _pad(x: Tensor, dim: int, reach: int, padding: str) -> Tensor:
    if padding == "zeros":
        shape = list(x.shape)
        shape[dim] = reach
        zeros = x.new_zeros(shape)
        return torch.cat((zeros, x, zeros), dim)
    return x.index_select(dim, _folded(x.shape[dim], reach, padding))


def _fold(g: Tensor, dim: int, reach: int, padding: str) -> Tensor:
    """The adjoint of :func:`_pad`: each padded sample's cotangent added onto the sample it copies."""
    n = g.shape[dim] - 2 * reach
    if padding == "zeros":
        return g.narrow(dim, reach, n)
    shape = list(g.shape)
    shape[dim] = n
    return g.new_zeros(shape).index_add_(dim, _folded(n, reach, padding), g)


def _window(t: Tensor, chain: Chain, like: Tensor) -> Tensor:
    for dim, start, extra in chain.window:
        t = t.narrow(dim, start, like.shape[dim] + extra)
    return t


def apply(x: Tensor, found: Plan) -> tuple[Tensor, ...]:
    """``A x``, ``found`` from :func:`usable`."""
    padded = _pad_input(x, found.axes)
    outputs: list[Optional[Tensor]] = [None] * found.n_outputs
    for chain in found.chains:
        y = _window(padded, chain, x)
        for s, stage in enumerate(chain.stages):
            n = x.shape[stage.dim]
            terms = [(w, y.narrow(stage.dim, t, n)) for t, w in stage.terms]
            total = outputs[chain.output]
            if s == len(chain.stages) - 1 and total is not None:  # a later chain of a summed output adds into it
                _accumulate_into(total, terms, stage.divisor)
                continue
            shape = list(y.shape)
            shape[stage.dim] = n
            y = torch.empty(shape, dtype=x.dtype)
            _weighted_sum_into(y, terms, stage.divisor)
        if outputs[chain.output] is None:
            outputs[chain.output] = y
    return tuple(out.contiguous() for out in outputs)  # type: ignore[union-attr]


def adjoint(grads: Sequence[Optional[Tensor]], found: Plan) -> Tensor:
    """``A^T g`` (``None`` cotangents are zero; all given ones of one dtype and shape), ``found`` from
    :func:`usable` on a given cotangent."""
    like = next(g for g in grads if g is not None)
    shape = list(like.shape)
    for dim, (_, reach) in found.axes.items():
        shape[dim] += 2 * reach
    total = like.new_zeros(shape)
    for chain in found.chains:
        y = grads[chain.output]
        if y is None:
            continue
        for s, stage in enumerate(reversed(chain.stages)):
            n = y.shape[stage.dim]
            if s < len(chain.stages) - 1:
                grown = list(y.shape)
                grown[stage.dim] = n + 2 * stage.half
                out = y.new_zeros(grown)
            else:
                out = _window(total, chain, like)
            for t, w in stage.terms:
                out.narrow(stage.dim, t, n).add_(y, alpha=w / stage.divisor if stage.divisor != 1 else w)
            y = out
    for dim, (mode, reach) in found.axes.items():
        total = _fold(total, dim, reach, mode)
    return total.contiguous()
