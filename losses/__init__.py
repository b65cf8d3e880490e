"""Loss layers built on torchgrad's operators, following ``torch.nn`` loss conventions.

Gradient losses (``GradientLoss``, ``GradientDifferenceLoss``, ``TotalVariationLoss``,
``EdgeAwareSmoothnessLoss``, each with a functional twin in :mod:`torchgrad.losses.functional`) and VGG
losses on a frozen, truncated torchvision network (``VGGFeatures``, ``PerceptualLoss``,
``StyleLoss``, ``PerceptualGradientLoss``).
"""

from . import functional
from .edge_aware_smoothness_loss import EdgeAwareSmoothnessLoss
from .gradient_difference_loss import GradientDifferenceLoss
from .gradient_loss import GradientLoss
from .perceptual_gradient_loss import PerceptualGradientLoss
from .perceptual_loss import PerceptualLoss
from .style_loss import StyleLoss, gram_matrix
from .total_variation_loss import TotalVariationLoss
from .vgg import VGGFeatures, WeightsUnavailableError, layer_names

__all__ = [
    "EdgeAwareSmoothnessLoss",
    "GradientDifferenceLoss",
    "GradientLoss",
    "PerceptualGradientLoss",
    "PerceptualLoss",
    "StyleLoss",
    "TotalVariationLoss",
    "VGGFeatures",
    "WeightsUnavailableError",
    "functional",
    "gram_matrix",
    "layer_names",
]
