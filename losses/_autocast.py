"""The losses under autocast: computed in at least float32, in one dtype, as torch's own losses are."""

from __future__ import annotations

import contextlib
from typing import ContextManager, Optional, overload

import torch
from torch import Tensor

from torchgrad._internal import autocast_enabled


@overload
def autocast_pair(input: Tensor, target: Tensor) -> tuple[Tensor, Tensor]: ...
@overload
def autocast_pair(input: Tensor, target: None) -> tuple[Tensor, None]: ...
def autocast_pair(input: Tensor, target: Optional[Tensor]) -> tuple[Tensor, Optional[Tensor]]:
    """Under autocast, ``input`` and ``target`` in the loss's dtype (:func:`result_dtype`)."""
    if autocast_enabled(input.device):
        dtype = result_dtype(input, target)
        input = input.to(dtype)
        target = None if target is None else target.to(dtype)
    return input, target


def result_dtype(input: Tensor, target: Optional[Tensor] = None) -> torch.dtype:
    """The loss's dtype: the input's, or under autocast the inputs' promoted to at least float32."""
    if not autocast_enabled(input.device):
        return input.dtype
    dtype = torch.promote_types(input.dtype, torch.float32)
    return dtype if target is None else torch.promote_types(dtype, target.dtype)


def autocast_off(device: torch.device) -> ContextManager:
    """A context with autocast disabled on ``device`` (nothing to disable where autocast never runs, ``meta``)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def depth_dtypes(prediction: Tensor, target: Tensor) -> tuple[torch.dtype, torch.dtype]:
    """``(work, result)`` of the depth losses: they compute in ``work`` (at least float32) and return ``result``.

    Under autocast both are the inputs' dtypes promoted to at least float32; otherwise half precision
    is computed in float32 and returned in its own dtype.
    """
    if autocast_enabled(prediction.device):
        work = torch.promote_types(torch.promote_types(prediction.dtype, target.dtype), torch.float32)
        return work, work
    work = torch.promote_types(prediction.dtype, torch.float32)
    return work, prediction.dtype
