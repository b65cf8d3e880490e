"""Argument checks of the depth losses, each ``check_xxx(fn, name, value, ...)``: errors name the argument and quote
what came (type, shape, dtype, device), before any work."""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

DEPTH_REDUCTIONS = ("batch-based", "image-based")


def check_bool(fn: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{fn}: `{name}` must be a bool, got {value!r} of type {type(value).__name__}")
    return value


def check_int(fn: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{fn}: `{name}` must be an int, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{fn}: `{name}` must be at least {minimum}, got {value}")
    return value


def check_float(
    fn: str, name: str, value: Any, *, minimum: float = -math.inf, maximum: float = math.inf, open_low: bool = False
) -> float:
    """A finite real number in ``[minimum, maximum]`` (``(minimum, maximum]`` with ``open_low``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{fn}: `{name}` must be a number, got {value!r} of type {type(value).__name__}")
    value = float(value)
    below = value <= minimum if open_low else value < minimum
    if not math.isfinite(value) or below or value > maximum:
        low = f"({minimum:g}" if open_low else f"[{minimum:g}"
        raise ValueError(f"{fn}: `{name}` must be a finite number in {low}, {maximum:g}], got {value!r}")
    return value


def check_optional_float(fn: str, name: str, value: Any, *, minimum: float, open_low: bool) -> Optional[float]:
    return None if value is None else check_float(fn, name, value, minimum=minimum, open_low=open_low)


def check_choice(fn: str, name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{fn}: `{name}` must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_depth_map(fn: str, name: str, value: Any) -> Tensor:
    """An ``(N, H, W)`` or ``(N, 1, H, W)`` floating tensor with non-empty spatial axes."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{fn}: `{name}` must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() not in (3, 4) or (value.dim() == 4 and value.shape[1] != 1):
        raise ValueError(f"{fn}: `{name}` must be (N, H, W) or (N, 1, H, W) depth maps, got shape {tuple(value.shape)}")
    if 0 in value.shape[-2:]:
        raise ValueError(f"{fn}: `{name}` must have at least one pixel, got shape {tuple(value.shape)}")
    if not value.dtype.is_floating_point:
        raise TypeError(f"{fn}: `{name}` must have a floating dtype, got {value.dtype}")
    return value


def check_depth_batch(fn: str, prediction: Any, target: Any, mask: Any) -> tuple[Tensor, Tensor, Tensor]:
    """``prediction``, ``target`` and the bool ``mask`` of one shape and device, as ``(N, H, W)`` views.

    Dtypes must agree, except under autocast (where the losses run in at least float32).
    """
    prediction = check_depth_map(fn, "prediction", prediction)
    target = check_depth_map(fn, "target", target)
    shape = tuple(prediction.shape)
    if tuple(target.shape) != shape:
        raise ValueError(
            f"{fn}: `prediction` and `target` must have the same shape, got {shape} and {tuple(target.shape)}"
        )
    if target.device != prediction.device:
        raise ValueError(
            f"{fn}: `prediction` and `target` must be on the same device, got {prediction.device} and {target.device}"
        )
    if target.dtype != prediction.dtype and not torch.is_autocast_enabled(prediction.device.type):
        raise TypeError(
            f"{fn}: `prediction` and `target` must have the same dtype, got {prediction.dtype} and {target.dtype}"
        )
    if not isinstance(mask, Tensor):
        raise TypeError(
            f"{fn}: `mask` must be a bool torch.Tensor (True where the ground truth is valid), "
            f"got {type(mask).__name__}"
        )
    if mask.dtype != torch.bool:
        raise TypeError(
            f"{fn}: `mask` must have dtype torch.bool (True where the ground truth is valid), got {mask.dtype}"
        )
    if tuple(mask.shape) != shape:
        raise ValueError(f"{fn}: `mask` must have the shape of `prediction` {shape}, got {tuple(mask.shape)}")
    if mask.device != prediction.device:
        raise ValueError(f"{fn}: `mask` must be on the device of `prediction` {prediction.device}, got {mask.device}")
    n, h, w = shape[0], shape[-2], shape[-1]
    return prediction.reshape(n, h, w), target.reshape(n, h, w), mask.reshape(n, h, w)


def depth_dtypes(prediction: Tensor, target: Tensor) -> tuple[torch.dtype, torch.dtype]:
    """``(work, result)``: the losses compute in ``work`` (at least float32) and return ``result``.

    Under autocast both are the inputs' dtypes promoted to at least float32; otherwise half precision
    is computed in float32 and returned in its own dtype.
    """
    if torch.is_autocast_enabled(prediction.device.type):
        work = torch.promote_types(torch.promote_types(prediction.dtype, target.dtype), torch.float32)
        return work, work
    work = torch.promote_types(prediction.dtype, torch.float32)
    return work, prediction.dtype
