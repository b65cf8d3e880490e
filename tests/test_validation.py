"""The validation contract of every public entry point: a TypeError (wrong type or dtype) or ValueError (wrong
value, shape or device) that names the caller's argument and quotes what came, before any work; the VGG
input-range warning under threads; the losses on the meta device; torchgrad.gradient against torch.gradient.

Bad arguments are listed in tables (``FLAG_CALLS``, ``NUMBER_CALLS``, ``OPERATOR_CALLS``, ``BAD_ARGUMENTS``,
``OPENCV_CALLS``...), each row one entry point given one bad argument, run by a few parametrized tests.
"""

from __future__ import annotations

import copy
import math
import sys
import threading
import warnings
from decimal import Decimal
from fractions import Fraction
from typing import Any, Callable, Optional

import cv2
import numpy as np
import pytest
import torch

import torchgrad
import torchgrad.losses.vgg as vgg_module
from torchgrad import (
    GradientError,
    cv2_compat,
    gradient,
    hessian,
    image_gradients,
    laplacian,
    prewitt,
    sobel,
    tf_compat,
)
from torchgrad.losses import (
    EdgeAwareSmoothnessLoss,
    EdgeLoss,
    GradientDifferenceLoss,
    GradientLoss,
    PerceptualGradientLoss,
    PerceptualLoss,
    StyleLoss,
    TotalVariationLoss,
    VGGFeatures,
    gram_matrix,
    layer_names,
)
from torchgrad.losses.functional import (
    edge_aware_smoothness_loss,
    edge_loss,
    gradient_difference_loss,
    gradient_loss,
    total_variation_loss,
)

IMAGES = torch.rand(2, 3, 8, 8)
GREY = torch.rand(2, 1, 8, 8)


def _error(error: type[Exception], call: Callable[[], Any], name: Optional[str], *quoted: str) -> str:
    """Assert that ``call`` raises ``error`` whose message names `name` (as ```name``` or ```name=...```; None: a
    message that names no argument) and quotes each of ``quoted``."""
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert name is None or f"`{name}`" in message or f"`{name}=" in message, message
    for text in quoted:
        assert text in message, message
    return message


_BUILT: dict[type, Any] = {}


def _vgg(cls: type = VGGFeatures, **options: Any) -> Any:
    """A small VGG module (layer relu1_1 unless ``options`` say) with random weights (the warning about them
    silenced); with default options, a copy of one built once per class (building initialises the whole network
    before cutting it)."""
    if not options and cls in _BUILT:
        return copy.deepcopy(_BUILT[cls])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = cls(**{"layers": ("relu1_1",), "weights": None, **options})
    if not options:
        _BUILT[cls] = copy.deepcopy(module)
    return module


VGG_LOSSES = [PerceptualLoss, StyleLoss, PerceptualGradientLoss]
OPERATORS = "'diff', 'sobel', 'scharr', 'central', 'prewitt', 'laplacian', 'hessian'"  # as the losses list them


# VGG: dtypes, devices, 0-d tensors, options --------------------------------------------------------


