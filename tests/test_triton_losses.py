"""The fused losses on the Triton kernels (``TORCHGRAD_FORCE_TRITON=1``, CPU tensors under Triton's interpreter,
which ``tests/conftest.py`` turns on where there is no GPU), against the eager fused Function.

Values and gradients of every fused loss (masks included) and dtype; launch counts at batch 2 and 32, aten ops
that do work counted with the kernels; double backward; ``torch.compile(fullgraph=True)``; ``opcheck``; what
the kernels do not serve falls back. Shapes are small: the interpreter runs a program at a time.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Optional

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

pytest.importorskip("triton")

from helpers import assert_close_in_dtype as _close  # noqa: E402
from helpers import count_launches, record_interior_tiles, saved_tensors  # noqa: E402

from torchgrad._executor import FORCE_TRITON  # noqa: E402
from torchgrad._filters import build_operator  # noqa: E402
from torchgrad._registry import REGISTRY  # noqa: E402
from torchgrad._triton import launch, loss_ops, penalty_codes  # noqa: E402
from torchgrad._triton.description import describe  # noqa: E402
from torchgrad.losses import functional as F  # noqa: E402

if not launch.interpreting():
    pytest.skip("the kernels were defined without TRITON_INTERPRET=1", allow_module_level=True)

SHAPE = (2, 2, 9, 11)
Loss = Callable[[torch.Tensor, torch.Tensor, Optional[torch.Tensor]], torch.Tensor]

CASES: dict[str, Loss] = {
    "l1_sobel": lambda x, y, m: F.gradient_loss(x, y, m),
    "l2_diff": lambda x, y, m: F.gradient_loss(x, y, m, operator="diff", p=2, reduction="sum"),
    "charbonnier_scharr_zeros": lambda x, y, m: F.gradient_loss(
        x, y, m, operator="scharr", padding="zeros", penalty="charbonnier", eps=0.1
    ),
    "l1_central": lambda x, y, m: F.gradient_loss(x, y, m, operator="central"),
    "l2_prewitt_circular_normalized": lambda x, y, m: F.gradient_loss(
        x, y, m, operator="prewitt", p=2, padding="circular", normalized=True
    ),
    "l1_hessian_symmetric": lambda x, y, m: F.gradient_loss(x, y, m, operator="hessian", padding="symmetric"),
    "l1_sobel_3d": lambda x, y, m: F.gradient_loss(x, y, m, padding="replicate"),
    # outputs that add chains
    "l1_laplacian": lambda x, y, m: F.gradient_loss(x, y, m, operator="laplacian"),
    "charbonnier_laplacian_zeros_3d": lambda x, y, m: F.gradient_loss(
        x, y, m, operator="laplacian", padding="zeros", penalty="charbonnier", eps=0.1
    ),
    "gradient_difference_laplacian": lambda x, y, m: F.gradient_difference_loss(x, y.detach(), operator="laplacian"),
    "gradient_difference": lambda x, y, m: F.gradient_difference_loss(x, y.detach()),
    "gradient_difference_alpha": lambda x, y, m: F.gradient_difference_loss(
        x, y.detach(), alpha=1.5, operator="sobel", reduction="sum"
    ),
    "total_variation_l1": lambda x, y, m: F.total_variation_loss(x),
    "total_variation_l2_sum": lambda x, y, m: F.total_variation_loss(x, p=2, reduction="sum"),
    # the image (y, two channels) only weighs the disparity's (x's) gradients
    "edge_aware": lambda x, y, m: F.edge_aware_smoothness_loss(x[:, :1], y),
    "edge_aware_sum": lambda x, y, m: F.edge_aware_smoothness_loss(x, y[:, :1], normalize=False, reduction="sum"),
}
MASKED = {"l1_sobel", "l2_diff", "charbonnier_scharr_zeros", "l1_central", "l2_prewitt_circular_normalized"}
MASKED |= {"l1_hessian_symmetric", "l1_sobel_3d", "l1_laplacian", "charbonnier_laplacian_zeros_3d"}
HALF = {"l1_sobel": torch.float16, "charbonnier_scharr_zeros": torch.bfloat16, "gradient_difference": torch.float16}
HALF["edge_aware"] = torch.bfloat16
"""Cases also run in half precision (the interpreter is slow: one dtype stands for the others)."""


def _shape(name: str, batch: int = 2) -> tuple[int, ...]:
    return (batch, 1, 3, 5, 6) if name.endswith("_3d") else (batch,) + SHAPE[1:]


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The Triton executor switched on for CPU tensors; the list grows by a kernel's name at each launch."""
    monkeypatch.setenv(FORCE_TRITON, "1")
    # The interpreter's own tensor operations are part of the launch, not work of their own.
    return count_launches(monkeypatch, around=_Work.paused)


