"""The Triton executor against the CPU executor, under Triton's interpreter on CPU tensors.

Every operator x padding x normalized x dtype, forward and adjoint; sizes 1, 2, 3 and tiles that
do not divide the tensor; strided, channels_last and expanded tensors; batch 0; the adjoint
identity in float64; the fused magnitude; and the number of kernel launches per call.
``tests/conftest.py`` sets ``TRITON_INTERPRET=1`` where there is no GPU.
"""

from __future__ import annotations

import inspect
import os
from typing import Callable, Optional

import numpy as np
import pytest
import torch

pytest.importorskip("triton")

from helpers import TOLERANCE, count_launches, record_interior_tiles

from torchgrad._filters import build_operator
from torchgrad._registry import REGISTRY
from torchgrad._separable import Separable
from torchgrad._stencil import PADDING_MODES as PADDINGS
from torchgrad._stencil import Row, Stencil, padded_stencil
from torchgrad._triton import can_serve, kernels, launch, penalty_kernels, unsupported_reason
from torchgrad._triton.launch import (
    triton_adjoint,
    triton_apply,
    triton_magnitude,
    triton_magnitude_backward,
)
from torchgrad.cv2_compat import _kernel
from torchgrad.gradient import _coordinate_stencil, _uniform_stencil
from torchgrad.image_gradients import forward_difference_operator

if not launch.interpreting():
    pytest.skip(
        "the kernels were defined without TRITON_INTERPRET=1 (imported before this module, or the variable is set "
        "to something else)",
        allow_module_level=True,
    )

Builder = Callable[[torch.Tensor], Separable]


def _gradient(spacing: tuple[float, ...], dims: tuple[int, ...], edge_order: int) -> Builder:
    return lambda x: Separable(tuple((_uniform_stencil(x, d, h, edge_order),) for d, h in zip(dims, spacing)))


def _long_sobel(ksize: int, padding: str, spatial_dims: int) -> Separable:
    """OpenCV's Sobel kernels of ``ksize`` taps: the derivative along each axis, smoothing across."""
    derivative, smoothing = _kernel(1, ksize), _kernel(0, ksize)
    dims = range(-spatial_dims, 0)
    return Separable(
        tuple(
            tuple(padded_stencil(d, derivative if d == along else smoothing, padding) for d in dims) for along in dims
        )
    )


def _operators() -> dict[str, tuple[Builder, int, int]]:
    """name -> (operator for an input, spatial dims, smallest size per spatial axis)."""
    ops: dict[str, tuple[Builder, int, int]] = {
        "image_gradients": (lambda x: forward_difference_operator(x, 2, "t"), 2, 1),
        "image_gradients_3d": (lambda x: forward_difference_operator(x, 3, "t"), 3, 1),
        "gradient": (_gradient((1.0, 1.0), (-2, -1), 1), 2, 2),
        "gradient_edge2_spacing": (_gradient((0.5, 2.0), (-2, -1), 2), 2, 3),
        "gradient_reversed_dims": (_gradient((1.5, 1.5), (-1, -2), 1), 2, 2),
        "gradient_3d_edge2": (_gradient((1.0, 0.25, 1.0), (-3, -2, -1), 2), 3, 3),
    }
    for padding in PADDINGS:
        small = 2 if padding == "reflect" else 1
        for normalized in (False, True):
            tag = f"{padding}{'_normalized' if normalized else ''}"
            for name in ("sobel", "scharr"):
                ops[f"{name}_{tag}"] = (
                    lambda x, s=REGISTRY[name], p=padding, n=normalized: build_operator("t", s, x, p, n, 2),
                    2,
                    small,
                )
        ops[f"sobel_3d_{padding}"] = (
            lambda x, p=padding: build_operator("t", REGISTRY["sobel"], x, p, False, 3),
            3,
            small,
        )
    ops["sobel_3d_zeros_normalized"] = (lambda x: build_operator("t", REGISTRY["sobel"], x, "zeros", True, 3), 3, 1)
    ops["prewitt_3d_reflect_normalized"] = (
        lambda x: build_operator("t", REGISTRY["prewitt"], x, "reflect", True, 3),
        3,
        2,
    )
    for padding in PADDINGS:  # seven taps (OpenCV's ksize=7 Sobel) in every mode; the Laplacian sums chains
        ops[f"sobel7_{padding}"] = (lambda x, p=padding: _long_sobel(7, p, 2), 2, 2 if padding == "reflect" else 1)
        ops[f"laplacian_{padding}"] = (
            lambda x, p=padding: build_operator("t", REGISTRY["laplacian"], x, p, False, 2),
            2,
            2 if padding == "reflect" else 1,
        )
    ops["sobel5_3d_symmetric"] = (lambda x: _long_sobel(5, "symmetric", 3), 3, 1)
    ops["laplacian_3d_circular"] = (lambda x: build_operator("t", REGISTRY["laplacian"], x, "circular", True, 3), 3, 1)
    ops["laplacian_ksize3_reflect_normalized"] = (
        lambda x: build_operator("t", REGISTRY["laplacian"], x, "reflect", True, 2, ksize=3),
        2,
        2,
    )
    for padding in ("reflect", "circular"):
        ops[f"hessian_{padding}_normalized"] = (
            lambda x, p=padding: build_operator("t", REGISTRY["hessian"], x, p, True, 2),
            2,
            2 if padding == "reflect" else 1,
        )
    return ops


