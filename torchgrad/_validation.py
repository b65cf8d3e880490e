"""Validation of the arguments of every public function and module of torchgrad and torchgrad.losses.

Every check has one signature, ``check_xxx(caller, name, value, ...)``: ``caller`` is the public function or
module that was called (``"sobel"``, ``"GradientLoss"``), ``name`` the argument as that caller spells
it, ``value`` what came. A check returns the value (normalised where it says so) or raises, before
any work is done:

- ``TypeError`` for a wrong type or dtype: a bool where a number or a name is wanted, a number where
  a bool is wanted, a sparse tensor, a float8 or integer image;
- ``ValueError`` for a wrong value, shape or device: NaN or infinity, an unknown name, a tensor of
  the wrong rank, tensors on different devices.

Messages read ``"caller: `name` must ..., got ..."`` and quote what came: the repr of an option, the
shape, dtype or device of a tensor. Bools are bools and numbers are finite everywhere.
"""

from __future__ import annotations

import math
import numbers
import operator as _operator
import reprlib
import sys
from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch import Tensor

from ._registry import REGISTRY
from ._stencil import PADDING_MODES

FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
COMPLEX = (torch.complex64, torch.complex128)
SIGNED_INTEGERS = (torch.int8, torch.int16, torch.int32, torch.int64)
GRADIENT_DTYPES = FLOATING + COMPLEX + SIGNED_INTEGERS  # what torch.gradient computes on
REDUCTIONS = ("mean", "sum", "none")
DEPTH_REDUCTIONS = ("batch-based", "image-based")

_AXES = {2: "(..., H, W)", 3: "(..., D, H, W)"}
_DTYPE_KINDS = {FLOATING: "a real floating", FLOATING + COMPLEX: "a floating or complex"}


class GradientError(ValueError, RuntimeError):
    """An input that ``torch.gradient`` rejects with ``RuntimeError``.

    It is a ``ValueError`` as torchgrad's other errors are, and a ``RuntimeError`` so that code written
    to catch ``torch.gradient``'s errors keeps working.
    """

    __module__ = "torchgrad"


def _quote(value: Any, limit: int = 80) -> str:
    """``repr(value)``, shortened to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _float(value: numbers.Real) -> float:
    """``float(value)``; infinite for an int too large for a float."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _finite(number: float) -> bool:
    """``math.isfinite(number)`` as two comparisons (false for NaN and infinities alike), which Dynamo
    turns into a guard where ``number`` is symbolic (a float argument of a function compiled with
    ``dynamic=True``) instead of breaking the graph; ``number < math.inf`` would not do: the symbolic
    algebra takes every symbol for finite."""
    return -sys.float_info.max <= number <= sys.float_info.max


def _is_sequence(value: Any) -> bool:
    """A sequence of items, such as a list or tuple; not a string."""
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _names(values: Sequence[Any]) -> str:
    return ", ".join(map(repr, values))


def autocast_enabled(device: torch.device) -> bool:
    """Whether autocast runs on ``device`` (never on devices it does not know, such as ``meta``)."""
    return torch.amp.is_autocast_available(device.type) and torch.is_autocast_enabled(device.type)


# Options -----------------------------------------------------------------------------------------


def check_bool(caller: str, name: str, value: Any) -> bool:
    """``True`` or ``False``: no other truthy or falsy value (``"False"`` would switch an option on)."""
    if not isinstance(value, bool):
        raise TypeError(f"{caller}: `{name}` must be True or False, got {_quote(value)}")
    return value


def check_choice(caller: str, name: str, value: Any, choices: Sequence[str]) -> str:
    """One of the names in ``choices``."""
    if not isinstance(value, str):
        raise TypeError(f"{caller}: `{name}` must be one of {_names(choices)}, got {_quote(value)}")
    if value not in choices:
        raise ValueError(f"{caller}: `{name}` must be one of {_names(choices)}, got {_quote(value)}")
    return value


