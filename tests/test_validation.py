"""The validation contract of every public entry point: a TypeError (wrong type or dtype) or ValueError (wrong
value, shape or device) that names the caller's argument and quotes what came, before any work; the VGG
input-range warning under threads; the losses on the meta device; torchgrad.gradient against torch.gradient.

Bad arguments are listed in tables, each row one entry point given one bad argument, run by a few parametrized tests.
"""

from __future__ import annotations

import copy
import math
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
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
META = torch.empty(2, 3, 8, 8, device="meta")
Calls = list[tuple[str, str, Callable[[Any], Any]]]
"""(entry point, the argument it names, a call with that argument set to a value)"""


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
SMALL = {"layers": ("relu1_1",), "weights": None}  # one layer, random weights


def _vgg(cls: type = VGGFeatures, **options: Any) -> Any:
    """A small VGG module (layer relu1_1 unless ``options`` say) with random weights (the warning about them
    silenced); with default options, a copy of one built once per class (building initialises the whole network
    before cutting it)."""
    if not options and cls in _BUILT:
        return copy.deepcopy(_BUILT[cls])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = cls(**{**SMALL, **options})
    if not options:
        _BUILT[cls] = copy.deepcopy(module)
    return module


def _twins(option: str, fn: Callable[..., Any], module: type, *inputs: Any, **fixed: Any) -> Calls:
    """``fn`` on ``inputs`` and the constructor of its ``module``, each with ``option`` set to the value."""
    return [
        (fn.__name__, option, lambda v: fn(*inputs, **fixed, **{option: v})),
        (module.__name__, option, lambda v: module(**fixed, **{option: v})),
    ]


OPERATORS = "'diff', 'sobel', 'scharr', 'central', 'prewitt', 'laplacian', 'hessian'"  # as the losses list them


def test_vgg_features_take_other_dtypes_under_autocast_but_not_float64() -> None:
    vgg = _vgg()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert vgg(IMAGES.half())["relu1_1"].dtype == torch.bfloat16
        _error(TypeError, lambda: vgg(IMAGES.double()), "x", "torch.float64")


def test_vgg_losses_check_both_tensors_before_running_vgg() -> None:
    perceptual, combined = _vgg(PerceptualLoss), _vgg(PerceptualGradientLoss)
    calls: list[int] = []
    for features in (perceptual.features, combined.perceptual.features):
        features.net[0].register_forward_hook(lambda *a: calls.append(1))
    _error(ValueError, lambda: perceptual(GREY, IMAGES), "input", "must have 3 channels", "(2, 1, 8, 8)")
    _error(ValueError, lambda: perceptual(IMAGES, torch.rand(2, 3, 8)), "target", "(2, 3, 8)")
    _error(TypeError, lambda: perceptual.set_target([1.0]), "target", "list")
    _error(ValueError, lambda: combined(IMAGES, IMAGES[:1]), "target", "(2, 3, 8, 8)", "(1, 3, 8, 8)")
    _error(ValueError, lambda: combined(torch.rand(2, 3, 1, 1), torch.rand(2, 3, 1, 1)), "input", "(2, 3, 1, 1)")
    _error(TypeError, lambda: combined(IMAGES, IMAGES.double()), "target", "torch.float64")
    assert calls == []


# Options of one type: bools, finite real numbers, ints, names from a list -----------------------------------

