"""Every module equals its functional twin (the VGG modules: their documented definitions) for options away from
their defaults, on inputs where each option matters: back at its default, any one of them changes the value (or is
refused), so a module that drops an option fails. A module or option without a case fails too (the ``__init__``
signatures are introspected), and each module's repr shows every option its case sets.
"""

from __future__ import annotations

import inspect
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import pytest
import torch
from references import reference_features
from torch import Tensor, nn

import torchgrad
import torchgrad.losses.functional
from torchgrad import Gradient, GradientMagnitude, Hessian, ImageGradients, Laplacian, Prewitt, Scharr, Sobel
from torchgrad.losses import (
    EdgeAwareSmoothnessLoss,
    EdgeLoss,
    GradientDifferenceLoss,
    GradientLoss,
    GradientMatchingLoss,
    PerceptualGradientLoss,
    PerceptualLoss,
    ScaleAndShiftInvariantLoss,
    ScaleInvariantLogLoss,
    StyleLoss,
    TotalVariationLoss,
    VGGFeatures,
    gram_matrix,
)
from torchgrad.losses.functional import gradient_loss

SEED = 7  # every module (and every VGGFeatures of a definition) is built under it: random VGG weights agree
VGG_OPTIONS = tuple(name for name in inspect.signature(VGGFeatures).parameters if name not in ("network", "layers"))
# Random VGG weights, the same for every build under SEED: a case's ``weights`` goes back to them, not to the
# default "DEFAULT", which would read or download ImageNet weights.
RANDOM = {"weights": None}


@dataclass(frozen=True)
class WeightsFile:
    """A random weights file of ``network`` from the ``vgg_files`` fixture (``kind``: "features" or "full")."""

    network: str
    kind: str = "features"


@dataclass(frozen=True)
class Case:
    """A module built with ``fixed`` and ``options`` on ``inputs``, and its twin."""

    module: type[nn.Module]
    options: dict[str, Any]  # each away from its default, and each one mattering on `inputs`
    inputs: tuple[Tensor, ...]
    definition: Optional[Callable[..., Any]] = None  # (kwargs, *inputs); None: the functional twin
    fixed: dict[str, Any] = field(default_factory=dict)  # passed to every build, not under test
    exact: bool = True

    def twin(self, kwargs: dict[str, Any], *inputs: Tensor) -> Any:
        """The twin's value with the kwargs the module was built with: ``torchgrad.sobel`` for Sobel,
        ``torchgrad.losses.functional.gradient_loss`` for GradientLoss..."""
        if self.definition is not None:
            return self.definition(kwargs, *inputs)
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", self.module.__name__).lower()
        function = getattr(torchgrad, name, None) or getattr(torchgrad.losses.functional, name)
        return function(*inputs, **kwargs)


def _options(module: type[nn.Module]) -> dict[str, Any]:
    """Every option of ``module`` and its default: its ``__init__`` parameters, VGGFeatures' for ``**vgg_options``."""
    options = {}
    for p in inspect.signature(module).parameters.values():
        if p.kind is p.VAR_KEYWORD:
            options.update({k: v for k, v in _options(VGGFeatures).items() if k in VGG_OPTIONS})
        else:
            options[p.name] = p.default
    return options


def _build(module: type[nn.Module], kwargs: dict[str, Any]) -> nn.Module:
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore")  # random VGG weights warn
        torch.manual_seed(SEED)
        return module(**kwargs)


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # images outside VGG's default input_range warn
        return fn(*args)


def _same(a: Any, b: Any) -> bool:
    """Exactly equal: the same structure of tensors with the same dtypes, shapes and values."""
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return False


def _features(kwargs: dict[str, Any], dtype: torch.dtype) -> nn.Module:
    """VGGFeatures with the network, layers and VGG options of a loss, built as the loss builds it."""
    names = ("network", "layers", *VGG_OPTIONS)
    return _build(VGGFeatures, {k: v for k, v in kwargs.items() if k in names}).to(dtype)


