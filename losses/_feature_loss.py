"""What the VGG losses share: layer weights, the target's features (cached or not) and reduction."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from ._inputs import check_reduction
from .vgg import VGGFeatures


class FeatureLoss(nn.Module):
    """A weighted sum over VGG layers of a per-sample distance between a statistic of the features.

    Subclasses give ``statistic`` (the features themselves, or their Gram matrices) and ``distance``
    (per-sample, ``(N,)``). ``set_target`` computes the target's statistics once, so that each step
    of an optimisation against a fixed image runs VGG on the input only.
    """

    def __init__(self, name: str, layers: Sequence[str], layer_weights: Optional[Sequence[float]], reduction: str, vgg_options: dict) -> None:
        super().__init__()
        layers = (layers,) if isinstance(layers, str) else tuple(layers)
        weights = [1.0] * len(layers) if layer_weights is None else [float(w) for w in layer_weights]
        if len(weights) != len(layers):
            raise ValueError(f"{name}: `layer_weights` must have one weight per layer ({len(layers)}), got {len(weights)}")
        self.reduction = check_reduction(name, reduction)
        self.layer_weights = dict(zip(layers, weights))
        self.features = VGGFeatures(layers=layers, **vgg_options)
        self._cached: Optional[dict[str, Tensor]] = None

    def statistic(self, features: Tensor) -> Tensor:
        raise NotImplementedError

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        raise NotImplementedError

    def set_target(self, target: Tensor) -> None:
        """Compute and keep the target's statistics; ``forward(input)`` then compares against them."""
        with torch.no_grad():
            self._cached = self._statistics(target, "target")

    def clear_target(self) -> None:
        self._cached = None

    @property
    def cached_target(self) -> Optional[dict[str, Tensor]]:
        return self._cached

    def _apply(self, fn: Callable[[Tensor], Tensor], *args, **kwargs) -> "FeatureLoss":  # type: ignore[override]
        super()._apply(fn, *args, **kwargs)
        if self._cached is not None:  # the cached target follows .to(), .cuda(), .half()
            self._cached = {k: fn(v) for k, v in self._cached.items()}
        return self

    def _statistics(self, x: Tensor, name: str) -> dict[str, Tensor]:
        self.features.check_input(x, name)
        return {k: self.statistic(v) for k, v in self.features(x).items()}

    def forward(self, input: Tensor, target: Optional[Tensor] = None) -> Tensor:
        if target is None:
            if self._cached is None:
                raise ValueError(f"{type(self).__name__}: pass a `target`, or call set_target(target) first")
            wanted = self._cached
        else:
            if not isinstance(target, Tensor) or target.shape[1:] != getattr(input, "shape", (None,))[1:]:
                shapes = (tuple(getattr(input, "shape", ())), tuple(getattr(target, "shape", ())))
                raise ValueError(f"{type(self).__name__}: `input` and `target` must have the same shape, got {shapes[0]} and {shapes[1]}")
            with torch.set_grad_enabled(torch.is_grad_enabled() and target.requires_grad):
                wanted = self._statistics(target, "target")
        have = self._statistics(input, "input")
        total = sum(weight * self.distance(have[layer], wanted[layer]) for layer, weight in self.layer_weights.items())
        total = total.to(torch.promote_types(input.dtype, torch.float32))  # type: ignore[union-attr]
        return {"mean": total.mean, "sum": total.sum, "none": lambda: total}[self.reduction]()