FLAGS: Calls = [
    *_twins("normalized", torchgrad.sobel, torchgrad.Sobel, IMAGES),
    *_twins("normalized", torchgrad.scharr, torchgrad.Scharr, IMAGES),
    *_twins("normalized", torchgrad.prewitt, torchgrad.Prewitt, IMAGES),
    *_twins("normalized", torchgrad.hessian, torchgrad.Hessian, IMAGES),
    *_twins("normalized", torchgrad.laplacian, torchgrad.Laplacian, IMAGES),
    *_twins("normalized", torchgrad.gradient_magnitude, torchgrad.GradientMagnitude, IMAGES),
    *_twins("normalized", gradient_loss, GradientLoss, IMAGES, IMAGES),
    *_twins("normalized", gradient_difference_loss, GradientDifferenceLoss, IMAGES, IMAGES),
    *_twins("isotropic", total_variation_loss, TotalVariationLoss, IMAGES),
    *_twins("normalize", edge_aware_smoothness_loss, EdgeAwareSmoothnessLoss, GREY, IMAGES),
    ("VGGFeatures", "repeat_grey", lambda v: _vgg(repeat_grey=v)),
    ("PerceptualLoss", "normalize_features", lambda v: _vgg(PerceptualLoss, normalize_features=v)),
    ("PerceptualGradientLoss", "normalize_features", lambda v: _vgg(PerceptualGradientLoss, normalize_features=v)),
    ("use_kernels", "enabled", lambda v: torchgrad.use_kernels(v)),
]
NUMBERS: Calls = [
    *_twins("alpha", gradient_difference_loss, GradientDifferenceLoss, IMAGES, IMAGES),
    *_twins("eps", torchgrad.gradient_magnitude, torchgrad.GradientMagnitude, IMAGES),
    *_twins("eps", total_variation_loss, TotalVariationLoss, IMAGES, isotropic=True),
    *_twins("eps", edge_loss, EdgeLoss, IMAGES, IMAGES),
    ("PerceptualGradientLoss", "gradient_weight", lambda v: _vgg(PerceptualGradientLoss, gradient_weight=v)),
    ("PerceptualGradientLoss", "perceptual_weight", lambda v: _vgg(PerceptualGradientLoss, perceptual_weight=v)),
]
NUMBER_SEQUENCES: Calls = [
    ("VGGFeatures", "input_range", lambda v: _vgg(input_range=(0.0, v))),
    ("PerceptualLoss", "layer_weights", lambda v: _vgg(PerceptualLoss, layer_weights=[v])),
    ("StyleLoss", "layer_weights", lambda v: _vgg(StyleLoss, layer_weights=[v])),
]
SPATIAL_DIMS: Calls = [
    *_twins("spatial_dims", torchgrad.gradient_magnitude, torchgrad.GradientMagnitude, IMAGES),
    *_twins("spatial_dims", torchgrad.sobel, torchgrad.Sobel, IMAGES),
    *_twins("spatial_dims", torchgrad.image_gradients, torchgrad.ImageGradients, IMAGES),
]
P: Calls = [  # None is GradientLoss's default (the penalty says), not TotalVariationLoss's
    *_twins("p", gradient_loss, GradientLoss, IMAGES, IMAGES),
    *_twins("p", total_variation_loss, TotalVariationLoss, IMAGES),
]
NAMES: Calls = [
    ("GradientLoss", "reduction", lambda v: GradientLoss(reduction=v)),
    ("GradientLoss", "operator", lambda v: GradientLoss(operator=v)),
    ("sobel", "padding", lambda v: torchgrad.sobel(IMAGES, padding=v)),
    ("scharr", "padding", lambda v: torchgrad.scharr(IMAGES, padding=v)),
    ("gradient_magnitude", "operator", lambda v: torchgrad.gradient_magnitude(IMAGES, operator=v)),
    ("VGGFeatures", "pooling", lambda v: _vgg(pooling=v)),
    ("PerceptualLoss", "criterion", lambda v: _vgg(PerceptualLoss, criterion=v)),
]
OPTION_RULES: list[tuple[Calls, type[Exception], tuple[Any, ...], Callable[[Any], tuple[str, ...]]]] = [
    # (the calls, their error for each of the values, what the message quotes of the value `v`)
    (FLAGS, TypeError, ("False", 1, 0, None, np.bool_(True)), lambda v: (f"must be True or False, got {v!r}",)),
    (NUMBERS, ValueError, (math.inf, -math.inf, math.nan), lambda v: (f"must be finite, got {v!r}",)),
    (NUMBERS, TypeError, (True, "1", None, 1j), lambda v: (f"must be a real number, got {v!r}",)),
    (NUMBER_SEQUENCES, ValueError, (math.inf, -math.inf, math.nan), lambda v: ("must hold finite numbers", repr(v))),
    (NUMBER_SEQUENCES, TypeError, (True, "1", None, 1j), lambda v: (repr(v),)),
    (SPATIAL_DIMS, TypeError, (None, 2.0, True, "2"), lambda v: (f"must be the int 2 or 3, got {v!r}",)),
    (P, TypeError, (2.0, True, "1"), lambda v: (f"must be the int 1 or 2, got {v!r}",)),
    (P, ValueError, (3,), lambda v: ("must be 1 or 2, got 3",)),
    (P[2:], TypeError, (None,), lambda v: ("must be the int 1 or 2, got None",)),
    (NAMES, TypeError, (None, ["mean"], 1), lambda v: ("must be one of ", f"got {v!r}")),
    (NAMES, ValueError, ("MEAN",), lambda v: ("must be one of ", "got 'MEAN'")),
]