OPERATORS = _operators()
NAMES_2D = [name for name, (_, nd, _) in OPERATORS.items() if nd == 2]
NAMES_3D = [name for name, (_, nd, _) in OPERATORS.items() if nd == 3]
# Half precision: compared with the CPU executor on the same input, relative to the output's scale.


def _scalar(eps: float) -> torch.Tensor:
    """``eps`` as the magnitude kernels take it: a float64 scalar tensor."""
    return torch.scalar_tensor(eps, dtype=torch.float64)


def _input(shape: tuple[int, ...], dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal to the CPU executor within the dtype's tolerance, relative to the output's scale."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    tol = TOLERANCE[expected.dtype]
    scale = max(float(expected.double().abs().max()), 1.0)
    torch.testing.assert_close(actual.double(), expected.double(), rtol=tol, atol=tol * scale)


def _shape(name: str, batch: tuple[int, ...] = (2,)) -> tuple[int, ...]:
    return batch + ((3, 4, 5) if OPERATORS[name][1] == 3 else (6, 7))


def _check_operator(name: str, x: torch.Tensor, block: Optional[tuple[int, int, int]] = None) -> None:
    """Forward and adjoint equal the CPU executor's."""
    op = OPERATORS[name][0](x)
    assert can_serve(op, x), unsupported_reason(op, x)
    expected = op.apply(x)
    got = triton_apply(op, x, block=block)
    assert len(got) == len(expected)
    for a, e in zip(got, expected):
        _close(a, e)
    grads = [_input(tuple(x.shape), x.dtype, seed=1 + k) for k in range(len(expected))]
    _close(triton_adjoint(op, grads, block=block), op.adjoint(grads))


@pytest.mark.parametrize("name", list(OPERATORS))
def test_float64_forward_adjoint_and_identity(name: str) -> None:
    """Equal to the CPU executor, and ``<A x, g> == <x, A^T g>`` to rounding."""
    x = _input(_shape(name))
    op = OPERATORS[name][0](x)
    ys = triton_apply(op, x)
    for a, e in zip(ys, op.apply(x)):
        _close(a, e)
    grads = [_input(tuple(x.shape), seed=1 + k) for k in range(len(ys))]
    gx = triton_adjoint(op, grads)
    _close(gx, op.adjoint(grads))
    lhs = sum(float((y * g).sum()) for y, g in zip(ys, grads))
    assert abs(lhs - float((x * gx).sum())) <= 1e-12 * max(1.0, abs(lhs))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", NAMES_2D)
def test_dtypes_2d(name: str, dtype: torch.dtype) -> None:
    _check_operator(name, _input(_shape(name), dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", NAMES_3D)
def test_dtypes_3d_forward(name: str, dtype: torch.dtype) -> None:
    x = _input(_shape(name, batch=()), dtype)
    op = OPERATORS[name][0](x)
    for a, e in zip(triton_apply(op, x), op.apply(x)):
        _close(a, e)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_dtypes_3d_adjoint(dtype: torch.dtype) -> None:
    x = _input((3, 4, 5), dtype)
    op = OPERATORS["sobel_3d_reflect"][0](x)
    grads = [_input((3, 4, 5), dtype, seed=1 + k) for k in range(3)]
    _close(triton_adjoint(op, grads), op.adjoint(grads))


SMALL_2D = [(1, 2), (3, 1), (2, 3), (3, 2), (3, 3)]


@pytest.mark.parametrize(
    "name", ["image_gradients", "gradient", "gradient_edge2_spacing"] + [f"sobel_{p}" for p in PADDINGS]
)
def test_sizes_1_2_3(name: str) -> None:
    """Axes of one, two and three samples, where the border rows meet or are the only rows."""
    smallest = OPERATORS[name][2]
    for size in [s for s in SMALL_2D if min(s) >= smallest][:3]:
        _check_operator(name, _input((2,) + size))


@pytest.mark.parametrize("name", [f"sobel7_{p}" for p in PADDINGS] + ["laplacian_ksize3_reflect_normalized"])
def test_long_stencils_on_short_axes(name: str) -> None:
    """Seven taps on axes of 1 to 9 samples: padding folds again and again where the reach exceeds the
    axis, the border rows meet, and from 7 samples on an interior row appears."""
    smallest = OPERATORS[name][2]
    for size in [(1, 2), (2, 5), (3, 4), (7, 6), (8, 9)]:
        if min(size) >= smallest:
            _check_operator(name, _input((2,) + size))


@pytest.mark.parametrize("name", ["image_gradients_3d", "sobel_3d_circular", "sobel_3d_replicate"])
def test_sizes_1_2_3_in_3d(name: str) -> None:
    for size in [(1, 2, 3), (3, 1, 2)]:
        _check_operator(name, _input(size))


@pytest.fixture
def addresses_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every address a kernel loads from (in the lanes its mask leaves on) lies inside a tensor of its
    launch: the sample indices are clamped into each axis, so tiles past the edge read inside too."""
    from triton.runtime import interpreter

    spans: list[tuple[int, int]] = []
    original_launch = launch.launch_kernel
    original_load = interpreter.InterpreterBuilder.create_masked_load

    def tracking(kernel, programs, *args, **meta):  # type: ignore[no-untyped-def]
        spans.clear()
        # The tensors passed by keyword too, and those in tuples (one per output or chain).
        for t in torch.utils._pytree.tree_leaves((args, meta)):
            if isinstance(t, torch.Tensor):
                extent = sum((size - 1) * stride for size, stride in zip(t.shape, t.stride())) + 1
                spans.append((t.data_ptr(), t.data_ptr() + extent * t.element_size()))
        original_launch(kernel, programs, *args, **meta)

    # The interpreter's load takes more arguments from one Triton release to the next: only the two it has
    # always had, the pointers and the mask, are read here, by name.
    signature = inspect.signature(original_load)
    assert {"ptrs", "mask"} <= set(signature.parameters), f"the interpreter's masked load is now {signature}"

    def checked_load(*args, **kwargs):  # type: ignore[no-untyped-def]
        bound = signature.bind(*args, **kwargs)
        ptrs, mask = bound.arguments["ptrs"], bound.arguments["mask"]
        addresses = ptrs.data[mask.data.astype(bool)].ravel()
        inside = np.zeros(addresses.shape, dtype=bool)
        for lo, hi in spans:
            inside |= (addresses >= lo) & (addresses < hi)
        if not inside.all():
            raise IndexError(f"a load outside the launch's tensors: {addresses[~inside][:4]}, tensors {spans}")
        return original_load(*args, **kwargs)

    monkeypatch.setattr(launch, "launch_kernel", tracking)
    monkeypatch.setattr(interpreter.InterpreterBuilder, "create_masked_load", checked_load)


@pytest.mark.usefixtures("addresses_checked")
@pytest.mark.parametrize(
    "name", ["sobel_reflect", "scharr_circular_normalized", "gradient_edge2_spacing", "image_gradients"]
)
def test_tiles_that_do_not_divide_the_tensor(name: str) -> None:
    """Tiles of (2, 4, 4) over (3, 7, 9): every axis has a partial tile, border rows in tiles of their own."""
    _check_operator(name, _input((3, 7, 9)), block=(2, 4, 4))


@pytest.mark.usefixtures("addresses_checked")
@pytest.mark.parametrize("name", ["sobel_3d_circular", "gradient_3d_edge2"])
def test_tiles_in_3d(name: str) -> None:
    _check_operator(name, _input((3, 5, 6)), block=(2, 4, 4))


@pytest.mark.usefixtures("addresses_checked")
def test_magnitude_tiles() -> None:
    x = _input((3, 7, 9))
    op = OPERATORS["sobel_replicate"][0](x)
    grad = _input((3, 7, 9), seed=3)
    components = op.apply(x)
    norm = torch.sqrt(sum(c * c for c in components) + 1e-6)
    _close(triton_magnitude(op, x, _scalar(1e-6), block=(2, 4, 4)), norm)
    expected = op.adjoint([grad * c / norm for c in components])
    _close(triton_magnitude_backward(op, x, grad, _scalar(1e-6), block=(2, 4, 4)), expected)


INTERIOR_CASES = {
    # one operator per border rule (padding modes, "valid" rows, torch.gradient's explicit rows), radius
    # and kind of chain, with a size (C, H, W) or (D, H, W) where 4 x 4 tiles (2 x 4 x 4 in 3-D) take both paths
    "sobel_reflect": (1, 12, 12),
    "scharr_symmetric_normalized": (1, 12, 12),
    "sobel_replicate": (1, 12, 12),
    "scharr_circular": (1, 12, 12),
    "sobel_zeros": (1, 12, 12),
    "image_gradients": (1, 12, 12),
    "gradient_edge2_spacing": (1, 12, 12),
    "sobel7_reflect": (1, 22, 22),  # with 8 x 8 tiles: fewer programs, each no costlier to interpret
    "laplacian_symmetric": (1, 12, 12),
    "hessian_circular_normalized": (1, 12, 12),
    "sobel_3d_replicate": (6, 10, 10),
}


@pytest.mark.parametrize("name", list(INTERIOR_CASES))
def test_interior_and_border_tiles(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over a tensor large enough that some tiles' stencils reach no border (forward) and some tiles' columns
    are read by interior rows only (adjoint), both paths run in each launch and equal the CPU executor."""
    taken = record_interior_tiles(monkeypatch)
    x = _input(INTERIOR_CASES[name])
    block = (2, 4, 4) if OPERATORS[name][1] == 3 else (1, 8, 8) if name == "sobel7_reflect" else (1, 4, 4)
    op = OPERATORS[name][0](x)
    expected = op.apply(x)
    for a, e in zip(triton_apply(op, x, block=block), expected):
        _close(a, e)
    assert True in taken and False in taken, taken
    taken.clear()
    grads = [_input(tuple(x.shape), seed=1 + k) for k in range(len(expected))]
    _close(triton_adjoint(op, grads, block=block), op.adjoint(grads))
    assert True in taken and False in taken, taken


def _record_steps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The list grows by each launch's x step (1 where the plan keeps its axes)."""
    steps: list[int] = []
    original = launch.launch_kernel

    def recording(kernel, programs, *args, **meta):  # type: ignore[no-untyped-def]
        steps.append(meta["P"].STEP)
        original(kernel, programs, *args, **meta)

    monkeypatch.setattr(launch, "launch_kernel", recording)
    return steps


def test_interleaved_channels_with_valid_rows_keep_their_axes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows that ``"valid"`` borders zero are not folded on a stepped axis: such an operator keeps its three axes."""
    steps = _record_steps(monkeypatch)
    x = _input((6, 5, 3))
    op = _rows_and_columns(3, "valid")
    for a, e in zip(triton_apply(op, x), op.apply(x)):
        _close(a, e)
    assert steps == [1]


def _rows_and_columns(ksize: int, padding: str) -> Separable:
    """OpenCV's ``(H, W, C)`` layout: a Sobel of ``ksize`` taps along dims -3 and -2, none along the channels."""
    derivative, smoothing = _kernel(1, ksize), _kernel(0, ksize)
    return Separable(
        tuple(
            tuple(padded_stencil(d, derivative if d == along else smoothing, padding) for d in (-3, -2))
            for along in (-3, -2)
        )
    )


@pytest.mark.parametrize("padding", PADDINGS)
def test_interleaved_channels(padding: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator along the rows and columns of ``(H, W, C)`` tensors (channels interleaved, OpenCV's layout)
    runs with the columns and channels merged into one stepped axis: on tiles that reach a border and tiles that
    reach none, on axes shorter than the stencil, for one channel and several; equal to the CPU executor."""
    steps = _record_steps(monkeypatch)
    taken = record_interior_tiles(monkeypatch)
    small = 2 if padding == "reflect" else 1
    cases = [((small, 3, 2), 7, None), ((5, 4, 1), 5, None)]
    if padding in ("reflect", "zeros"):  # tiles that reach no border: one folding mode and the masked one suffice
        cases.append(((14, 12, 3), 3, (1, 4, 8)))
    for shape, ksize, block in cases:
        x = _input(shape)
        op = _rows_and_columns(ksize, padding)
        expected = op.apply(x)
        for a, e in zip(triton_apply(op, x, block=block), expected):
            _close(a, e)
        paths = [set(taken)]
        taken.clear()
        grads = [_input(shape, seed=1 + k) for k in range(len(expected))]
        _close(triton_adjoint(op, grads, block=block), op.adjoint(grads))
        paths.append(set(taken))
        taken.clear()
        assert steps == [shape[-1], shape[-1]], steps
        steps.clear()
        if block is not None:  # forward and adjoint each run tiles that reach a border and tiles that reach none
            assert paths == [{True, False}, {True, False}], paths
    # A permuted view whose rows are not runs of channels keeps the unmerged plan, with the same result.
    x = _input((3, 14, 12)).permute(1, 2, 0)[:, ::2]
    op = _rows_and_columns(3, padding)
    for a, e in zip(triton_apply(op, x), op.apply(x)):
        _close(a, e)
    assert steps == [1]


def test_strided_channels_last_and_expanded() -> None:
    """Inputs and cotangents of any strides are read in place; outputs keep the input's layout."""
    base = _input((2, 3, 7, 8))
    op = OPERATORS["sobel_zeros"][0](base)
    calls = []
    for x in (
        base.to(memory_format=torch.channels_last),
        _input((2, 3, 7, 16))[..., ::2],  # strided width
        _input((3, 2, 8, 7)).transpose(0, 1).transpose(-1, -2),  # permuted batch and spatial axes
    ):
        expected = op.apply(x.contiguous())
        got = triton_apply(op, x)
        calls.append(got)
        for a, e in zip(got, expected):
            _close(a, e)
    assert calls[0][0].is_contiguous(memory_format=torch.channels_last)
    # A cotangent of zeros expanded over the batch, and one transposed.
    g0 = torch.ones(1, 1, 7, 8, dtype=torch.float64).expand(2, 3, 7, 8)
    g1 = _input((2, 3, 8, 7)).transpose(-1, -2)
    _close(triton_adjoint(op, [g0, g1]), op.adjoint([g0.contiguous(), g1.contiguous()]))
    _close(triton_adjoint(op, [None, g1]), op.adjoint([None, g1.contiguous()]))


def test_cotangents_of_different_shapes_are_refused() -> None:
    x = _input((2, 5, 6))
    op = OPERATORS["sobel_reflect"][0](x)
    with pytest.raises(ValueError, match="share one shape"):
        triton_adjoint(op, [x, x[:1]])
    with pytest.raises(ValueError, match="share one shape"):
        triton_adjoint(op, [x, x.float()])


def test_batch_dims_that_do_not_merge() -> None:
    """Three batch groups that no stride merges: copied contiguous, still right."""
    x = _input((2, 3, 2, 5, 6)).permute(1, 0, 2, 3, 4)[:, :, ::2]
    op = OPERATORS["image_gradients"][0](x)
    for a, e in zip(triton_apply(op, x), op.apply(x.contiguous())):
        _close(a, e)


def test_batch_zero_launches_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = count_launches(monkeypatch)
    x = torch.zeros(0, 3, 5, 6, dtype=torch.float32)
    op = OPERATORS["sobel_reflect"][0](x)
    ys = triton_apply(op, x)
    assert len(ys) == 2 and all(y.shape == x.shape and y.dtype == x.dtype for y in ys)
    assert triton_adjoint(op, list(ys)).shape == x.shape
    assert triton_magnitude(op, x, _scalar(1e-6)).shape == x.shape
    assert triton_magnitude_backward(op, x, x, _scalar(1e-6)).shape == x.shape
    assert counts == []


def test_zero_weights_never_read_inf() -> None:
    """A sample a row does not read (zero tap, valid border, zero padding) never reaches it: inf stays out."""
    x = _input((1, 5, 6))
    x[0, 0, 0] = float("inf")
    for name in ("image_gradients", "sobel_zeros", "gradient_edge2_spacing"):
        op = OPERATORS[name][0](x)
        for a, e in zip(triton_apply(op, x), op.apply(x)):
            assert torch.equal(a.isnan(), e.isnan()) and torch.equal(a.isinf(), e.isinf())
            finite = e.isfinite()
            _close(a[finite], e[finite])


@pytest.mark.parametrize("name", ["sobel_reflect", "scharr_zeros_normalized", "image_gradients", "sobel_3d_replicate"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16], ids=str)
def test_magnitude(name: str, dtype: torch.dtype) -> None:
    """The fused magnitude and its backward against the same formulas on the CPU executor."""
    x = _input(_shape(name, batch=(1,)), dtype)
    op = OPERATORS[name][0](x)
    eps = 1e-3
    components = [c.double() for c in op.apply(x.double())]
    norm = torch.sqrt(sum(c * c for c in components) + eps)
    grad = _input(tuple(x.shape), dtype, seed=5)
    expected_grad = op.adjoint([grad.double() * c / norm for c in components])
    tol = {torch.float64: 1e-12, torch.bfloat16: 2e-2}[dtype]
    got = triton_magnitude(op, x, _scalar(eps))
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), norm, rtol=tol, atol=tol)
    gx = triton_magnitude_backward(op, x, grad, _scalar(eps))
    assert gx.dtype == dtype
    scale = float(expected_grad.abs().max())
    torch.testing.assert_close(gx.double(), expected_grad, rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("batch", [2, 32])
def test_launch_counts(batch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """One launch forward and one for the adjoint, whatever the batch; two for the magnitude's backward."""
    calls = count_launches(monkeypatch, run=False)
    for name in ("image_gradients", "sobel_reflect", "scharr_circular", "gradient_edge2_spacing", "image_gradients_3d"):
        nd = OPERATORS[name][1]
        x = _input((batch,) + ((2, 3, 4) if nd == 3 else (3, 4)), torch.float32)
        op = OPERATORS[name][0](x)
        calls.clear()
        ys = triton_apply(op, x)
        assert len(calls) == 1, (name, calls)
        calls.clear()
        triton_adjoint(op, list(ys))
        assert len(calls) == 1, (name, calls)
    x = _input((batch, 3, 4), torch.float32)
    op = OPERATORS["sobel_reflect"][0](x)
    calls.clear()
    triton_magnitude(op, x, _scalar(1e-6))
    assert len(calls) == 1
    calls.clear()
    triton_magnitude_backward(op, x, x, _scalar(1e-6))
    assert len(calls) == 2


def test_border_rows_that_read_afar() -> None:
    """Border rows are read from the description: here row 0 reads the last sample, row n - 1 the first."""
    x = _input((2, 5, 6))
    far = Stencil(-1, (1, -2, 1), 2, (Row(((0, 1), (-1, -3)), 4),), (Row(((0, 0.5), (-1, 1))),))
    op = Separable(((far,), (_uniform_stencil(x, -2, 1.0, 2),)))
    assert can_serve(op, x)
    for a, e in zip(triton_apply(op, x), op.apply(x)):
        _close(a, e)
    grads = [_input((2, 5, 6), seed=k) for k in range(2)]
    _close(triton_adjoint(op, grads), op.adjoint(grads))


def test_one_kernel_per_job_with_a_short_argument_list() -> None:
    """Each job has its kernel, whose parameters (tensors, sizes and strides as tuples, the plan as one
    compile-time argument) number at most 20."""
    jobs = {
        kernels: ["_apply_kernel", "_adjoint_kernel", "_magnitude_kernel", "_magnitude_backward_kernel"],
        penalty_kernels: ["_loss_kernel", "_slopes_kernel", "_edge_weights_kernel", "_total_kernel"],
    }
    for module, names in jobs.items():
        found = sorted(n for n in vars(module) if n.endswith("_kernel") and hasattr(getattr(module, n), "fn"))
        assert found == sorted(names), found
        for name in names:
            parameters = inspect.signature(getattr(module, name).fn).parameters
            assert len(parameters) <= 20, (name, list(parameters))


def test_what_is_not_served() -> None:
    """Coordinates, complex and integer inputs, and axes beyond three keep the other executors."""
    x = _input((2, 5, 6))
    coords = torch.linspace(0, 1, 6, dtype=torch.float64) ** 2
    coordinate = Separable(((_coordinate_stencil(x, -1, coords, 1),),))
    assert "tensor or complex weights" in unsupported_reason(coordinate, x)
    sobel = OPERATORS["sobel_reflect"][0](x)
    assert can_serve(sobel, x)
    assert not can_serve(sobel, x.to(torch.complex128))
    assert not can_serve(OPERATORS["image_gradients"][0](x), x.to(torch.int64))
    y = _input((2, 3, 4, 5))
    four_axes = Separable(tuple((_uniform_stencil(y, d, 1.0, 1),) for d in range(-4, 0)))
    reason = unsupported_reason(four_axes, y)  # four components along four axes: either limit says no
    assert "1 to 3 chains" in reason or "up to 3 spatial dims" in reason
    twice = Separable(((_uniform_stencil(x, -1, 1.0, 1), _uniform_stencil(x, -1, 1.0, 1)),))
    assert "two stencils" in unsupported_reason(twice, x)
    four = Stencil(-1, (1, 2, 1), 1, (Row(((0, 1), (1, 1), (2, 1), (3, 1))),), (Row(((-2, 1), (-1, 1))),))
    assert "no padding mode" in unsupported_reason(Separable(((four,),)), x)
    third = Stencil(-1, (0.1, 0, 0.1), 1, (Row(((0, 1),)),), (Row(((-1, 1),)),))
    assert "float32" in unsupported_reason(Separable(((third,),)), x)
    folded = padded_stencil(-1, (1.0, 0, 2.0**-30), "reflect")  # row 0 gives sample 1 the weight 1 + 2^-30
    assert "float32" in unsupported_reason(Separable(((folded,),)), x)
    assert can_serve(sobel, _input((2, 5, 7)))  # descriptions hold no size: one operator serves every shape
    copies = (Row(((0, 1),)), Row(((1, 1),))), (Row(((-2, 1),)), Row(((-1, 1),)))
    long_rows = Stencil(-1, (1, 4, 6, 4, 1), 1, *copies)  # explicit border rows that copy the input
    assert "three-tap stencils only" in unsupported_reason(Separable(((long_rows,),)), x)


def test_kernels_compile_without_spills() -> None:
    """The interpreter is lenient: every kernel kind also goes through Triton's compiler to sm_90a and sm_80
    machine code as the JIT compiles it at a launch (run-time specialisation: ints equal to 1 as constants, ints
    and aligned pointers divisible by 16), and spills no register. ``benchmarks/kernel_report.py --kinds`` in a
    process without TRITON_INTERPRET: its capture runs the public API under the interpreter, then it compiles
    each distinct launch and reads ptxas's registers and local-memory traffic (no GPU needed)."""
    import subprocess
    import sys
    from pathlib import Path

    from triton.backends import backends

    if "nvidia" not in backends:
        pytest.skip("this Triton has no NVIDIA backend to compile for")
    report = Path(__file__).resolve().parents[1] / "benchmarks" / "kernel_report.py"
    environment = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, str(report), "--kinds"], env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "0 with spills" in result.stdout
