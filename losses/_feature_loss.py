"""What the VGG losses share: layer weights, the target's features (cached or not) and reduction."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, cast

import torch
from torch import Tensor, nn

from torchgrad._internal import autocast_enabled, check_numbers, check_reduction, check_same_device, check_tensor

from .vgg import VGGFeatures, check_vgg_keywords, check_vgg_options


def check_feature_options(
    caller: str, layers: Any, layer_weights: Any, reduction: Any, vgg_options: dict[str, Any]
) -> tuple[dict[str, float], str]:
    """``({layer: weight}, reduction)`` of a feature loss, its VGG options (``network`` included) checked."""
    check_vgg_keywords(caller, {k: v for k, v in vgg_options.items() if k != "network"})
    layers = check_vgg_options(caller, layers=layers, **vgg_options)[1]
    if layer_weights is None:
        weights = (1.0,) * len(layers)
    else:
        weights = check_numbers(caller, "layer_weights", layer_weights, what="a sequence of numbers, one per layer")
        if len(weights) != len(layers):
            raise ValueError(
                f"{caller}: `layer_weights` must have one weight per layer ({len(layers)}), got {len(weights)}: "
                f"{layer_weights!r}"
            )
    return dict(zip(layers, weights)), check_reduction(caller, "reduction", reduction)


class FeatureLoss(nn.Module):
    """A weighted sum over VGG layers of a per-sample distance between a statistic of the features.

    Subclasses give ``statistic`` (the features themselves, or their Gram matrices) and ``distance``
    (per-sample, ``(N,)``), and say whether the target must have the input's height and width
    (``same_size``). ``set_target`` computes the target's statistics once, so that each step of an
    optimisation against a fixed image runs VGG on the input only.
    """

    same_size = True

    def __init__(
        self,
        name: str,
        layers: Sequence[str],
        layer_weights: Optional[Sequence[float]],
        reduction: str,
        vgg_options: dict,
    ) -> None:
        super().__init__()
        self.layer_weights, self.reduction = check_feature_options(name, layers, layer_weights, reduction, vgg_options)
        self.features = VGGFeatures(layers=tuple(self.layer_weights), **vgg_options)
        self._cached: Optional[dict[str, Tensor]] = None
        self._cached_shape: Optional[tuple[int, ...]] = None

    def statistic(self, features: Tensor) -> Tensor:
        raise NotImplementedError

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        raise NotImplementedError

    def set_target(self, target: Tensor) -> None:
        """Compute and keep the target's statistics; ``forward(input)`` then compares against them."""
        target = self.features._validate(type(self).__name__, "target", target)
        with torch.no_grad():
            self._cached = self._statistics(target, "target")
        self._cached_shape = tuple(target.shape)

    def clear_target(self) -> None:
        self._cached, self._cached_shape = None, None

    @property
    def cached_target(self) -> Optional[dict[str, Tensor]]:
        return self._cached

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> "FeatureLoss":
        super()._apply(fn, recurse)
        if self._cached is not None:  # the cached target follows .to(), .cuda(), .half()
            self._cached = {k: fn(v) for k, v in self._cached.items()}
        return self

    def _statistics(self, x: Tensor, name: str) -> dict[str, Tensor]:
        return {k: self.statistic(v) for k, v in self.features(x, name=name).items()}

    def _check_inputs(self, caller: str, input: Any, target: Any) -> None:
        """Raise, on behalf of ``caller``, for an ``input`` and ``target`` (or the cached target when it is
        ``None``) this loss cannot compare, before any features are computed."""
        if target is None and (self._cached is None or self._cached_shape is None):
            raise ValueError(f"{caller}: pass a `target`, or call set_target(target) first")
        input = self.features._validate(caller, "input", input)
        if target is None:
            target_shape = cast(tuple[int, ...], self._cached_shape)
        else:
            target = check_tensor(caller, "target", target)
            check_same_device(caller, "target", target, "input", input)
            if target.dtype != input.dtype and not autocast_enabled(input.device):
                raise TypeError(
                    f"{caller}: `input` and `target` must have the same dtype, got {input.dtype} and {target.dtype}"
                )
            target_shape = tuple(self.features._validate(caller, "target", target).shape)
        shape = tuple(input.shape)
        if target_shape[0] not in (1, shape[0]) or (self.same_size and target_shape[2:] != shape[2:]):
            what = "a batch of 1 or the input's batch" + (
                ", and the input's height and width" if self.same_size else ""
            )
            raise ValueError(f"{caller}: `target` must have {what}; got input {shape} and target {target_shape}")

    def forward(self, input: Tensor, target: Optional[Tensor] = None) -> Tensor:
        self._check_inputs(type(self).__name__, input, target)
        if target is None:
            wanted = cast(dict[str, Tensor], self._cached)  # set: _check_inputs raises otherwise
        else:
            with torch.set_grad_enabled(torch.is_grad_enabled() and target.requires_grad):
                wanted = self._statistics(target, "target")
        have = self._statistics(input, "input")
        total = sum(weight * self.distance(have[layer], wanted[layer]) for layer, weight in self.layer_weights.items())
        total = total.to(torch.promote_types(input.dtype, torch.float32))  # type: ignore[union-attr]
        return {"mean": total.mean, "sum": total.sum, "none": lambda: total}[self.reduction]()