@pytest.mark.parametrize("cls", VGG_LOSSES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_vgg_losses_refuse_an_input_dtype_other_than_the_modules(cls: type, dtype: torch.dtype) -> None:
    loss = _vgg(cls)
    x = IMAGES.to(dtype)
    _error(TypeError, lambda: loss(x, x), "input", str(dtype), "torch.float32")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_vgg_features_refuse_an_input_dtype_other_than_the_modules(dtype: torch.dtype) -> None:
    _error(TypeError, lambda: _vgg()(IMAGES.to(dtype)), "x", str(dtype), "torch.float32")


def test_vgg_features_take_other_dtypes_under_autocast_but_not_float64() -> None:
    vgg = _vgg()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert vgg(IMAGES.half())["relu1_1"].dtype == torch.bfloat16
        _error(TypeError, lambda: vgg(IMAGES.double()), "x", "torch.float64")


@pytest.mark.parametrize("cls", VGG_LOSSES)
def test_vgg_losses_refuse_input_and_target_on_different_devices(cls: type) -> None:
    loss = _vgg(cls)
    target = torch.empty(2, 3, 8, 8, device="meta")
    _error(ValueError, lambda: loss(IMAGES, target), "target", "meta", "cpu")


@pytest.mark.parametrize("cls", [VGGFeatures, *VGG_LOSSES])
def test_vgg_modules_refuse_an_input_off_the_modules_device(cls: type) -> None:
    module = _vgg(cls)
    x = torch.empty(2, 3, 8, 8, device="meta")
    args, name = ((x,), "x") if cls is VGGFeatures else ((x, x), "input")
    _error(ValueError, lambda: module(*args), name, "meta", "cpu")


@pytest.mark.parametrize("cls", VGG_LOSSES)
@pytest.mark.parametrize("which", ["input", "target"])
def test_vgg_losses_refuse_0d_tensors(cls: type, which: str) -> None:
    loss = _vgg(cls)
    scalar = torch.tensor(0.5)
    args = (scalar, IMAGES) if which == "input" else (IMAGES, scalar)
    _error(ValueError, lambda: loss(*args), which, "shape ()")


def test_vgg_losses_check_both_tensors_before_running_vgg() -> None:
    loss = _vgg(PerceptualLoss)
    calls: list[int] = []
    loss.features.net[0].register_forward_hook(lambda *a: calls.append(1))
    _error(ValueError, lambda: loss(GREY, IMAGES), "input", "must have 3 channels", "(2, 1, 8, 8)")
    _error(ValueError, lambda: loss(IMAGES, torch.rand(2, 3, 8)), "target", "(2, 3, 8)")
    _error(TypeError, lambda: loss.set_target([1.0]), "target", "list")
    assert calls == []


@pytest.mark.parametrize("cls", [VGGFeatures, *VGG_LOSSES])
@pytest.mark.parametrize(
    "option, value, error, quoted",
    [
        ("layers", None, TypeError, "None"),
        ("layers", 3, TypeError, "3"),
        ("layers", [["relu1_1"]], TypeError, "[['relu1_1']]"),
        ("layers", [], ValueError, "[]"),
        ("network", ["vgg16"], TypeError, "['vgg16']"),
        ("network", "vgg11", ValueError, "'vgg11'"),
        ("input_range", (0, math.inf), ValueError, "inf"),
        ("input_range", (False, True), TypeError, "(False, True)"),
        ("input_range", None, TypeError, "None"),
        ("pooling", None, TypeError, "None"),
        ("repeat_grey", "False", TypeError, "'False'"),
        ("weights", 3, TypeError, "3"),
    ],
)
def test_vgg_options(cls: type, option: str, value: Any, error: type, quoted: str) -> None:
    options = {"layers": ("relu1_1",), "weights": None, option: value}
    _error(error, lambda: cls(**options), option, quoted)


@pytest.mark.parametrize("cls", VGG_LOSSES)
@pytest.mark.parametrize(
    "value, error, quoted",
    [
        ([None], TypeError, "[None]"),
        ([math.nan], ValueError, "nan"),
        ([math.inf], ValueError, "inf"),
        (2.0, TypeError, "must be a sequence of numbers, one per layer, got 2.0"),
    ],
)
def test_layer_weights(cls: type, value: Any, error: type, quoted: str) -> None:
    _error(error, lambda: cls(layers=("relu1_1",), layer_weights=value, weights=None), "layer_weights", quoted)


@pytest.mark.parametrize("cls", VGG_LOSSES)
def test_vgg_losses_refuse_unknown_keyword_arguments_before_building_vgg(cls: type) -> None:
    with pytest.raises(TypeError, match=f"{cls.__name__}: unexpected keyword argument.*'pooling_mode'"):
        cls(layers=("relu1_1",), weights=None, pooling_mode="avg")


# PerceptualGradientLoss: one target rule for both terms, errors in the caller's names -------------------


def test_perceptual_gradient_loss_wants_a_target_of_the_input_shape_before_any_work() -> None:
    loss = _vgg(PerceptualGradientLoss)
    calls: list[int] = []
    loss.perceptual.features.net[0].register_forward_hook(lambda *a: calls.append(1))
    _error(ValueError, lambda: loss(IMAGES, IMAGES[:1]), "target", "(2, 3, 8, 8)", "(1, 3, 8, 8)")
    _error(ValueError, lambda: loss(torch.rand(2, 3, 1, 1), torch.rand(2, 3, 1, 1)), "input", "(2, 3, 1, 1)")
    _error(TypeError, lambda: loss(IMAGES, IMAGES.double()), "target", "torch.float64")
    assert calls == []


@pytest.mark.parametrize(
    "option, value, error, quoted",
    [
        ("gradient_p", 3, ValueError, "3"),
        ("gradient_p", 2.0, TypeError, "2.0"),
        ("gradient_operator", "canny", ValueError, f"must be one of {OPERATORS}, got 'canny'"),
        ("gradient_weight", math.nan, ValueError, "nan"),
        ("perceptual_weight", math.inf, ValueError, "inf"),
        ("perceptual_weight", "1", TypeError, "'1'"),
        ("criterion", "huber", ValueError, "'huber'"),
        ("normalize_features", 1, TypeError, "1"),
        ("reduction", "batchmean", ValueError, "'batchmean'"),
    ],
)
def test_perceptual_gradient_loss_names_its_own_arguments(option: str, value: Any, error: type, quoted: str) -> None:
    message = _error(error, lambda: _vgg(PerceptualGradientLoss, **{option: value}), option, quoted)
    assert message.startswith("PerceptualGradientLoss: ")


# Flags are bools -------------------------------------------------------------------------------------

FLAG_CALLS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "sobel": ("normalized", lambda v: torchgrad.sobel(IMAGES, normalized=v)),
    "Sobel": ("normalized", lambda v: torchgrad.Sobel(normalized=v)),
    "scharr": ("normalized", lambda v: torchgrad.scharr(IMAGES, normalized=v)),
    "Scharr": ("normalized", lambda v: torchgrad.Scharr(normalized=v)),
    "prewitt": ("normalized", lambda v: torchgrad.prewitt(IMAGES, normalized=v)),
    "Prewitt": ("normalized", lambda v: torchgrad.Prewitt(normalized=v)),
    "hessian": ("normalized", lambda v: torchgrad.hessian(IMAGES, normalized=v)),
    "Hessian": ("normalized", lambda v: torchgrad.Hessian(normalized=v)),
    "laplacian": ("normalized", lambda v: torchgrad.laplacian(IMAGES, normalized=v)),
    "Laplacian": ("normalized", lambda v: torchgrad.Laplacian(normalized=v)),
    "gradient_magnitude": ("normalized", lambda v: torchgrad.gradient_magnitude(IMAGES, normalized=v)),
    "GradientMagnitude": ("normalized", lambda v: torchgrad.GradientMagnitude(normalized=v)),
    "gradient_loss": ("normalized", lambda v: gradient_loss(IMAGES, IMAGES, normalized=v)),
    "GradientLoss": ("normalized", lambda v: GradientLoss(normalized=v)),
    "gradient_difference_loss": ("normalized", lambda v: gradient_difference_loss(IMAGES, IMAGES, normalized=v)),
    "GradientDifferenceLoss": ("normalized", lambda v: GradientDifferenceLoss(operator="sobel", normalized=v)),
    "total_variation_loss": ("isotropic", lambda v: total_variation_loss(IMAGES, isotropic=v)),
    "TotalVariationLoss": ("isotropic", lambda v: TotalVariationLoss(isotropic=v)),
    "edge_aware_smoothness_loss": ("normalize", lambda v: edge_aware_smoothness_loss(GREY, IMAGES, normalize=v)),
    "EdgeAwareSmoothnessLoss": ("normalize", lambda v: EdgeAwareSmoothnessLoss(normalize=v)),
    "VGGFeatures": ("repeat_grey", lambda v: _vgg(repeat_grey=v)),
    "PerceptualLoss": ("normalize_features", lambda v: _vgg(PerceptualLoss, normalize_features=v)),
    "PerceptualGradientLoss": ("normalize_features", lambda v: _vgg(PerceptualGradientLoss, normalize_features=v)),
    "use_kernels": ("enabled", lambda v: torchgrad.use_kernels(v)),
}


@pytest.mark.parametrize("entry", FLAG_CALLS)
@pytest.mark.parametrize("value", ["False", 1, 0, None, np.bool_(True)])
def test_flags_must_be_bools(entry: str, value: Any) -> None:
    flag, call = FLAG_CALLS[entry]
    message = _error(TypeError, lambda: call(value), flag, f"must be True or False, got {value!r}")
    assert message.startswith(f"{entry}: ")


def test_sobel_normalized_false_is_unnormalised() -> None:
    assert torchgrad.Sobel(normalized=False)(IMAGES)[0].abs().max() > 1  # unnormalised kernels: |dy| up to 4


# Numbers are finite (and not bools) --------------------------------------------------------------------

NUMBER_CALLS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "GradientDifferenceLoss": ("alpha", lambda v: GradientDifferenceLoss(alpha=v)),
    "gradient_difference_loss": ("alpha", lambda v: gradient_difference_loss(IMAGES, IMAGES, alpha=v)),
    "GradientMagnitude": ("eps", lambda v: torchgrad.GradientMagnitude(eps=v)),
    "gradient_magnitude": ("eps", lambda v: torchgrad.gradient_magnitude(IMAGES, eps=v)),
    "TotalVariationLoss": ("eps", lambda v: TotalVariationLoss(isotropic=True, eps=v)),
    "total_variation_loss": ("eps", lambda v: total_variation_loss(IMAGES, isotropic=True, eps=v)),
    "EdgeLoss": ("eps", lambda v: EdgeLoss(eps=v)),
    "edge_loss": ("eps", lambda v: edge_loss(IMAGES, IMAGES, eps=v)),
    "PerceptualGradientLoss.gradient_weight": (
        "gradient_weight",
        lambda v: _vgg(PerceptualGradientLoss, gradient_weight=v),
    ),
    "PerceptualGradientLoss.perceptual_weight": (
        "perceptual_weight",
        lambda v: _vgg(PerceptualGradientLoss, perceptual_weight=v),
    ),
    "VGGFeatures": ("input_range", lambda v: _vgg(input_range=(0.0, v))),
    "PerceptualLoss": ("layer_weights", lambda v: _vgg(PerceptualLoss, layer_weights=[v])),
    "StyleLoss": ("layer_weights", lambda v: _vgg(StyleLoss, layer_weights=[v])),
}


@pytest.mark.parametrize("entry", NUMBER_CALLS)
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_numbers_must_be_finite(entry: str, value: Any) -> None:
    name, call = NUMBER_CALLS[entry]
    message = _error(ValueError, lambda: call(value), name, repr(value))
    assert "must be finite" in message or "must hold finite numbers" in message, message  # a number; a sequence