def _reduce(per_sample: Tensor, reduction: str) -> Tensor:
    return per_sample if reduction == "none" else getattr(per_sample, reduction)()


def perceptual_definition(kwargs: dict[str, Any], input: Tensor, target: Tensor) -> Tensor:
    """``sum_l w_l * mean_(C, H, W) criterion(phi_l(input), phi_l(target))``, the features unit-normalised
    along channels first with ``normalize_features``, reduced over the batch."""
    kwargs = {**_options(PerceptualLoss), **kwargs}
    vgg = _features(kwargs, input.dtype)
    have, want = vgg(input), vgg(target)
    layers = kwargs["layers"]
    per_sample = 0
    for layer, weight in zip(layers, kwargs["layer_weights"] or [1.0] * len(layers)):
        a, b = have[layer], want[layer]
        if kwargs["normalize_features"]:
            a, b = a / (a.norm(dim=1, keepdim=True) + 1e-10), b / (b.norm(dim=1, keepdim=True) + 1e-10)
        d = (a - b).abs() if kwargs["criterion"] == "l1" else (a - b) ** 2
        per_sample = per_sample + weight * d.flatten(1).mean(1)
    return _reduce(per_sample, kwargs["reduction"])


def style_definition(kwargs: dict[str, Any], input: Tensor, target: Tensor) -> Tensor:
    """``sum_l w_l * mean((G_l(input) - G_l(target))^2)`` with Gram matrices, reduced over the batch."""
    kwargs = {**_options(StyleLoss), **kwargs}
    vgg = _features(kwargs, input.dtype)
    have, want = vgg(input), vgg(target)
    layers = kwargs["layers"]
    per_sample = 0
    for layer, weight in zip(layers, kwargs["layer_weights"] or [1.0] * len(layers)):
        d = gram_matrix(have[layer]) - gram_matrix(want[layer])
        per_sample = per_sample + weight * (d**2).flatten(1).mean(1)
    return _reduce(per_sample, kwargs["reduction"])


def perceptual_gradient_definition(kwargs: dict[str, Any], input: Tensor, target: Tensor) -> Tensor:
    """``perceptual_weight * PerceptualLoss + gradient_weight * GradientLoss``, the gradient term a mean over
    each sample's elements, reduced over the batch as the perceptual term is."""
    kwargs = {**_options(PerceptualGradientLoss), **kwargs}
    perceptual = perceptual_definition(
        {k: v for k, v in kwargs.items() if k in _options(PerceptualLoss)}, input, target
    )
    options = dict(operator=kwargs["gradient_operator"], p=kwargs["gradient_p"])
    if kwargs["reduction"] == "none":
        gradient = gradient_loss(input, target, reduction="none", **options).flatten(1).mean(1)
    else:  # every sample has as many elements: the mean of the per-sample means is the mean, their sum N times it
        gradient = gradient_loss(input, target, reduction="mean", **options)
        gradient = gradient * input.shape[0] if kwargs["reduction"] == "sum" else gradient
    return kwargs["perceptual_weight"] * perceptual + kwargs["gradient_weight"] * gradient


def vgg_definition(kwargs: dict[str, Any], x: Tensor) -> dict[str, Tensor]:
    """torchvision's full VGG (``references.reference_features``) on ``x`` mapped from ``input_range`` to
    [0, 1], a grey channel repeated with ``repeat_grey``."""
    kwargs = {**_options(VGGFeatures), **kwargs}
    low, high = kwargs["input_range"]
    x = (x - low) / (high - low)
    if kwargs["repeat_grey"] and x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return reference_features(kwargs["network"], kwargs["weights"], x, list(kwargs["layers"]), kwargs["pooling"])


def _rand(*shape: int, seed: int, low: float = 0.0, high: float = 1.0, dtype: torch.dtype = torch.float64) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator, dtype=dtype) * (high - low) + low


