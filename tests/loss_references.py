"""Plain-autograd re-implementations of the operators and losses, written naively, for the loss tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F

SMOOTHING = {"sobel": [1.0, 2.0, 1.0], "scharr": [3.0, 10.0, 3.0]}


def naive_gradients(
    x: torch.Tensor, operator: str, padding: str = "reflect", normalized: bool = False, absolute: bool = False
) -> list[torch.Tensor]:
    """Gradient components (outermost axis first) by slicing, padded convolution or torch.gradient.

    ``absolute`` uses the absolute values of the weights: on an indicator of invalid pixels it is
    non-zero exactly where a stencil reads one (a pixel read twice, as reflect padding does, counts
    even when its two weights cancel).
    """
    spatial = x.dim() - 2
    dims = list(range(2, x.dim()))
    if operator == "central":
        if absolute:  # interior reads i-1 and i+1, the two edges read their first two samples
            out = []
            for d in dims:
                n = x.shape[d]
                reads = torch.cat(
                    [
                        x.narrow(d, 0, 2).sum(d, keepdim=True),
                        x.narrow(d, 0, n - 2) + x.narrow(d, 2, n - 2),
                        x.narrow(d, n - 2, 2).sum(d, keepdim=True),
                    ],
                    dim=d,
                )
                out.append(reads)
            return out
        return list(torch.gradient(x, dim=dims))
    if operator == "diff":
        out = []
        for d in dims:
            sign = 1 if absolute else -1
            diff = x.narrow(d, 1, x.shape[d] - 1) + sign * x.narrow(d, 0, x.shape[d] - 1)
            out.append(torch.cat([diff, torch.zeros_like(x.narrow(d, 0, 1))], dim=d))
        return out
    s = torch.tensor(SMOOTHING[operator], dtype=x.dtype)
    diff = torch.tensor([-1.0, 0.0, 1.0], dtype=x.dtype)
    mode = "constant" if padding == "zeros" else padding
    xp = F.pad(x, (1, 1) * spatial, mode=mode)
    c = x.shape[1]
    out = []
    for axis in range(spatial):
        kernel = torch.ones((1,) * spatial, dtype=x.dtype)
        for a in range(spatial):
            v = diff if a == axis else s
            kernel = kernel.unsqueeze(-1) * v.reshape((1,) * a + (3,))
        kernel = kernel.reshape((3,) * spatial)
        kernel = kernel.abs() if absolute else kernel
        conv = F.conv2d if spatial == 2 else F.conv3d
        y = conv(xp, kernel.expand(c, 1, *kernel.shape), groups=c)
        out.append(y / (2 * sum(SMOOTHING[operator]) ** (spatial - 1)) if normalized else y)
    return out
