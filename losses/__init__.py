"""Loss layers built on torchgrad's operators, following ``torch.nn`` loss conventions.

Each module has a functional twin in :mod:`losses.functional`.
"""

from . import functional
from .edge_aware_smoothness_loss import EdgeAwareSmoothnessLoss
from .gradient_difference_loss import GradientDifferenceLoss
from .gradient_loss import GradientLoss
from .total_variation_loss import TotalVariationLoss

__all__ = ["EdgeAwareSmoothnessLoss", "GradientDifferenceLoss", "GradientLoss", "TotalVariationLoss", "functional"]