@pytest.mark.parametrize("entry", NUMBER_CALLS)
@pytest.mark.parametrize("value", [True, "1", None, 1j])
def test_numbers_must_be_real_numbers(entry: str, value: Any) -> None:
    name, call = NUMBER_CALLS[entry]
    message = _error(TypeError, lambda: call(value), name, repr(value))
    if name not in ("input_range", "layer_weights"):  # sequences of numbers say what the sequence must be
        assert "must be a real number" in message, message


def test_gradient_difference_loss_alpha_inf_is_refused_not_zero() -> None:
    _error(ValueError, lambda: GradientDifferenceLoss(alpha=math.inf), "alpha", "inf")
    assert GradientDifferenceLoss(alpha=1e3)(IMAGES, IMAGES * 2) > 0


# Integer options: ints, not bools, floats or None ----------------------------------------------------------


@pytest.mark.parametrize(
    "fn, call",
    [
        ("gradient_magnitude", lambda v: torchgrad.gradient_magnitude(IMAGES, spatial_dims=v)),
        ("GradientMagnitude", lambda v: torchgrad.GradientMagnitude(spatial_dims=v)),
        ("sobel", lambda v: torchgrad.sobel(IMAGES, spatial_dims=v)),
        ("Sobel", lambda v: torchgrad.Sobel(spatial_dims=v)),
        ("image_gradients", lambda v: torchgrad.image_gradients(IMAGES, spatial_dims=v)),
        ("ImageGradients", lambda v: torchgrad.ImageGradients(spatial_dims=v)),
    ],
)
@pytest.mark.parametrize("value", [None, 2.0, True, "2"])
def test_spatial_dims_must_be_an_int(fn: str, call: Callable[[Any], Any], value: Any) -> None:
    message = _error(TypeError, lambda: call(value), "spatial_dims", f"must be the int 2 or 3, got {value!r}")
    assert message.startswith(f"{fn}: ")


@pytest.mark.parametrize(
    "call, name, optional",
    [
        (lambda v: GradientLoss(p=v), "p", True),  # None: the penalty says (L1 by default)
        (lambda v: gradient_loss(IMAGES, IMAGES, p=v), "p", True),
        (lambda v: TotalVariationLoss(p=v), "p", False),
        (lambda v: total_variation_loss(IMAGES, p=v), "p", False),
    ],
)
def test_p_must_be_the_int_1_or_2(call: Callable[[Any], Any], name: str, optional: bool) -> None:
    for value in (2.0, True, "1") if optional else (2.0, True, None):
        _error(TypeError, lambda: call(value), name, f"must be the int 1 or 2, got {value!r}")
    _error(ValueError, lambda: call(3), name, "must be 1 or 2, got 3")
    assert call(np.int64(2)) is not None  # NumPy integers are ints


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda v: GradientLoss(reduction=v), "reduction"),
        (lambda v: GradientLoss(operator=v), "operator"),
        (lambda v: torchgrad.sobel(IMAGES, padding=v), "padding"),
        (lambda v: torchgrad.scharr(IMAGES, padding=v), "padding"),
        (lambda v: torchgrad.gradient_magnitude(IMAGES, operator=v), "operator"),
        (lambda v: _vgg(pooling=v), "pooling"),
        (lambda v: _vgg(PerceptualLoss, criterion=v), "criterion"),
    ],
)
def test_names_must_be_strings_from_the_list(call: Callable[[Any], Any], name: str) -> None:
    for value in (None, ["mean"], 1):
        _error(TypeError, lambda: call(value), name, "must be one of ", f"got {value!r}")
    _error(ValueError, lambda: call("MEAN"), name, "must be one of ", "got 'MEAN'")


# tf_compat names `images` and quotes the NHWC shape -------------------------------------------------------


def test_tf_compat_sobel_edges_needs_two_pixels_and_says_so_in_nhwc() -> None:
    message = _error(ValueError, lambda: tf_compat.sobel_edges(torch.zeros(2, 1, 6, 3)), "images", "(2, 1, 6, 3)")
    assert "(2, 3, 1, 6)" not in message  # not the NCHW shape the caller never passed
    assert tf_compat.image_gradients(torch.zeros(2, 1, 6, 3))[0].shape == (2, 1, 6, 3)


# Dtypes and layouts that torch cannot compute on ---------------------------------------------------------

OPERATOR_CALLS: dict[str, tuple[str, Callable[[torch.Tensor], Any]]] = {
    "image_gradients": ("image", lambda t: torchgrad.image_gradients(t)),
    "ImageGradients": ("image", lambda t: torchgrad.ImageGradients()(t)),
    "sobel": ("image", lambda t: torchgrad.sobel(t)),
    "Sobel": ("image", lambda t: torchgrad.Sobel()(t)),
    "scharr": ("image", lambda t: torchgrad.scharr(t)),
    "Scharr": ("image", lambda t: torchgrad.Scharr()(t)),
    "gradient_magnitude": ("image", lambda t: torchgrad.gradient_magnitude(t)),
    "GradientMagnitude": ("image", lambda t: torchgrad.GradientMagnitude()(t)),
    "gradient_loss": ("input", lambda t: gradient_loss(t, t)),
    "GradientLoss": ("input", lambda t: GradientLoss()(t, t)),
    "gradient_difference_loss": ("input", lambda t: gradient_difference_loss(t, t)),
    "GradientDifferenceLoss": ("input", lambda t: GradientDifferenceLoss()(t, t)),
    "total_variation_loss": ("input", lambda t: total_variation_loss(t)),
    "TotalVariationLoss": ("input", lambda t: TotalVariationLoss()(t)),
    "edge_aware_smoothness_loss": ("disparity", lambda t: edge_aware_smoothness_loss(t, IMAGES)),
    "EdgeAwareSmoothnessLoss": ("image", lambda t: EdgeAwareSmoothnessLoss()(GREY, t)),
    "edge_loss": ("input", lambda t: edge_loss(t, t)),
    "EdgeLoss": ("input", lambda t: EdgeLoss()(t, t)),
    "VGGFeatures": ("x", lambda t: _vgg()(t)),
    "PerceptualLoss": ("input", lambda t: _vgg(PerceptualLoss)(t, t)),
    "StyleLoss": ("target", lambda t: _vgg(StyleLoss)(IMAGES, t)),
    "PerceptualGradientLoss": ("input", lambda t: _vgg(PerceptualGradientLoss)(t, t)),
    "gram_matrix": ("features", lambda t: gram_matrix(t)),
}
UNSUPPORTED = {
    "float8_e4m3fn": lambda: IMAGES.to(torch.float8_e4m3fn),
    "float8_e5m2": lambda: IMAGES.to(torch.float8_e5m2),
    "complex32": lambda: IMAGES.to(torch.complex32),
    "uint16": lambda: (IMAGES * 9).int().to(torch.uint16),
    "int8": lambda: (IMAGES * 9).to(torch.int8),
    "bool": lambda: IMAGES > 0.5,
}


@pytest.mark.parametrize("entry", OPERATOR_CALLS)
@pytest.mark.parametrize("dtype", UNSUPPORTED)
def test_unsupported_dtypes_are_type_errors(entry: str, dtype: str) -> None:
    name, call = OPERATOR_CALLS[entry]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # complex32 is experimental
        tensor = UNSUPPORTED[dtype]()
    message = _error(TypeError, lambda: call(tensor), name, f"torch.{dtype}")
    floating = "floating" in message and f"dtype, got torch.{dtype}" in message  # "a (real) floating (or complex)"
    assert floating or "same dtype" in message, message  # a target: its input's dtype


@pytest.mark.parametrize("entry", OPERATOR_CALLS)
def test_sparse_tensors_are_type_errors(entry: str) -> None:
    name, call = OPERATOR_CALLS[entry]
    _error(TypeError, lambda: call(IMAGES.to_sparse()), name, "torch.sparse_coo")


