"""The public operators on the Triton executor against the CPU executor: on CUDA tensors where there is a
GPU, else on CPU tensors under Triton's interpreter (``TORCHGRAD_FORCE_TRITON=1``; ``tests/conftest.py``
turns the interpreter on where there is no GPU). The CPU executor computes on CPU copies.

Values and gradients for the catalogue's operators and their magnitudes in every dtype; gradcheck and
gradgradcheck; torch.func; ``torch.compile(fullgraph=True)``; ``torch.library.opcheck`` on every op; launch counts
at batch 2 and 32; the fallbacks. Every test also checks that the kernels ran (or, for a fallback, did not).
"""

from __future__ import annotations

import fractions
import functools
from typing import Any, Callable, cast

import pytest
import torch

pytest.importorskip("triton")

from helpers import TOLERANCE, assert_close_in_dtype, count_launches, kernel_device, random_input  # noqa: E402
from references import OPERATORS, PADDINGS  # noqa: E402

import torchgrad  # noqa: E402
from torchgrad._executor import FORCE_TRITON, route  # noqa: E402
from torchgrad._filters import build_operator  # noqa: E402
from torchgrad._registry import REGISTRY  # noqa: E402
from torchgrad._separable import Separable  # noqa: E402
from torchgrad._triton import launch, ops  # noqa: E402
from torchgrad._triton.description import describe, parse  # noqa: E402
from torchgrad._triton.plan import Unsupported  # noqa: E402
from torchgrad.gradient import _coordinate_stencil, _uniform_stencil  # noqa: E402

DEVICE = kernel_device()
interpreter_only = pytest.mark.skipif(DEVICE != "cpu", reason="TORCHGRAD_FORCE_TRITON=1 on CPU tensors")
_input = functools.partial(random_input, device=DEVICE)
_close = functools.partial(assert_close_in_dtype, device=DEVICE)

Fn = Callable[[torch.Tensor], tuple[torch.Tensor, ...]]
DTYPES = list(TOLERANCE)
HALF = (torch.float16, torch.bfloat16)


_EPS = torch.scalar_tensor(1e-3, dtype=torch.float64, device=DEVICE)
"""``eps`` as the magnitude ops take it: a float64 scalar on the input's device."""

# normalized only divides (the same kernels with other weights): with one padding. 3-D kernels are the slowest to
# interpret: three paddings here (tests/test_triton_kernels.py runs every padding in 3-D).
LINEAR = ["image_gradients", "image_gradients_3d", "gradient", "gradient_edge2_spacing", "gradient_3d"]
LINEAR += [f"{name}_{p}" for p in PADDINGS for name in ("sobel", "scharr")]
LINEAR += ["sobel_3d_reflect", "sobel_3d_zeros", "sobel_3d_circular", "sobel_3d_zeros_normalized"]
LINEAR += ["sobel_zeros_normalized", "scharr_zeros_normalized", "prewitt_symmetric", "laplacian_reflect"]
LINEAR += ["laplacian_ksize3_zeros", "laplacian_3d_reflect", "hessian_replicate_normalized"]
LINEAR += ["cv2_sobel_ksize5", "cv2_laplacian_ksize7"]  # OpenCV's long kernels (5 and 7 taps)
MAGNITUDES = [f"{name}_{p}" for p in PADDINGS for name in ("sobel", "scharr")]
MAGNITUDES += ["sobel_zeros_normalized", "scharr_zeros_normalized", "sobel_3d_reflect", "sobel_3d_zeros"]
MAGNITUDES += ["prewitt_reflect", "image_gradients", "image_gradients_3d"]
CASES: dict[str, tuple[Fn, int]] = {name: (OPERATORS[name].call, OPERATORS[name].spatial_dims) for name in LINEAR}
CASES |= {f"magnitude_{n}": (cast(Fn, OPERATORS[n].magnitude), OPERATORS[n].spatial_dims) for n in MAGNITUDES}
"""name -> (public call, spatial dims): the catalogue's operators and the magnitudes of its first-order ones."""


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The Triton executor switched on for CPU tensors; the list grows by a kernel's name at each launch."""
    monkeypatch.setenv(FORCE_TRITON, "1")
    return count_launches(monkeypatch)


