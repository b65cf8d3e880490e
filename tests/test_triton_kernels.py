"""The Triton executor's kernels against the CPU executor, under Triton's interpreter on CPU tensors
(``tests/conftest.py`` sets ``TRITON_INTERPRET=1`` where there is no GPU): the catalogue's operators in every dtype,
short axes, partial and interior tiles, OpenCV's interleaved layout, strides, batch 0, what is not served."""

from __future__ import annotations

import inspect
import os
from typing import Optional

import numpy as np
import pytest
import torch

pytest.importorskip("triton")

from helpers import assert_close_in_dtype as _close
from helpers import count_launches, record_interior_tiles
from helpers import random_input as _input
from references import OPERATORS, PADDINGS, opencv_sobel

from torchgrad._separable import Separable
from torchgrad._stencil import Row, Stencil, padded_stencil
from torchgrad._triton import can_serve, kernels, launch, penalty_kernels, unsupported_reason
from torchgrad._triton.launch import (
    triton_adjoint,
    triton_apply,
    triton_magnitude,
    triton_magnitude_backward,
)
from torchgrad.gradient import _coordinate_stencil, _uniform_stencil

if not launch.interpreting():
    pytest.skip(
        "the kernels were defined without TRITON_INTERPRET=1 (imported before this module, or the variable is set "
        "to something else)",
        allow_module_level=True,
    )

CASES = ["image_gradients", "image_gradients_3d", "gradient", "gradient_edge2_spacing", "gradient_reversed_dims"]
CASES += ["gradient_3d_edge2", "sobel_3d_zeros_normalized", "prewitt_3d_reflect_normalized", "sobel5_3d_symmetric"]
CASES += ["laplacian_3d_circular", "laplacian_ksize3_reflect_normalized", "hessian_reflect_normalized"]
CASES += ["hessian_circular_normalized"]
CASES += [f"{name}_{p}" for p in PADDINGS for name in ("sobel", "scharr", "sobel_3d", "sobel7", "laplacian")]
CASES += [f"{name}_{p}_normalized" for p in PADDINGS for name in ("sobel", "scharr")]
"""The catalogue's operators run here: every padding of the 2-D Sobel and Scharr (normalized too), 3-D Sobel,
OpenCV's seven taps and the Laplacian; one of each other kind of chain and border rule."""
EPS = torch.scalar_tensor(1e-6, dtype=torch.float64)  # eps as the magnitude kernels take it


def _shape(name: str, batch: tuple[int, ...] = (2,)) -> tuple[int, ...]:
    return batch + ((3, 4, 5) if OPERATORS[name].spatial_dims == 3 else (6, 7))


def _separable(name: str, x: torch.Tensor) -> Separable:
    separable = OPERATORS[name].separable
    assert separable is not None, name
    return separable(x)


def _check_operator(
    name: str,
    x: torch.Tensor,
    block: Optional[tuple[int, int, int]] = None,
    adjoint: bool = True,
    taken: Optional[list[bool]] = None,
) -> None:
    """Forward and adjoint equal the CPU executor's; in float64 also ``<A x, g> == <x, A^T g>`` to rounding. With
    ``taken`` (:func:`record_interior_tiles`), each launch runs both the interior and the border path."""
    op = _separable(name, x)
    assert can_serve(op, x), unsupported_reason(op, x)
    ys, expected = triton_apply(op, x, block=block), op.apply(x)
    assert len(ys) == len(expected)
    for a, e in zip(ys, expected):
        _close(a, e)
    if taken is not None:
        assert True in taken and False in taken, taken
        taken.clear()
    if adjoint:
        grads = [_input(tuple(x.shape), x.dtype, seed=1 + k) for k in range(len(ys))]
        gx = triton_adjoint(op, grads, block=block)
        _close(gx, op.adjoint(grads))
        if x.dtype == torch.float64:
            lhs = sum(float((y * g).sum()) for y, g in zip(ys, grads))
            assert abs(lhs - float((x * gx).sum())) <= 1e-12 * max(1.0, abs(lhs))
    assert taken is None or (True in taken and False in taken), taken


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", CASES)
def test_equal_to_the_cpu_executor(name: str, dtype: torch.dtype) -> None:
    """Forward and adjoint (and in float64 the adjoint identity); 3-D in float32 and half precision, the slowest
    kernels to interpret: one volume, and the adjoint of one operator."""
    lite = OPERATORS[name].spatial_dims == 3 and dtype != torch.float64
    x = _input(_shape(name, () if lite else (2,)), dtype)
    _check_operator(name, x, adjoint=not lite or name == "sobel_3d_reflect")


