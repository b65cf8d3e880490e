"""A frozen, truncated torchvision VGG that returns the feature maps of named layers."""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any, Mapping, Optional, Sequence, Union, cast

import torch
from torch import Tensor, nn
from torchvision.models import WeightsEnum
from torchvision.models import vgg as tv_vgg

from torchgrad._internal import (
    FLOATING,
    check_bool,
    check_choice,
    check_computable_dtype,
    check_device,
    check_dtype,
    check_names,
    check_numbers,
    check_tensor,
    needs_traceable_code,
)

NETWORKS = {"vgg16": ("D", False), "vgg16_bn": ("D", True), "vgg19": ("E", False), "vgg19_bn": ("E", True)}
_WEIGHTS = {
    "vgg16": tv_vgg.VGG16_Weights,
    "vgg16_bn": tv_vgg.VGG16_BN_Weights,
    "vgg19": tv_vgg.VGG19_Weights,
    "vgg19_bn": tv_vgg.VGG19_BN_Weights,
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG_OPTIONS = ("weights", "input_range", "pooling", "repeat_grey")
Weights = Union[str, os.PathLike, WeightsEnum, None]

# The first calls per argument name are checked against input_range (eager code only), until one warns.
RANGE_CHECKED_CALLS = 3
# Guards that check's counters in every VGGFeatures: forward may run in several threads at once.
_RANGE_CHECK_LOCK = threading.Lock()


class WeightsUnavailableError(FileNotFoundError):
    """ImageNet VGG weights are neither in the torch hub cache nor downloadable from here."""


def layer_names(network: str) -> list[str]:
    """The names of ``network``'s feature layers in order, as the VGG papers name them.

    Example:
        >>> layer_names("vgg16")[:5]
        ['conv1_1', 'relu1_1', 'conv1_2', 'relu1_2', 'pool1']
    """
    config, batch_norm = NETWORKS[check_choice("layer_names", "network", network, tuple(NETWORKS))]
    names, block, index = [], 1, 1
    for v in tv_vgg.cfgs[config]:
        if v == "M":
            names.append(f"pool{block}")
            block, index = block + 1, 1
            continue
        names += [f"conv{block}_{index}"] + ([f"bn{block}_{index}"] if batch_norm else []) + [f"relu{block}_{index}"]
        index += 1
    return names


def check_vgg_options(
    caller: str,
    network: Any,
    layers: Any,
    weights: Any = "DEFAULT",
    input_range: Any = (0.0, 1.0),
    pooling: Any = "max",
    repeat_grey: Any = False,
) -> tuple[str, tuple[str, ...], Weights, tuple[float, float], str, bool]:
    """The options of :class:`VGGFeatures`, checked for ``caller``; ``input_range`` as floats."""
    network = check_choice(caller, "network", network, tuple(NETWORKS))
    layers = check_names(caller, "layers", layers)
    if len(set(layers)) != len(layers):
        raise ValueError(f"{caller}: `layers` names a layer twice: {layers}")
    names = layer_names(network)
    unknown = [name for name in layers if name not in names]
    if unknown:
        raise ValueError(
            f"{caller}: `layers` has unknown layer(s) {unknown} for {network}; valid names: {', '.join(names)}"
        )
    if isinstance(weights, WeightsEnum):
        if not isinstance(weights, _WEIGHTS[network]):
            raise ValueError(f"{caller}: `weights` {weights} are not weights of {network}")
    elif weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            f"{caller}: `weights` must be 'DEFAULT', a torchvision VGG weights enum, a path or None, got {weights!r}"
        )
    low, high = check_numbers(caller, "input_range", input_range, 2, "(low, high)")
    if not high > low:
        raise ValueError(f"{caller}: `input_range` must be (low, high) with high > low, got {input_range!r}")
    pooling = check_choice(caller, "pooling", pooling, ("max", "avg"))
    return network, layers, weights, (low, high), pooling, check_bool(caller, "repeat_grey", repeat_grey)


