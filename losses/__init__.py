"""Loss layers built on torchgrad's operators, following ``torch.nn`` loss conventions."""

from . import functional
from .gradient_loss import GradientLoss

__all__ = ["GradientLoss", "functional"]
