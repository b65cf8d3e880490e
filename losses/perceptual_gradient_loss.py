"""Perceptual loss plus a weighted image-gradient loss, as one module."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

from torch import Tensor, nn

from torchgrad._internal import OPERATOR_NAMES, check_bool, check_choice, check_int_choice, check_number

from ._feature_loss import check_feature_options
from .gradient_loss import GradientLoss, check_pair
from .perceptual_loss import CRITERIA, PerceptualLoss


class PerceptualGradientLoss(nn.Module):
    r"""``perceptual_weight * PerceptualLoss + gradient_weight * GradientLoss``.

    VGG features keep the content right, the gradient term keeps edges sharp: the loss of
    super-resolution and deblurring networks. ``forward(input, target, return_parts=True)`` also
    returns ``{"perceptual": ..., "gradient": ...}`` (detached) for logging each term. ``target``
    has the input's shape (both terms compare pixel by pixel); both terms' checks run before either.

    Args:
        perceptual_weight: weight of the perceptual term, finite.
        gradient_weight: weight of the gradient term, finite.
        gradient_operator: the operator of the gradient term, as :class:`GradientLoss` takes it: ``"sobel"``,
            ``"diff"``, ``"scharr"``, ``"prewitt"``, ``"central"``, ``"laplacian"`` or ``"hessian"`` (the filters
            with their default padding, reflect); another name is a ``ValueError``.
        gradient_p: 1 (L1) or 2 (squared L2) for the gradient term.
        network, layers, layer_weights, criterion, normalize_features: of :class:`PerceptualLoss`.
        reduction: ``"mean"`` or ``"sum"`` over the batch of per-sample losses (each term a mean over
            its elements), or ``"none"`` for the ``(N,)`` per-sample losses.
        **vgg_options: ``weights``, ``input_range``, ``pooling``, ``repeat_grey``.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     loss = PerceptualGradientLoss(layers=("relu2_2",), weights=None)
        >>> x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
        >>> total, parts = loss(x, y, return_parts=True)
        >>> sorted(parts)
        ['gradient', 'perceptual']
    """

    def __init__(
        self,
        perceptual_weight: float = 1.0,
        gradient_weight: float = 0.05,
        gradient_operator: str = "sobel",
        gradient_p: int = 2,
        network: str = "vgg16",
        layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
        layer_weights: Optional[Sequence[float]] = None,
        criterion: str = "l1",
        normalize_features: bool = False,
        reduction: str = "mean",
        **vgg_options: Any,
    ) -> None:
        super().__init__()
        caller = type(self).__name__
        self.perceptual_weight = check_number(caller, "perceptual_weight", perceptual_weight)
        self.gradient_weight = check_number(caller, "gradient_weight", gradient_weight)
        gradient_operator = check_choice(caller, "gradient_operator", gradient_operator, OPERATOR_NAMES)
        gradient_p = check_int_choice(caller, "gradient_p", gradient_p, (1, 2))
        criterion = check_choice(caller, "criterion", criterion, CRITERIA)
        normalize_features = check_bool(caller, "normalize_features", normalize_features)
        _, self.reduction = check_feature_options(
            caller, layers, layer_weights, reduction, dict(network=network, **vgg_options)
        )
        # per-sample gradient terms for "none"; the fused mean otherwise
        self.gradient = GradientLoss(
            gradient_operator, p=gradient_p, reduction="none" if reduction == "none" else "mean"
        )
        self.perceptual = PerceptualLoss(
            network, layers, layer_weights, criterion, normalize_features, reduction, **vgg_options
        )

    def forward(
        self, input: Tensor, target: Tensor, return_parts: bool = False
    ) -> Union[Tensor, tuple[Tensor, dict[str, Tensor]]]:
        caller = type(self).__name__
        return_parts = check_bool(caller, "return_parts", return_parts)
        # Both terms' conditions, before either runs: the VGG term's, then the gradient term's (which
        # asks for a target of the input's shape and 2 pixels along each axis).
        self.perceptual._check_inputs(caller, input, target)
        check_pair(caller, input, target, self.gradient.operator)
        perceptual = self.perceptual(input, target)
        gradient = self.gradient(input, target)
        if self.reduction == "none":
            gradient = gradient.flatten(1).mean(1)
        elif self.reduction == "sum":  # the sum over samples of their means: every sample has the same size
            gradient = gradient * input.shape[0]
        total = self.perceptual_weight * perceptual + self.gradient_weight * gradient.to(perceptual.dtype)
        if return_parts:
            return total, {"perceptual": perceptual.detach(), "gradient": gradient.detach()}
        return total

    def extra_repr(self) -> str:
        return f"perceptual_weight={self.perceptual_weight}, gradient_weight={self.gradient_weight}"