def test_values_beside_the_refused_ones_are_taken() -> None:
    for _, _, call in P:
        assert call(np.int64(2)) is not None  # NumPy integers are ints
    assert torchgrad.Sobel(normalized=False)(IMAGES)[0].abs().max() > 1  # unnormalised kernels: |dy| up to 4
    assert GradientDifferenceLoss(alpha=1e3)(IMAGES, IMAGES * 2) > 0  # refused at inf, not zero before it


def test_tf_compat_sobel_edges_needs_two_pixels_and_says_so_in_nhwc() -> None:
    message = _error(ValueError, lambda: tf_compat.sobel_edges(torch.zeros(2, 1, 6, 3)), "images", "(2, 1, 6, 3)")
    assert "(2, 3, 1, 6)" not in message  # not the NCHW shape the caller never passed
    assert tf_compat.image_gradients(torch.zeros(2, 1, 6, 3))[0].shape == (2, 1, 6, 3)


# Dtypes and layouts that torch cannot compute on ---------------------------------------------------------


def _tensor_twins(name: str, fn: Callable[..., Any], module: type, inputs: Callable[[Any], tuple]) -> Calls:
    """``fn`` and a default ``module`` on ``inputs(t)``, which hold the tensor ``t`` as argument ``name``."""
    return [(fn.__name__, name, lambda t: fn(*inputs(t))), (module.__name__, name, lambda t: module()(*inputs(t)))]


TENSOR_CALLS = [
    pytest.param(*call, id=call[0])
    for call in [
        *_tensor_twins("image", torchgrad.image_gradients, torchgrad.ImageGradients, lambda t: (t,)),
        *_tensor_twins("image", torchgrad.sobel, torchgrad.Sobel, lambda t: (t,)),
        *_tensor_twins("image", torchgrad.scharr, torchgrad.Scharr, lambda t: (t,)),
        *_tensor_twins("image", torchgrad.gradient_magnitude, torchgrad.GradientMagnitude, lambda t: (t,)),
        *_tensor_twins("input", gradient_loss, GradientLoss, lambda t: (t, t)),
        *_tensor_twins("input", gradient_difference_loss, GradientDifferenceLoss, lambda t: (t, t)),
        *_tensor_twins("input", total_variation_loss, TotalVariationLoss, lambda t: (t,)),
        *_tensor_twins("input", edge_loss, EdgeLoss, lambda t: (t, t)),
        ("edge_aware_smoothness_loss", "disparity", lambda t: edge_aware_smoothness_loss(t, IMAGES)),
        ("EdgeAwareSmoothnessLoss", "image", lambda t: EdgeAwareSmoothnessLoss()(GREY, t)),
        ("VGGFeatures", "x", lambda t: _vgg()(t)),
        ("PerceptualLoss", "input", lambda t: _vgg(PerceptualLoss)(t, t)),
        ("StyleLoss", "target", lambda t: _vgg(StyleLoss)(IMAGES, t)),
        ("PerceptualGradientLoss", "input", lambda t: _vgg(PerceptualGradientLoss)(t, t)),
        ("gram_matrix", "features", lambda t: gram_matrix(t)),
    ]
]
UNSUPPORTED = {
    "float8_e4m3fn": lambda: IMAGES.to(torch.float8_e4m3fn),
    "float8_e5m2": lambda: IMAGES.to(torch.float8_e5m2),
    "complex32": lambda: IMAGES.to(torch.complex32),
    "uint16": lambda: (IMAGES * 9).int().to(torch.uint16),
    "int8": lambda: (IMAGES * 9).to(torch.int8),
    "bool": lambda: IMAGES > 0.5,
    "sparse_coo": lambda: IMAGES.to_sparse(),  # a layout
}


