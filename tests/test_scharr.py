"""scharr: the [3, 10, 3] x [-1, 0, 1] filters under every padding mode."""

from __future__ import annotations

import pytest
import torch
from references import PADDINGS, conv_reference

from torchgrad import scharr


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("normalized", [False, True])
def test_matches_padded_convolution(padding: str, normalized: bool) -> None:
    x = torch.randn(2, 3, 7, 10, dtype=torch.float64)
    norm = 32.0 if normalized else 1.0
    for ours, ref in zip(
        scharr(x, padding=padding, normalized=normalized), conv_reference(x, [3.0, 10.0, 3.0], padding)
    ):
        torch.testing.assert_close(ours, ref / norm)


def test_known_values() -> None:
    x = torch.arange(4.0).repeat(3, 1)
    dy, dx = scharr(x, padding="zeros")
    # Interior columns see slope 1 over two samples (2 x 16); the first row loses the zero-padded row's 3.
    assert torch.equal(dx[1], torch.tensor([16.0, 32.0, 32.0, -32.0]))
    assert torch.equal(dx[0], torch.tensor([13.0, 26.0, 26.0, -26.0]))
    assert dy.abs().sum() > 0