def check_environment_choice(caller: str, name: str, value: str, choices: Sequence[str]) -> str:
    """The value of the environment variable ``name``, one of ``choices``; the empty string (set to nothing)
    stands for the first choice, as unset does."""
    if value == "":
        return choices[0]
    if value not in choices:
        raise ValueError(
            f"{caller}: the environment variable {name} must be one of {_names(choices)} or unset, got {_quote(value)}"
        )
    return value


def check_int_choice(caller: str, name: str, value: Any, choices: Sequence[int]) -> int:
    """One of the ints in ``choices`` (a Python or NumPy integer; not a bool, not a float)."""
    if type(value) is int and value in choices:  # the common case, without the checks below
        return choices[list(choices).index(value)]  # the listed constant (a symbolic int under compile: see below)
    listed = " or ".join(map(str, choices))
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{caller}: `{name}` must be the int {listed}, got {_quote(value)}")
    if value not in choices:
        raise ValueError(f"{caller}: `{name}` must be {listed}, got {_quote(value)}")
    # The listed constant itself: a symbolic int (an argument of a function compiled with dynamic=True)
    # becomes the plain int it equals, so that what is built from it holds no symbols.
    return next(int(c) for c in choices if c == value)


def check_number(
    caller: str,
    name: str,
    value: Any,
    *,
    positive: bool = False,
    non_negative: bool = False,
    maximum: Optional[float] = None,
) -> float:
    """A finite real number (not a bool), as a float; ``positive`` or ``non_negative`` and at most
    ``maximum`` where asked."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{caller}: `{name}` must be a real number, got {_quote(value)}")
    number = _float(value)
    if not _finite(number):
        raise ValueError(f"{caller}: `{name}` must be finite, got {_quote(value)}")
    if positive and not number > 0:
        raise ValueError(f"{caller}: `{name}` must be a positive number, got {_quote(value)}")
    if non_negative and not number >= 0:
        raise ValueError(f"{caller}: `{name}` must be a non-negative number, got {_quote(value)}")
    if maximum is not None and not number <= maximum:
        raise ValueError(f"{caller}: `{name}` must be at most {maximum:g}, got {_quote(value)}")
    return number


def check_int(caller: str, name: str, value: Any, minimum: Optional[int] = None) -> int:
    """An int (a Python or NumPy integer; not a bool, not a float), of at least ``minimum`` when given."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{caller}: `{name}` must be an int, got {_quote(value)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{caller}: `{name}` must be at least {minimum}, got {_quote(value)}")
    return int(value)


def check_numbers(
    caller: str, name: str, value: Any, length: Optional[int] = None, what: str = ""
) -> tuple[float, ...]:
    """A sequence (list, tuple, ...) of finite real numbers (``length`` of them when given), as floats."""
    described = what or "a sequence of numbers"
    if not _is_sequence(value) or any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in value):
        raise TypeError(f"{caller}: `{name}` must be {described}, got {_quote(value)}")
    if length is not None and len(value) != length:
        raise ValueError(f"{caller}: `{name}` must be {described}, got {len(value)} values: {_quote(value)}")
    floats = tuple(_float(v) for v in value)
    if not all(_finite(v) for v in floats):
        raise ValueError(f"{caller}: `{name}` must hold finite numbers, got {_quote(value)}")
    return floats


def check_names(caller: str, name: str, value: Any) -> tuple[str, ...]:
    """One name, or a non-empty sequence (list, tuple, ...) of names, as a tuple."""
    if isinstance(value, str):
        return (value,)
    if not _is_sequence(value) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{caller}: `{name}` must be a name or a sequence of names, got {_quote(value)}")
    if not value:
        raise ValueError(f"{caller}: `{name}` must not be empty, got {_quote(value)}")
    return tuple(value)


def check_reduction(caller: str, name: str, value: Any) -> str:
    return check_choice(caller, name, value, REDUCTIONS)


def check_padding(caller: str, name: str, value: Any) -> str:
    return check_choice(caller, name, value, PADDING_MODES)


def check_spatial_dims(caller: str, name: str, value: Any, allowed: Sequence[int] = (2, 3)) -> int:
    return check_int_choice(caller, name, value, allowed)


