"""TensorFlow's image-gradient functions in TensorFlow's NHWC layout, for line-by-line ports.

``tf.image.image_gradients(images)`` becomes ``torchgrad.tf_compat.image_gradients(images)`` and
``tf.image.sobel_edges(images)`` becomes ``torchgrad.tf_compat.sobel_edges(images)``, with the
same shapes and the same numbers; both are differentiable with torchgrad's hand-written backward.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._validation import COMPLEX, FLOATING, check_dtype, check_tensor
from .image_gradients import image_gradients as _image_gradients
from .sobel import sobel as _sobel


def _nchw(caller: str, images: object, minimum: int) -> Tensor:
    """``images`` checked as TensorFlow's NHWC (at least ``minimum`` pixels high and wide), as NCHW."""
    images = check_dtype(caller, "images", check_tensor(caller, "images", images), FLOATING + COMPLEX)
    if images.dim() != 4:
        raise ValueError(
            f"{caller}: `images` must be a 4-D [batch, height, width, channels] tensor, got shape {tuple(images.shape)}"
        )
    if min(images.shape[1:3]) < minimum:
        raise ValueError(
            f"{caller}: `images` must be at least {minimum} pixel{'s' if minimum > 1 else ''} high and wide, "
            f"got shape {tuple(images.shape)} [batch, height, width, channels]"
        )
    return images.permute(0, 3, 1, 2)


def image_gradients(images: Tensor) -> tuple[Tensor, Tensor]:
    """``tf.image.image_gradients``: forward differences ``(dy, dx)`` of ``[B, H, W, C]`` images.

    Args:
        images: ``[batch, height, width, channels]`` tensor, floating or complex.

    Returns:
        ``(dy, dx)``, each ``[batch, height, width, channels]``: ``dy`` is zero in the last row and
        ``dx`` in the last column.

    Example:
        >>> images = torch.arange(25.0).reshape(1, 5, 5, 1)
        >>> dy, dx = image_gradients(images)
        >>> dy[0, :, :, 0]
        tensor([[5., 5., 5., 5., 5.],
                [5., 5., 5., 5., 5.],
                [5., 5., 5., 5., 5.],
                [5., 5., 5., 5., 5.],
                [0., 0., 0., 0., 0.]])
    """
    dy, dx = _image_gradients(_nchw("tf_compat.image_gradients", images, 1))
    return dy.permute(0, 2, 3, 1), dx.permute(0, 2, 3, 1)


def sobel_edges(images: Tensor) -> Tensor:
    """``tf.image.sobel_edges``: Sobel ``(dy, dx)`` of ``[B, H, W, C]`` images, stacked last.

    Reflect padding and unnormalised 3x3 kernels, as TensorFlow computes them.

    Args:
        images: ``[batch, height, width, channels]`` floating tensor, height and width at least 2.

    Returns:
        ``[batch, height, width, channels, 2]``: ``[..., 0]`` is ``dy``, ``[..., 1]`` is ``dx``.

    Example:
        >>> images = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 3).reshape(1, 3, 4, 1)
        >>> sobel_edges(images)[0, :, :, 0, 1]
        tensor([[0., 4., 4., 0.],
                [0., 4., 4., 0.],
                [0., 4., 4., 0.]])
    """
    dy, dx = _sobel(_nchw("tf_compat.sobel_edges", images, 2))
    return torch.stack((dy.permute(0, 2, 3, 1), dx.permute(0, 2, 3, 1)), dim=-1)
