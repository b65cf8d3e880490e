"""The losses as functions: each module of :mod:`torchgrad.losses` calls one of these."""

from .alignment import scale_and_shift
from .edge_aware_smoothness_loss import edge_aware_smoothness_loss
from .edge_loss import edge_loss
from .gradient_difference_loss import gradient_difference_loss
from .gradient_loss import gradient_loss
from .gradient_matching_loss import gradient_matching_loss
from .scale_and_shift_invariant_loss import scale_and_shift_invariant_loss
from .scale_invariant_log_loss import scale_invariant_log_loss
from .total_variation_loss import total_variation_loss

__all__ = [
    "edge_aware_smoothness_loss",
    "edge_loss",
    "gradient_difference_loss",
    "gradient_loss",
    "gradient_matching_loss",
    "scale_and_shift",
    "scale_and_shift_invariant_loss",
    "scale_invariant_log_loss",
    "total_variation_loss",
]