def check_operator(
    caller: str, name: str, value: Any, choices: Sequence[str], padding: Optional[str] = None, normalized: bool = False
) -> str:
    """An operator name of ``choices``; ``padding`` and ``normalized`` (checked already) are given only
    to the operators that take them (those of the registry without a fixed border rule)."""
    value = check_choice(caller, name, value, choices)
    if not REGISTRY[value].takes_padding and (padding is not None or normalized):
        padded = _names([n for n in choices if REGISTRY[n].takes_padding])
        raise ValueError(f"{caller}: `padding` and `normalized` apply to {padded}, not to {value!r}")
    return value


# Tensors -----------------------------------------------------------------------------------------


def check_tensor(caller: str, name: str, value: Any) -> Tensor:
    """A dense (strided) ``torch.Tensor``: no sparse, nested or MKL-DNN layout."""
    if not isinstance(value, Tensor):
        got = "None" if value is None else f"{type(value).__name__} {_quote(value, 40)}"
        raise TypeError(f"{caller}: `{name}` must be a torch.Tensor, got {got}")
    if value.layout != torch.strided:
        raise TypeError(f"{caller}: `{name}` must be a dense (strided) tensor, got layout {value.layout}")
    return value


def check_dtype(caller: str, name: str, value: Tensor, allowed: tuple[torch.dtype, ...]) -> Tensor:
    """A tensor whose dtype is one of ``allowed`` (:data:`FLOATING` or ``FLOATING + COMPLEX``)."""
    if value.dtype in allowed:
        return value
    kind = _DTYPE_KINDS.get(allowed, "a supported")
    supported = ", ".join(str(d).removeprefix("torch.") for d in allowed)
    integer = not (value.dtype.is_floating_point or value.dtype.is_complex) and value.dtype != torch.bool
    hint = "; convert integer images with .float() first" if integer else ""
    raise TypeError(f"{caller}: `{name}` must have {kind} dtype, got {value.dtype} (supported: {supported}{hint})")


def check_rank(caller: str, name: str, value: Tensor, ranks: Sequence[int], what: str) -> Tensor:
    """A tensor of one of ``ranks`` dimensions; ``what`` names them in the message (``"(N, C, H, W) images"``)."""
    if value.dim() not in ranks:
        raise ValueError(f"{caller}: `{name}` must be {what}, got shape {tuple(value.shape)}")
    return value


def check_not_empty(caller: str, name: str, value: Tensor, why: str = "") -> Tensor:
    """A tensor of at least one element; ``why`` follows the requirement (``" (OpenCV refuses empty images)"``)."""
    if value.numel() == 0:
        raise ValueError(f"{caller}: `{name}` must not be empty{why}, got shape {tuple(value.shape)}")
    return value


def check_image(
    caller: str, name: str, value: Any, spatial_dims: int, dtypes: tuple[torch.dtype, ...] = FLOATING + COMPLEX
) -> Tensor:
    """An operator's input: ``(..., H, W)`` (``(..., D, H, W)``) with non-empty spatial axes."""
    value = check_dtype(caller, name, check_tensor(caller, name, value), dtypes)
    if value.dim() < spatial_dims:
        raise ValueError(
            f"{caller}: `{name}` must have at least {spatial_dims} dimensions {_AXES[spatial_dims]}, "
            f"got shape {tuple(value.shape)}"
        )
    if 0 in value.shape[-spatial_dims:]:
        raise ValueError(f"{caller}: the spatial axes of `{name}` must not be empty, got shape {tuple(value.shape)}")
    return value


def check_min_size(caller: str, name: str, value: Tensor, spatial_dims: int, minimum: int, why: str) -> Tensor:
    """At least ``minimum`` samples along each of the last ``spatial_dims`` axes, as ``why`` needs."""
    if any(s < minimum for s in value.shape[-spatial_dims:]):
        raise ValueError(
            f"{caller}: {why} needs at least {minimum} samples along each spatial axis of `{name}`, "
            f"got shape {tuple(value.shape)}"
        )
    return value


