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
        layers = (layers,) if isinstance(layers, str) else tuple(layers)
        if layer_weights is not None and (
            isinstance(layer_weights, (str, bytes)) or not isinstance(layer_weights, Sequence)
        ):
            raise TypeError(
                f"{name}: `layer_weights` must be a sequence of numbers, one per layer, got {layer_weights!r}"
            )
        weights = [1.0] * len(layers) if layer_weights is None else [float(w) for w in layer_weights]
        if len(weights) != len(layers):
            raise ValueError(
                f"{name}: `layer_weights` must have one weight per layer ({len(layers)}), got {len(weights)}"
            )
        if len(set(layers)) != len(layers):
            raise ValueError(f"{name}: `layers` names a layer twice: {layers}; give it one (summed) weight instead")
        self.reduction = check_reduction(name, reduction)
        self.layer_weights = dict(zip(layers, weights))
        self.features = VGGFeatures(layers=layers, **vgg_options)
        self._cached: Optional[dict[str, Tensor]] = None
        self._cached_shape: Optional[tuple[int, ...]] = None

    def statistic(self, features: Tensor) -> Tensor:
        raise NotImplementedError

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        raise NotImplementedError

    def set_target(self, target: Tensor) -> None:
        """Compute and keep the target's statistics; ``forward(input)`` then compares against them."""
        if not isinstance(target, Tensor):
            raise TypeError(f"{type(self).__name__}: `target` must be a torch.Tensor, got {type(target).__name__}")
        with torch.no_grad():
            self._cached = self._statistics(target, "target")
        self._cached_shape = tuple(target.shape)

    def clear_target(self) -> None:
        self._cached, self._cached_shape = None, None

    @property
    def cached_target(self) -> Optional[dict[str, Tensor]]:
        return self._cached

    def _apply(self, fn: Callable[[Tensor], Tensor], *args, **kwargs) -> "FeatureLoss":  # type: ignore[override]
        super()._apply(fn, *args, **kwargs)
        if self._cached is not None:  # the cached target follows .to(), .cuda(), .half()
            self._cached = {k: fn(v) for k, v in self._cached.items()}
        return self

    def _statistics(self, x: Tensor, name: str) -> dict[str, Tensor]:
        return {k: self.statistic(v) for k, v in self.features(x, name=name).items()}

    def _check_pair(self, input: Tensor, target_shape: tuple[int, ...], target_dtype: Optional[torch.dtype]) -> None:
        name = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: `input` must be a torch.Tensor, got {type(input).__name__}")
        shape = tuple(input.shape)
        batch_ok = len(target_shape) == len(shape) and target_shape[0] in (1, shape[0])
        size_ok = target_shape[2:] == shape[2:] or not self.same_size
        if not (batch_ok and size_ok):
            what = "a batch of 1 or the input's batch" + (
                ", and the input's height and width" if self.same_size else ""
            )
            raise ValueError(f"{name}: the target must have {what}; got input {shape} and target {target_shape}")
        if (
            target_dtype is not None
            and target_dtype != input.dtype
            and not torch.is_autocast_enabled(input.device.type)
        ):
            raise TypeError(
                f"{name}: `input` and `target` must have the same dtype, got {input.dtype} and {target_dtype}"
            )

    def forward(self, input: Tensor, target: Optional[Tensor] = None) -> Tensor:
        if target is None:
            if self._cached is None or self._cached_shape is None:
                raise ValueError(f"{type(self).__name__}: pass a `target`, or call set_target(target) first")
            self._check_pair(input, self._cached_shape, None)
            wanted = self._cached
        else:
            if not isinstance(target, Tensor):
                raise TypeError(f"{type(self).__name__}: `target` must be a torch.Tensor, got {type(target).__name__}")
            self._check_pair(input, tuple(target.shape), target.dtype)
            with torch.set_grad_enabled(torch.is_grad_enabled() and target.requires_grad):
                wanted = self._statistics(target, "target")
        have = self._statistics(input, "input")
        total = sum(weight * self.distance(have[layer], wanted[layer]) for layer, weight in self.layer_weights.items())
        total = total.to(torch.promote_types(input.dtype, torch.float32))  # type: ignore[union-attr]
        return {"mean": total.mean, "sum": total.sum, "none": lambda: total}[self.reduction]()