SHORT: list[tuple[int, ...]] = [(1, 2), (3, 1), (2, 3), (3, 2), (3, 3)]
LONG: list[tuple[int, ...]] = [(1, 2), (2, 5), (3, 4), (7, 6), (8, 9)]
SHORT_AXES: dict[str, list[tuple[int, ...]]] = {
    name: [s for s in SHORT if min(s) >= OPERATORS[name].smallest][:3]
    for name in ["image_gradients", "gradient", "gradient_edge2_spacing"] + [f"sobel_{p}" for p in PADDINGS]
}
SHORT_AXES |= {
    name: [s for s in LONG if min(s) >= OPERATORS[name].smallest]
    for name in [f"sobel7_{p}" for p in PADDINGS] + ["laplacian_ksize3_reflect_normalized"]
}
SHORT_AXES |= {
    name: [(1, 2, 3), (3, 1, 2)] for name in ["image_gradients_3d", "sobel_3d_circular", "sobel_3d_replicate"]
}


@pytest.mark.parametrize("name", list(SHORT_AXES))
def test_short_axes(name: str) -> None:
    """Axes of one to three samples, where the border rows meet or are the only rows; seven taps on axes of 1 to 9
    samples: padding folds again and again where the reach exceeds the axis, and from 7 samples on an interior row
    appears."""
    for size in SHORT_AXES[name]:
        _check_operator(name, _input(size if len(size) == 3 else (2,) + size))


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


TILED = {name: (3, 7, 9) for name in ["sobel_reflect", "scharr_circular_normalized", "gradient_edge2_spacing"]}
TILED |= {"image_gradients": (3, 7, 9), "sobel_3d_circular": (3, 5, 6), "gradient_3d_edge2": (3, 5, 6)}


@pytest.mark.usefixtures("addresses_checked")
@pytest.mark.parametrize("name", list(TILED))
def test_tiles_that_do_not_divide_the_tensor(name: str) -> None:
    """Tiles of (2, 4, 4): every axis has a partial tile, border rows in tiles of their own."""
    _check_operator(name, _input(TILED[name]), block=(2, 4, 4))


@pytest.mark.usefixtures("addresses_checked")
def test_magnitude_tiles() -> None:
    x = _input((3, 7, 9))
    op = _separable("sobel_replicate", x)
    grad = _input((3, 7, 9), seed=3)
    components = op.apply(x)
    norm = torch.sqrt(sum(c * c for c in components) + 1e-6)
    _close(triton_magnitude(op, x, EPS, block=(2, 4, 4)), norm)
    expected = op.adjoint([grad * c / norm for c in components])
    _close(triton_magnitude_backward(op, x, grad, EPS, block=(2, 4, 4)), expected)


INTERIOR_CASES = {
    name: (1, 12, 12)
    for name in ["sobel_reflect", "scharr_symmetric_normalized", "sobel_replicate", "scharr_circular", "sobel_zeros"]
    + ["image_gradients", "gradient_edge2_spacing", "laplacian_symmetric", "hessian_circular_normalized"]
}
INTERIOR_CASES |= {"sobel7_reflect": (1, 22, 22), "sobel_3d_replicate": (6, 10, 10)}
"""One operator per border rule (padding modes, "valid" rows, torch.gradient's explicit rows), radius and kind of
chain, with a size where 4 x 4 tiles (8 x 8 for seven taps, 2 x 4 x 4 in 3-D) take both paths."""