def check_batch(caller: str, name: str, value: Any, ranks: Sequence[int] = (4, 5)) -> Tensor:
    """A loss's input: ``(N, C, H, W)`` images (or ``(N, C, D, H, W)`` volumes where ``ranks`` has 5) of
    a real floating dtype, with at least 2 pixels along each spatial axis."""
    value = check_dtype(caller, name, check_tensor(caller, name, value), FLOATING)
    check_rank(
        caller, name, value, ranks, "(N, C, H, W) images" + (" or (N, C, D, H, W) volumes" if 5 in ranks else "")
    )
    if any(s < 2 for s in value.shape[2:]):
        raise ValueError(
            f"{caller}: `{name}` needs at least 2 pixels along each spatial axis, got shape {tuple(value.shape)}"
        )
    return value


def check_device(caller: str, name: str, value: Tensor, device: torch.device, owner: str) -> Tensor:
    """``value`` on ``device``, the device of ``owner`` (another argument, or a module's weights)."""
    if value.device != device:
        raise ValueError(f"{caller}: `{name}` must be on {owner}'s device {device}, got {value.device}")
    return value


def check_like(caller: str, name: str, value: Tensor, like_name: str, like: Tensor) -> Tensor:
    """``value`` with the shape, device and dtype of ``like`` (dtypes may differ under autocast)."""
    if value.shape != like.shape:
        raise ValueError(
            f"{caller}: `{like_name}` and `{name}` must have the same shape, "
            f"got {tuple(like.shape)} and {tuple(value.shape)}"
        )
    check_same_device(caller, name, value, like_name, like)
    if value.dtype != like.dtype and not autocast_enabled(like.device):
        raise TypeError(
            f"{caller}: `{like_name}` and `{name}` must have the same dtype, got {like.dtype} and {value.dtype}"
        )
    return value


def check_same_device(caller: str, name: str, value: Tensor, like_name: str, like: Tensor) -> Tensor:
    if value.device != like.device:
        raise ValueError(
            f"{caller}: `{like_name}` and `{name}` must be on the same device, got {like.device} and {value.device}"
        )
    return value


def check_computable_dtype(caller: str, name: str, value: Tensor, dtype: torch.dtype, owner: str) -> Tensor:
    """``value`` can meet weights of ``dtype`` in a convolution: the same dtype, or under autocast (which
    casts every floating dtype but float64) any two that are not float64."""
    if value.dtype == dtype or (autocast_enabled(value.device) and torch.float64 not in (value.dtype, dtype)):
        return value
    raise TypeError(
        f"{caller}: `{name}` must have the dtype of {owner}, {dtype}, got {value.dtype}: convert one to the other "
        "(e.g. module.to(dtype)), or run under torch.autocast (which does not cast float64)"
    )


def check_mask(caller: str, name: str, value: Any, input: Tensor) -> Optional[Tensor]:
    """``None``, or a bool mask on ``input``'s device broadcast (as a view) to ``input``'s shape."""
    if value is None:
        return None
    if not isinstance(value, Tensor):
        raise TypeError(f"{caller}: `{name}` must be a bool torch.Tensor or None, got {type(value).__name__}")
    check_tensor(caller, name, value)
    if value.dtype != torch.bool:
        raise TypeError(f"{caller}: `{name}` must have dtype torch.bool (True where valid), got {value.dtype}")
    check_device(caller, name, value, input.device, "`input`")
    try:
        return value.expand(input.shape)
    except RuntimeError:
        raise ValueError(
            f"{caller}: `{name}` of shape {tuple(value.shape)} does not broadcast to `input`'s shape "
            f"{tuple(input.shape)}"
        ) from None


# torch.gradient's arguments ----------------------------------------------------------------------


def _check_depth_map(caller: str, name: str, value: Any) -> Tensor:
    """An ``(N, H, W)`` or ``(N, 1, H, W)`` floating tensor with at least one pixel."""
    value = check_tensor(caller, name, value)
    if value.dim() not in (3, 4) or (value.dim() == 4 and value.shape[1] != 1):
        raise ValueError(
            f"{caller}: `{name}` must be (N, H, W) or (N, 1, H, W) depth maps, got shape {tuple(value.shape)}"
        )
    if 0 in value.shape[-2:]:
        raise ValueError(f"{caller}: `{name}` must have at least one pixel, got shape {tuple(value.shape)}")
    return check_dtype(caller, name, value, FLOATING)


