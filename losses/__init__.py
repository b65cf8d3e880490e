"""Loss layers built on torchgrad's operators, following ``torch.nn`` loss conventions.

Gradient losses (``GradientLoss``, ``GradientDifferenceLoss``, ``TotalVariationLoss``,
``EdgeAwareSmoothnessLoss``, MPRNet's ``EdgeLoss``, each with a functional twin in
:mod:`torchgrad.losses.functional`) and VGG losses on a frozen, truncated torchvision network
(``VGGFeatures``, ``PerceptualLoss``, ``StyleLoss``, ``PerceptualGradientLoss``). Depth losses with the
field's masks and reductions (``ScaleAndShiftInvariantLoss``, ``GradientMatchingLoss``,
``ScaleInvariantLogLoss``, and ``scale_and_shift``).
"""

from . import functional
from .alignment import scale_and_shift
from .edge_aware_smoothness_loss import EdgeAwareSmoothnessLoss
from .edge_loss import EdgeLoss
from .gradient_difference_loss import GradientDifferenceLoss
from .gradient_loss import GradientLoss
from .gradient_matching_loss import GradientMatchingLoss
from .perceptual_gradient_loss import PerceptualGradientLoss
from .perceptual_loss import PerceptualLoss
from .scale_and_shift_invariant_loss import ScaleAndShiftInvariantLoss
from .scale_invariant_log_loss import ScaleInvariantLogLoss
from .style_loss import StyleLoss, gram_matrix
from .total_variation_loss import TotalVariationLoss
from .vgg import VGGFeatures, WeightsUnavailableError, layer_names

__all__ = [
    "EdgeAwareSmoothnessLoss",
    "EdgeLoss",
    "GradientDifferenceLoss",
    "GradientLoss",
    "GradientMatchingLoss",
    "PerceptualGradientLoss",
    "PerceptualLoss",
    "ScaleAndShiftInvariantLoss",
    "ScaleInvariantLogLoss",
    "StyleLoss",
    "TotalVariationLoss",
    "VGGFeatures",
    "WeightsUnavailableError",
    "functional",
    "gram_matrix",
    "layer_names",
    "scale_and_shift",
]