IMAGE_OPERATORS = (
    torchgrad.image_gradients,
    torchgrad.sobel,
    torchgrad.scharr,
    torchgrad.prewitt,
    torchgrad.hessian,
    torchgrad.laplacian,
)


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8])
def test_integer_images_are_refused_by_the_image_operators_with_one_rule(dtype: torch.dtype) -> None:
    """Integer differences wrap around in the integer dtype (int8: 127 - (-128) is -1): refused, not wrapped."""
    image = torch.tensor([[-128, 127], [0, 0]]).to(dtype)
    for call in IMAGE_OPERATORS:
        message = _error(TypeError, lambda: call(image), "image", f"floating or complex dtype, got {dtype}", ".float()")
        assert message.startswith(f"{call.__name__}: "), message
    _error(TypeError, lambda: tf_compat.image_gradients(image.reshape(1, 2, 2, 1)), "images", str(dtype))


def test_gradient_takes_signed_integers_as_torch_gradient_does_wrap_around_included() -> None:
    """The drop-in promise: integer differences in the integer dtype, as torch.gradient takes them."""
    for dtype in (torch.int8, torch.int16, torch.int32, torch.int64):
        x = torch.tensor([torch.iinfo(dtype).min, torch.iinfo(dtype).max, 0, 5, 9], dtype=dtype)
        for kwargs in (dict(), dict(spacing=2.0), dict(edge_order=2)):
            (ours,), (theirs,) = torchgrad.gradient(x, **kwargs), torch.gradient(x, **kwargs)
            assert ours.dtype == theirs.dtype == torch.float32 and torch.equal(ours, theirs)
    assert torchgrad.gradient(torch.tensor([-128, 127], dtype=torch.int8))[0].tolist() == [-1.0, -1.0]  # wrapped
    assert torchgrad.gradient(torch.tensor([-128, 127]).double())[0].tolist() == [255.0, 255.0]


# One bad argument each ---------------------------------------------------------------------------------------
# BAD_ARGUMENTS[fn]: calls whose message begins with "fn: " (a module's forward reports its functional twin; None:
# torch's own words, as torch.gradient raises them), each (error, the argument the message names, the call, what
# the message quotes, ...); an argument of None: the message names none.

Row = tuple[Any, ...]
Z = torch.zeros(3, 3)
Z64 = Z.to(torch.complex64)
X24 = torch.randn(2, 4)
CUBE = torch.rand(1, 1, 4, 4, 4)
NHWC = torch.zeros(2, 0, 6, 3)
RGB32 = torch.rand(2, 3, 32, 32)
ON_META = torch.empty(8, 8, device="meta")
FLOAT64 = "same dtype, got torch.float32 and torch.float64"
TWICE = ("relu1_2", "relu1_2")


def _penalty_rows(make: Callable[..., Any]) -> list[Row]:
    """GradientLoss and gradient_loss: one penalty from ``p``, ``penalty`` and ``eps``."""
    return [
        (ValueError, "p", lambda: make(p=2, penalty="l1"), "`p=2` is penalty='l2' and contradicts `penalty='l1'`"),
        (
            ValueError,
            "eps",
            lambda: make(eps=0.1),
            "`eps` applies to penalty='charbonnier' only, got eps=0.1 with 'l1'",
        ),
        (ValueError, "penalty", lambda: make(penalty="huber"), "must be one of 'l1', 'l2', 'charbonnier', got 'huber'"),
        (TypeError, "penalty", lambda: make(penalty=1), "must be one of", "got 1"),
        (ValueError, "eps", lambda: make(penalty="charbonnier", eps=0.0), "must be a positive number, got 0.0"),
        (ValueError, "eps", lambda: make(penalty="charbonnier", eps=math.inf), "must be finite, got inf"),
        (TypeError, "eps", lambda: make(penalty="charbonnier", eps=True), "must be a real number, got True"),
    ]


def _pair_rows(loss: Callable[..., Any]) -> list[Row]:
    """A loss of an input and a target: a target of another shape, dtype or device, an input not a tensor."""
    return [
        (ValueError, "target", lambda: loss(IMAGES, IMAGES[..., 1:]), "same shape, got (2, 3, 8, 8) and (2, 3, 8, 7)"),
        (TypeError, "target", lambda: loss(IMAGES, IMAGES.double()), FLOAT64),
        (ValueError, "target", lambda: loss(IMAGES, torch.rand(2, 3, 8, 8, device="meta")), "same device"),
        (TypeError, "input", lambda: loss([1.0], IMAGES), "must be a torch.Tensor"),
    ]


def _edge_loss_rows(make: Callable[..., Any]) -> list[Row]:
    return [
        (ValueError, "eps", lambda: make(eps=0.0), "must be a positive number, got 0.0"),
        (ValueError, "reduction", lambda: make(reduction="avg"), "must be one of", "got 'avg'"),
    ]


def _cached_target_of_another_batch() -> Any:
    loss = _vgg(PerceptualLoss)
    loss.set_target(torch.rand(2, 3, 8, 8))
    return loss(torch.rand(3, 3, 8, 8))


