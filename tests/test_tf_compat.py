"""tf_compat: TensorFlow's NHWC forms with TensorFlow's numbers."""

from __future__ import annotations

import numpy as np
import torch
from references import tensorflow_sobel_edges

from torchgrad import tf_compat


def test_image_gradients_reference_example() -> None:
    """The tf.image.image_gradients page's example, in its NHWC layout."""
    image = torch.arange(25, dtype=torch.float32).reshape(1, 5, 5, 1)
    dy, dx = tf_compat.image_gradients(image)
    assert dy.shape == dx.shape == (1, 5, 5, 1)
    assert torch.equal(dy[0, :, :, 0], torch.tensor([[5.0] * 5] * 4 + [[0.0] * 5]))
    assert torch.equal(dx[0, :, :, 0], torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]] * 5))


def test_image_gradients_channels() -> None:
    images = torch.randn(2, 4, 5, 3)
    dy, dx = tf_compat.image_gradients(images)
    assert torch.equal(dy[:, :-1], images[:, 1:] - images[:, :-1])
    assert torch.equal(dx[:, :, :-1], images[:, :, 1:] - images[:, :, :-1])


def test_sobel_edges_matches_tensorflow() -> None:
    images = np.random.default_rng(1).normal(size=(2, 6, 8, 3))
    edges = tf_compat.sobel_edges(torch.from_numpy(images))
    assert edges.shape == (2, 6, 8, 3, 2) and edges.is_contiguous()
    torch.testing.assert_close(edges, torch.from_numpy(tensorflow_sobel_edges(images)))


def test_differentiable() -> None:
    images = torch.randn(1, 4, 5, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(tf_compat.sobel_edges, images)
    assert torch.autograd.gradcheck(tf_compat.image_gradients, images)


def test_torch_compile() -> None:
    torch._dynamo.reset()
    compiled = torch.compile(tf_compat.sobel_edges, fullgraph=True)
    images = torch.randn(2, 6, 7, 3)
    torch.testing.assert_close(compiled(images), tf_compat.sobel_edges(images))