def check_depth_batch(caller: str, prediction: Any, target: Any, mask: Any) -> tuple[Tensor, Tensor, Tensor]:
    """The depth losses' ``prediction``, ``target`` and bool ``mask`` (True where the ground truth is
    valid) of one shape and device, as ``(N, H, W)`` views. Dtypes must agree, except under autocast."""
    prediction = _check_depth_map(caller, "prediction", prediction)
    target = _check_depth_map(caller, "target", target)
    shape = tuple(prediction.shape)
    if tuple(target.shape) != shape:
        raise ValueError(
            f"{caller}: `prediction` and `target` must have the same shape, got {shape} and {tuple(target.shape)}"
        )
    check_same_device(caller, "target", target, "prediction", prediction)
    if target.dtype != prediction.dtype and not autocast_enabled(prediction.device):
        raise TypeError(
            f"{caller}: `prediction` and `target` must have the same dtype, got {prediction.dtype} and {target.dtype}"
        )
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(
            f"{caller}: `mask` must be a bool torch.Tensor (True where the ground truth is valid), got {got}"
        )
    check_tensor(caller, "mask", mask)  # dense: a sparse mask cannot be viewed as (N, H, W)
    if tuple(mask.shape) != shape:
        raise ValueError(f"{caller}: `mask` must have the shape of `prediction` {shape}, got {tuple(mask.shape)}")
    check_same_device(caller, "mask", mask, "prediction", prediction)
    n, h, w = shape[0], shape[-2], shape[-1]
    return prediction.reshape(n, h, w), target.reshape(n, h, w), mask.reshape(n, h, w)


