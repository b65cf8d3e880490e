"""Operators made of stencil chains: each output is a few 1-D stencils applied one after another, or a
sum of such chains (the Laplacian: ``d2/dy2 + d2/dx2``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Hashable, Optional, Sequence, Union

import torch
from torch import Tensor

from . import _padded
from ._stencil import Stencil
from ._torch_private import is_transformed

# Eager code runs slab by slab along dim 0 (:func:`slabs`), so that its temporaries are small buffers of a
# :class:`Workspace` that stay in cache instead of tensors as large as the input, faulted into memory on every call.
SLAB_BYTES = 2 * 2**20

HALF = (torch.float16, torch.bfloat16)
"""Half precision: read and written in its own dtype, computed in float32 (:func:`work_dtype`)."""


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a tensor of ``dtype`` is computed in: float32 for half precision (whose squares overflow float16
    and whose sums round in bfloat16), else ``dtype`` itself."""
    return torch.float32 if dtype in HALF else dtype


def in_work_dtype(t: Tensor) -> Tensor:
    """``t`` in :func:`work_dtype`: a float32 copy of a half-precision tensor, else ``t`` itself."""
    return t.float() if t.dtype in HALF else t


@dataclass(frozen=True)
class Separable:
    """``y[o] = sum(chain[-1](... chain[0](x)) for the chains of output o)``; a
    :class:`~torchgrad._linear.LinearOperator`.

    ``output_of[k]`` is the output that chain ``k`` adds into, in increasing order; empty (the
    default) when every chain is an output of its own.
    """

    chains: tuple[tuple[Stencil, ...], ...]
    output_of: tuple[int, ...] = ()

    @property
    def n_outputs(self) -> int:
        """The number of outputs (at most the number of chains)."""
        return self.output_of[-1] + 1 if self.output_of else len(self.chains)

    @cached_property
    def padded_plan(self) -> Optional[_padded.Plan]:
        """How the padded executor computes this operator (:func:`torchgrad._padded.plan`), read once."""
        return _padded.plan(self)

    @property
    def summed(self) -> bool:
        """Whether some output is the sum of several chains."""
        return self.n_outputs < len(self.chains)

    def _owners(self) -> tuple[int, ...]:
        return self.output_of or tuple(range(len(self.chains)))

    def _shares_output(self) -> tuple[bool, ...]:
        """For each chain, whether its output is the sum of several chains (half precision computes those
        chains and their sum in float32, rounded once: :func:`_float32_for_chain`). Not cached: Dynamo cannot
        trace the lock of a ``cached_property``."""
        owners = self.output_of
        return tuple(owners.count(o) > 1 for o in owners) if owners else (False,) * len(self.chains)

    def _output_dtype(self, o: int, x: Tensor) -> torch.dtype:
        """The dtype of output ``o`` on input ``x``: its first chain's result dtype, else ``x``'s."""
        return self.chains[self._owners().index(o)][-1].dtype or x.dtype

    def apply(
        self,
        x: Tensor,
        traceable: bool = False,
        workspace: Optional["Workspace"] = None,
        minus: Optional[Tensor] = None,
    ) -> tuple[Tensor, ...]:
        """``A x``, or ``A (x - minus)`` when ``minus`` is given (of ``x``'s shape and dtype: the padded
        executor forms the difference as it pads); ``traceable`` forces plain tensor code (else chosen by
        :func:`needs_traceable_code`).

        With a ``workspace`` (eager code only), the outputs and intermediates are its buffers, which the next
        ``apply`` with it overwrites: a loop over slabs allocates them once."""
        owners = self._owners()
        if traceable or not _slab_by_slab(x):
            if minus is not None:
                x = x - minus
            sums: dict[int, Tensor] = {}
            for chain, o, wide in zip(self.chains, owners, self._shares_output()):
                y = _float32_for_chain(x, chain, wide)
                for stencil in chain:
                    y = stencil.apply(y, traceable=True)
                sums[o] = sums[o] + y if o in sums else y
            return tuple(sums[o].to(self._output_dtype(o, x)) for o in range(self.n_outputs))
        padded = _padded.usable(self, x)
        if minus is not None and (padded is None or minus.shape != x.shape or minus.dtype != x.dtype):
            fits = workspace is not None and minus.shape == x.shape and minus.dtype == x.dtype
            x = torch.sub(x, minus, out=workspace.get("difference", x, x.dtype)) if fits else x - minus  # type: ignore[union-attr]
            minus = None
            padded = _padded.usable(self, x)
        if padded is not None and workspace is None and x.is_contiguous():
            if x.numel() * x.element_size() <= min(SLAB_BYTES, _padded.FRESH_BYTES):  # one small slab
                return tuple(_padded.apply(x, padded, [None] * self.n_outputs, None, minus))
        firsts: dict[int, int] = {}  # output -> its first chain
        lasts: dict[int, int] = {}  # output -> its last chain
        for k, o in enumerate(owners):
            firsts.setdefault(o, k)
            lasts[o] = k
        dtypes = [self._output_dtype(o, x) for o in range(self.n_outputs)]
        if workspace is None:
            outputs = [torch.empty_like(x, dtype=dtype) for dtype in dtypes]
            scratch = Workspace()
        else:
            outputs = [workspace.get(("output", o), x, dtype) for o, dtype in enumerate(dtypes)]
            scratch = workspace
        if padded is not None:
            cuts = slabs(x, self.spatial_dims)
            for rows in cuts:
                cut, parts = _cut(cuts, rows, x, [*outputs, minus])
                _padded.apply(cut, padded, parts[:-1], scratch, parts[-1])
            return tuple(outputs)
        shares = self._shares_output()
        for rows in self._slabs(x):
            for k, (chain, o, shared) in enumerate(zip(self.chains, owners, shares)):
                out = outputs[o][rows]
                y = _float32_for_chain(x[rows], chain, shared)
                # Half precision computed in float32 (the last stage's terms, the sum of an output's chains) is
                # accumulated in float32 and rounded into the output once.
                total = scratch.get("sum", out, y.dtype) if out.dtype in HALF and y.dtype != out.dtype else out
                for s, stencil in enumerate(chain):
                    if s < len(chain) - 1:
                        target = scratch.get(s % 2, y, stencil.dtype or y.dtype)
                    else:  # the first chain of an output writes it, the later ones add into it
                        target = total if firsts[o] == k else scratch.get(2, total, total.dtype)
                    y = stencil.apply(y, out=target)
                if firsts[o] != k:
                    total.add_(y)
                if lasts[o] == k and total is not out:
                    out.copy_(total)
        return tuple(outputs)

    def adjoint(
        self,
        grads: Sequence[Optional[Tensor]],
        traceable: bool = False,
        out: Optional[Tensor] = None,
        workspace: Optional["Workspace"] = None,
    ) -> Tensor:
        """The sum of each chain's adjoint of its output's cotangent; the chains after the first add into
        the first's result. Eager code writes it into ``out`` when one is given (of the cotangents' shape and
        dtype) and keeps its intermediates in ``workspace``'s buffers when one is given."""
        pairs: list[tuple[tuple[Stencil, ...], Tensor]] = []
        for chain, o in zip(self.chains, self._owners()):
            g = grads[o]
            if g is not None:
                pairs.append((chain[::-1], g))
        if not pairs:
            raise ValueError("the adjoint needs a cotangent for at least one output")
        dtype = pairs[0][1].dtype
        summed = len(pairs) > 1  # the chains' results are added: in float32 for half precision
        if traceable or not all(_slab_by_slab(g) for _, g in pairs):
            total: Optional[Tensor] = None
            for chain, g in pairs:
                y = _float32_for_chain(g, chain, summed)
                for stencil in chain:
                    y = stencil.adjoint(y, traceable=True)
                total = y if total is None else total + y
            return total.to(dtype)  # type: ignore[union-attr]
        result = torch.empty_like(pairs[0][1]) if out is None else out
        scratch = Workspace() if workspace is None else workspace
        padded = _padded.usable(self, result)
        if padded is not None and all(g.dtype == dtype and g.shape == result.shape for _, g in pairs):
            cuts = slabs(result, self.spatial_dims)
            for rows in cuts:
                cut, parts = _cut(cuts, rows, result, grads)
                _padded.adjoint(parts, padded, cut, scratch)
            return result
        # Half precision computed in float32 (the last stage's terms, the sum of the chains) is accumulated in
        # float32 and rounded into the result once.
        wide = result.dtype in HALF and (summed or any(len(chain) > 1 for chain, _ in pairs))
        for rows in self._slabs(result):
            total = scratch.get("adjoint sum", result[rows], torch.float32) if wide else result[rows]
            for i, (chain, g) in enumerate(pairs):
                y = _float32_for_chain(g[rows], chain, summed)
                for k, stencil in enumerate(chain):
                    if k < len(chain) - 1:
                        y = stencil.adjoint(y, out=scratch.get(k % 2, y, y.dtype))
                    else:
                        stencil.adjoint(y, out=total, accumulate=i > 0)
            if wide:
                result[rows].copy_(total)
        return result

    def with_output_dtype(self, dtype: torch.dtype) -> "Separable":
        """The same operator writing every output in ``dtype`` (each chain's last stage computes in it)."""
        return replace(self, chains=tuple(chain[:-1] + (replace(chain[-1], dtype=dtype),) for chain in self.chains))

    def support(self) -> "Separable":
        """The operator with absolute weights: non-zero exactly where an output reads a non-zero sample
        (through any of its chains: weights of several chains that cancel still read)."""
        return replace(self, chains=tuple(tuple(stencil.support() for stencil in chain) for chain in self.chains))

    @property
    def spatial_dims(self) -> int:
        return max(-stencil.dim for chain in self.chains for stencil in chain)

    def _slabs(self, x: Tensor) -> list[slice]:
        """Cuts of ``x`` along dim 0 when the chains have intermediates or sums (else one cut: all of it)."""
        if max(len(chain) for chain in self.chains) == 1 and not self.summed:
            return [slice(None)]
        return slabs(x, self.spatial_dims)