BAD_ARGUMENTS: dict[Optional[str], list[Row]] = {
    "sobel": [
        (ValueError, "image", lambda: sobel(torch.zeros(4, 1)), "reflect padding needs", "(4, 1)"),
        (TypeError, "image", lambda: sobel(np.zeros((3, 3))), "must be a torch.Tensor, got ndarray"),
        (ValueError, "image", lambda: sobel(Z, spatial_dims=3), "3 dimensions (..., D, H, W), got shape (3, 3)"),
    ],
    "Sobel": [(ValueError, "padding", lambda: torchgrad.Sobel(padding="edge"), "must be one of", "got 'edge'")],
    "prewitt": [
        (ValueError, "padding", lambda: prewitt(Z, padding="edge"), "must be one of", "got 'edge'"),
        (ValueError, "image", lambda: prewitt(torch.zeros(4, 1)), "reflect padding needs at least 2 samples", "(4, 1)"),
        (ValueError, "spatial_dims", lambda: prewitt(torch.zeros(3, 3, 3, 3), spatial_dims=4), "must be 2 or 3, got 4"),
        (ValueError, "image", lambda: prewitt(Z, spatial_dims=3), "3 dimensions (..., D, H, W), got shape (3, 3)"),
    ],
    "Prewitt": [(ValueError, "padding", lambda: torchgrad.Prewitt(padding="edge"), "must be one of", "got 'edge'")],
    "hessian": [
        (ValueError, "padding", lambda: hessian(Z, padding="edge"), "must be one of", "got 'edge'"),
        (ValueError, "image", lambda: hessian(torch.zeros(1, 4)), "reflect padding needs at least 2 samples", "(1, 4)"),
        (ValueError, "image", lambda: hessian(torch.zeros(3)), "at least 2 dimensions (..., H, W), got shape (3,)"),
    ],
    "laplacian": [
        (ValueError, "ksize", lambda: laplacian(Z, ksize=5), "must be 1 or 3, got 5"),
        (TypeError, "ksize", lambda: laplacian(Z, ksize=3.0), "must be the int 1 or 3, got 3.0"),
        (ValueError, "ksize", lambda: laplacian(CUBE[0], ksize=3, spatial_dims=3), "got spatial_dims=3"),
        (ValueError, "padding", lambda: laplacian(Z, padding="edge"), "must be one of", "got 'edge'"),
        (ValueError, "image", lambda: laplacian(Z[:1]), "reflect padding needs at least 2 samples", "(1, 3)"),
    ],
    "Laplacian": [
        (ValueError, "ksize", lambda: torchgrad.Laplacian(ksize=3, spatial_dims=3), "`ksize=3` needs spatial_dims=2"),
    ],
    "image_gradients": [
        (TypeError, "image", lambda: image_gradients([[1.0, 2.0]]), "must be a torch.Tensor, got list"),
        (ValueError, "image", lambda: image_gradients(torch.zeros(5)), "at least 2 dimensions", "got shape (5,)"),
        (ValueError, "image", lambda: image_gradients(Z, spatial_dims=3), "at least 3 dimensions", "got shape (3, 3)"),
        (ValueError, "spatial_dims", lambda: image_gradients(Z, spatial_dims=1), "must be 2 or 3, got 1"),
    ],
    "ImageGradients": [
        (ValueError, "spatial_dims", lambda: torchgrad.ImageGradients(spatial_dims=5), "must be 2 or 3, got 5"),
    ],
    # tf_compat: `images`, and the NHWC shape the caller passed
    "tf_compat.sobel_edges": [
        (ValueError, "images", lambda: tf_compat.sobel_edges(Z[None]), "4-D [batch, height,", "got shape (1, 3, 3)"),
        (TypeError, "images", lambda: tf_compat.sobel_edges(NHWC.to(torch.uint8)), "torch.uint8"),
        (TypeError, "images", lambda: tf_compat.sobel_edges(IMAGES.to_sparse()), "sparse"),
        (ValueError, "images", lambda: tf_compat.sobel_edges(NHWC), "(2, 0, 6, 3)"),
    ],
    "tf_compat.image_gradients": [
        (ValueError, "images", lambda: tf_compat.image_gradients(CUBE), "4-D [batch, height, width, channels] tensor"),
        (TypeError, "images", lambda: tf_compat.image_gradients(np.zeros((1, 5, 5, 1))), "must be a torch.Tensor"),
        (TypeError, "images", lambda: tf_compat.image_gradients(IMAGES.to_sparse()), "sparse"),
        (ValueError, "images", lambda: tf_compat.image_gradients(NHWC), "(2, 0, 6, 3)"),
    ],
    "gradient": [
        (GradientError, "edge_order", lambda: gradient(X24, edge_order=3), "must be 1 or 2, got 3"),
        (
            GradientError,
            "dim",
            lambda: gradient(X24, edge_order=2),
            "edge_order + 1 = 3 samples, got size 2 along dim 0",
        ),
        (GradientError, "dim", lambda: gradient(X24, dim=[1, -1]), "dim 1 appears multiple times"),
        (GradientError, "spacing", lambda: gradient(X24, spacing=[1.0]), "list of length input.dim() = 2"),
        (GradientError, "spacing", lambda: gradient(X24, spacing=[1.0, 2.0], dim=1), "got 2 spacings for 1 dims"),
        (GradientError, "spacing", lambda: gradient(X24, spacing=[Z, torch.ones(4)]), "must be 1-D, got shape (3, 3)"),
        (
            GradientError,
            "spacing",
            lambda: gradient(X24, spacing=[torch.ones(3)], dim=1),
            "one value per sample (4), got 3",
        ),
        (
            GradientError,
            "spacing",
            lambda: gradient(X24, spacing=[ON_META[0, :4]], dim=1),
            "on input's device cpu, got meta",
        ),
        (TypeError, "spacing", lambda: gradient(X24, spacing=torch.arange(4.0)), "must be", "shape (4,)"),
        (TypeError, "dim", lambda: gradient(X24, dim=1.0), "must be", "got 1.0"),
        (TypeError, "input", lambda: gradient([1.0, 2.0]), "must be a torch.Tensor"),
    ],
    None: [
        (IndexError, None, lambda: gradient(X24, dim=2), "Dimension out of range"),
        (IndexError, None, lambda: gradient(torch.tensor(1.0), dim=0), "Dimension specified as 0 but tensor has no"),
    ],
    "Gradient": [
        (TypeError, "edge_order", lambda: torchgrad.Gradient(edge_order=1.0), "1.0"),
        (GradientError, "edge_order", lambda: torchgrad.Gradient(edge_order=3), "3"),
        (TypeError, "dim", lambda: torchgrad.Gradient(dim="a"), "'a'"),
        (TypeError, "spacing", lambda: torchgrad.Gradient(spacing="a"), "'a'"),
    ],
    "GradientLoss": [
        *_penalty_rows(GradientLoss),
        (ValueError, "operator", lambda: GradientLoss("canny"), f"must be one of {OPERATORS}, got 'canny'"),
        (ValueError, "padding", lambda: GradientLoss("sobel", padding="edge"), "must be one of"),
        (ValueError, "padding", lambda: GradientLoss("diff", padding="zeros"), "'laplacian', 'hessian', not to 'diff'"),
    ],
    "gradient_loss": [
        *_penalty_rows(lambda **options: gradient_loss(IMAGES, IMAGES, **options)),
        *_pair_rows(GradientLoss()),
        (
            ValueError,
            "input",
            lambda: GradientLoss("hessian")(CUBE, CUBE),
            "(N, C, H, W) images, got shape (1, 1, 4, 4, 4)",
        ),
        (
            ValueError,
            "input",
            lambda: GradientLoss()(Z[None], Z[None]),
            "or (N, C, D, H, W) volumes, got shape (1, 3, 3)",
        ),
        (
            ValueError,
            "input",
            lambda: GradientLoss()(GREY[..., :1], GREY[..., :1]),
            "at least 2 pixels along each spatial",
        ),
        (TypeError, "mask", lambda: GradientLoss()(IMAGES, IMAGES, IMAGES), "must have dtype torch.bool"),
        (
            ValueError,
            "mask",
            lambda: GradientLoss()(IMAGES, IMAGES, IMAGES[0, :, None] > 0),
            "(3, 1, 8, 8) does not broadcast",
        ),
        (ValueError, "mask", lambda: GradientLoss()(IMAGES, IMAGES, ON_META > 0), "must be on"),
    ],
    "edge_loss": [
        *_edge_loss_rows(lambda **options: edge_loss(IMAGES, IMAGES, **options)),
        *_pair_rows(EdgeLoss()),
        (ValueError, "input", lambda: EdgeLoss()(torch.rand(8), torch.rand(8)), "at least 2 dimensions", "shape (8,)"),
        (
            ValueError,
            "input",
            lambda: EdgeLoss()(GREY[..., :0], GREY[..., :0]),
            "must not be empty, got shape (2, 1, 8, 0)",
        ),
        (TypeError, "input", lambda: EdgeLoss()(Z64, Z64), "floating dtype, got torch.complex64"),
        (TypeError, "target", lambda: EdgeLoss()(IMAGES, None), "must be a torch.Tensor, got None"),
    ],
    "EdgeLoss": _edge_loss_rows(EdgeLoss),
    "GradientDifferenceLoss": [
        (ValueError, "operator", lambda: GradientDifferenceLoss(operator="canny"), f"one of {OPERATORS}, got 'canny'"),
        (ValueError, "alpha", lambda: GradientDifferenceLoss(alpha=0), "must be a positive number"),
        (ValueError, "reduction", lambda: GradientDifferenceLoss(reduction="max"), "'max'"),
    ],
    "gradient_difference_loss": [
        (ValueError, "operator", lambda: gradient_difference_loss(Z, Z, operator="canny"), f"{OPERATORS}, got"),
        (ValueError, "target", lambda: GradientDifferenceLoss()(IMAGES, IMAGES[..., 1:]), "same shape"),
    ],
    "TotalVariationLoss": [
        (ValueError, "isotropic", lambda: TotalVariationLoss(p=2, isotropic=True), "takes p=1"),
        (ValueError, "eps", lambda: TotalVariationLoss(isotropic=True, eps=-1.0), "-1.0"),
        (ValueError, "reduction", lambda: TotalVariationLoss(reduction="batchmean"), "'batchmean'"),
    ],
    "total_variation_loss": [(ValueError, "input", lambda: TotalVariationLoss()(Z), "got shape (3, 3)")],
    "EdgeAwareSmoothnessLoss": [
        (ValueError, "reduction", lambda: EdgeAwareSmoothnessLoss(reduction="batchmean"), "must be one of"),
    ],
    "edge_aware_smoothness_loss": [
        # no NaN from an image or disparity without channels
        *[
            (ValueError, which, lambda call=call, args=args: call(*args), "(2, 0, 8, 8)")
            for call in (edge_aware_smoothness_loss, EdgeAwareSmoothnessLoss())
            for which, args in (("disparity", (IMAGES[:, :0], IMAGES)), ("image", (GREY, IMAGES[:, :0])))
        ],
        (ValueError, "image", lambda: EdgeAwareSmoothnessLoss()(GREY, IMAGES[..., 1:]), "share N, H and W"),
        (ValueError, "disparity", lambda: EdgeAwareSmoothnessLoss()(CUBE, CUBE), "must be (N, C, H, W)"),
        (TypeError, "image", lambda: EdgeAwareSmoothnessLoss()(GREY, None), "must be a torch.Tensor"),
        (ValueError, "reduction", lambda: edge_aware_smoothness_loss(GREY, IMAGES, reduction="max"), "must be one of"),
    ],
    "VGGFeatures": [
        (ValueError, "x", lambda: _vgg()(RGB32[:1, :1]), "3 channels, got shape (1, 1, 32, 32) (pass repeat_grey=True"),
        # two poolings before relu3_1
        (ValueError, "x", lambda: _vgg(layers=("relu3_1",))(RGB32[:1, :, :3]), "at least 4x4", "relu3_1"),
        (ValueError, "x", lambda: _vgg()(RGB32[0]), "(N, 3, H, W)"),
        (
            ValueError,
            "layers",
            lambda: _vgg(layers=("relu1_1", "relu9_9")),
            "unknown layer",
            "'relu9_9'",
            "names: conv1_1",
        ),
        (ValueError, "layers", lambda: _vgg(layers=TWICE), "names a layer twice"),
        (ValueError, "input_range", lambda: _vgg(input_range=(0, 1, 2)), "must be (low, high)"),
    ],
    "layer_names": [
        (ValueError, "network", lambda: layer_names("resnet50"), "'resnet50'"),
        (TypeError, "network", lambda: layer_names(None), "None"),
    ],
    "gram_matrix": [
        (ValueError, "features", lambda: gram_matrix(torch.rand(3, 4, 4)), "(3, 4, 4)"),
        (TypeError, "features", lambda: gram_matrix(IMAGES.long()), "torch.int64"),
    ],
    "PerceptualLoss": [
        (ValueError, "layer_weights", lambda: _vgg(PerceptualLoss, layer_weights=[1.0, 2.0]), "one weight per layer"),
        (ValueError, "layers", lambda: _vgg(PerceptualLoss, layers=TWICE, layer_weights=(1, 2)), "names a layer twice"),
        (
            ValueError,
            "target",
            lambda: _vgg(PerceptualLoss)(RGB32, torch.rand(2, 3, 40, 32)),
            "a batch of 1 or the input's batch",
            "input's height and width; got input (2, 3, 32, 32) and target (2, 3, 40, 32)",
        ),
        (ValueError, "target", _cached_target_of_another_batch, "got input (3, 3, 8, 8) and target (2, 3, 8, 8)"),
        (TypeError, "target", lambda: _vgg(PerceptualLoss)(IMAGES, [1.0]), "must be a torch.Tensor"),
        (TypeError, "target", lambda: _vgg(PerceptualLoss)(IMAGES, IMAGES.double()), FLOAT64),
    ],
    "StyleLoss": [
        (ValueError, "reduction", lambda: _vgg(StyleLoss, reduction="batch"), "'batch'"),
        (ValueError, "target", lambda: _vgg(StyleLoss)(IMAGES), "set_target"),
    ],
    "PerceptualGradientLoss": [
        (TypeError, "return_parts", lambda: _vgg(PerceptualGradientLoss)(IMAGES, IMAGES, return_parts="yes"), "'yes'"),
    ],
    # cv2_compat: OpenCV's names (`src`, `dx`, `borderType`)
    "cv2_compat.Sobel": [
        (
            TypeError,
            "src",
            lambda: cv2_compat.Sobel(Z.byte(), -1, 1, 0),
            "real floating dtype, got torch.uint8 ",
            "convert integer images with .float() first",
        ),
        (
            ValueError,
            "src",
            lambda: cv2_compat.Sobel(CUBE, -1, 1, 0),
            "(H, W) or (H, W, C) image, got shape (1, 1, 4, 4, 4)",
        ),
        (TypeError, "dx", lambda: cv2_compat.Sobel(Z, -1, 1.0, 0), "must be an int, got 1.0"),
        (TypeError, "borderType", lambda: cv2_compat.Sobel(Z, -1, 1, 0, borderType=True), "must be an int, got True"),
        (ValueError, "scale", lambda: cv2_compat.Sobel(Z, -1, 1, 0, scale=math.nan), "must be finite, got nan"),
    ],
    "cv2_compat.Laplacian": [
        (TypeError, "src", lambda: cv2_compat.Laplacian(Z64, -1), "real floating dtype, got torch.complex64"),
        (ValueError, "borderType", lambda: cv2_compat.Laplacian(Z, -1, borderType=8), "BORDER_CONSTANT (0), ", "got 8"),
    ],
    "cv2_compat.Scharr": [
        (TypeError, "src", lambda: cv2_compat.Scharr(Z.numpy(), -1, 1, 0), "must be a torch.Tensor, got ndarray"),
    ],
    "cv2_compat.spatialGradient": [
        (ValueError, "src", lambda: cv2_compat.spatialGradient(NHWC[0]), "must not be empty", "got shape (0, 6, 3)"),
    ],
}