@pytest.mark.parametrize("name", list(INTERIOR_CASES))
def test_interior_and_border_tiles(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over a tensor large enough that some tiles' stencils reach no border (forward) and some tiles' columns
    are read by interior rows only (adjoint), both paths run in each launch and equal the CPU executor."""
    taken = record_interior_tiles(monkeypatch)
    block = (2, 4, 4) if OPERATORS[name].spatial_dims == 3 else (1, 8, 8) if name == "sobel7_reflect" else (1, 4, 4)
    _check_operator(name, _input(INTERIOR_CASES[name]), block, taken=taken)


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
    op = opencv_sobel(3, "valid", (-3, -2))
    for a, e in zip(triton_apply(op, x), op.apply(x)):
        _close(a, e)
    assert steps == [1]


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
        op = opencv_sobel(ksize, padding, (-3, -2))
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
    op = opencv_sobel(3, padding, (-3, -2))
    for a, e in zip(triton_apply(op, x), op.apply(x)):
        _close(a, e)
    assert steps == [1]


def test_strided_channels_last_and_expanded() -> None:
    """Inputs and cotangents of any strides are read in place; outputs keep the input's layout."""
    base = _input((2, 3, 7, 8))
    op = _separable("sobel_zeros", base)
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
    op = _separable("sobel_reflect", x)
    with pytest.raises(ValueError, match="share one shape"):
        triton_adjoint(op, [x, x[:1]])
    with pytest.raises(ValueError, match="share one shape"):
        triton_adjoint(op, [x, x.float()])


def test_batch_dims_that_do_not_merge() -> None:
    """Three batch groups that no stride merges: copied contiguous, still right."""
    x = _input((2, 3, 2, 5, 6)).permute(1, 0, 2, 3, 4)[:, :, ::2]
    op = _separable("image_gradients", x)
    for a, e in zip(triton_apply(op, x), op.apply(x.contiguous())):
        _close(a, e)


def test_batch_zero_launches_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = count_launches(monkeypatch)
    x = torch.zeros(0, 3, 5, 6, dtype=torch.float32)
    op = _separable("sobel_reflect", x)
    ys = triton_apply(op, x)
    assert len(ys) == 2 and all(y.shape == x.shape and y.dtype == x.dtype for y in ys)
    assert triton_adjoint(op, list(ys)).shape == x.shape
    assert triton_magnitude(op, x, EPS).shape == x.shape
    assert triton_magnitude_backward(op, x, x, EPS).shape == x.shape
    assert counts == []


def test_zero_weights_never_read_inf() -> None:
    """A sample a row does not read (zero tap, valid border, zero padding) never reaches it: inf stays out."""
    x = _input((1, 5, 6))
    x[0, 0, 0] = float("inf")
    for name in ("image_gradients", "sobel_zeros", "gradient_edge2_spacing"):
        op = _separable(name, x)
        for a, e in zip(triton_apply(op, x), op.apply(x)):
            assert torch.equal(a.isnan(), e.isnan()) and torch.equal(a.isinf(), e.isinf())
            finite = e.isfinite()
            _close(a[finite], e[finite])


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
    sobel = _separable("sobel_reflect", x)
    assert can_serve(sobel, x)
    assert not can_serve(sobel, x.to(torch.complex128))
    assert not can_serve(_separable("image_gradients", x), x.to(torch.int64))
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
    """The interpreter is lenient: every kernel kind, compiled for sm_90a and sm_80 as the JIT compiles it at a
    launch (``benchmarks/kernel_report.py --kinds``, without TRITON_INTERPRET; no GPU needed), spills no register."""
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
