"""image_gradients: torchmetrics parity, volumes, integer and complex input (TensorFlow's own example:
tests/test_tf_compat.py; NaN and inf: tests/test_nonfinite.py)."""

from __future__ import annotations

import torch
import torchmetrics.functional.image as tm_image

from torchgrad import image_gradients


def test_matches_torchmetrics() -> None:
    x = torch.randn(4, 3, 17, 9)
    for ours, theirs in zip(image_gradients(x), tm_image.image_gradients(x)):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_volumes() -> None:
    x = torch.randn(2, 1, 4, 5, 6, dtype=torch.float64)
    dz, dy, dx = image_gradients(x, spatial_dims=3)
    assert torch.equal(dz[..., :-1, :, :], x[..., 1:, :, :] - x[..., :-1, :, :])
    assert torch.equal(dy[..., :, :-1, :], x[..., :, 1:, :] - x[..., :, :-1, :])
    assert torch.equal(dx[..., :-1], x[..., 1:] - x[..., :-1])
    assert dz[..., -1, :, :].eq(0).all()


def test_unbatched_and_single_pixel_axes() -> None:
    x = torch.randn(1, 6)
    dy, dx = image_gradients(x)
    assert dy.eq(0).all()
    assert torch.equal(dx[0, :-1], x[0, 1:] - x[0, :-1])
    dy, dx = image_gradients(torch.randn(3, 1, 1))
    assert dy.eq(0).all() and dx.eq(0).all()


def test_integer_input_converted_to_double_is_exact() -> None:
    x = torch.tensor([[[2**40, -(2**40), 3]]], dtype=torch.int64)
    dy, dx = image_gradients(x.double())
    assert dx.tolist() == [[[-(2**41), 2**40 + 3, 0]]]


def test_complex_input() -> None:
    x = torch.randn(2, 4, 5, dtype=torch.complex128, requires_grad=True)
    dy, dx = image_gradients(x)
    assert torch.equal(dx[..., :-1], (x[..., 1:] - x[..., :-1]).detach())
    assert torch.autograd.gradcheck(image_gradients, x)