@pytest.mark.parametrize(
    "fn, error, name, call, quoted",
    [pytest.param(fn, *row[:3], row[3:], id=f"{fn}-{row[1]}") for fn, rows in BAD_ARGUMENTS.items() for row in rows],
)
def test_bad_arguments(
    fn: Optional[str], error: type[Exception], name: Optional[str], call: Callable[[], Any], quoted: tuple[str, ...]
) -> None:
    message = _error(error, call, name, *quoted)
    assert fn is None or message.startswith(f"{fn}: "), message


# cv2_compat refuses what OpenCV refuses, and says so where it refuses what OpenCV takes ---------------------

OPENCV_CALLS = [
    # (function, arguments after the image, keyword arguments, whether OpenCV takes them, error, argument, quoted)
    ("Sobel", (-1, 0, 0), {}, False, ValueError, "dx", "`dx` and `dy` must not both be 0"),
    ("Sobel", (-1, -1, 1), {}, False, ValueError, "dx", "`dx` must be at least 0, got -1"),
    ("Sobel", (-1, 3, 0), {"ksize": 3}, False, ValueError, "dx", "`dx` must be less than the kernel's 3 taps"),
    ("Sobel", (-1, 0, 3), {"ksize": 1}, False, ValueError, "dy", "`dy` must be less than the kernel's 3 taps"),
    ("Sobel", (-1, 1, 0), {"ksize": 4}, False, ValueError, "ksize", "must be odd, from 1 to 31 in OpenCV, got 4"),
    ("Sobel", (-1, 1, 0), {"ksize": 33}, False, ValueError, "ksize", "must be odd, from 1 to 31 in OpenCV, got 33"),
    ("Sobel", (-1, 1, 1), {"ksize": -1}, False, ValueError, "dx", "as Sobel's kernel is a first derivative"),
    ("Sobel", (-1, 1, 0), {"borderType": 3}, False, ValueError, "borderType", "must not be BORDER_WRAP (3)"),
    ("Sobel", (-1, 1, 0), {"borderType": 3 | 16}, False, ValueError, "borderType", "must not be BORDER_WRAP (3)"),
    ("Sobel", (-1, 1, 0), {"borderType": 5}, False, ValueError, "borderType", "must not be BORDER_TRANSPARENT (5)"),
    ("Sobel", (cv2.CV_32S, 1, 0), {}, False, ValueError, "ddepth", "`ddepth` CV_32S (4) is an integer depth"),
    ("Sobel", (cv2.CV_16F, 1, 0), {}, False, ValueError, "ddepth", "must be -1, CV_32F (5) or CV_64F (6), got 7"),
    ("Scharr", (-1, 1, 1), {}, False, ValueError, "dx", "as Scharr's kernel is a first derivative, got dx=1, dy=1"),
    ("Scharr", (-1, 0, 0), {}, False, ValueError, "dx", "as Scharr's kernel is a first derivative"),
    ("Laplacian", (-1,), {"ksize": -1}, False, ValueError, "ksize", "must be odd, from 1 to 31 in OpenCV, got -1"),
    ("Laplacian", (-1,), {"ksize": 0}, False, ValueError, "ksize", "must be odd, from 1 to 31 in OpenCV, got 0"),
    ("Laplacian", (-1,), {"ksize": 2}, False, ValueError, "ksize", "must be odd, from 1 to 31 in OpenCV, got 2"),
    ("Laplacian", (-1,), {"borderType": 3}, False, ValueError, "borderType", "BORDER_WRAP"),
    ("spatialGradient", (), {"ksize": 5}, False, ValueError, "ksize", "`ksize` must be 3"),
    (
        "spatialGradient",
        (),
        {"borderType": cv2.BORDER_CONSTANT},
        False,
        ValueError,
        "borderType",
        "must be BORDER_DEFAULT",
    ),
    (
        "spatialGradient",
        (),
        {"borderType": cv2.BORDER_REFLECT},
        False,
        ValueError,
        "borderType",
        "must be BORDER_DEFAULT",
    ),
    # kernels longer than 7 taps, integer depths (rounded and saturated: no gradient), complex scales
    (
        "Sobel",
        (cv2.CV_8U, 1, 0),
        {},
        True,
        ValueError,
        "ddepth",
        "`ddepth` CV_8U (0) is an integer depth",
        "no gradient",
    ),
    (
        "Sobel",
        (cv2.CV_16S, 1, 0),
        {},
        True,
        ValueError,
        "ddepth",
        "`ddepth` CV_16S (3) is an integer depth",
        "no gradient",
    ),
    (
        "Sobel",
        (-1, 1, 0),
        {"ksize": 9},
        True,
        ValueError,
        "ksize",
        "`ksize` 9 is accepted by OpenCV but not here",
        "at most 7 taps",
    ),
    ("Laplacian", (-1,), {"ksize": 31}, True, ValueError, "ksize", "`ksize` 31 is accepted by OpenCV but not here"),
    (
        "Sobel",
        (-1, 1, 0),
        {"scale": np.complex128(1 + 2j)},
        True,
        TypeError,
        "scale",
        "must be an int or a float ",
        "got np.complex128(1+2j)",
    ),
    # What OpenCV's bindings refuse for a double
    *[
        (fn, args, {argument: value}, False, TypeError, argument, "must be an int or a float")
        for value in (Fraction(1, 3), Decimal("0.5"), True, np.bool_(True), np.longdouble(0.5), np.complex64(1))
        + (1 + 0j, np.array(0.5), torch.tensor(0.5), "0.5")
        for argument in ("scale", "delta")
        for fn, args in (("Sobel", (-1, 1, 0)), ("Scharr", (-1, 1, 0)), ("Laplacian", (-1,)))
    ],
]