IMAGES = (_rand(2, 3, 6, 7, seed=1), _rand(2, 3, 6, 7, seed=2))
VOLUMES = (_rand(2, 2, 4, 5, 6, seed=3), _rand(2, 2, 4, 5, 6, seed=4))
MASK = _rand(2, 1, 6, 7, seed=5) > 0.2
DISPARITY, COLOUR = _rand(2, 1, 6, 7, seed=6, low=0.5, high=3.5), _rand(2, 3, 6, 7, seed=7)
RGB = (_rand(2, 3, 16, 16, seed=8, dtype=torch.float32), _rand(2, 3, 16, 16, seed=9, dtype=torch.float32))
GREY = tuple(_rand(2, 1, 16, 16, seed=seed, low=-1.0, dtype=torch.float32) for seed in (10, 11))
STYLE = _rand(1, 1, 12, 12, seed=12, low=-1.0, dtype=torch.float32)
DEPTH = (*(_rand(3, 1, 9, 11, seed=seed, low=0.2, high=2.0) for seed in (13, 14)), _rand(3, 1, 9, 11, seed=15) > 0.3)
# The VGG modules against their definitions: a batch-norm network from a weights file with shallow layers (random
# batch-norm statistics make the network matter) and grey images in [-1, 1] (input_range, repeat_grey).
BN_GREY = {
    "network": "vgg16_bn",
    "weights": WeightsFile("vgg16_bn"),
    "layers": ("relu1_2", "relu2_1"),
    "pooling": "avg",
    "input_range": (-1.0, 1.0),
    "repeat_grey": True,
}

