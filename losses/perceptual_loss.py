"""Perceptual (feature) loss on a frozen, truncated VGG."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from torchgrad._internal import check_bool, check_choice

from ._feature_loss import FeatureLoss

CRITERIA = ("l1", "l2")


class PerceptualLoss(FeatureLoss):
    r"""``sum_l w_l * criterion(phi_l(input), phi_l(target))``, each term a mean over its feature map.

    Johnson et al. (2016)'s feature reconstruction loss, the loss of super-resolution and
    image-to-image translation. VGG runs only up to the deepest requested layer, frozen and in
    ``eval`` mode; the target goes through without a graph unless it requires grad. Its weights
    are not part of the owner's ``state_dict``.

    Args:
        network: ``"vgg16"``, ``"vgg19"``, ``"vgg16_bn"`` or ``"vgg19_bn"``.
        layers: the layers compared (see :func:`torchgrad.losses.vgg.layer_names`).
        layer_weights: one weight per layer; 1 each by default.
        criterion: ``"l1"`` or ``"l2"`` (squared error).
        normalize_features: unit-normalise each feature vector along channels first (as LPIPS does).
        reduction: ``"mean"``/``"sum"`` over the batch, or ``"none"`` for one value per sample.
        **vgg_options: ``weights``, ``input_range``, ``pooling``, ``repeat_grey`` of
            :class:`~torchgrad.losses.vgg.VGGFeatures`.

    Shape:
        ``input`` and ``target``: ``(N, 3, H, W)`` in ``input_range`` (``target`` may have batch 1 and
        is then compared with every sample; or omit it after :meth:`set_target`). Output: scalar, or
        ``(N,)`` with ``reduction="none"``, in the input's dtype promoted to at least float32.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     loss = PerceptualLoss(layers=("relu2_2",), weights=None)
        >>> x = torch.rand(2, 3, 32, 32)
        >>> float(loss(x, x))
        0.0
    """

    def __init__(
        self,
        network: str = "vgg16",
        layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
        layer_weights: Optional[Sequence[float]] = None,
        criterion: str = "l1",
        normalize_features: bool = False,
        reduction: str = "mean",
        **vgg_options: Any,
    ) -> None:
        caller = "PerceptualLoss"
        criterion = check_choice(caller, "criterion", criterion, CRITERIA)
        normalize_features = check_bool(caller, "normalize_features", normalize_features)
        super().__init__(caller, layers, layer_weights, reduction, dict(network=network, **vgg_options))
        self.criterion, self.normalize_features = criterion, normalize_features

    def statistic(self, features: Tensor) -> Tensor:
        if self.normalize_features:  # in float32: 1e-10 underflows in float16, and 0 / 0 is NaN
            features = features.to(torch.promote_types(features.dtype, torch.float32))
            features = features / (features.norm(dim=1, keepdim=True) + 1e-10)
        return features

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        difference = a - b
        per = difference.abs() if self.criterion == "l1" else difference * difference
        return per.flatten(1).mean(1, dtype=torch.promote_types(per.dtype, torch.float32))

    def extra_repr(self) -> str:
        return (
            f"criterion={self.criterion!r}, normalize_features={self.normalize_features}, "
            f"reduction={self.reduction!r}, layer_weights={self.layer_weights}"
        )