@pytest.mark.parametrize(
    "fn, args, kwargs, opencv_takes, error, name, quoted",
    [pytest.param(*row[:6], row[6:], id=f"{row[0]}-{row[5]}") for row in OPENCV_CALLS],
)
def test_cv2_compat_against_opencv(
    fn: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    opencv_takes: bool,
    error: type[Exception],
    name: str,
    quoted: tuple[str, ...],
) -> None:
    src = np.random.default_rng(0).uniform(-2, 2, size=(12, 12))
    opencv = getattr(cv2, fn)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # OpenCV drops the imaginary part of a NumPy complex with a warning
        if opencv_takes:
            assert opencv(src, *args, **kwargs).shape == (12, 12)
        else:
            with pytest.raises(cv2.error):
                opencv(src.astype(np.uint8) if fn == "spatialGradient" else src, *args, **kwargs)
    message = _error(error, lambda: getattr(cv2_compat, fn)(torch.from_numpy(src), *args, **kwargs), name, *quoted)
    assert message.startswith(f"cv2_compat.{fn}: "), message


# Losses on the meta device: shape propagation -------------------------------------------------------------

META = torch.empty(2, 3, 8, 8, device="meta")
META_LOSSES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gradient_loss": lambda t: gradient_loss(t, t),
    "gradient_loss_mask": lambda t: gradient_loss(t, t, torch.ones(8, 8, dtype=torch.bool, device=t.device)),
    "gradient_loss_sum_p2": lambda t: gradient_loss(t, t, operator="diff", p=2, reduction="sum"),
    "GradientDifferenceLoss": lambda t: GradientDifferenceLoss(alpha=1.5)(t, t),
    "TotalVariationLoss": lambda t: TotalVariationLoss()(t),
    "TotalVariationLoss_isotropic": lambda t: TotalVariationLoss(isotropic=True)(t),
    "EdgeAwareSmoothnessLoss": lambda t: EdgeAwareSmoothnessLoss()(t[:, :1], t),
    "EdgeLoss": lambda t: EdgeLoss()(t, t),
    "PerceptualLoss": lambda t: _vgg(PerceptualLoss).to(t.device, t.dtype)(t, t),
    "StyleLoss": lambda t: _vgg(StyleLoss).to(t.device, t.dtype)(t, t[:1]),
    "PerceptualGradientLoss": lambda t: _vgg(PerceptualGradientLoss).to(t.device, t.dtype)(t, t),
}