CASES = [
    Case(ImageGradients, {"spatial_dims": 3}, VOLUMES[:1]),
    Case(Sobel, {"padding": "zeros", "normalized": True}, IMAGES[:1]),
    Case(Sobel, {"padding": "circular", "spatial_dims": 3}, VOLUMES[:1]),
    Case(Scharr, {"padding": "replicate", "normalized": True}, IMAGES[:1]),
    Case(Prewitt, {"padding": "zeros", "normalized": True}, IMAGES[:1]),
    Case(Prewitt, {"padding": "circular", "spatial_dims": 3}, VOLUMES[:1]),
    Case(Laplacian, {"padding": "replicate", "ksize": 3, "normalized": True}, IMAGES[:1]),
    Case(Laplacian, {"padding": "zeros", "spatial_dims": 3}, VOLUMES[:1]),
    Case(Hessian, {"padding": "circular", "normalized": True}, IMAGES[:1]),
    Case(Gradient, {"spacing": [0.5, 2.0], "dim": [-1, -2], "edge_order": 2}, (_rand(5, 6, seed=13),)),
    Case(
        Gradient,
        {"spacing": [torch.tensor([0.0, 1.0, 3.0, 3.5, 6.0], dtype=torch.float64)], "dim": 1},
        (_rand(3, 5, 4, seed=14),),
    ),
    Case(GradientMagnitude, {"operator": "scharr", "eps": 0.5, "padding": "zeros", "normalized": True}, IMAGES[:1]),
    Case(GradientMagnitude, {"operator": "prewitt", "spatial_dims": 3, "padding": "replicate"}, VOLUMES[:1]),
    Case(GradientMagnitude, {"operator": "diff", "spatial_dims": 3, "eps": 0.0}, VOLUMES[:1]),
    Case(
        GradientLoss,
        {"operator": "scharr", "p": 2, "reduction": "sum", "padding": "circular", "normalized": True},
        IMAGES,
    ),
    Case(GradientLoss, {"operator": "central", "reduction": "none"}, (*IMAGES, MASK)),
    Case(GradientLoss, {"operator": "diff", "p": 2}, VOLUMES),
    Case(GradientLoss, {"operator": "laplacian", "reduction": "none", "padding": "zeros"}, (*IMAGES, MASK)),
    Case(GradientLoss, {"operator": "diff", "penalty": "charbonnier", "eps": 0.5, "reduction": "sum"}, (*IMAGES, MASK)),
    Case(GradientLoss, {"operator": "hessian", "p": 2, "normalized": True}, (*IMAGES, MASK)),
    Case(GradientLoss, {"operator": "prewitt", "reduction": "sum"}, VOLUMES),
    Case(
        GradientDifferenceLoss,
        {"alpha": 1.5, "operator": "sobel", "reduction": "none", "padding": "replicate", "normalized": True},
        IMAGES,
    ),
    Case(GradientDifferenceLoss, {"alpha": 0.5, "operator": "central", "reduction": "sum"}, IMAGES),
    Case(TotalVariationLoss, {"p": 2, "reduction": "sum"}, IMAGES[:1]),
    Case(TotalVariationLoss, {"isotropic": True, "eps": 0.5, "reduction": "none"}, IMAGES[:1]),
    Case(TotalVariationLoss, {"p": 2, "reduction": "none"}, VOLUMES[:1]),
    Case(EdgeAwareSmoothnessLoss, {"normalize": False, "reduction": "sum"}, (DISPARITY, COLOUR)),
    Case(EdgeLoss, {"eps": 0.5, "reduction": "none"}, IMAGES),
    Case(GradientMatchingLoss, {"scales": 2, "reduction": "image-based"}, DEPTH),
    Case(ScaleAndShiftInvariantLoss, {"alpha": 2.0, "scales": 3, "reduction": "image-based"}, DEPTH),
    Case(ScaleInvariantLogLoss, {"variance_focus": 0.5, "scale": 3.0, "eps": 0.25}, DEPTH),
    Case(
        PerceptualLoss,
        {**BN_GREY, "layer_weights": (0.5, 3.0), "criterion": "l2", "normalize_features": True, "reduction": "sum"},
        GREY,
        perceptual_definition,
    ),
    # vgg16 and vgg19 differ from block 3 on: pool3 follows conv3_3 in one, conv3_4 in the other
    Case(
        PerceptualLoss,
        {"network": "vgg19", "layers": ("pool3",), "reduction": "none"},
        RGB,
        perceptual_definition,
        fixed=RANDOM,
    ),
    Case(
        StyleLoss,
        {**BN_GREY, "layer_weights": (2.0, 0.25), "reduction": "none"},
        (GREY[0], STYLE),
        style_definition,
    ),
    Case(
        StyleLoss,
        {"network": "vgg16", "layers": ("pool3",), "reduction": "sum"},
        (RGB[0], RGB[1][:1]),
        style_definition,
        fixed=RANDOM,
    ),
    Case(
        PerceptualGradientLoss,
        {
            **BN_GREY,
            **{"perceptual_weight": 0.5, "gradient_weight": 2.0, "gradient_operator": "scharr", "gradient_p": 1},
            **{"layer_weights": (1.5, 0.5), "criterion": "l2", "normalize_features": True, "reduction": "none"},
        },
        GREY,
        perceptual_gradient_definition,
    ),
    Case(
        PerceptualGradientLoss,
        {"gradient_operator": "diff", "network": "vgg19", "layers": ("pool3",), "reduction": "sum"},
        RGB,
        perceptual_gradient_definition,
        fixed=RANDOM,
    ),
    # torchvision's VGG in float64: the same function in another order, and VGGFeatures maps the input range with
    # constants computed in float32 (relative error ~1e-7), so equal to that rounding
    Case(
        VGGFeatures,
        {**BN_GREY, "layers": ("bn1_1", "relu2_1"), "weights": WeightsFile("vgg16_bn", "full")},
        (GREY[0].double(),),
        vgg_definition,
        exact=False,
    ),
    Case(
        VGGFeatures,
        {"network": "vgg19", "layers": ("pool3",), "weights": WeightsFile("vgg19", "full")},
        (RGB[0].double(),),
        vgg_definition,
        exact=False,
    ),
]


