"""Validation shared by the losses: clear errors that name the argument and quote the shapes."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(fn: str, reduction: Any) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{fn}: `reduction` must be one of {', '.join(map(repr, REDUCTIONS))}, got {reduction!r}")
    return str(reduction)


def check_image(fn: str, name: str, value: Any) -> Tensor:
    """An ``(N, C, H, W)`` image or ``(N, C, D, H, W)`` volume batch of a floating dtype."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{fn}: `{name}` must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() not in (4, 5):
        raise ValueError(
            f"{fn}: `{name}` must be (N, C, H, W) images or (N, C, D, H, W) volumes, got shape {tuple(value.shape)}"
        )
    if not value.dtype.is_floating_point:
        raise TypeError(f"{fn}: `{name}` must have a floating dtype, got {value.dtype}")
    if any(s < 2 for s in value.shape[2:]):
        raise ValueError(
            f"{fn}: `{name}` needs at least 2 pixels along each spatial axis, got shape {tuple(value.shape)}"
        )
    return value


def check_pair(fn: str, input: Any, target: Any) -> int:
    """``input`` and ``target`` of one shape, device and dtype (dtypes may differ under autocast).

    Returns the number of spatial dimensions (2 or 3).
    """
    input, target = check_image(fn, "input", input), check_image(fn, "target", target)
    if input.shape != target.shape:
        raise ValueError(
            f"{fn}: `input` and `target` must have the same shape, got {tuple(input.shape)} and {tuple(target.shape)}"
        )
    if input.device != target.device:
        raise ValueError(
            f"{fn}: `input` and `target` must be on the same device, got {input.device} and {target.device}"
        )
    if input.dtype != target.dtype and not torch.is_autocast_enabled(input.device.type):
        raise TypeError(f"{fn}: `input` and `target` must have the same dtype, got {input.dtype} and {target.dtype}")
    return input.dim() - 2


def check_mask(fn: str, mask: Any, input: Tensor) -> Optional[Tensor]:
    """``None``, or a bool mask broadcast (as a view) to ``input``'s shape."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(f"{fn}: `mask` must be a bool torch.Tensor or None, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"{fn}: `mask` must have dtype torch.bool (True where valid), got {mask.dtype}")
    if mask.device != input.device:
        raise ValueError(f"{fn}: `mask` must be on `input`'s device {input.device}, got {mask.device}")
    try:
        return mask.expand(input.shape)
    except RuntimeError:
        raise ValueError(
            f"{fn}: `mask` of shape {tuple(mask.shape)} does not broadcast to `input`'s shape {tuple(input.shape)}"
        ) from None


def autocast_pair(input: Tensor, target: Optional[Tensor]) -> tuple[Tensor, Optional[Tensor]]:
    """Under autocast, losses run in at least float32 (as torch's own losses do), in one dtype."""
    if torch.is_autocast_enabled(input.device.type):
        dtype = result_dtype(input, target)
        input = input.to(dtype)
        target = None if target is None else target.to(dtype)
    return input, target


def result_dtype(input: Tensor, target: Optional[Tensor] = None) -> torch.dtype:
    """The loss's dtype: the input's, or under autocast the inputs' promoted to at least float32."""
    if not torch.is_autocast_enabled(input.device.type):
        return input.dtype
    dtype = torch.promote_types(input.dtype, torch.float32)
    return dtype if target is None else torch.promote_types(dtype, target.dtype)
