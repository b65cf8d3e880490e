"""sobel: tf.image.sobel_edges semantics, kornia parity, padding modes, volumes."""

from __future__ import annotations

import kornia
import numpy as np
import pytest
import torch
from references import PADDINGS, conv_reference, naive_gradients, tensorflow_sobel_edges

from torchgrad import sobel


def test_matches_tensorflow_sobel_edges() -> None:
    images = np.random.default_rng(0).normal(size=(2, 7, 9, 3))
    expected = tensorflow_sobel_edges(images)
    dy, dx = sobel(torch.from_numpy(images).permute(0, 3, 1, 2))
    torch.testing.assert_close(dy.permute(0, 2, 3, 1), torch.from_numpy(expected[..., 0]))
    torch.testing.assert_close(dx.permute(0, 2, 3, 1), torch.from_numpy(expected[..., 1]))


@pytest.mark.parametrize("padding", PADDINGS)
def test_matches_padded_convolution(padding: str) -> None:
    x = torch.randn(2, 3, 8, 11, dtype=torch.float64)
    for ours, ref in zip(sobel(x, padding=padding), conv_reference(x, [1.0, 2.0, 1.0], padding)):
        torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("normalized", [True, False])
def test_matches_kornia_spatial_gradient(normalized: bool) -> None:
    x = torch.randn(2, 3, 9, 12)
    ref = kornia.filters.spatial_gradient(x, mode="sobel", normalized=normalized)  # (B, C, 2, H, W): gx, gy
    dy, dx = sobel(x, padding="replicate", normalized=normalized)
    torch.testing.assert_close(dx, ref[:, :, 0])
    torch.testing.assert_close(dy, ref[:, :, 1])


@pytest.mark.parametrize("padding", PADDINGS)
def test_volumes_match_3d_convolution(padding: str) -> None:
    x = torch.randn(2, 2, 5, 6, 7, dtype=torch.float64)
    outputs = sobel(x, padding=padding, spatial_dims=3, normalized=True)
    for out, ref in zip(outputs, naive_gradients(x, "sobel", padding, normalized=True)):
        torch.testing.assert_close(out, ref)


def test_single_pixel_axes_where_defined() -> None:
    x = torch.randn(2, 1, 5)
    dy, dx = sobel(x, padding="replicate")
    assert dy.eq(0).all()
    torch.testing.assert_close(dx, conv_reference(x.unsqueeze(0), [1.0, 2.0, 1.0], "replicate")[1][0])