def _torch_int(value: Any) -> Optional[int]:
    """``value`` as an int where torch's argument parser takes it as one (an int, a NumPy integer, a 0-d
    integer tensor; not a bool, not a float), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Tensor):
        if value.dim() != 0 or value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
            return None
        return int(value)
    try:
        return _operator.index(value)
    except TypeError:
        return None


def check_edge_order(caller: str, name: str, value: Any) -> int:
    """1 or 2, as ``torch.gradient`` takes it: ``TypeError`` for a non-int, :class:`GradientError` otherwise."""
    edge_order = _torch_int(value)
    if edge_order is None:
        raise TypeError(f"{caller}: `{name}` must be the int 1 or 2, got {_quote(value)}")
    if edge_order not in (1, 2):
        raise GradientError(f"{caller}: `{name}` must be 1 or 2, got {_quote(value)}")
    return edge_order


def check_dim_argument(caller: str, name: str, value: Any) -> Optional[list[int]]:
    """``None``, an int or a list or tuple of ints (as ``torch.gradient`` parses them), as a list."""
    if value is None:
        return None
    single = _torch_int(value)
    if single is not None:
        return [single]
    dims = [_torch_int(d) for d in value] if isinstance(value, (list, tuple)) else [None]
    if any(d is None for d in dims):
        raise TypeError(f"{caller}: `{name}` must be an int or a list or tuple of ints, got {_quote(value)}")
    return dims  # type: ignore[return-value]


def check_dims(caller: str, name: str, value: Optional[list[int]], ndim: int) -> list[int]:
    """The dimensions (from :func:`check_dim_argument`) as negative indices into ``ndim`` dimensions,
    each in range (``IndexError`` otherwise, as torch raises) and none repeated."""
    if value is None:
        return [d - ndim for d in range(ndim)]
    if ndim == 0 and value:
        raise IndexError(f"Dimension specified as {value[0]} but tensor has no dimensions")
    wrapped: list[int] = []
    for d in value:
        low, high = -max(ndim, 1), max(ndim, 1) - 1
        if not low <= d <= high:
            raise IndexError(f"Dimension out of range (expected to be in range of [{low}, {high}], but got {d})")
        d = d - ndim if d >= 0 else d
        if d in wrapped:
            raise GradientError(f"{caller}: dim {d + ndim} appears multiple times in `{name}`")
        wrapped.append(d)
    return wrapped


def _is_scalar(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def check_spacing(caller: str, name: str, value: Any) -> Any:
    """``torch.gradient``'s spacing: ``None`` (1), a number or 0-d tensor (kept as a tensor, so that its value
    is never read on the host), or a list or tuple of numbers or of tensors (as a list). Bools are not numbers
    here."""
    message = f"{caller}: `{name}` must be a number, a list of numbers or a list of 1-D coordinate tensors"
    if value is None:
        return 1
    if isinstance(value, Tensor):
        if value.dim() == 0 and value.dtype != torch.bool:
            return value
        raise TypeError(
            f"{message}, got a tensor of shape {tuple(value.shape)} and dtype {value.dtype} "
            "(pass coordinates as a list or tuple of tensors)"
        )
    if _is_scalar(value):
        return value
    if isinstance(value, (list, tuple)) and (
        all(isinstance(s, Tensor) for s in value) or all(_is_scalar(s) for s in value)
    ):
        return list(value)
    raise TypeError(f"{message}, got {_quote(value)}")


def check_spacing_for(caller: str, name: str, value: Any, input: Tensor, dims: list[int], dim_given: bool) -> list[Any]:
    """One spacing per dimension in ``dims``: coordinate tensors 1-D, one per sample, on ``input``'s device."""
    if not isinstance(value, list):
        return [value] * len(dims)
    if not dim_given and len(value) != input.dim():
        raise GradientError(
            f"{caller}: `{name}` must be a scalar or a list of length input.dim() = {input.dim()} when `dim` is "
            f"not given, got a list of length {len(value)}"
        )
    if dim_given and len(value) != len(dims):
        raise GradientError(
            f"{caller}: `{name}` and `dim` must have the same length, got {len(value)} spacings for {len(dims)} dims"
        )
    for d, coords in zip(dims, value):
        if not isinstance(coords, Tensor):
            continue
        if coords.layout != torch.strided:
            raise GradientError(
                f"{caller}: each coordinate tensor in `{name}` must be dense, got layout {coords.layout}"
            )
        if coords.dtype not in GRADIENT_DTYPES + (torch.uint8,):
            raise GradientError(
                f"{caller}: the coordinate tensors in `{name}` must be floating, complex or integer, got {coords.dtype}"
            )
        if coords.device != input.device:
            raise GradientError(
                f"{caller}: every coordinate tensor in `{name}` must be on input's device {input.device}, "
                f"got {coords.device}"
            )
        if coords.dim() != 1:
            raise GradientError(
                f"{caller}: each coordinate tensor in `{name}` must be 1-D, got shape {tuple(coords.shape)}"
            )
        if coords.shape[0] != input.shape[d]:
            raise GradientError(
                f"{caller}: `{name}`: the coordinates for dim {d + input.dim()} must have one value per sample "
                f"({input.shape[d]}), got {coords.shape[0]}"
            )
    return value


def check_gradient_input(caller: str, name: str, value: Any) -> Tensor:
    """What ``torch.gradient`` computes on: a dense tensor of a floating, complex or signed integer dtype
    (:class:`GradientError` for the others, where torch raises ``NotImplementedError``)."""
    if not isinstance(value, Tensor):
        check_tensor(caller, name, value)
    if value.layout != torch.strided:
        raise GradientError(f"{caller}: `{name}` must be a dense (strided) tensor, got layout {value.layout}")
    if value.dtype not in GRADIENT_DTYPES:
        supported = ", ".join(str(d).removeprefix("torch.") for d in GRADIENT_DTYPES)
        raise GradientError(
            f"{caller}: `{name}` has dtype {value.dtype}, which torch.gradient does not support "
            f"(supported: {supported})"
        )
    return value


# OpenCV's arguments, for torchgrad.cv2_compat (which exports the constants) ------------------------------

BORDER_CONSTANT = 0
BORDER_REPLICATE = 1
BORDER_REFLECT = 2
BORDER_REFLECT_101 = 4
BORDER_REFLECT101 = 4
BORDER_DEFAULT = 4
BORDER_ISOLATED = 16
CV_32F = 5
CV_64F = 6
FILTER_SCHARR = -1

