"""Validation of the arguments of the public operators: clear errors that name the argument."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._stencil import PADDING_MODES

_AXES = {2: "(..., H, W)", 3: "(..., D, H, W)"}


def check_tensor(value: Any, name: str, fn: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{fn}: `{name}` must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_spatial_dims(spatial_dims: Any, fn: str, allowed: tuple[int, ...] = (2, 3)) -> int:
    if isinstance(spatial_dims, bool) or spatial_dims not in allowed:
        choices = " or ".join(str(a) for a in allowed)
        raise ValueError(f"{fn}: `spatial_dims` must be {choices}, got {spatial_dims!r}")
    return int(spatial_dims)


def check_padding(padding: Any, fn: str) -> str:
    if padding not in PADDING_MODES:
        raise ValueError(f"{fn}: `padding` must be one of {', '.join(map(repr, PADDING_MODES))}, got {padding!r}")
    return str(padding)


def check_image(image: Any, fn: str, spatial_dims: int, *, integer: bool = False) -> Tensor:
    """A tensor with at least ``spatial_dims`` dimensions, of a dtype the operator can differentiate.

    Floating and complex dtypes are always accepted; signed integers only where ``integer`` is true
    (exact differences). Bool and unsigned integers (whose differences wrap around) never are.
    """
    name = "image"
    image = check_tensor(image, name, fn)
    if image.dim() < spatial_dims:
        raise ValueError(
            f"{fn}: `{name}` must have at least {spatial_dims} dimensions {_AXES[spatial_dims]}, "
            f"got shape {tuple(image.shape)}"
        )
    if 0 in image.shape[-spatial_dims:]:
        raise ValueError(f"{fn}: the spatial axes of `{name}` must not be empty, got shape {tuple(image.shape)}")
    dtype = image.dtype
    if dtype.is_floating_point or dtype.is_complex:
        return image
    if integer and dtype != torch.bool and dtype.is_signed:
        return image
    expected = "a floating, complex or signed integer" if integer else "a floating or complex"
    raise TypeError(f"{fn}: `{name}` must have {expected} dtype, got {dtype}")


def check_min_size(image: Tensor, fn: str, spatial_dims: int, minimum: int, why: str) -> None:
    sizes = tuple(image.shape[-spatial_dims:])
    if any(s < minimum for s in sizes):
        raise ValueError(
            f"{fn}: {why} needs at least {minimum} samples along each spatial axis of `image`, "
            f"got shape {tuple(image.shape)}"
        )
