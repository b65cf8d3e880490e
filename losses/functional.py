"""The losses as functions: each module of :mod:`losses` calls one of these."""

from .gradient_loss import gradient_loss

__all__ = ["gradient_loss"]
