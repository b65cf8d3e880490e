"""NaN and inf: an output is non-finite exactly when its stencil reads a non-finite sample with a non-zero weight.

A zero tap is not read (the centre of ``[-1, 0, 1]``), so a convolution, which multiplies its whole window
(``0 * NaN = NaN``), turns a strict superset of outputs non-finite; padding reads the samples it copies. Checked per
padding and position against the kernel's absolute weights correlated with an indicator of the bad sample (which
outputs read it), the convolution itself (its superset), TensorFlow's slicing and ``torch.gradient``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import vmap

import torchgrad
from torchgrad._internal import operator_by_name
from torchgrad.losses.functional import gradient_loss

PADDINGS = ("reflect", "replicate", "zeros", "circular", "symmetric")
VALUES = (float("nan"), float("inf"))
SOBEL, SCHARR = (1, 2, 1), (3, 10, 3)
SHAPES = {2: (2, 2, 7, 8), 3: (1, 2, 5, 6, 7)}
# interior, edges, corners, and next to a corner (reflect padding folds taps onto it)
POSITIONS = {
    2: [(1, 0, 3, 4), (1, 1, 0, 4), (0, 1, 3, 7), (0, 0, 0, 0), (1, 1, 6, 7), (0, 1, 1, 1)],
    3: [(0, 1, 2, 3, 3), (0, 0, 0, 3, 3), (0, 1, 4, 5, 6), (0, 0, 1, 0, 6), (0, 1, 2, 1, 1)],
}


def _image(spatial_dims: int, position: tuple[int, ...], value: float) -> torch.Tensor:
    x = torch.rand(SHAPES[spatial_dims], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x[position] = value
    return x


def _indicator(spatial_dims: int, position: tuple[int, ...]) -> torch.Tensor:
    e = torch.zeros(SHAPES[spatial_dims], dtype=torch.float64)
    e[position] = 1.0
    return e


def _bad(t: torch.Tensor) -> torch.Tensor:
    return ~torch.isfinite(t)


def _kernels(smoothing: tuple[int, int, int], spatial_dims: int) -> list[torch.Tensor]:
    """The full correlation kernels, outermost axis first: the difference along the axis, smoothing across it."""
    difference, smooth = torch.tensor([-1.0, 0.0, 1.0]), torch.tensor([float(s) for s in smoothing])
    kernels = []
    for axis in range(spatial_dims):
        kernel = torch.ones(())
        for a in range(spatial_dims):
            kernel = torch.tensordot(kernel, difference if a == axis else smooth, dims=0)
        kernels.append(kernel.double())
    return kernels


def _correlate(x: torch.Tensor, kernel: torch.Tensor, padding: str) -> torch.Tensor:
    """``x`` padded as ``padding`` pads it (``numpy.pad`` for symmetric, which torch's ``pad`` lacks), correlated
    with ``kernel`` by conv2d/conv3d."""
    spatial_dims = kernel.dim()
    flat = x.reshape(-1, 1, *x.shape[-spatial_dims:])
    if padding == "symmetric":
        padded = torch.from_numpy(np.pad(flat.numpy(), [(0, 0), (0, 0)] + [(1, 1)] * spatial_dims, mode="symmetric"))
    else:
        padded = F.pad(flat, [1] * (2 * spatial_dims), mode="constant" if padding == "zeros" else padding)
    conv = F.conv2d if spatial_dims == 2 else F.conv3d
    return conv(padded, kernel[None, None]).reshape(x.shape)


def _runners(fn: Callable) -> list[Callable]:
    """Eager code, and the traceable code that torch.func transforms run."""
    return [fn, vmap(fn)]


FILTERS = [("sobel", 2), ("sobel", 3), ("scharr", 2)]


@pytest.mark.parametrize("operator, spatial_dims", FILTERS)
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("value", VALUES)
def test_sobel_and_scharr(operator: str, spatial_dims: int, padding: str, value: float, cpu_executor: str) -> None:
    kernels = _kernels(SOBEL if operator == "sobel" else SCHARR, spatial_dims)
    options = {"spatial_dims": spatial_dims} if operator == "sobel" else {}  # Scharr is 2-D only
    fn = lambda x: getattr(torchgrad, operator)(x, padding=padding, **options)  # noqa: E731
    strict = 0
    for position in POSITIONS[spatial_dims]:
        x, e = _image(spatial_dims, position, value), _indicator(spatial_dims, position)
        reads = [_correlate(e, k.abs(), padding) != 0 for k in kernels]
        support = operator_by_name("test", operator, e, padding, False, spatial_dims).support().apply(e)
        convolved = [_correlate(x, k, padding) for k in kernels]
        for run in _runners(fn):
            for out, read, s, conv in zip(run(x), reads, support, convolved):
                assert torch.equal(_bad(out), read), (position, value)
                assert torch.equal(s != 0, read)
                assert (_bad(conv) >= read).all()
                finite = ~_bad(conv)
                torch.testing.assert_close(out[finite], conv[finite])  # the same kernel
        strict += sum(int((_bad(conv) & ~read).any()) for conv, read in zip(convolved, reads))
    assert strict > 0  # a strict superset (at a replicated corner the two coincide)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("value", VALUES)
def test_image_gradients(spatial_dims: int, value: float) -> None:
    """Forward differences read two samples, as TensorFlow's slicing does; the zero last row reads none."""
    fn = lambda x: torchgrad.image_gradients(x, spatial_dims=spatial_dims)  # noqa: E731

    def tensorflow(x: torch.Tensor, absolute: bool = False) -> list[torch.Tensor]:
        out = []
        for d in range(-spatial_dims, 0):
            n = x.shape[d]
            a, b = x.narrow(d, 1, n - 1), x.narrow(d, 0, n - 1)
            out.append(torch.cat([a + b if absolute else a - b, torch.zeros_like(x.narrow(d, 0, 1))], d))
        return out

    for position in POSITIONS[spatial_dims]:
        x, e = _image(spatial_dims, position, value), _indicator(spatial_dims, position)
        reads = [r != 0 for r in tensorflow(e, absolute=True)]
        support = operator_by_name("test", "diff", e, None, False, spatial_dims).support().apply(e)
        for run in _runners(fn):
            for out, read, s, tf in zip(run(x), reads, support, tensorflow(x)):
                assert torch.equal(_bad(out), read) and torch.equal(s != 0, read)
                assert torch.equal(out.isnan(), tf.isnan()) and torch.equal(out.isinf(), tf.isinf())


def _coordinates(n: int) -> torch.Tensor:
    """Uniform in the first half (a zero centre weight there), stretched in the second."""
    return torch.cat([torch.arange(n // 2 + 1.0), n // 2 + torch.arange(1.0, n - n // 2) ** 1.5]).double()


GRID = [_coordinates(n) for n in SHAPES[2][-2:]]
GRADIENT_CASES: dict[str, dict] = {
    "every_dim": dict(),
    "uniform": dict(dim=(-2, -1)),
    "spacing_dims": dict(spacing=[2.0, 0.5], dim=[-1, -2]),
    "edge_order_2": dict(dim=(-2, -1), edge_order=2),
    "coordinates": dict(spacing=GRID, dim=(-2, -1)),
    "coordinates_edge_order_2": dict(spacing=GRID, dim=(-2, -1), edge_order=2),
}


@pytest.mark.parametrize("case", sorted(GRADIENT_CASES))
@pytest.mark.parametrize("value", VALUES)
def test_gradient_propagates_as_torch_gradient(case: str, value: float) -> None:
    """The same NaN and inf outputs as torch.gradient, which reads the centre only on coordinate grids."""
    for position in POSITIONS[2]:
        x = _image(2, position, value)
        kwargs = GRADIENT_CASES[case]
        theirs = torch.gradient(x, **kwargs)
        runs = [torchgrad.gradient(x, **kwargs)]
        if "dim" in kwargs:  # the same dims under vmap
            runs.append(vmap(lambda t: torchgrad.gradient(t, **kwargs))(x))
        for ours in runs:
            for a, b in zip(ours, theirs, strict=True):
                assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.isinf(), b.isinf())
                torch.testing.assert_close(a, b, equal_nan=True)


@pytest.mark.parametrize(
    "operator, spatial_dims, padding",
    [(*f, padding) for f in FILTERS for padding in PADDINGS] + [("diff", 2, None), ("diff", 3, None)],
)
@pytest.mark.parametrize("value", VALUES)
def test_gradient_magnitude(operator: str, spatial_dims: int, padding: str, value: float, cpu_executor: str) -> None:
    """Non-finite where any component reads the sample; at the sample itself Sobel and Scharr read only its
    neighbours, so the magnitude there is what any finite value in its place gives."""
    kwargs = dict(operator=operator, padding=padding, spatial_dims=spatial_dims)
    fn = lambda x: torchgrad.gradient_magnitude(x, **kwargs)  # noqa: E731
    for position in POSITIONS[spatial_dims]:
        x, e = _image(spatial_dims, position, value), _indicator(spatial_dims, position)
        op = operator_by_name("test", operator, e, padding, False, spatial_dims)
        reads = torch.stack([s != 0 for s in op.support().apply(e)]).any(0)
        for run in _runners(fn):
            assert torch.equal(_bad(run(x)), reads), (position, value)
        out = fn(x)
        if operator != "diff":
            kernels = _kernels(SOBEL if operator == "sobel" else SCHARR, spatial_dims)
            conv = torch.stack([_correlate(x, k, padding) for k in kernels]).square().sum(0)
            assert (_bad(conv) >= reads).all() and _bad(conv)[position]
            # the centre tap is zero: only replicate and symmetric padding copy a border pixel into its own window
            on_border = any(i in (0, n - 1) for i, n in zip(position[-spatial_dims:], x.shape[-spatial_dims:]))
            assert reads[position] == (padding in ("replicate", "symmetric") and on_border)
        if not reads[position]:
            for finite in (0.0, 1e3):
                replaced = x.clone()
                replaced[position] = finite
                assert fn(replaced)[position] == out[position]


LOSS_CASES = [
    (operator, padding, spatial_dims)
    for operator, padding in [("diff", None), ("central", None), ("scharr", "reflect"), ("prewitt", "zeros")]
    + [("sobel", p) for p in PADDINGS]
    + [("laplacian", "reflect"), ("laplacian", "replicate"), ("hessian", "reflect"), ("hessian", "circular")]
    for spatial_dims in (2, 3)
    if not (operator in ("scharr", "hessian") and spatial_dims == 3)
]


@pytest.mark.parametrize("operator, padding, spatial_dims", LOSS_CASES)
@pytest.mark.parametrize("value", VALUES)
def test_masked_holes_never_leak(
    operator: str, padding: str, spatial_dims: int, value: float, cpu_executor: str
) -> None:
    """NaN or inf in masked-out holes (interior, edge, corner; in the target and the input) changes nothing: the
    loss and its gradients are finite and equal to those with any finite values in the holes."""
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(SHAPES[spatial_dims], dtype=torch.float64, generator=gen)
    y = torch.rand(SHAPES[spatial_dims], dtype=torch.float64, generator=gen)
    mask = torch.ones_like(x, dtype=torch.bool)
    for position in POSITIONS[spatial_dims][:4]:
        mask[position] = False
    for p in (1, 2):
        results = []
        for fill_x, fill_y in ((value, value), (0.0, value), (0.0, 0.0), (5.0, -3.0)):
            xf, yf = x.masked_fill(~mask, fill_x).requires_grad_(), y.masked_fill(~mask, fill_y).requires_grad_()
            loss = gradient_loss(xf, yf, mask, operator=operator, p=p, padding=padding)
            results.append((loss, *torch.autograd.grad(loss, (xf, yf))))
        for loss, gx, gy in results:
            assert torch.isfinite(loss) and torch.isfinite(gx).all() and torch.isfinite(gy).all()
            torch.testing.assert_close((loss, gx, gy), results[-1])
