"""Tensors as the kernels address them: ``(b1, b0, D, H, W)`` with a stride per axis.

The leading (batch) dimensions of all the tensors of one launch are merged where every tensor allows
it; two batch groups remain for ``channels_last`` (``N`` and ``C`` interleave with the spatial axes)
and most slicings, so no input is copied. An operator with fewer than three spatial axes takes the
inner batch group as its z axis (the identity along it), so that one program serves several images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from torch import Tensor

INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class Layout:
    """The shared sizes ``(B1, B0, D, H, W)`` and each tensor's five strides."""

    sizes: tuple[int, int, int, int, int]
    strides: tuple[tuple[int, int, int, int, int], ...]


def kernel_layout(tensors: Sequence[Tensor], ndim: int) -> Optional[Layout]:
    """The layout of same-shaped ``tensors`` whose last ``ndim`` dims are spatial; ``None`` when their
    batch dims do not merge into two groups, or a plane spans more than int32 offsets reach."""
    shape = tuple(tensors[0].shape)
    all_strides = [t.stride() for t in tensors]
    lead = len(shape) - ndim
    groups: list[tuple[int, list[int]]] = []  # (size, stride of each tensor), outermost first
    for d in range(lead):
        if shape[d] == 1:
            continue
        strides = [s[d] for s in all_strides]
        if groups and all(outer == shape[d] * s for outer, s in zip(groups[-1][1], strides)):
            groups[-1] = (groups[-1][0] * shape[d], strides)
        else:
            groups.append((shape[d], strides))
    if len(groups) > 2:
        return None
    groups = [(1, [0] * len(tensors))] * (2 - len(groups)) + groups
    inner = ndim < 3
    if inner:
        groups = [(1, [0] * len(tensors)), groups[0], groups[1]]
    else:
        groups = [*groups, (shape[-3], [s[-3] for s in all_strides])]
    h = shape[-2] if ndim >= 2 else 1
    w = shape[-1]
    per_tensor = []
    for k, t_strides in enumerate(all_strides):
        sy = t_strides[-2] if ndim >= 2 else 0
        sx = t_strides[-1]
        # In-plane offsets are int32 in the kernels; batch and z offsets are int64.
        if (h - 1) * sy + (w - 1) * sx > INT32_MAX:
            return None
        per_tensor.append((groups[0][1][k], groups[1][1][k], groups[2][1][k], sy, sx))
    sizes = (groups[0][0], groups[1][0], groups[2][0], h, w)
    return Layout(sizes, tuple(per_tensor))