@pytest.mark.parametrize("loss", META_LOSSES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_losses_run_on_meta(loss: str, dtype: torch.dtype) -> None:
    result = META_LOSSES[loss](META.to(dtype))
    assert result.device.type == "meta" and result.shape == ()
    vgg_loss = loss in ("PerceptualLoss", "StyleLoss", "PerceptualGradientLoss")  # in at least float32
    assert result.dtype == (torch.promote_types(dtype, torch.float32) if vgg_loss else dtype)


def test_shapes_on_meta() -> None:
    assert gradient_loss(META, META, reduction="none").shape == (2, 3, 2, 8, 8)
    assert _vgg().to("meta")(META)["relu1_1"].shape == (2, 64, 8, 8)


# Threads: the first-calls input-range check of VGGFeatures ----------------------------------------------


def test_vgg_features_forward_in_many_threads_never_raises_and_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight threads call one module with values outside input_range; every round warns exactly once."""
    warned: list[str] = []
    lock = threading.Lock()

    def counting_warn(message: Any, *args: Any, **kwargs: Any) -> None:
        with lock:
            warned.append(str(message))

    monkeypatch.setattr(vgg_module.warnings, "warn", counting_warn)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prototype = VGGFeatures(layers=("conv1_1",), weights=None)
    x = torch.full((1, 3, 4, 4), 5.0)
    errors: list[BaseException] = []
    counts = []
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so that they meet inside the check
    try:
        for _ in range(24):
            vgg = copy.deepcopy(prototype)
            warned.clear()
            barrier = threading.Barrier(8)

            def work() -> None:
                try:
                    barrier.wait()
                    for _ in range(4):
                        vgg(x)
                        vgg(x, "target")
                except BaseException as error:  # collected, asserted below
                    errors.append(error)

            threads = [threading.Thread(target=work) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            counts.append(len(warned))
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert counts == [1] * 24
    assert "outside input_range" in warned[0]


# torchgrad.gradient follows torch.gradient: numbers and exception classes ---------------------------------

X = torch.randn(3, 4)
GRADIENT_CASES: dict[str, dict[str, Any]] = {
    "edge_order=1.0": dict(edge_order=1.0),
    "edge_order=2.0": dict(edge_order=2.0),
    "edge_order=True": dict(edge_order=True),
    "edge_order=None": dict(edge_order=None),
    "edge_order='1'": dict(edge_order="1"),
    "edge_order=tensor(1.)": dict(edge_order=torch.tensor(1.0)),
    "edge_order=tensor([1])": dict(edge_order=torch.tensor([1])),
    "edge_order=np.int64(2)": dict(edge_order=np.int64(2)),
    "edge_order=tensor(2)": dict(edge_order=torch.tensor(2)),
    "edge_order=3": dict(edge_order=3),
    "spacing=None": dict(spacing=None),
    "spacing=None,dim=1": dict(spacing=None, dim=1),
    "spacing=np.float32(2)": dict(spacing=np.float32(2.0)),
    "spacing=tensor(2.)": dict(spacing=torch.tensor(2.0)),
    "spacing='a'": dict(spacing="a"),
    "spacing=[]": dict(spacing=[]),
    "spacing=[1,None]": dict(spacing=[1, None]),
    "spacing=[tensor(1.),2]": dict(spacing=[torch.tensor(1.0), 2]),
    "spacing=(tensor(1.),tensor(2.))": dict(spacing=(torch.tensor(1.0), torch.tensor(2.0))),
    "spacing=tensor([1.,2.])": dict(spacing=torch.tensor([1.0, 2.0])),
    "spacing=np.array": dict(spacing=np.array([1.0, 2.0])),
    "dim=np.int64(1)": dict(dim=np.int64(1)),
    "dim=[np.int64(1)]": dict(dim=[np.int64(1)]),
    "dim=(np.int64(1),0)": dict(dim=(np.int64(1), 0)),
    "dim=tensor(1)": dict(dim=torch.tensor(1)),
    "dim=[tensor(1)]": dict(dim=[torch.tensor(1)]),
    "dim=tensor([0,1])": dict(dim=torch.tensor([0, 1])),
    "dim=range(2)": dict(dim=range(2)),
    "dim=1.0": dict(dim=1.0),
    "dim=True": dict(dim=True),
    "dim=[True]": dict(dim=[True]),
    "dim=np.bool_": dict(dim=np.bool_(True)),
    "dim='a'": dict(dim="a"),
    "dim={0,1}": dict(dim={0, 1}),
    "dim=[1,-1]": dict(dim=[1, -1]),
    "dim=2": dict(dim=2),
    "dim=[]": dict(dim=[]),
    "coordinates uint8": dict(spacing=[torch.arange(3).to(torch.uint8), torch.arange(4).to(torch.uint8)]),
    "coordinates int64": dict(spacing=[torch.arange(3), torch.arange(4)]),
    "coordinates float16": dict(spacing=[torch.arange(3.0).half(), torch.arange(4.0).half()]),
    "coordinates bool": dict(spacing=[torch.ones(3, dtype=torch.bool), torch.ones(4, dtype=torch.bool)]),
    "coordinates float8": dict(spacing=[torch.arange(3.0).to(torch.float8_e5m2), torch.arange(4.0)]),
    "coordinates uint16": dict(spacing=[torch.arange(3).to(torch.uint16), torch.arange(4.0)]),
    "coordinates 2-D": dict(spacing=[torch.ones(3, 3), torch.ones(4)]),
    "coordinates on meta": dict(spacing=[torch.arange(4.0, device="meta")], dim=1),
    "spacing=[1.]": dict(spacing=[1.0]),
    "spacing=[1.,2.],dim=1": dict(spacing=[1.0, 2.0], dim=1),
    "edge_order=2 on 2 samples": dict(input=torch.randn(2, 4), edge_order=2),
    "dim=0 of a 0-d tensor": dict(input=torch.tensor(1.0), dim=0),
}


@pytest.mark.parametrize("case", GRADIENT_CASES)
def test_gradient_arguments_as_torch_gradient_takes_them(case: str) -> None:
    kwargs = dict(GRADIENT_CASES[case])
    x = kwargs.pop("input", X)
    try:
        expected = torch.gradient(x, **kwargs)
    except TypeError:
        with pytest.raises(TypeError):
            torchgrad.gradient(x, **kwargs)
        return
    except IndexError:
        with pytest.raises(IndexError):
            torchgrad.gradient(x, **kwargs)
        return
    except RuntimeError:
        with pytest.raises(GradientError):
            torchgrad.gradient(x, **kwargs)
        return
    ours = torchgrad.gradient(x, **kwargs)
    assert len(ours) == len(expected)
    for a, b in zip(ours, expected):
        assert a.dtype == b.dtype and torch.equal(a, b)


@pytest.mark.parametrize(
    "make",
    [
        lambda: X > 0,
        lambda: X.to(torch.uint8),
        lambda: X.int().to(torch.uint16),
        lambda: X.to(torch.float8_e4m3fn),
        lambda: X.to(torch.complex32),
        lambda: X.to_sparse(),
        lambda: X.to_sparse_csr(),
    ],
    ids=["bool", "uint8", "uint16", "float8", "complex32", "sparse_coo", "sparse_csr"],
)
def test_gradient_raises_gradient_error_where_torch_raises_runtime_error(make: Callable[[], torch.Tensor]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = make()
    with pytest.raises(RuntimeError):
        torch.gradient(x)
    message = _error(GradientError, lambda: torchgrad.gradient(x), "input")
    assert f"dtype {x.dtype}" in message or f"layout {x.layout}" in message, message


def test_gradient_module_takes_what_the_function_takes() -> None:
    module = torchgrad.Gradient(spacing=None, dim=np.int64(1))
    assert torch.equal(module(X)[0], torch.gradient(X, dim=1)[0])


def test_gradient_bool_spacing_is_refused_a_documented_difference() -> None:
    torch.gradient(X, spacing=True)  # torch takes True for 1
    _error(TypeError, lambda: torchgrad.gradient(X, spacing=True), "spacing", "True")
    _error(TypeError, lambda: torchgrad.gradient(X, spacing=[True, 1.0]), "spacing", "[True, 1.0]")