@pytest.mark.parametrize("entry, name, call", TENSOR_CALLS)
@pytest.mark.parametrize("kind", UNSUPPORTED)
def test_unsupported_dtypes_and_layouts_are_type_errors(entry: str, name: str, call: Callable, kind: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # complex32 is experimental
        tensor = UNSUPPORTED[kind]()
    message = _error(TypeError, lambda: call(tensor), name, f"torch.{kind}")
    floating = "floating" in message and f"dtype, got torch.{kind}" in message  # "a (real) floating (or complex)"
    assert tensor.is_sparse or floating or "same dtype" in message, message  # a target: its input's dtype


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8])
def test_integer_images_are_refused_by_the_image_operators_with_one_rule(dtype: torch.dtype) -> None:
    """Integer differences wrap around in the integer dtype (int8: 127 - (-128) is -1): refused, not wrapped."""
    image = torch.tensor([[-128, 127], [0, 0]]).to(dtype)
    for call in (image_gradients, sobel, torchgrad.scharr, prewitt, hessian, laplacian):
        message = _error(TypeError, lambda: call(image), "image", f"floating or complex dtype, got {dtype}", ".float()")
        assert message.startswith(f"{call.__name__}: "), message
    _error(TypeError, lambda: tf_compat.image_gradients(image.reshape(1, 2, 2, 1)), "images", str(dtype))


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
VGG_OPTIONS = [  # (option, value, error, quoted) of VGGFeatures and of every VGG loss
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
]
LAYER_WEIGHTS = [  # (value, error, quoted) of every VGG loss
    ([None], TypeError, "[None]"),
    ([math.nan], ValueError, "nan"),
    ([math.inf], ValueError, "inf"),
    (2.0, TypeError, "must be a sequence of numbers, one per layer, got 2.0"),
]


def _vgg_rows(cls: type) -> list[Row]:
    """What VGGFeatures and each VGG loss refuse: its options, and an input of another dtype or device (than the
    module's weights); a loss also a target on another device, and 0-d tensors."""
    name, count = ("x", 1) if cls is VGGFeatures else ("input", 2)
    rows = [
        (error, option, lambda o=option, v=value: cls(**{**SMALL, o: v}), quoted)
        for option, value, error, quoted in VGG_OPTIONS
    ]
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        rows.append((TypeError, name, lambda d=dtype: _vgg(cls)(*[IMAGES.to(d)] * count), str(dtype), "torch.float32"))
    rows.append((ValueError, name, lambda: _vgg(cls)(*[META] * count), "meta", "cpu"))
    if cls is VGGFeatures:
        return rows
    scalar = torch.tensor(0.5)
    return rows + [
        (ValueError, "target", lambda: _vgg(cls)(IMAGES, META), "meta", "cpu"),
        (ValueError, "input", lambda: _vgg(cls)(scalar, IMAGES), "shape ()"),
        (ValueError, "target", lambda: _vgg(cls)(IMAGES, scalar), "shape ()"),
        *[
            (error, "layer_weights", lambda v=value: cls(**SMALL, layer_weights=v), quoted)
            for value, error, quoted in LAYER_WEIGHTS
        ],
        (TypeError, None, lambda: cls(**SMALL, pooling_mode="avg"), "unexpected keyword argument(s) 'pooling_mode'"),
    ]


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