def check_vgg_keywords(caller: str, options: Mapping[str, Any]) -> None:
    """``options`` (a loss's ``**vgg_options``) name only options of :class:`VGGFeatures`."""
    unknown = [key for key in options if key not in VGG_OPTIONS]
    if unknown:
        raise TypeError(
            f"{caller}: unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"the options of VGGFeatures are {', '.join(VGG_OPTIONS)}"
        )


def _features_state_dict(state: Mapping[str, Tensor], source: str) -> dict[str, Tensor]:
    """The ``features`` part of a full-model state dict, or a features-only state dict as it is."""
    if any(k.startswith("features.") for k in state):
        return {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    if state and all(k.split(".")[0].isdigit() for k in state):
        return dict(state)
    raise ValueError(
        f"VGGFeatures: {source} holds no VGG features (expected keys like 'features.0.weight' or '0.weight')"
    )


def _load_weights(network: str, weights: Weights) -> Optional[dict[str, Tensor]]:
    """The state dict of ``weights`` (checked by :func:`check_vgg_options`)."""
    if weights is None:
        return None
    if isinstance(weights, WeightsEnum) or weights == "DEFAULT":
        enum = weights if isinstance(weights, WeightsEnum) else _WEIGHTS[network].DEFAULT
        url = enum.url
        cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
        if os.path.exists(cached):
            return _read(cached)
        try:
            return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, check_hash=True)
        except Exception as error:  # no network, a refusing proxy, a truncated download
            raise WeightsUnavailableError(
                f"VGGFeatures: the ImageNet weights of {network} are not in the torch hub cache ({cached}) and could "
                f"not be downloaded ({type(error).__name__}: {error}). Either put the file {os.path.basename(url)} "
                f"at {cached} (torchvision's '{enum}' weights), or pass weights='/path/to/"
                f"state_dict.pth' with a saved state dict of torchvision's {network} or of its `features`."
            ) from None
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"VGGFeatures: `weights` file {path!r} does not exist")
    return _read(path)