# OpenCV's border types as torchgrad's padding modes. BORDER_ISOLATED (16) may be or-ed with any of them: it
# tells a filter on a region of a larger image not to read outside the region, so on a whole image it changes
# nothing. BORDER_WRAP (3) is refused by OpenCV's filters, BORDER_TRANSPARENT (5) by its border interpolation.
OPENCV_PADDINGS = {
    BORDER_CONSTANT: "zeros",
    BORDER_REPLICATE: "replicate",
    BORDER_REFLECT: "symmetric",
    BORDER_REFLECT_101: "reflect",
}
_BORDER_NAMES = {0: "BORDER_CONSTANT", 1: "BORDER_REPLICATE", 2: "BORDER_REFLECT", 4: "BORDER_REFLECT_101"}
_REFUSED_BORDERS = {3: "BORDER_WRAP (3): OpenCV's filters refuse it", 5: "BORDER_TRANSPARENT (5): OpenCV refuses it"}
_INTEGER_DEPTHS = {0: "CV_8U", 1: "CV_8S", 2: "CV_16U", 3: "CV_16S", 4: "CV_32S"}
OPENCV_MAX_KSIZE = 7  # torchgrad's stencils have at most 7 taps; OpenCV goes to 31


def check_opencv_src(caller: str, name: str, value: Any) -> Tensor:
    """An ``(H, W)`` or ``(H, W, C)`` floating tensor with no empty axis."""
    value = check_dtype(caller, name, check_tensor(caller, name, value), FLOATING)
    check_rank(caller, name, value, (2, 3), "an (H, W) or (H, W, C) image")
    return check_not_empty(caller, name, value, " (OpenCV refuses empty images)")


def check_opencv_ddepth(
    caller: str, name: str, value: Any, src: Tensor, widen: bool = True, narrow: bool = False
) -> torch.dtype:
    """The dtype of the result: ``src``'s for -1, float32 for CV_32F, float64 for CV_64F, where OpenCV's filter
    takes it: CV_64F from a narrower ``src`` where ``widen``, CV_32F from float64 where ``narrow``."""
    ddepth = check_int(caller, name, value)
    if ddepth in _INTEGER_DEPTHS:
        raise ValueError(
            f"{caller}: `{name}` {_INTEGER_DEPTHS[ddepth]} ({ddepth}) is an integer depth, which rounds and "
            "saturates and has no gradient; use -1, CV_32F (5) or CV_64F (6) and round the result if needed"
        )
    if ddepth not in (-1, CV_32F, CV_64F):
        raise ValueError(f"{caller}: `{name}` must be -1, CV_32F (5) or CV_64F (6), got {ddepth}")
    dtype = {-1: src.dtype, CV_32F: torch.float32, CV_64F: torch.float64}[ddepth]
    if src.dtype != dtype and ((dtype == torch.float64 and not widen) or (src.dtype == torch.float64 and not narrow)):
        depth = "CV_64F (6)" if ddepth == CV_64F else "CV_32F (5)"
        raise ValueError(
            f"{caller}: `{name}` {depth} from a {src.dtype} `src` is refused by OpenCV for this filter and ksize; "
            "use -1, or convert `src` first"
        )
    return dtype


def check_opencv_ksize(caller: str, name: str, value: Any, scharr: bool) -> int:
    """An odd kernel size from 1 to ``OPENCV_MAX_KSIZE``; any ``ksize <= 0`` (FILTER_SCHARR) where ``scharr``."""
    ksize = check_int(caller, name, value)
    if scharr and ksize <= 0:
        return FILTER_SCHARR
    if ksize <= 0 or ksize % 2 == 0 or ksize > 31:
        raise ValueError(f"{caller}: `{name}` must be odd, from 1 to 31 in OpenCV, got {ksize}")
    if ksize > OPENCV_MAX_KSIZE:
        raise ValueError(
            f"{caller}: `{name}` {ksize} is accepted by OpenCV but not here: torchgrad's stencils have at most "
            f"{OPENCV_MAX_KSIZE} taps (ksize 1, 3, 5 or 7)"
        )
    return ksize