@pytest.fixture
def launches_not_run(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """As ``launches``, the kernels counted and not run."""
    monkeypatch.setenv(FORCE_TRITON, "1")
    return count_launches(monkeypatch, around=_Work.paused, run=False)


_ALLOCATIONS = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"}


class _Work(TorchDispatchMode):
    """The aten ops that do work (no views, no allocations), by name."""

    active: Optional["_Work"] = None

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []
        self.counting = True

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func.namespace == "torchgrad":  # not work itself: the kernels and aten ops inside it are counted
            definition = torch._library.custom_ops.OPDEFS[func._schema.name]
            with self:
                return definition._init_fn(*args, **(kwargs or {}))
        if self.counting and not func.is_view and func.overloadpacket.__name__ not in _ALLOCATIONS:
            self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))

    def __enter__(self) -> "_Work":
        _Work.active = self
        return super().__enter__()  # type: ignore[no-any-return]

    def __exit__(self, *exc: Any) -> None:
        _Work.active = None
        super().__exit__(*exc)

    @staticmethod
    @contextlib.contextmanager
    def paused() -> Iterator[None]:
        mode = _Work.active
        if mode is not None:
            mode.counting = False
        try:
            yield
        finally:
            if mode is not None:
                mode.counting = True


def _inputs(shape: tuple[int, ...], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    y = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    mask = torch.rand((shape[0], 1) + shape[2:], generator=g) > 0.15
    return x, y, mask


def _value_and_grads(loss: Loss, x: torch.Tensor, y: torch.Tensor, mask: Optional[torch.Tensor]) -> list[torch.Tensor]:
    x, y = x.clone().requires_grad_(), y.clone().requires_grad_()
    value = loss(x, y, mask)
    grads = torch.autograd.grad(value, (x, y), allow_unused=True, materialize_grads=True)
    return [value.detach(), *grads]


def _eager(call: Callable[[], Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv(FORCE_TRITON)
    try:
        return call()
    finally:
        monkeypatch.setenv(FORCE_TRITON, "1")


@pytest.mark.parametrize("name", list(CASES))
def test_equal_to_the_eager_function(name: str, launches: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Values and both gradients, with and without a mask, equal to the eager Function's; the kernels ran."""
    loss = CASES[name]
    for dtype in (torch.float64,) + ((HALF[name],) if name in HALF else ()):
        x, y, mask = _inputs(_shape(name), dtype)
        for m in (None, mask) if name in MASKED else (None,):
            launches.clear()
            got = _value_and_grads(loss, x, y, m)
            assert "_total_kernel" in launches and "_adjoint_kernel" in launches, (name, dtype, launches)
            expected = _eager(lambda: _value_and_grads(loss, x, y, m), monkeypatch)
            for a, e in zip(got, expected):
                _close(a, e)


def test_masked_holes_keep_their_nan_out(launches: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """NaN and inf in holes never reach the loss or the gradients; NaN in a valid pixel propagates."""
    x, y, mask = _inputs(SHAPE, torch.float32)
    x[~mask.expand(SHAPE)] = float("nan")
    y[0, 1][~mask[0, 0]] = float("inf")
    got = _value_and_grads(CASES["l1_sobel"], x, y, mask)
    assert all(bool(torch.isfinite(t).all()) for t in got)
    expected = _eager(lambda: _value_and_grads(CASES["l1_sobel"], x, y, mask), monkeypatch)
    for a, e in zip(got, expected):
        _close(a, e)
    everything_out = torch.zeros_like(mask)
    assert float(F.gradient_loss(x, y, everything_out)) == 0.0  # nothing counts: 0, as the eager Function
    x[0, 0, 4, 5] = float("nan")
    mask[0, 0, 3:6, 4:7] = True
    assert torch.isnan(F.gradient_loss(x, y, mask))


INTERIOR = ["l1_sobel", "l2_diff", "charbonnier_scharr_zeros"]  # (the summed chains and border rows of the
INTERIOR += ["gradient_difference_alpha", "total_variation_l2_sum", "edge_aware_sum"]  # operators: test_triton_kernels)


@pytest.mark.parametrize("name", INTERIOR)
def test_interior_tiles(name: str, launches: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """With 4 x 4 plane tiles over a tensor large enough that some tiles reach no border, the loss kernels run
    both paths (the mask rule and the penalties on the interior path too) and equal the eager Function."""
    monkeypatch.setattr(launch, "PLANE", {2: (4, 4)})
    monkeypatch.setattr(launch, "TILE", {job: {2: 16} for job in launch.TILE})
    taken = record_interior_tiles(monkeypatch)
    channels = 2 if name.startswith("edge_aware") else 1  # the edge-aware weights read an image's channels
    x, y, mask = _inputs((1, channels, 12, 12), torch.float64)
    for m in [None, mask] if name in MASKED else [None]:
        taken.clear()
        got = _value_and_grads(CASES[name], x, y, m)
        assert True in taken and False in taken
        expected = _eager(lambda: _value_and_grads(CASES[name], x, y, m), monkeypatch)
        for a, e in zip(got, expected):
            _close(a, e)


@pytest.mark.parametrize("name", ["l1_sobel", "gradient_difference_alpha", "edge_aware_sum"])
def test_nan_input_gives_the_eager_gradients(name: str, launches: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A NaN in the input: the loss is NaN, and the gradients are autograd's (``sign(NaN) = 0``, as torch's)."""
    x, y, _ = _inputs(SHAPE, torch.float64)
    x[0, 0, 4, 5] = float("nan")
    got = _value_and_grads(CASES[name], x, y, None)
    assert "_total_kernel" in launches and torch.isnan(got[0])
    expected = _eager(lambda: _value_and_grads(CASES[name], x, y, None), monkeypatch)
    for a, e in zip(got, expected):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12, equal_nan=True)


COUNTED = {name: CASES[name] for name in ["l1_sobel", "charbonnier_scharr_zeros", "l2_diff", "gradient_difference"]}
COUNTED |= {name: CASES[name] for name in ["total_variation_l1", "edge_aware_sum", "l1_laplacian"]}


def _isotropic_total_variation(reduction: str) -> Loss:
    """The fused magnitude and one reduction."""
    return lambda x, y, m: F.total_variation_loss(x, isotropic=True, reduction=reduction)


COUNTED |= {f"total_variation_isotropic_{r}": _isotropic_total_variation(r) for r in ("mean", "sum")}
NO_TARGET_GRAD = ("gradient_difference", "total_variation", "edge_aware")
LINEAR_WITH_TARGET = {"l1_sobel", "charbonnier_scharr_zeros", "l2_diff", "l1_laplacian"}


def _counts(loss: Loss, name: str, masked: bool, launches: list[str]) -> list[tuple[list[str], list[str]]]:
    """Launches and aten ops that do work, forward and backward, at batch 2 and 32."""
    counts = []
    for batch in (2, 32):
        x, y, mask = _inputs((batch, 1, 4, 5), torch.float32)
        x.requires_grad_()
        y.requires_grad_(not name.startswith(NO_TARGET_GRAD))
        seed = torch.ones(())
        launches.clear()
        with _Work() as work:
            value = loss(x, y, mask if masked else None)
            forward = launches + work.ops
            launches.clear()
            work.ops.clear()
            torch.autograd.grad(value, [t for t in (x, y) if t.requires_grad], seed)
            backward = launches + work.ops
        counts.append((sorted(forward), sorted(backward)))
    return counts


@pytest.mark.parametrize("name", list(COUNTED))
def test_launch_counts(name: str, launches_not_run: list[str]) -> None:
    """At most 6 launches (kernels and aten ops that do work) forward plus backward, reductions included,
    the same at batch 2 and 32, with and without a mask."""
    for m in (False, True) if name in MASKED else (False,):
        counts = _counts(COUNTED[name], name, m, launches_not_run)
        assert counts[0] == counts[1], counts
        forward, backward = counts[0]
        assert ("_magnitude_kernel" if "isotropic" in name else "_total_kernel") in forward
        assert "_adjoint_kernel" in backward
        assert len(forward) + len(backward) <= 6, (name, m, forward, backward)
        if name in LINEAR_WITH_TARGET:  # input - target formed in the kernels: two launches each way
            assert forward == ["_loss_kernel", "_total_kernel"], forward
            assert backward == ["_adjoint_kernel", "_slopes_kernel"], backward


def test_launch_counts_of_the_normalised_edge_aware_loss(launches_not_run: list[str]) -> None:
    """Edge-aware smoothness with ``normalize`` (its default): the 6 launches of the loss and torch's ops that
    divide the disparity by its per-sample mean, the same at batch 2 and 32."""
    counts = _counts(CASES["edge_aware"], "edge_aware", False, launches_not_run)
    assert counts[0] == counts[1], counts
    forward, backward = counts[0]
    kernels = [k for k in forward + backward if k.startswith("_")]
    expected = ["_edge_weights_kernel"] * 2 + ["_loss_kernel", "_slopes_kernel", "_total_kernel", "_adjoint_kernel"]
    assert sorted(kernels) == sorted(expected), kernels
    assert "mean" in forward and "div" in forward


@pytest.mark.parametrize("name", ["l1_sobel", "gradient_difference", "total_variation_l1", "edge_aware_sum"])
def test_saves_only_references_to_the_inputs(name: str, launches: list[str]) -> None:
    """Autograd keeps the inputs (and the mask) and nothing else, on the kernels' path as on the eager one."""
    x, y, mask = _inputs(SHAPE, torch.float32)
    x.requires_grad_()
    value: list[torch.Tensor] = []
    saved = saved_tensors(lambda: value.append(CASES[name](x, y, mask if name in MASKED else None)))
    assert "_total_kernel" in launches and saved
    assert {t.data_ptr() for t in saved} <= {x.data_ptr(), y.data_ptr(), mask.data_ptr()}
    (gx,) = torch.autograd.grad(value[0], x)
    assert gx.shape == x.shape


def test_double_backward_takes_the_differentiable_eager_code(
    launches: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A graph of the gradient (``create_graph=True``): a gradient penalty equal to the eager Function's."""
    x, y, mask = _inputs(SHAPE, torch.float64)

    def penalty() -> list[torch.Tensor]:
        u, v = x.clone().requires_grad_(), y.clone().requires_grad_()
        value = F.gradient_loss(u, v, mask, p=2, operator="scharr")
        gx, gy = torch.autograd.grad(value, (u, v), create_graph=True)
        return list(torch.autograd.grad((gx * gx).sum() + (gy * gy).sum(), (u, v)))

    launches.clear()
    got = penalty()
    assert "_total_kernel" in launches
    for a, e in zip(got, _eager(penalty, monkeypatch)):
        _close(a, e)
    u, v, small = (t[:1, :1, :5, :6].clone() for t in (x, y, mask))
    u.requires_grad_()
    assert torch.autograd.gradcheck(lambda t: F.gradient_loss(t, v, small, penalty="charbonnier"), (u,), fast_mode=True)
    assert torch.autograd.gradgradcheck(lambda t: F.gradient_loss(t, v, small, p=2), (u,), fast_mode=True)
    image = v.expand(1, 3, 5, 6)
    assert torch.autograd.gradcheck(lambda t: F.edge_aware_smoothness_loss(t, image), (u,), fast_mode=True)
    assert torch.autograd.gradgradcheck(lambda t: F.edge_aware_smoothness_loss(t, image), (u,), fast_mode=True)


@pytest.mark.parametrize("name", ["charbonnier_scharr_zeros", "edge_aware"])
def test_compile_fullgraph(name: str, launches: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``torch.compile(fullgraph=True)``: the ops in the graph, eager's value and gradients."""
    x, y, mask = _inputs(SHAPE, torch.float32)
    torch._dynamo.reset()
    loss = CASES[name]
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    launches.clear()
    got = _value_and_grads(compiled, x, y, mask)
    assert "_total_kernel" in launches and "_adjoint_kernel" in launches
    for a, e in zip(got, _eager(lambda: _value_and_grads(loss, x, y, mask), monkeypatch)):
        _close(a, e)


def test_opcheck(launches: list[str]) -> None:
    x, y, mask = _inputs(SHAPE, torch.float32)
    description = describe(build_operator("t", REGISTRY["sobel"], x, "reflect", False, 2))
    args = (x, y, mask.expand(SHAPE), description, penalty_codes.CHARBONNIER, [0.1], [1.0, 1.0], True, 0)
    total, scales = loss_ops.fused_loss(*args, torch.float32)
    torch.library.opcheck(loss_ops.fused_loss, (*args, torch.float32))
    backward_args = (torch.ones(()), x, y, mask.expand(SHAPE), scales, description, penalty_codes.CHARBONNIER)
    torch.library.opcheck(loss_ops.fused_loss_backward, (*backward_args, [0.1], True))
    assert launches


def test_what_the_kernels_do_not_serve_falls_back(launches: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-element maps, the gradient difference's target gradient,
    edge-aware weights of more than 16 image or disparity channels, empty batches and ``torch.func`` take the eager
    Function, with its results."""
    x, y, mask = _inputs(SHAPE, torch.float64)
    calls: list[Callable[[], Any]] = [
        lambda: _value_and_grads(lambda u, v, m: F.gradient_loss(u, v, m, reduction="none").sum(), x, y, mask),
        lambda: _value_and_grads(lambda u, v, m: F.gradient_difference_loss(u, v), x, y, None),
        lambda: _value_and_grads(
            lambda u, v, m: F.edge_aware_smoothness_loss(u[:, :1], v[:, :1].expand(2, 17, 9, 11)), x, y, None
        ),
        lambda: _value_and_grads(
            lambda u, v, m: F.edge_aware_smoothness_loss(u[:, :1].expand(2, 17, 9, 11), v), x, y, None
        ),
        lambda: F.gradient_loss(x[:0], y[:0]),
        lambda: torch.func.grad(lambda u: F.gradient_loss(u, y, mask, p=2))(x),
    ]
    for call in calls:
        launches.clear()
        got = call()
        assert "_total_kernel" not in launches
        torch.testing.assert_close(got, _eager(call, monkeypatch), rtol=1e-12, atol=1e-12, equal_nan=True)


# The Charbonnier penalty on the kernels where squares leave the dtype's range: (dtype, eps, input, target).
_RANGE = {
    "tiny_eps_float32": (torch.float32, 1e-30, 1.0, 1.0),
    "tiny_eps_float64": (torch.float64, 1e-200, 1.0, 1.0),
    "eps_below_float32": (torch.float32, 1e-200, 1.0, 1.0),
    "huge_eps_float32": (torch.float32, 1e20, 1.0, 1.0),
    "huge_eps_float64": (torch.float64, 1e200, 1.0, -1.0),
    "large_differences_float32": (torch.float32, 1e-3, 1e30, -1e30),
}


@pytest.mark.parametrize("case", list(_RANGE))
def test_charbonnier_beyond_the_squares_range(case: str, launches: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``hypot(A d, eps)`` in the kernels: eps itself and zero gradients where input equals target (0 for an eps
    below float32's range), about eps for an eps whose square overflows, finite for differences near 1e30;
    values and gradients equal to the eager Function's."""
    dtype, eps, scale_x, scale_y = _RANGE[case]
    x, y, mask = _inputs((1, 2, 5, 6), dtype)
    x, y = x * scale_x, (x if scale_y == scale_x else y) * scale_y
    loss = lambda u, v, m: F.gradient_loss(u, v, m, penalty="charbonnier", eps=eps)  # noqa: E731
    got = _value_and_grads(loss, x, y, mask)
    assert "_total_kernel" in launches and "_slopes_kernel" in launches
    assert all(bool(torch.isfinite(t).all()) for t in got), got
    expected = _eager(lambda: _value_and_grads(loss, x, y, mask), monkeypatch)
    for a, e in zip(got, expected):
        _close(a, e)
    if scale_x == scale_y:  # input equals target: eps rounded to the dtype, and no gradient
        torch.testing.assert_close(got[0], torch.tensor(eps, dtype=dtype), rtol=1e-5, atol=0)
        assert not got[1].any() and not got[2].any()
    else:  # about max(|A d|, eps)
        assert float(got[0]) >= min(eps, 1e30)


def test_the_kernels_mean_over_no_elements_is_zero(launches: list[str]) -> None:
    """The fused-loss op on an empty batch: a mean over no elements is 0, as the eager Function's."""
    x = torch.rand(0, 2, 9, 11)
    description = describe(build_operator("t", REGISTRY["sobel"], x, "reflect", False, 2))
    for penalty, params in ((penalty_codes.L1, []), (penalty_codes.CHARBONNIER, [1e-3])):
        total, _ = loss_ops.fused_loss(x, x, None, description, penalty, params, [1.0, 1.0], True, 0, torch.float32)
        assert "_total_kernel" in launches and total.item() == 0.0
    assert F.gradient_loss(x, x, penalty="charbonnier").item() == 0.0  # (the eager Function's)


@pytest.mark.parametrize("name", ["charbonnier_scharr_zeros"])
def test_the_kernels_do_not_depend_on_the_layout(name: str, launches: list[str]) -> None:
    """Channels_last and transposed inputs give the contiguous input's loss and gradients, bit for bit."""
    x, y, _ = _inputs((1, 2, 5, 6), torch.float32)
    expected = _value_and_grads(CASES[name], x, y, None)
    for layout in (torch.channels_last, None):
        u, v = (t.contiguous(memory_format=layout) if layout else t.mT.contiguous().mT for t in (x, y))
        launches.clear()
        got = _value_and_grads(CASES[name], u, v, None)
        assert "_total_kernel" in launches
        for a, e in zip(got, expected):
            assert torch.equal(a, e)
