"""prewitt: scipy.ndimage.prewitt parity in 2-D and 3-D for every padding, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch
from references import PADDINGS

from torchgrad import prewitt

SCIPY_MODES = {
    "reflect": "mirror",
    "replicate": "nearest",
    "zeros": "constant",
    "circular": "wrap",
    "symmetric": "reflect",
}


def _scipy_prewitt(x: torch.Tensor, padding: str, spatial_dims: int) -> list[torch.Tensor]:
    """scipy.ndimage.prewitt along each spatial axis of each image (scipy smooths along every other axis of
    its input, so the batch and channel axes are looped over)."""
    images = x.numpy().reshape((-1,) + x.shape[-spatial_dims:])
    out = []
    for axis in range(spatial_dims):
        result = np.stack([scipy.ndimage.prewitt(image, axis=axis, mode=SCIPY_MODES[padding]) for image in images])
        out.append(torch.from_numpy(result.reshape(x.shape)))
    return out


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_matches_scipy(padding: str, spatial_dims: int) -> None:
    shape = (2, 3, 7, 9) if spatial_dims == 2 else (2, 2, 5, 6, 7)
    x = torch.randn(shape, dtype=torch.float64)
    outputs = prewitt(x, padding=padding, spatial_dims=spatial_dims)
    assert len(outputs) == spatial_dims
    for ours, ref in zip(outputs, _scipy_prewitt(x, padding, spatial_dims)):
        torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_normalized_is_the_derivative_of_a_ramp(spatial_dims: int) -> None:
    """Divided by 6 (2-D) or 18 (3-D): the slope of a linear function, exactly, inside."""
    axes = torch.meshgrid(*[torch.arange(6.0, dtype=torch.float64)] * spatial_dims, indexing="ij")
    slopes = (3.0, -2.0, 0.5)[-spatial_dims:]
    f = sum(s * a for s, a in zip(slopes, axes))
    inner = (slice(1, -1),) * spatial_dims
    for out, slope in zip(prewitt(f, normalized=True, spatial_dims=spatial_dims), slopes):
        assert torch.equal(out[inner], torch.full_like(out[inner], slope))
    raw = prewitt(f, spatial_dims=spatial_dims)
    torch.testing.assert_close(
        raw[-1][inner], torch.full_like(raw[-1][inner], slopes[-1] * 2 * 3 ** (spatial_dims - 1))
    )


def test_complex_input() -> None:
    x = torch.randn(2, 6, 7, dtype=torch.complex128)
    for c, re, im in zip(prewitt(x), prewitt(x.real), prewitt(x.imag)):
        torch.testing.assert_close(c, torch.complex(re, im))