def check_opencv_orders(caller: str, dx: Any, dy: Any, ksize: Any, filter_name: str = "Sobel") -> tuple[int, int, int]:
    """Derivative orders that OpenCV's kernels for ``ksize`` take."""
    dx = check_int(caller, "dx", dx, minimum=0)
    dy = check_int(caller, "dy", dy, minimum=0)
    ksize = check_opencv_ksize(caller, "ksize", ksize, scharr=True)
    if ksize == FILTER_SCHARR:
        if dx + dy != 1:
            raise ValueError(
                f"{caller}: `dx` and `dy` must be (1, 0) or (0, 1), as {filter_name}'s kernel is a first derivative, "
                f"got dx={dx}, dy={dy}"
            )
        return dx, dy, ksize
    if dx + dy == 0:
        raise ValueError(f"{caller}: `dx` and `dy` must not both be 0 (OpenCV needs dx + dy > 0)")
    taps = max(ksize, 3)  # ksize 1 is a 3-tap derivative kernel
    for name_, order in (("dx", dx), ("dy", dy)):
        if order >= taps:
            raise ValueError(
                f"{caller}: `{name_}` must be less than the kernel's {taps} taps (OpenCV needs ksize > order), got "
                f"{name_}={order} with ksize={ksize}"
            )
    return dx, dy, ksize


def check_opencv_scalar(caller: str, name: str, value: Any) -> float:
    """A finite number of a type that OpenCV's bindings take for a ``double``, as a float: an int or a float
    (subclasses too: an ``IntEnum``, NumPy's float64), a NumPy integer, float16 or float32. Not a bool, a
    ``Fraction``, a ``Decimal``, a complex number (OpenCV drops the imaginary part of NumPy's complex128), NumPy's
    longdouble, an array or a tensor."""
    if type(value) is not float and type(value) is not int:  # the common case, without the checks below
        numpy = sys.modules.get("numpy")  # a NumPy scalar comes with NumPy imported; torchgrad does not import it
        numpy_types = () if numpy is None else (numpy.integer, numpy.float16, numpy.float32)
        if isinstance(value, bool) or not isinstance(value, (int, float, *numpy_types)):
            raise TypeError(
                f"{caller}: `{name}` must be an int or a float (Python's or NumPy's, as OpenCV takes), got "
                f"{reprlib.repr(value)}"
            )
    return check_number(caller, name, value)


def check_opencv_affine(caller: str, scale: Any, delta: Any, border: Any) -> tuple[float, float, str]:
    """``scale`` and ``delta`` as finite floats, and ``borderType`` as a padding mode."""
    scale = check_opencv_scalar(caller, "scale", scale)
    delta = check_opencv_scalar(caller, "delta", delta)
    border = check_int(caller, "borderType", border)
    base = border & ~BORDER_ISOLATED
    if base in _REFUSED_BORDERS:
        raise ValueError(f"{caller}: `borderType` must not be {_REFUSED_BORDERS[base]}")
    if base not in OPENCV_PADDINGS or border < 0:
        accepted = ", ".join(f"{name} ({value})" for value, name in _BORDER_NAMES.items())
        raise ValueError(
            f"{caller}: `borderType` must be one of {accepted}, optionally | BORDER_ISOLATED (16), got {border}"
        )
    return scale, delta, OPENCV_PADDINGS[base]


def check_opencv_spatial_gradient(caller: str, ksize: Any, border_type: Any) -> str:
    """OpenCV's ``spatialGradient`` arguments: ``ksize`` 3, ``borderType`` BORDER_DEFAULT or BORDER_REPLICATE, as a
    padding mode."""
    if check_int(caller, "ksize", ksize) != 3:
        raise ValueError(f"{caller}: `ksize` must be 3 (OpenCV's spatialGradient takes no other size), got {ksize}")
    border = check_int(caller, "borderType", border_type)
    if border not in (BORDER_REPLICATE, BORDER_REFLECT_101):
        raise ValueError(
            f"{caller}: `borderType` must be BORDER_DEFAULT (= BORDER_REFLECT_101, 4) or BORDER_REPLICATE (1), the "
            f"border types OpenCV's spatialGradient takes, got {border_type}"
        )
    return OPENCV_PADDINGS[border]
