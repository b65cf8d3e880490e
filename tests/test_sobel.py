"""sobel: tf.image.sobel_edges semantics, kornia parity, padding modes, volumes."""

from __future__ import annotations

import kornia
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from references import PADDINGS, conv_reference, pad, tensorflow_sobel_edges

from torchgrad import sobel


def test_matches_tensorflow_sobel_edges() -> None:
    images = np.random.default_rng(0).normal(size=(2, 7, 9, 3))
    expected = tensorflow_sobel_edges(images)
    dy, dx = sobel(torch.from_numpy(images).permute(0, 3, 1, 2))
    torch.testing.assert_close(dy.permute(0, 2, 3, 1), torch.from_numpy(expected[..., 0]))
    torch.testing.assert_close(dx.permute(0, 2, 3, 1), torch.from_numpy(expected[..., 1]))


def test_known_values() -> None:
    """A ramp of slope 1 along x: the unnormalised Sobel dx is 8 inside, and the reflect border
    mirrors the ramp so dx is 0 on the first and last column."""
    x = torch.arange(5.0).repeat(4, 1)
    dy, dx = sobel(x)
    assert torch.equal(dx, torch.tensor([[0.0, 8.0, 8.0, 8.0, 0.0]] * 4))
    assert dy.eq(0).all()
    _, dx = sobel(x, padding="replicate", normalized=True)
    assert torch.equal(dx[0], torch.tensor([0.5, 1.0, 1.0, 1.0, 0.5]))


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
    d = torch.tensor([-1.0, 0.0, 1.0], dtype=x.dtype)
    s = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype)
    kernels = [
        d[:, None, None] * s[None, :, None] * s[None, None, :],
        s[:, None, None] * d[None, :, None] * s[None, None, :],
        s[:, None, None] * s[None, :, None] * d[None, None, :],
    ]
    xp = pad(x, 1, padding, 3)
    outputs = sobel(x, padding=padding, spatial_dims=3, normalized=True)
    for out, kernel in zip(outputs, kernels):
        ref = F.conv3d(xp, kernel.expand(2, 1, 3, 3, 3), groups=2) / 32
        torch.testing.assert_close(out, ref)


def test_single_pixel_axes_where_defined() -> None:
    x = torch.randn(2, 1, 5)
    dy, dx = sobel(x, padding="replicate")
    assert dy.eq(0).all()
    torch.testing.assert_close(dx, conv_reference(x.unsqueeze(0), [1.0, 2.0, 1.0], "replicate")[1][0])
