"""The validation contract of every public entry point: a TypeError (wrong type or dtype) or ValueError (wrong
value, shape or device) that names the caller's argument and quotes what came, before any work; the VGG
input-range warning under threads; the losses on the meta device; torchgrad.gradient against torch.gradient."""

from __future__ import annotations

import copy
import math
import sys
import threading
import warnings
from typing import Any, Callable

import numpy as np
import pytest
import torch

import torchgrad
import torchgrad.losses.vgg as vgg_module
from torchgrad import GradientError, tf_compat
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


def _error(error: type[Exception], call: Callable[[], Any], name: str, *quoted: str) -> str:
    """Assert that ``call`` raises ``error`` whose message names `name` and quotes each of ``quoted``."""
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert f"`{name}`" in message, message
    for text in quoted:
        assert text in message, message
    return message


_BUILT: dict[type, Any] = {}


def _vgg(cls: type = VGGFeatures, **options: Any) -> Any:
    """A small VGG module with random weights (the warning about them silenced); with default options, a copy
    of one built once per class (building initialises the whole network before cutting it)."""
    if not options and cls in _BUILT:
        return copy.deepcopy(_BUILT[cls])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = cls(layers=("relu1_1",), weights=None, **options)
    if not options:
        _BUILT[cls] = copy.deepcopy(module)
    return module


VGG_LOSSES = [PerceptualLoss, StyleLoss, PerceptualGradientLoss]


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
    _error(ValueError, lambda: loss(GREY, IMAGES), "input", "(2, 1, 8, 8)")
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
        (2.0, TypeError, "2.0"),
    ],
)
def test_layer_weights(cls: type, value: Any, error: type, quoted: str) -> None:
    _error(error, lambda: cls(layers=("relu1_1",), layer_weights=value, weights=None), "layer_weights", quoted)


@pytest.mark.parametrize("cls", VGG_LOSSES)
def test_vgg_losses_refuse_unknown_keyword_arguments_before_building_vgg(cls: type) -> None:
    with pytest.raises(TypeError, match=f"{cls.__name__}: unexpected keyword argument.*'pooling_mode'"):
        cls(layers=("relu1_1",), weights=None, pooling_mode="avg")


def test_layer_names_and_gram_matrix() -> None:
    _error(ValueError, lambda: layer_names("resnet50"), "network", "'resnet50'")
    _error(TypeError, lambda: layer_names(None), "network", "None")
    _error(ValueError, lambda: gram_matrix(torch.rand(3, 4, 4)), "features", "(3, 4, 4)")
    _error(TypeError, lambda: gram_matrix(IMAGES.long()), "features", "torch.int64")


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
        ("gradient_operator", "canny", ValueError, "'canny'"),
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


def test_perceptual_gradient_loss_return_parts_is_a_bool() -> None:
    _error(TypeError, lambda: _vgg(PerceptualGradientLoss)(IMAGES, IMAGES, return_parts="yes"), "return_parts", "'yes'")


# Flags are bools -------------------------------------------------------------------------------------

FLAG_CALLS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "sobel": ("normalized", lambda v: torchgrad.sobel(IMAGES, normalized=v)),
    "Sobel": ("normalized", lambda v: torchgrad.Sobel(normalized=v)),
    "scharr": ("normalized", lambda v: torchgrad.scharr(IMAGES, normalized=v)),
    "Scharr": ("normalized", lambda v: torchgrad.Scharr(normalized=v)),
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
    message = _error(TypeError, lambda: call(value), flag, repr(value))
    assert message.startswith(f"{entry}: ")


def test_sobel_normalized_false_string_no_longer_normalises() -> None:
    with pytest.raises(TypeError):
        torchgrad.Sobel(normalized="False")
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
    _error(ValueError, lambda: call(value), name, repr(value))


@pytest.mark.parametrize("entry", NUMBER_CALLS)
@pytest.mark.parametrize("value", [True, "1", None, 1j])
def test_numbers_must_be_real_numbers(entry: str, value: Any) -> None:
    name, call = NUMBER_CALLS[entry]
    _error(TypeError, lambda: call(value), name, repr(value))


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
    message = _error(TypeError, lambda: call(value), "spatial_dims", repr(value))
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
        _error(TypeError, lambda: call(value), name, repr(value))
    _error(ValueError, lambda: call(3), name, "3")
    assert call(np.int64(2)) is not None  # NumPy integers are ints


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda v: GradientLoss(reduction=v), "reduction"),
        (lambda v: GradientLoss(operator=v), "operator"),
        (lambda v: torchgrad.sobel(IMAGES, padding=v), "padding"),
        (lambda v: torchgrad.gradient_magnitude(IMAGES, operator=v), "operator"),
        (lambda v: _vgg(pooling=v), "pooling"),
        (lambda v: _vgg(PerceptualLoss, criterion=v), "criterion"),
    ],
)
def test_names_must_be_strings_from_the_list(call: Callable[[Any], Any], name: str) -> None:
    for value in (None, ["mean"], 1):
        _error(TypeError, lambda: call(value), name, repr(value))
    _error(ValueError, lambda: call("MEAN"), name, "'MEAN'")