def slabs(x: Tensor, spatial_dims: int, per_thread: bool = False) -> list[slice]:
    """Slices of dim 0 of ``x`` (``x[cut]`` for each) into slabs of whole items of about :data:`SLAB_BYTES`: one
    slice of everything where dim 0 is spatial.

    The budget is counted in one of two ways, each for the cache its eager code works in (they stay two: the cuts
    decide the order in which partial sums are added, so that one rule for both would move the last bits of one
    kind of loss, as well as its speed):

    - ``per_thread=False``, the operators and the fused losses: ``SLAB_BYTES`` of ``x`` per slab, for the L3 cache
      that the cores share. They keep about four buffers of a slab's size in use at once (the difference, the
      outputs, an intermediate): 2 MiB slabs keep them within an 8-16 MiB L3 (on a 2-core VM with a 32 MiB L3,
      ``GradientLoss("sobel")`` forward plus backward at (16, 3, 512, 512) took 15% longer with 8 MiB slabs than
      with 2 to 4 MiB, and 65% longer with 16 MiB). A batch of at most one item is one slice.
    - ``per_thread=True``, the depth losses on ``(N, H, W)`` maps: ``SLAB_BYTES`` of float32 per pixel (their work
      is float32 or wider; a mask counts as its float32 weights) for each of torch's threads, for each core's own
      L2 cache (1 to 2 MiB). Their passes are chains of elementwise operations and per-image sums over the whole
      slab, each split over torch's threads: a thread's part of each buffer stays about ``SLAB_BYTES`` whatever the
      number of threads. Off the CPU the whole batch is one slice (a GPU wants few large kernels); on the CPU an
      empty batch has none (their per-image code never runs on no images).
    """
    if per_thread and x.device.type != "cpu":
        return [slice(None)]
    if x.dim() <= spatial_dims or (x.shape[0] <= 1 and not per_thread):
        return [slice(None)]
    pixels = math.prod(x.shape[1:])
    if per_thread:
        budget, item = SLAB_BYTES * torch.get_num_threads(), 4 * pixels
    else:
        budget, item = SLAB_BYTES, pixels * x.element_size()
    step = max(1, budget // max(item, 1))
    return [slice(start, start + step) for start in range(0, x.shape[0], step)]


def _cut(
    cuts: Sequence[slice], rows: slice, t: Tensor, more: Sequence[Optional[Tensor]]
) -> tuple[Tensor, list[Optional[Tensor]]]:
    """``t`` and ``more`` at ``rows`` (the tensors themselves where there is one cut)."""
    if len(cuts) == 1:
        return t, list(more)
    return t[rows], [None if m is None else m[rows] for m in more]


def needs_traceable_code(t: Tensor) -> bool:
    """Whether ``t`` needs plain tensor code: under ``torch.compile``, or wrapped by a ``torch.func``
    transform or batched gradients, where writes into views through ``out=`` do not work."""
    if torch.compiler.is_compiling():
        return True
    return is_transformed(t)


def _slab_by_slab(t: Tensor) -> bool:
    """Whether the CPU eager executor runs on ``t``: a CPU tensor outside ``torch.compile`` and ``torch.func``.
    Other devices (CUDA whose operator the Triton kernels do not serve, or without Triton) take plain
    tensor code: one kernel per operation over the whole batch, not a loop over slabs."""
    return t.device.type == "cpu" and not needs_traceable_code(t)


def _float32_for_chain(t: Tensor, chain: Sequence[Stencil], summed: bool = False) -> Tensor:
    """Half precision goes through multi-stage chains in float32 (the smoothed intermediate of Scharr is 16
    times its input, beyond float16's range for large values), and through chains whose results are
    ``summed`` with others' (the Laplacian's outputs, an adjoint of several chains), so that the sum is
    accumulated in float32 and rounded once, as a convolution rounds it: rounding each chain's result, and
    each term of a one-stage chain, about doubles the error."""
    return in_work_dtype(t) if len(chain) > 1 or summed else t


class Workspace:
    """The temporaries of one call, by slot (any hashable name): allocated at the first slab, then reused by the
    next slabs and by an operator's chains (a fresh buffer of a slab's size costs a page fault per 4 KiB, on
    every slab). A slot's tensor is valid until the slot is asked for again.

    Args:
        device: where :meth:`buffer` allocates (:meth:`get` allocates where its ``like`` lives).
    """

    def __init__(self, device: Union[torch.device, str] = "cpu") -> None:
        self.device = torch.device(device)
        self._buffers: dict[Hashable, Tensor] = {}

    def get(self, slot: Hashable, like: Tensor, dtype: torch.dtype) -> Tensor:
        """The buffer of ``slot``, of ``like``'s shape (and layout, when it is allocated) in ``dtype``, allocated
        again when the shape or dtype asked for changes."""
        buf = self._buffers.get(slot)
        if buf is None or buf.shape != like.shape or buf.dtype != dtype:
            buf = self._buffers[slot] = torch.empty_like(like, dtype=dtype)
        return buf

    def buffer(self, slot: Hashable, shape: Sequence[int], dtype: torch.dtype) -> Tensor:
        """A contiguous, uninitialised tensor of ``shape`` in ``dtype``: a view of the slot's buffer where that is
        large enough (the last, shorter slab of a call, or a coarser scale, included), else a new buffer."""
        buf = self._buffers.get(slot)
        numel = math.prod(shape)
        if buf is None or buf.dtype != dtype or buf.numel() < numel or not buf.is_contiguous():
            buf = self._buffers[slot] = torch.empty(shape, dtype=dtype, device=self.device)
            return buf
        return buf if buf.shape == tuple(shape) else buf.view(-1)[:numel].view(shape)