@pytest.fixture
def launches_not_run(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """As ``launches``, the kernels counted and not run."""
    monkeypatch.setenv(FORCE_TRITON, "1")
    return count_launches(monkeypatch, run=False)


def _shape(name: str, batch: int = 2) -> tuple[int, ...]:
    return (batch // 2, 2, 3, 4) if CASES[name][1] == 3 else (batch, 5, 6)


def _values_and_grad(fn: Fn, x: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    x = x.detach().requires_grad_()
    ys = fn(x)
    cotangents = [_input(tuple(y.shape), y.dtype, seed=1 + k, device=y.device.type) for k, y in enumerate(ys)]
    (gx,) = torch.autograd.grad(ys, x, cotangents)
    return tuple(y.detach() for y in ys), gx


def _served_dtypes(name: str) -> list[torch.dtype]:
    """``gradient`` in half precision keeps torch.gradient's rounding (the other executors). float16 takes the
    kernels' bfloat16 path: it runs on the magnitude (whose squares overflow float16) and one case of each family.
    OpenCV's 7-tap Laplacian, the slowest kernel to interpret, runs in float32 and bfloat16."""
    if name == "cv2_laplacian_ksize7":
        return [torch.float32, torch.bfloat16]
    float16 = name.startswith("magnitude") or name in FLOAT16_CASES
    return [d for d in DTYPES if not (d in HALF and name.startswith("gradient")) and (d != torch.float16 or float16)]


FLOAT16_CASES = {"image_gradients", "sobel_reflect", "sobel_3d_zeros", "scharr_symmetric", "laplacian_ksize3_zeros"}
assert FLOAT16_CASES <= set(CASES), FLOAT16_CASES - set(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_equal_to_the_cpu_executor(name: str, launches: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Values and gradients, every dtype served, equal to the CPU executor's; the kernels ran for each."""
    fn = CASES[name][0]
    for dtype in _served_dtypes(name):
        x = _input(_shape(name), dtype)
        launches.clear()
        got = _values_and_grad(fn, x)
        assert launches, (name, dtype)
        expected = _on_the_cpu_executor(monkeypatch, _values_and_grad, fn, x)
        assert len(got[0]) == len(expected[0])
        for a, e in zip(got[0] + (got[1],), expected[0] + (expected[1],)):
            _close(a, e)


GRADCHECKED = ["image_gradients", "gradient_edge2_spacing", "sobel_reflect", "scharr_zeros_normalized"]
GRADCHECKED += ["sobel_3d_circular", "magnitude_sobel_replicate", "magnitude_image_gradients_3d"]
GRADCHECKED += ["laplacian_ksize3_zeros", "hessian_replicate_normalized"]
"""One of each kind of chain and border rule (OpenCV's seven taps are compared with the CPU executor instead, ten
times cheaper under the interpreter)."""


@pytest.mark.parametrize("name", GRADCHECKED)
def test_gradcheck_and_gradgradcheck(name: str, launches: list[str]) -> None:
    fn, nd = CASES[name]
    # One image or volume: the batch (one program each under the interpreter) is covered by the comparisons with
    # the CPU executor and the adjoint identity.
    x = _input((1, 2, 3, 3) if nd == 3 else (1, 4, 5)).requires_grad_()
    # Fast mode (random projections of the Jacobians): the full one launches kernels per element.
    assert torch.autograd.gradcheck(fn, (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)
    assert "_adjoint_kernel" in launches and {"_apply_kernel", "_magnitude_kernel"} & set(launches)


def _on_the_cpu_executor(monkeypatch: pytest.MonkeyPatch, call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)`` with the tensors of ``args`` copied to the CPU, on the CPU executor."""
    cpu_args = torch.utils._pytree.tree_map_only(torch.Tensor, lambda t: t.detach().cpu(), args)
    monkeypatch.delenv(FORCE_TRITON)
    try:
        return call(*cpu_args)
    finally:
        monkeypatch.setenv(FORCE_TRITON, "1")


@pytest.mark.parametrize("name", ["sobel_reflect", "image_gradients", "magnitude_scharr_zeros"])
def test_torch_func(name: str, launches: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """vmap, jvp, jacrev, jacfwd and per-sample gradients (vmap of grad) run the kernels, with the CPU
    executor's results."""
    fn = CASES[name][0]
    x = _input((3, 4, 5))
    t = _input((3, 4, 5), seed=1)

    def summed(u: torch.Tensor) -> torch.Tensor:
        return sum((y * y).sum() for y in fn(u))  # type: ignore[return-value]

    transforms: dict[str, Callable[[torch.Tensor, torch.Tensor], object]] = {
        "vmap": lambda x, t: torch.func.vmap(fn, in_dims=1)(x.transpose(0, 1)),
        "jvp": lambda x, t: torch.func.jvp(fn, (x,), (t,)),
        "jacrev": lambda x, t: torch.func.jacrev(fn)(x[0]),
        "jacfwd": lambda x, t: torch.func.jacfwd(fn)(x[0]),
        "per_sample": lambda x, t: torch.func.vmap(torch.func.grad(summed))(x),
    }
    for what, call in transforms.items():
        launches.clear()
        got = torch.utils._pytree.tree_map_only(torch.Tensor, lambda r: r.cpu(), call(x, t))
        assert launches, what
        expected = _on_the_cpu_executor(monkeypatch, call, x, t)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12, msg=what)


@pytest.mark.parametrize(
    "name", ["sobel_zeros_normalized", "image_gradients_3d", "gradient", "magnitude_sobel_reflect"]
)
def test_compile_fullgraph(name: str, launches: list[str]) -> None:
    """``torch.compile(fullgraph=True)``: no graph break, the ops in the graph, eager's values and gradients."""
    fn = CASES[name][0]
    x = _input(_shape(name), torch.float32)
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    got = _values_and_grad(compiled, x)
    launches.clear()
    expected = _values_and_grad(fn, x)
    assert launches
    launches.clear()
    _values_and_grad(compiled, x)
    assert len(launches) >= 2
    for a, e in zip(got[0] + (got[1],), expected[0] + (expected[1],)):
        _close(a, e)


def test_compile_dynamic_eps_is_an_input(launches: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``dynamic=True``: a new ``eps`` of the magnitude (with a new size) is an input of the one graph, not a
    recompilation, through AOTAutograd too; the kernels read it at run time."""
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(torchgrad.gradient_magnitude, backend=counter, fullgraph=True, dynamic=True)
    compilations = []
    for shape, eps in (((2, 5, 6), 1e-3), ((3, 6, 7), 0.25), ((2, 7, 5), 1e-6)):
        x = _input(shape, torch.float64)
        launches.clear()
        got = _values_and_grad(lambda t: (compiled(t, eps=eps),), x)
        assert launches == ["_magnitude_kernel", "_magnitude_backward_kernel", "_adjoint_kernel"], launches
        eager = lambda t: (torchgrad.gradient_magnitude(t, eps=eps),)  # noqa: E731
        expected = _on_the_cpu_executor(monkeypatch, _values_and_grad, eager, x)
        for a, e in zip(got[0] + (got[1],), expected[0] + (expected[1],)):
            _close(a, e)
        compilations.append(counter.frame_count)
    assert compilations[0] >= 1 and compilations == compilations[:1] * 3, compilations


def test_magnitude_after_inference_mode_and_fake_tensors(launches: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Calls under ``inference_mode`` (a validation loop) and ``FakeTensorMode`` (shape propagation) leave
    nothing behind that a training call with the same ``eps`` then trips on."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    x = _input((2, 5, 6), torch.float32)
    with torch.inference_mode():
        torchgrad.gradient_magnitude(x)
        # eps of any real type is used as the float it was checked as
        exact = fractions.Fraction(1, 1000)
        torch.testing.assert_close(
            torchgrad.gradient_magnitude(x, eps=exact), torchgrad.gradient_magnitude(x, eps=1e-3)
        )
    with FakeTensorMode() as mode:
        assert torchgrad.gradient_magnitude(mode.from_tensor(x)).shape == x.shape
    launches.clear()
    magnitude = lambda t: (torchgrad.gradient_magnitude(t),)  # noqa: E731
    got = _values_and_grad(magnitude, x)
    assert launches == ["_magnitude_kernel", "_magnitude_backward_kernel", "_adjoint_kernel"], launches
    expected = _on_the_cpu_executor(monkeypatch, _values_and_grad, magnitude, x)
    for a, e in zip(got[0] + (got[1],), expected[0] + (expected[1],)):
        _close(a, e)


@pytest.mark.parametrize("name", ["sobel_reflect", "magnitude_scharr_zeros"])
def test_compiled_calls_fall_back_where_the_kernels_refuse_the_size(
    name: str, launches: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dynamic=True``: the choice of the ops is made once, on a stand-in of size 8 per axis, and the descriptions
    hold no sizes: every size the kernels serve runs them; a size they refuse (a plane beyond int32 offsets, the
    limit lowered here to 64 elements) runs the operator's own executors inside the ops, no launch. The CPU
    executor's values and gradients for each."""
    monkeypatch.setattr(launch, "INT32_MAX", 64)
    fn = CASES[name][0]
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager", dynamic=True)
    for shape, served in (((2, 5, 6), True), ((3, 6, 7), True), ((2, 9, 10), False)):
        x = _input(shape, torch.float32)
        launches.clear()
        got = _values_and_grad(compiled, x)
        assert bool(launches) == served, (shape, launches)
        expected = _on_the_cpu_executor(monkeypatch, _values_and_grad, fn, x)
        for a, e in zip(got[0] + (got[1],), expected[0] + (expected[1],)):
            _close(a, e)


def test_opcheck_every_op(launches: list[str]) -> None:
    x = _input((2, 5, 6), torch.float32)
    op = build_operator("t", REGISTRY["sobel"], x, "reflect", True, 2)
    description = describe(op)
    g = [_input((2, 5, 6), torch.float32, seed=k) for k in (1, 2)]
    cases = [
        (ops.apply, (x.clone().requires_grad_(), description)),
        (ops.adjoint, ([g[0].clone().requires_grad_(), g[1]], description)),
        (ops.adjoint, ([None, g[1].clone().requires_grad_()], description)),
        (ops.magnitude, (x.clone().requires_grad_(), description, _EPS)),
        (ops.magnitude_backward, (x, g[0], description, _EPS)),
    ]
    for fn, args in cases:
        torch.library.opcheck(fn, args)
    assert launches


def test_vmap_rules_of_the_ops(launches: list[str]) -> None:
    """Each op's ``vmap`` rule (the batch dim moved to the front, unbatched cotangents expanded) equals a loop."""
    x = _input((3, 2, 5, 6))
    op = build_operator("t", REGISTRY["sobel"], x[:, 0], "replicate", False, 2)
    description = describe(op)
    g = _input((3, 5, 6), seed=1)

    def looped(fn: Callable[..., object], *args: torch.Tensor) -> object:
        results = [fn(*(a[:, i] for a in args)) for i in range(2)]
        return torch.utils._pytree.tree_map(lambda *ts: torch.stack(ts, 1), *results)

    cases: list[tuple[Callable[..., object], tuple[int, ...]]] = [
        (lambda t: ops.apply(t, description), (1,)),
        (lambda t: ops.adjoint([None, t], description), (1,)),
        (lambda t: ops.adjoint([t, g], description), (1,)),
        (lambda t: ops.magnitude(t, description, _EPS), (1,)),
        (lambda t, u: ops.magnitude_backward(t, u, description, _EPS), (1, 1)),
    ]
    for fn, dims in cases:
        args = (x,) * len(dims)
        launches.clear()
        got = torch.vmap(fn, in_dims=dims, out_dims=1)(*args)
        assert launches
        torch.testing.assert_close(got, looped(fn, *args), rtol=1e-12, atol=1e-12)


def test_description_round_trip() -> None:
    """The string the ops take is the whole operator: read back, it is equal to it; tensor weights have none."""
    x = _input((2, 5, 6))
    for op in (
        build_operator("t", REGISTRY["sobel"], x, "zeros", True, 2),
        Separable(tuple((_uniform_stencil(x, d, 0.1, 2),) for d in (-2, -1))),
    ):
        assert parse(describe(op)) == op
    coords = torch.linspace(0, 1, 6, dtype=torch.float64)
    with pytest.raises(Unsupported):
        describe(Separable(((_coordinate_stencil(x, -1, coords, 1),),)))


# The kernels are counted, not run: the launches a call makes depend on no value.
LAUNCH_COUNTED = ["image_gradients", "image_gradients_3d", "sobel_reflect", "scharr_circular", "gradient"]
LAUNCH_COUNTED += ["gradient_edge2_spacing", "magnitude_sobel_reflect", "magnitude_image_gradients"]
LAUNCH_COUNTED += ["laplacian_3d_reflect", "hessian_replicate_normalized", "cv2_sobel_ksize5"]


@pytest.mark.parametrize("name", LAUNCH_COUNTED)
def test_launch_counts(name: str, launches_not_run: list[str]) -> None:
    """One launch forward and one backward (two for the magnitude's), the same at batch 2 and batch 32."""
    fn, spatial_dims = CASES[name]
    expected = (["_apply_kernel"], ["_adjoint_kernel"])
    if name.startswith("magnitude"):
        expected = (["_magnitude_kernel"], ["_magnitude_backward_kernel", "_adjoint_kernel"])
    for batch in (2, 32):
        x = _input((batch, 2, 3, 4) if spatial_dims == 3 else (batch, 3, 4), torch.float32).requires_grad_()
        launches_not_run.clear()
        ys = fn(x)
        forward = list(launches_not_run)
        launches_not_run.clear()
        torch.autograd.grad(ys, x, [torch.ones_like(y) for y in ys])
        assert (forward, launches_not_run) == expected, (batch, forward, launches_not_run)


def test_what_the_kernels_do_not_serve_falls_back(launches: list[str]) -> None:
    """Coordinates, complex and integer inputs take the other executors, with their results."""
    x = _input((2, 5, 6))
    coords = torch.linspace(0, 1, 6, dtype=torch.float64, device=DEVICE) ** 2
    calls = [
        lambda: torchgrad.gradient(x, spacing=(coords,), dim=-1),
        lambda: torchgrad.sobel(x.to(torch.complex128)),
        lambda: torchgrad.gradient(x.to(torch.int64), dim=-1),
    ]
    for call in calls:
        launches.clear()
        got = call()
        assert launches == []
        expected = call()
        for a, e in zip(got, expected):
            torch.testing.assert_close(a, e)
    expected_values = torch.gradient(x, spacing=(coords,), dim=-1)[0]
    torch.testing.assert_close(calls[0]()[0], expected_values)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_half_precision_gradient_rounds_as_torch_gradient(dtype: torch.dtype, launches: list[str]) -> None:
    """Half-precision gradient (and gradient_magnitude's central differences) takes the other executors, bit for bit
    torch.gradient's numbers, which round after every operation; the kernels round once, an ulp apart here."""
    x = (_input((4, 9, 10)) * 10).to(dtype).requires_grad_()
    for kwargs in ({"spacing": 3.0, "edge_order": 2}, {"spacing": (0.5, 3.0), "dim": (-2, -1)}):
        launches.clear()
        got = torchgrad.gradient(x, **kwargs)  # type: ignore[arg-type]
        torch.autograd.grad(got, x, [torch.ones_like(y) for y in got])
        torchgrad.gradient_magnitude(x, operator="central")
        assert launches == []
        for a, e in zip(got, torch.gradient(x.detach(), **kwargs)):  # type: ignore[arg-type]
            assert torch.equal(a, e)
    # The kernels on their own (what the rule keeps out) differ from torch.gradient here.
    op = Separable(tuple((_uniform_stencil(x, d, 3.0, 2),) for d in (-2, -1)))
    kernels = launch.triton_apply(op, x.detach())
    assert not all(torch.equal(a, e) for a, e in zip(kernels, torch.gradient(x.detach(), spacing=3.0, edge_order=2)))
    single = x.detach().float()
    assert route(Separable(tuple((_uniform_stencil(single, d, 3.0, 2),) for d in (-2, -1))), single).kernels


@interpreter_only
def test_switch_is_read_at_each_call(launches: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    x = _input((2, 5, 6))
    torchgrad.sobel(x)
    assert launches == ["_apply_kernel"]
    monkeypatch.setenv(FORCE_TRITON, "0")
    launches.clear()
    torchgrad.sobel(x)
    assert launches == []
    assert not route(build_operator("t", REGISTRY["sobel"], x, "reflect", False, 2), x).kernels