# tf_compat names `images` and quotes the NHWC shape -------------------------------------------------------


@pytest.mark.parametrize("fn", ["image_gradients", "sobel_edges"])
def test_tf_compat_errors_name_images_and_show_nhwc(fn: str) -> None:
    call = getattr(tf_compat, fn)
    message = _error(TypeError, lambda: call(torch.zeros(2, 5, 6, 3, dtype=torch.uint8)), "images", "torch.uint8")
    assert f"tf_compat.{fn}: " in message
    _error(ValueError, lambda: call(torch.zeros(5, 6, 3)), "images", "(5, 6, 3)")
    _error(TypeError, lambda: call(IMAGES.to_sparse()), "images", "sparse")
    _error(ValueError, lambda: call(torch.zeros(2, 0, 6, 3)), "images", "(2, 0, 6, 3)")


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
    _error(TypeError, lambda: call(tensor), name, f"torch.{dtype}")


@pytest.mark.parametrize("entry", OPERATOR_CALLS)
def test_sparse_tensors_are_type_errors(entry: str) -> None:
    name, call = OPERATOR_CALLS[entry]
    _error(TypeError, lambda: call(IMAGES.to_sparse()), name, "torch.sparse_coo")


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8])
def test_integer_images_are_refused_by_the_image_operators_with_one_rule(dtype: torch.dtype) -> None:
    """Integer differences wrap around in the integer dtype (int8: 127 - (-128) is -1): refused, not wrapped."""
    image = torch.tensor([[-128, 127], [0, 0]]).to(dtype)
    for call in (torchgrad.image_gradients, torchgrad.sobel, torchgrad.scharr):
        _error(TypeError, lambda: call(image), "image", str(dtype), ".float()")
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


# Edge-aware smoothness: no NaN from an image or disparity without channels --------------------------------


@pytest.mark.parametrize("which", ["disparity", "image"])
def test_edge_aware_smoothness_refuses_zero_channels(which: str) -> None:
    empty = torch.rand(2, 0, 8, 8)
    args = (empty, IMAGES) if which == "disparity" else (GREY, empty)
    for call in (edge_aware_smoothness_loss, EdgeAwareSmoothnessLoss()):
        _error(ValueError, lambda: call(*args), which, "(2, 0, 8, 8)")


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
GRADIENT_CASES = {
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
}


@pytest.mark.parametrize("case", GRADIENT_CASES)
def test_gradient_arguments_as_torch_gradient_takes_them(case: str) -> None:
    kwargs = GRADIENT_CASES[case]
    try:
        expected = torch.gradient(X, **kwargs)
    except TypeError:
        with pytest.raises(TypeError):
            torchgrad.gradient(X, **kwargs)
        return
    except IndexError:
        with pytest.raises(IndexError):
            torchgrad.gradient(X, **kwargs)
        return
    except RuntimeError:
        with pytest.raises(GradientError):
            torchgrad.gradient(X, **kwargs)
        return
    ours = torchgrad.gradient(X, **kwargs)
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
    assert str(x.dtype) in message or str(x.layout) in message


def test_gradient_module_checks_its_arguments_as_the_function() -> None:
    _error(TypeError, lambda: torchgrad.Gradient(edge_order=1.0), "edge_order", "1.0")
    _error(GradientError, lambda: torchgrad.Gradient(edge_order=3), "edge_order", "3")
    _error(TypeError, lambda: torchgrad.Gradient(dim="a"), "dim", "'a'")
    _error(TypeError, lambda: torchgrad.Gradient(spacing="a"), "spacing", "'a'")
    module = torchgrad.Gradient(spacing=None, dim=np.int64(1))
    assert torch.equal(module(X)[0], torch.gradient(X, dim=1)[0])


def test_gradient_bool_spacing_is_refused_a_documented_difference() -> None:
    torch.gradient(X, spacing=True)  # torch takes True for 1
    _error(TypeError, lambda: torchgrad.gradient(X, spacing=True), "spacing", "True")
    _error(TypeError, lambda: torchgrad.gradient(X, spacing=[True, 1.0]), "spacing", "[True, 1.0]")