def _read(path: str) -> dict[str, Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated download, another format
        raise ValueError(
            f"VGGFeatures: could not read a state dict from {path!r} ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(state, Mapping):
        raise ValueError(f"VGGFeatures: {path!r} holds a {type(state).__name__}, not a state dict")
    return dict(state)


class VGGFeatures(nn.Module):
    """torchvision's VGG cut after the deepest requested layer, frozen, always in ``eval`` mode.

    ``forward(x)`` maps images in ``input_range`` to ImageNet normalisation and returns
    ``{layer_name: features}`` for the requested layers (every ``convB_I``, ``bnB_I``, ``reluB_I``
    and ``poolB`` of the network, see :func:`layer_names`). No layer after the deepest requested
    one is built. The weights follow the host module in ``.to()``/``.half()`` but are left out of
    its ``state_dict`` (checkpoints stay small) and never require grad.

    Args:
        network: ``"vgg16"``, ``"vgg19"``, ``"vgg16_bn"`` or ``"vgg19_bn"``.
        layers: the layer names to return.
        weights: ``"DEFAULT"`` (or a torchvision weights enum such as ``VGG16_Weights.IMAGENET1K_V1``)
            for torchvision's ImageNet weights (from the torch hub cache, downloaded into it once when
            online), a path to a saved state dict of the full torchvision model or
            of its ``features``, or ``None`` for a random network (with a warning: the loss is then
            not perceptual).
        input_range: ``(low, high)`` of the input images, mapped to ImageNet's mean and std.
        pooling: ``"max"``, or ``"avg"`` for average pooling (Gatys et al.'s style transfer).
        repeat_grey: repeat one-channel images to three channels instead of raising.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     vgg = VGGFeatures(layers=("relu1_2", "relu2_2"), weights=None)
        >>> features = vgg(torch.rand(1, 3, 32, 32))
        >>> {name: tuple(f.shape) for name, f in features.items()}
        {'relu1_2': (1, 64, 32, 32), 'relu2_2': (1, 128, 16, 16)}
    """

    def __init__(
        self,
        network: str = "vgg16",
        layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
        weights: Weights = "DEFAULT",
        input_range: tuple[float, float] = (0.0, 1.0),
        pooling: str = "max",
        repeat_grey: bool = False,
    ) -> None:
        super().__init__()
        network, layers, weights, (low, high), pooling, repeat_grey = check_vgg_options(
            "VGGFeatures", network, layers, weights, input_range, pooling, repeat_grey
        )
        names = layer_names(network)
        self.network, self.layers, self.input_range, self.pooling, self.repeat_grey = (
            network,
            layers,
            (low, high),
            pooling,
            repeat_grey,
        )
        depth = max(names.index(name) for name in layers) + 1
        self._indices = {names.index(name): name for name in layers}
        # every pooling layer up to the deepest requested one halves the size, and must leave 1 pixel
        self.min_size = 2 ** sum(name.startswith("pool") for name in names[:depth])

        config, batch_norm = NETWORKS[network]
        modules = list(tv_vgg.make_layers(tv_vgg.cfgs[config], batch_norm=batch_norm))[:depth]
        state = _load_weights(network, weights)
        if state is None:
            warnings.warn(
                f"VGGFeatures: {network} has random weights (weights=None), so the loss is not perceptual; "
                "use weights='DEFAULT' or a path to ImageNet weights",
                UserWarning,
                stacklevel=2,
            )
        net = nn.Sequential(*modules)
        if state is not None:
            source = (
                repr(os.fspath(weights))
                if isinstance(weights, (str, os.PathLike)) and weights != "DEFAULT"
                else "the ImageNet weights"
            )
            state = _features_state_dict(state, source)
            missing = [k for k in net.state_dict() if k not in state]
            if missing:
                raise ValueError(
                    f"VGGFeatures: {source} lacks {missing[:4]}{' ...' if len(missing) > 4 else ''} for {network}"
                )
            net.load_state_dict({k: state[k] for k in net.state_dict()})
        for i, module in enumerate(net):
            if isinstance(module, nn.MaxPool2d) and pooling == "avg":
                net[i] = nn.AvgPool2d(kernel_size=2, stride=2)
            elif isinstance(module, nn.ReLU):
                # Recorded feature maps must not be overwritten by the next in-place ReLU.
                module.inplace = (i - 1) not in self._indices
        # channels_last: oneDNN and cuDNN convolutions run markedly faster in NHWC.
        self.net = net.eval().requires_grad_(False).to(memory_format=torch.channels_last)

        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        # ImageNet normalisation of (x - low) / (high - low), as one affine map x * scale + shift.
        self.register_buffer("scale", (1.0 / ((high - low) * std)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", (-(low / (high - low) + mean) / std).view(1, 3, 1, 1), persistent=False)
        self._range_checks: dict[str, int] = {}  # calls checked against input_range, per argument name
        self._range_warned = False
        self.register_state_dict_post_hook(_drop_network_state)
        self._register_load_state_dict_pre_hook(self._keep_network_state)

    def train(self, mode: bool = True) -> "VGGFeatures":
        """The network stays in ``eval`` mode (batch norm statistics, if any, never change)."""
        super().train(mode)
        self.net.eval()
        return self

    def forward(self, x: Tensor, name: str = "x") -> dict[str, Tensor]:
        """``{layer: features}`` of ``x``; ``name`` is the argument named in error messages."""
        x = self.check_input(x, name)
        recorded: dict[str, Tensor] = {}
        shift, scale = self.get_buffer("shift"), self.get_buffer("scale")
        x = torch.addcmul(shift.to(x.dtype), x, scale.to(x.dtype))
        if not needs_traceable_code(x):  # under torch.func transforms the layout is left alone
            x = _ChannelsLast.apply(x)
        for i, module in enumerate(self.net):
            x = module(x)
            if i in self._indices:
                recorded[self._indices[i]] = x
        return {name: recorded[name] for name in self.layers}

    def check_input(self, x: Tensor, name: str = "x") -> Tensor:
        """Raise for inputs the network cannot take; warn once about values outside ``input_range``."""
        x = self._validate("VGGFeatures", name, x)
        self._check_range(name, x)
        return x

    def _validate(self, caller: str, name: str, x: Any) -> Tensor:
        """``x`` as the network takes it, checked for ``caller`` (which calls it ``name``): ``(N, 3, H, W)``
        images (one channel repeated with ``repeat_grey``) large enough for the layers, on the
        network's device, in its dtype (or one autocast converts)."""
        x = check_dtype(caller, name, check_tensor(caller, name, x), FLOATING)
        if x.dim() != 4:
            raise ValueError(f"{caller}: `{name}` must be (N, 3, H, W) images, got shape {tuple(x.shape)}")
        if x.shape[1] == 1 and self.repeat_grey:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[1] != 3:
            hint = " (pass repeat_grey=True to repeat a grey channel)" if x.shape[1] == 1 else ""
            raise ValueError(f"{caller}: `{name}` must have 3 channels, got shape {tuple(x.shape)}{hint}")
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(
                f"{caller}: `{name}` must be at least {self.min_size}x{self.min_size} for layer(s) "
                f"{', '.join(self.layers)}, got shape {tuple(x.shape)}"
            )
        weight = cast(Tensor, self.net[0].weight)  # conv1_1's (an attribute, not a Parameter, in replicas)
        check_device(caller, name, x, weight.device, "the VGG network")
        return check_computable_dtype(caller, name, x, weight.dtype, "the VGG network's weights")

    def _check_range(self, name: str, x: Tensor) -> None:
        """Warn once if ``x`` (checked on the first calls per ``name``) lies outside ``input_range``. Reading the
        values waits for the device: only the first calls do it, and never while a CUDA graph is being captured
        (a capture cannot wait)."""
        if needs_traceable_code(x) or x.device.type == "meta" or not x.numel() or self._range_warned:
            return
        if x.device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            return
        with _RANGE_CHECK_LOCK:
            done = self._range_checks.get(name, 0)
            if done >= RANGE_CHECKED_CALLS:
                return
            self._range_checks[name] = done + 1
        low, high = self.input_range
        tolerance = 0.05 * (high - low)
        lo, hi = (v.item() for v in torch.aminmax(x.detach()))
        if not (lo < low - tolerance or hi > high + tolerance):
            return
        with _RANGE_CHECK_LOCK:
            if self._range_warned:  # another thread has warned
                return
            self._range_warned = True
        warnings.warn(
            f"VGGFeatures: `{name}` has values in [{lo:.3g}, {hi:.3g}], outside input_range="
            f"{self.input_range}; set input_range to the images' range (e.g. (-1, 1))",
            UserWarning,
            stacklevel=4,
        )

    def _keep_network_state(self, state: dict[str, Any], prefix: str, *args: Any) -> None:
        """Checkpoints hold no network weights: loading one keeps the network's own."""
        for key, value in self.net.state_dict().items():
            state.setdefault(prefix + "net." + key, value)

    def extra_repr(self) -> str:
        return (
            f"network={self.network!r}, layers={self.layers!r}, input_range={self.input_range}, "
            f"pooling={self.pooling!r}" + (", repeat_grey=True" if self.repeat_grey else "")
        )


class _ChannelsLast(torch.autograd.Function):
    """``x`` in channels_last for the convolutions, with its gradient back in ``x``'s own layout
    (a leaf's ``.grad`` keeps the leaf's strides, which L-BFGS's ``view(-1)`` relies on)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor], output: Tensor) -> None:
        (x,) = inputs
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        ctx.layout = torch.channels_last if channels_last else torch.contiguous_format

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad.contiguous(memory_format=ctx.layout)


def _drop_network_state(module: nn.Module, state: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    """The frozen network's weights stay out of checkpoints."""
    for key in [k for k in state if k.startswith(prefix + "net.")]:
        del state[key]