def _id(case: Case) -> str:
    return f"{case.module.__name__}-{','.join(case.options)}"


def _resolve(kwargs: dict[str, Any], request: pytest.FixtureRequest) -> dict[str, Any]:
    """``kwargs`` with each WeightsFile replaced by its path (the files are made only for the cases that use them)."""
    return {
        k: request.getfixturevalue("vgg_files")[v.network][v.kind] if isinstance(v, WeightsFile) else v
        for k, v in kwargs.items()
    }


def _value(module: type[nn.Module], kwargs: dict[str, Any], inputs: tuple[Tensor, ...]) -> Optional[Any]:
    """The module's value on ``inputs``, or None where it rejects its options or inputs."""
    try:
        return _call(_build(module, kwargs).to(inputs[0].dtype), *inputs)
    except (TypeError, ValueError):
        return None


# How a repr spells an option other than ``name=value``: the gradient term's options on its GradientLoss, the
# layer weights by layer. The VGG modules' reprs show neither ``weights`` nor ``repeat_grey``.
SPELLED_IN_REPR: dict[str, Callable[[dict[str, Any]], str]] = {
    "gradient_operator": lambda kwargs: f"(gradient): GradientLoss(operator={kwargs['gradient_operator']!r}",
    "gradient_p": lambda kwargs: (
        f"(gradient): GradientLoss(operator={kwargs['gradient_operator']!r}, p={kwargs['gradient_p']}"
    ),
    "layer_weights": lambda kwargs: f"layer_weights={dict(zip(kwargs['layers'], kwargs['layer_weights']))}",
}
NOT_IN_REPR = {"weights"}  # a file path or torchvision enum: the network and layers say what was built


def _assert_repr_shows(module: nn.Module, options: dict[str, Any], kwargs: dict[str, Any]) -> None:
    """``repr(module)`` shows each of ``options`` (the module built with ``kwargs``)."""
    text = repr(module)
    for name, value in options.items():
        if name in SPELLED_IN_REPR:
            spellings = {SPELLED_IN_REPR[name](kwargs)}
        else:
            spellings = {f"{name}={value!r}", f"{name}={value}"}
        assert name in NOT_IN_REPR or any(s in text for s in spellings), f"{name}={value!r} not in {text}"


@pytest.mark.parametrize("case", [pytest.param(case, id=_id(case)) for case in CASES])
def test_module_equals_its_twin_shows_its_options_and_every_option_matters(
    case: Case, request: pytest.FixtureRequest
) -> None:
    kwargs = _resolve({**case.fixed, **case.options}, request)
    module = _build(case.module, kwargs)
    _assert_repr_shows(module, case.options, kwargs)
    ours = _call(module.to(case.inputs[0].dtype), *case.inputs)
    theirs = _call(case.twin, kwargs, *case.inputs)
    tolerance = {"rtol": 0.0, "atol": 0.0} if case.exact else {"rtol": 1e-6, "atol": 1e-6}
    torch.testing.assert_close(ours, theirs, **tolerance)

    ignored = []
    for name in case.options:
        reverted = {k: v for k, v in kwargs.items() if k != name} | {k: v for k, v in RANDOM.items() if k == name}
        if _same(_value(case.module, reverted, case.inputs), ours):
            ignored.append(name)
    assert not ignored, f"back at its default, {ignored} leave(s) the value unchanged: choose other values or inputs"


def test_the_cases_cover_every_module_and_every_option() -> None:
    modules = {
        obj
        for package in (torchgrad, torchgrad.losses)
        for obj in (getattr(package, name) for name in package.__all__)
        if isinstance(obj, type) and issubclass(obj, nn.Module)
    }
    assert modules == {case.module for case in CASES}, f"modules without a case: {modules - {c.module for c in CASES}}"
    for module in modules:
        covered = set().union(*(case.options for case in CASES if case.module is module))
        assert covered == set(_options(module)), (
            f"{module.__name__}: options without a case: {_options(module).keys() - covered}"
        )
