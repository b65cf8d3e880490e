"""Style loss: distances between Gram matrices of VGG features (Gatys et al. 2016)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from torchgrad._internal import FLOATING, check_dtype, check_tensor

from ._autocast import autocast_off
from ._feature_loss import FeatureLoss


def gram_matrix(features: Tensor) -> Tensor:
    """``F F^T / (C H W)`` per sample, batched, in at least float32 (autocast off).

    Args:
        features: ``(N, C, H, W)``, of a real floating dtype.

    Returns:
        ``(N, C, C)``.

    Example:
        >>> gram_matrix(torch.ones(2, 3, 4, 4)).shape
        torch.Size([2, 3, 3])
    """
    caller = "gram_matrix"
    features = check_dtype(caller, "features", check_tensor(caller, "features", features), FLOATING)
    if features.dim() != 4:
        raise ValueError(f"{caller}: `features` must be (N, C, H, W), got shape {tuple(features.shape)}")
    n, c, h, w = features.shape
    with autocast_off(features.device):
        flat = features.reshape(n, c, h * w).to(torch.promote_types(features.dtype, torch.float32))
        return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


class StyleLoss(FeatureLoss):
    r"""``sum_l w_l * mean((G_l(input) - G_l(target))^2)`` with Gram matrices ``G = F F^T / (C H W)``.

    The style term of neural style transfer. Gram matrices are batched (no loop over the batch) and
    computed in float32 under autocast. A style image of batch 1 is compared with every input
    sample; :meth:`set_target` computes its Gram matrices once for the whole optimisation.

    Args:
        network: ``"vgg19"`` (Gatys et al.), ``"vgg16"`` or their ``_bn`` variants.
        layers: the layers compared.
        layer_weights: one weight per layer; 1 each by default.
        reduction: ``"mean"``/``"sum"`` over the batch, or ``"none"`` for one value per sample.
        **vgg_options: ``weights``, ``input_range``, ``pooling`` (``"avg"`` as Gatys et al.), ``repeat_grey``.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     loss = StyleLoss(layers=("relu1_1", "relu2_1"), weights=None)
        >>> style = torch.rand(1, 3, 32, 32)
        >>> loss.set_target(style)
        >>> round(float(loss(style.expand(2, -1, -1, -1))), 6)
        0.0
    """

    same_size = False  # Gram matrices do not depend on where things are: any style image size will do

    def __init__(
        self,
        network: str = "vgg19",
        layers: Sequence[str] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
        layer_weights: Optional[Sequence[float]] = None,
        reduction: str = "mean",
        **vgg_options: Any,
    ) -> None:
        super().__init__("StyleLoss", layers, layer_weights, reduction, dict(network=network, **vgg_options))

    def statistic(self, features: Tensor) -> Tensor:
        return gram_matrix(features)

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        difference = a - b
        return (difference * difference).flatten(1).mean(1)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, layer_weights={self.layer_weights}"