def _combined(**options: Any) -> Any:
    return _vgg(PerceptualGradientLoss, **options)


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
            lambda: gradient(X24, spacing=[Z[0]], dim=1),
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
        *_vgg_rows(VGGFeatures),
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
        *_vgg_rows(PerceptualLoss),
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
        *_vgg_rows(StyleLoss),
        (ValueError, "reduction", lambda: _vgg(StyleLoss, reduction="batch"), "'batch'"),
        (ValueError, "target", lambda: _vgg(StyleLoss)(IMAGES), "set_target"),
    ],
    # PerceptualGradientLoss names its own arguments, those of its two terms included
    "PerceptualGradientLoss": [
        *_vgg_rows(PerceptualGradientLoss),
        (TypeError, "return_parts", lambda: _combined()(IMAGES, IMAGES, return_parts="yes"), "'yes'"),
        (ValueError, "gradient_p", lambda: _combined(gradient_p=3), "3"),
        (TypeError, "gradient_p", lambda: _combined(gradient_p=2.0), "2.0"),
        (
            ValueError,
            "gradient_operator",
            lambda: _combined(gradient_operator="canny"),
            f"must be one of {OPERATORS}, got 'canny'",
        ),
        (ValueError, "gradient_weight", lambda: _combined(gradient_weight=math.nan), "nan"),
        (ValueError, "perceptual_weight", lambda: _combined(perceptual_weight=math.inf), "inf"),
        (TypeError, "perceptual_weight", lambda: _combined(perceptual_weight="1"), "'1'"),
        (ValueError, "criterion", lambda: _combined(criterion="huber"), "'huber'"),
        (TypeError, "normalize_features", lambda: _combined(normalize_features=1), "1"),
        (ValueError, "reduction", lambda: _combined(reduction="batchmean"), "'batchmean'"),
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
    "fn, row",
    [pytest.param(fn, row, id=f"{fn}-{row[1]}") for fn, rows in BAD_ARGUMENTS.items() for row in rows]
    + [
        pytest.param(fn, (error, name, lambda v=v, call=call: call(v), *quotes(v)), id=f"{fn}-{name}={v!r}")
        for calls, error, values, quotes in OPTION_RULES
        for fn, name, call in calls
        for v in values
    ],
)
def test_bad_arguments(fn: Optional[str], row: Row) -> None:
    error, name, call, *quoted = row
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
    *[
        ("Laplacian", (-1,), {"ksize": k}, False, ValueError, "ksize", f"must be odd, from 1 to 31 in OpenCV, got {k}")
        for k in (-1, 0, 2)
    ],
    ("Laplacian", (-1,), {"borderType": 3}, False, ValueError, "borderType", "BORDER_WRAP"),
    ("spatialGradient", (), {"ksize": 5}, False, ValueError, "ksize", "`ksize` must be 3"),
    *[
        ("spatialGradient", (), {"borderType": border}, False, ValueError, "borderType", "must be BORDER_DEFAULT")
        for border in (cv2.BORDER_CONSTANT, cv2.BORDER_REFLECT)
    ],
    # kernels longer than 7 taps, integer depths (rounded and saturated: no gradient), complex scales
    *[
        ("Sobel", (depth, 1, 0), {}, True, ValueError, "ddepth", f"`ddepth` {name} is an integer depth", "no gradient")
        for name, depth in (("CV_8U (0)", cv2.CV_8U), ("CV_16S (3)", cv2.CV_16S))
    ],
    *[
        (fn, args, {"ksize": k}, True, ValueError, "ksize", f"`ksize` {k} is accepted by OpenCV but not here", *more)
        for fn, args, k, more in (("Sobel", (-1, 1, 0), 9, ("at most 7 taps",)), ("Laplacian", (-1,), 31, ()))
    ],
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


@pytest.mark.parametrize("row", [pytest.param(row, id=f"{row[0]}-{row[5]}") for row in OPENCV_CALLS])
def test_cv2_compat_against_opencv(row: Row) -> None:
    fn, args, kwargs, opencv_takes, error, name, *quoted = row
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


def test_vgg_features_forward_in_many_threads_never_raises_and_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight threads call one module with values outside input_range; every round warns exactly once."""
    warned: list[str] = []
    monkeypatch.setattr(vgg_module.warnings, "warn", lambda message, *args, **kwargs: warned.append(str(message)))
    prototype = _vgg(layers=("conv1_1",))
    x = torch.full((1, 3, 4, 4), 5.0)
    counts = []
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so that they meet inside the check
    try:
        for _ in range(24):
            vgg, barrier = copy.deepcopy(prototype), threading.Barrier(8)
            warned.clear()

            def work(_: int) -> None:
                barrier.wait()
                for _ in range(4):
                    vgg(x)
                    vgg(x, "target")

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(work, range(8)))  # raises what a thread raised
            counts.append(len(warned))
    finally:
        sys.setswitchinterval(interval)
    assert counts == [1] * 24 and "outside input_range" in warned[0]


# torchgrad.gradient follows torch.gradient: numbers and exception classes ---------------------------------

X = torch.randn(3, 4)
GRADIENT_CASES: list[dict[str, Any]] = [
    *[dict(edge_order=v) for v in (1.0, 2.0, True, None, "1", 3, np.int64(2))],
    *[dict(edge_order=v) for v in (torch.tensor(1.0), torch.tensor([1]), torch.tensor(2))],
    *[dict(spacing=v) for v in (None, np.float32(2.0), torch.tensor(2.0), "a", [], [1, None], [1.0])],
    *[dict(spacing=v) for v in ([torch.tensor(1.0), 2], (torch.tensor(1.0), torch.tensor(2.0)))],
    *[dict(spacing=v) for v in (torch.tensor([1.0, 2.0]), np.array([1.0, 2.0]))],
    dict(spacing=None, dim=1),
    dict(spacing=[1.0, 2.0], dim=1),
    *[dict(dim=v) for v in (np.int64(1), [np.int64(1)], (np.int64(1), 0), range(2), 1.0, True, [True])],
    *[dict(dim=v) for v in (torch.tensor(1), [torch.tensor(1)], torch.tensor([0, 1]), np.bool_(True))],
    *[dict(dim=v) for v in ("a", {0, 1}, [1, -1], 2, [])],
    # coordinates of every dtype, of another shape or device
    *[dict(spacing=[torch.arange(3).to(t), torch.arange(4).to(t)]) for t in (torch.uint8, torch.int64)],
    dict(spacing=[torch.ones(3, dtype=torch.bool), torch.ones(4, dtype=torch.bool)]),
    dict(spacing=[torch.arange(3.0).half(), torch.arange(4.0).half()]),
    dict(spacing=[torch.arange(3.0).to(torch.float8_e5m2), torch.arange(4.0)]),
    dict(spacing=[torch.arange(3).to(torch.uint16), torch.arange(4.0)]),
    dict(spacing=[torch.ones(3, 3), torch.ones(4)]),
    dict(spacing=[torch.arange(4.0, device="meta")], dim=1),
    dict(input=torch.randn(2, 4), edge_order=2),
    dict(input=torch.tensor(1.0), dim=0),
    # integer input: differences in the integer dtype, wrapping around (the drop-in promise)
    *[
        dict(input=torch.tensor([torch.iinfo(t).min, torch.iinfo(t).max, 0, 5, 9], dtype=t), **options)
        for t in (torch.int8, torch.int16, torch.int32, torch.int64)
        for options in (dict(), dict(spacing=2.0), dict(edge_order=2))
    ],
]


def _case_id(kwargs: dict[str, Any]) -> str:
    return ",".join(f"{k}={' '.join(repr(v).split())}" for k, v in kwargs.items())


@pytest.mark.parametrize("kwargs", GRADIENT_CASES, ids=_case_id)
def test_gradient_arguments_as_torch_gradient_takes_them(kwargs: dict[str, Any]) -> None:
    kwargs = dict(kwargs)
    x = kwargs.pop("input", X)
    try:
        expected = torch.gradient(x, **kwargs)
    except (TypeError, IndexError) as error:
        raised: type[Exception] = TypeError if isinstance(error, TypeError) else IndexError
    except RuntimeError:
        raised = GradientError  # torchgrad's RuntimeError
    else:
        ours = torchgrad.gradient(x, **kwargs)
        assert len(ours) == len(expected)
        for a, b in zip(ours, expected):
            assert a.dtype == b.dtype and torch.equal(a, b)
        return
    with pytest.raises(raised):
        torchgrad.gradient(x, **kwargs)


def test_gradient_wraps_integer_differences_around_as_torch_gradient_does() -> None:
    assert torchgrad.gradient(torch.tensor([-128, 127], dtype=torch.int8))[0].tolist() == [-1.0, -1.0]
    assert torchgrad.gradient(torch.tensor([-128, 127]).double())[0].tolist() == [255.0, 255.0]


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
