"""The executor switch: ``TORCHGRAD_EXECUTOR=eager`` and ``torchgrad.use_kernels(False)`` keep calls off the Triton
kernels (no launch, the plain executor's numbers), and a kernel that cannot be compiled falls back with one
warning, then keeps the kernels off for the rest of the process. Also what a launch takes: the configurations
a GPU tunes an operator kernel over, and the int16 signs of the L1 loss's backward.

The kernels run on CPU tensors under Triton's interpreter, on CUDA tensors where there is a GPU. A compile failure
is a stand-in kernel that raises what Triton raises, launched through the real ``launch_kernel`` as if compiled.
"""

from __future__ import annotations

import ast
import warnings
from typing import Any, Callable, Iterator

import pytest
import torch

pytest.importorskip("triton")

from helpers import count_launches, kernel_device, random_input  # noqa: E402
from triton.compiler.errors import CompilationError  # noqa: E402
from triton.runtime.errors import OutOfResources  # noqa: E402

import torchgrad  # noqa: E402
from torchgrad import KernelFallbackWarning, use_kernels  # noqa: E402
from torchgrad._executor import (  # noqa: E402
    EXECUTOR,
    FORCE_TRITON,
    KernelsUnavailable,
    forget_kernel_failure,
    kernels_enabled,
    kernels_failed,
    route,
)
from torchgrad._filters import build_operator  # noqa: E402
from torchgrad._registry import REGISTRY  # noqa: E402
from torchgrad._triton import launch  # noqa: E402
from torchgrad._triton.layout import kernel_layout  # noqa: E402
from torchgrad.losses import GradientLoss  # noqa: E402

DEVICE = kernel_device()

SHAPE = (2, 1, 5, 6)
Call = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
CALLS: dict[str, Call] = {
    "sobel": lambda x, y: sum((g * g.detach().sin()).sum() for g in torchgrad.sobel(x)),  # type: ignore[misc]
    "gradient_magnitude": lambda x, y: (torchgrad.gradient_magnitude(x, eps=1e-3) * y).sum(),
    "gradient_loss": lambda x, y: GradientLoss("sobel", penalty="charbonnier")(x, y),
}
"""A scalar from each public call on ``x`` (``y``: a target, or weights), so that backward runs too."""
FIRST_KERNEL = {"sobel": "_apply_kernel", "gradient_magnitude": "_magnitude_kernel", "gradient_loss": "_loss_kernel"}
"""The kernel each call launches first."""


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The Triton executor switched on for CPU tensors, ``TORCHGRAD_EXECUTOR`` unset; the list grows by a
    kernel's name at each launch. A compile failure a test provokes is forgotten after it."""
    monkeypatch.setenv(FORCE_TRITON, "1")
    monkeypatch.delenv(EXECUTOR, raising=False)
    yield count_launches(monkeypatch)
    forget_kernel_failure()


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    return random_input(SHAPE, seed=0, device=DEVICE), random_input(SHAPE, seed=1, device=DEVICE)


def _value_and_grad(call: Call, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_()
    value = call(x, y)
    (gx,) = torch.autograd.grad(value, x)
    return value.detach(), gx


def _plain_executor(monkeypatch: pytest.MonkeyPatch, call: Call) -> tuple[torch.Tensor, torch.Tensor]:
    """The value and gradient of ``call`` on CPU copies, without ``TORCHGRAD_FORCE_TRITON``: the CPU executor."""
    x, y = (t.cpu() for t in _inputs())
    with monkeypatch.context() as m:
        m.delenv(FORCE_TRITON)
        return _value_and_grad(call, x, y)


def _assert_equal(got: tuple[torch.Tensor, ...], expected: tuple[torch.Tensor, ...]) -> None:
    for a, e in zip(got, expected):
        assert a.device.type == DEVICE
        torch.testing.assert_close(a.cpu(), e, rtol=1e-12, atol=1e-12)


# The switch --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CALLS))
def test_the_switches_keep_calls_off_kernels(name: str, launches: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``use_kernels(False)`` and ``TORCHGRAD_EXECUTOR=eager``; with ``auto`` or empty, the kernels again."""
    expected = _plain_executor(monkeypatch, CALLS[name])
    with use_kernels(False):
        _assert_equal(_value_and_grad(CALLS[name], *_inputs()), expected)
    monkeypatch.setenv(EXECUTOR, "eager")
    _assert_equal(_value_and_grad(CALLS[name], *_inputs()), expected)
    assert launches == []
    for value in ("auto", ""):  # with their own rounding
        monkeypatch.setenv(EXECUTOR, value)
        got = _value_and_grad(CALLS[name], *_inputs())
        assert FIRST_KERNEL[name] in launches and "_adjoint_kernel" in launches
        torch.testing.assert_close(tuple(a.cpu() for a in got), expected)
        launches.clear()


def test_use_kernels_nests_and_outranks_the_environment_variable(
    launches: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The innermost block decides; ``use_kernels(True)`` runs the kernels under ``TORCHGRAD_EXECUTOR=eager``;
    leaving a block (by an exception too) restores the setting outside it."""
    x, _ = _inputs()
    monkeypatch.setenv(EXECUTOR, "eager")
    switch = use_kernels(False)
    with use_kernels(True):
        torchgrad.sobel(x)
        assert launches == ["_apply_kernel"]
        with switch, switch:  # one object entered twice
            torchgrad.sobel(x)
        torchgrad.sobel(x)
        with pytest.raises(KeyError), use_kernels(False):
            raise KeyError("inside the block")
        torchgrad.sobel(x)
    torchgrad.sobel(x)
    assert launches == ["_apply_kernel"] * 3


def test_the_backward_follows_the_switch_when_it_runs(launches: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A forward on the kernels whose backward runs inside ``use_kernels(False)`` launches nothing more, and the
    loss's gradient is the plain executor's all the same (with the forward's scales)."""
    for name in ("sobel", "gradient_loss"):
        x, y = _inputs()
        x.requires_grad_()
        value = CALLS[name](x, y)
        assert launches
        launches.clear()
        with use_kernels(False):
            (gx,) = torch.autograd.grad(value, x)
        assert launches == []
        torch.testing.assert_close(gx.cpu(), _plain_executor(monkeypatch, CALLS[name])[1], rtol=1e-12, atol=1e-12)


def test_the_switch_outranks_forced_triton(launches: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``TORCHGRAD_FORCE_TRITON=1`` says which tensors the kernels take; switched off, they take none, and
    nothing needs Triton's interpreter (which forcing without it otherwise demands, loudly)."""
    x, _ = _inputs()
    monkeypatch.setattr(launch, "interpreting", lambda: False)
    with use_kernels(False):
        torchgrad.sobel(x.cpu())
    monkeypatch.setenv(EXECUTOR, "eager")
    torchgrad.sobel(x.cpu())
    assert launches == []
    monkeypatch.delenv(EXECUTOR)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        torchgrad.sobel(x.cpu())


@pytest.mark.parametrize("value", ["triton", "EAGER", "0"])
def test_an_unknown_executor_names_the_variable_and_the_values(
    value: str, launches: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(EXECUTOR, value)
    with pytest.raises(ValueError, match=f"{EXECUTOR} must be one of 'auto', 'eager' or unset, got '{value}'"):
        torchgrad.sobel(_inputs()[0])
    assert launches == []


def _compiled_sobel() -> tuple[Callable[[torch.Tensor], torch.Tensor], list[bool]]:
    """``sobel``'s ``dx`` summed, compiled (``fullgraph=True``); the list grows at each trace by whether the
    graph holds the Triton ops."""
    traced: list[bool] = []

    def backend(graph: torch.fx.GraphModule, example_inputs: Any) -> Callable[..., Any]:
        traced.append("torchgrad.apply" in graph.code)
        return graph.forward

    torch._dynamo.reset()
    return torch.compile(lambda t: torchgrad.sobel(t)[1].sum(), fullgraph=True, backend=backend), traced


def test_compiled_functions_follow_the_switch(launches: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``torch.compile``: Dynamo guards on ``use_kernels`` (the function is traced again, without the ops, when
    it changes; the first graph serves again after the block); a graph traced with the kernels computes with
    the plain executor inside its ops when ``TORCHGRAD_EXECUTOR=eager`` is set after it was traced."""
    x, _ = _inputs()
    expected = _plain_executor(monkeypatch, lambda t, _: torchgrad.sobel(t)[1].sum())[0]
    compiled, traced = _compiled_sobel()
    compiled(x)
    assert launches == ["_apply_kernel"] and traced == [True]
    with use_kernels(False):
        _assert_equal((compiled(x),), (expected,))
    compiled(x)
    assert launches == ["_apply_kernel"] * 2 and traced == [True, False]
    monkeypatch.setenv(EXECUTOR, "eager")
    _assert_equal((compiled(x),), (expected,))
    assert launches == ["_apply_kernel"] * 2 and traced == [True, False]


# A kernel that cannot be compiled ------------------------------------------------------------------------


class _Uncompilable:
    """A kernel that Triton cannot compile or load on this GPU: each launch raises ``error``. ``fn`` is the
    Python function of the kernel it stands for, whose name the launch counter reads."""

    def __init__(self, error: Exception, fn: Any = None) -> None:
        self.error, self.fn = error, fn

    def __getitem__(self, grid: tuple[int]) -> Callable[..., None]:
        def run(*args: Any, **meta: Any) -> None:
            raise self.error

        return run


def _compilation_error() -> CompilationError:
    return CompilationError(None, ast.Pass(), "sm_52 is not supported by this Triton")


def _fail_to_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on every launch (still counted) goes through the real ``launch_kernel`` with an
    :class:`_Uncompilable` kernel, as if the kernels were compiled rather than interpreted."""
    counted = launch.launch_kernel

    def failing(kernel: Any, programs: int, *args: Any, **meta: Any) -> None:
        with monkeypatch.context() as m:
            m.setattr(launch, "interpreting", lambda: False)
            counted(_Uncompilable(_compilation_error(), kernel.fn), programs, *args, **meta)

    monkeypatch.setattr(launch, "launch_kernel", failing)


def _no_fallback_warning(call: Callable[[], Any]) -> Any:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    assert not [w for w in caught if issubclass(w.category, KernelFallbackWarning)]
    return result


@pytest.mark.parametrize("name", list(CALLS))
def test_a_compile_failure_falls_back_once(name: str, launches: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The call that meets it returns the plain executor's numbers with one warning naming the switch and the
    error; later calls launch nothing and warn no more."""
    expected = _plain_executor(monkeypatch, CALLS[name])
    _fail_to_compile(monkeypatch)
    with pytest.warns(KernelFallbackWarning) as caught:
        got = _value_and_grad(CALLS[name], *_inputs())
    assert len(caught) == 1, [str(w.message) for w in caught]
    message = str(caught[0].message)
    for text in ("TORCHGRAD_EXECUTOR=eager", "torchgrad.use_kernels(False)", "CompilationError", "sm_52"):
        assert text in message, message
    assert launches == [FIRST_KERNEL[name]]  # one attempt; the backward did not try
    _assert_equal(got, expected)
    launches.clear()
    _assert_equal(_no_fallback_warning(lambda: _value_and_grad(CALLS[name], *_inputs())), expected)
    assert launches == []


@pytest.mark.parametrize("name", list(CALLS))
def test_a_backward_that_cannot_compile_after_a_forward_on_the_kernels(
    name: str, launches: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forward ran on the kernels; the backward's kernel fails to compile: the gradient is still right
    (for the loss, from the forward's scales), with one warning."""
    x, y = _inputs()
    x.requires_grad_()
    value = CALLS[name](x, y)
    assert launches
    launches.clear()
    _fail_to_compile(monkeypatch)
    with pytest.warns(KernelFallbackWarning) as caught:
        (gx,) = torch.autograd.grad(value, x)
    assert len(caught) == 1 and len(launches) == 1, launches
    expected = _plain_executor(monkeypatch, CALLS[name])
    _assert_equal((value.detach(), gx), expected)


def test_a_compiled_function_meeting_a_compile_failure_is_traced_again(
    launches: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The op in the graph computes with the plain executor; Dynamo guards on the failure, so the next call
    runs a graph traced without the kernels, which tries no launch."""
    x, _ = _inputs()
    expected = _plain_executor(monkeypatch, lambda t, _: torchgrad.sobel(t)[1].sum())[0]
    compiled, traced = _compiled_sobel()
    _fail_to_compile(monkeypatch)
    with pytest.warns(KernelFallbackWarning):
        _assert_equal((compiled(x),), (expected,))
    assert launches == ["_apply_kernel"]
    _assert_equal((_no_fallback_warning(lambda: compiled(x)),), (expected,))
    assert launches == ["_apply_kernel"] and traced == [True, False]


def test_a_compiled_loss_meeting_a_compile_failure_raises_once(
    launches: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fused-loss ops have no eager code to return to inside a graph: that call raises the failure (with the
    warning); the next one runs a graph traced without the kernels, with the plain executor's numbers."""
    call = CALLS["gradient_loss"]
    expected = _plain_executor(monkeypatch, call)
    torch._dynamo.reset()
    compiled = torch.compile(call, fullgraph=True, backend="aot_eager")
    _fail_to_compile(monkeypatch)
    with pytest.warns(KernelFallbackWarning), pytest.raises(KernelsUnavailable, match="CompilationError"):
        compiled(*_inputs())
    launches.clear()
    _assert_equal(_no_fallback_warning(lambda: _value_and_grad(compiled, *_inputs())), expected)
    assert launches == []


@pytest.mark.parametrize(
    "error, interpreting, unavailable",
    [
        (_compilation_error(), False, True),
        (OutOfResources(232448, 101376, "shared memory"), False, True),
        (RuntimeError("Triton Error [CUDA]: device kernel image is invalid"), False, True),
        (RuntimeError("PassManager::run failed"), False, True),
        (FileNotFoundError("ptxas"), False, True),
        (TypeError("dynamic_func() missing 1 required positional argument"), False, False),
        (ValueError("Pointer argument (at 0)"), False, False),
        (torch.OutOfMemoryError("CUDA out of memory"), False, False),
        (RuntimeError("PassManager::run failed"), True, False),
    ],
    ids=["compilation", "resources", "driver", "passes", "tool", "arguments", "pointer", "memory", "interpreted"],
)
def test_launch_kernel_tells_what_cannot_run_here(
    error: Exception, interpreting: bool, unavailable: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What cannot compile or load here is ``KernelsUnavailable``, naming the error; errors of the call itself (what
    Triton raises while it binds the arguments), out of memory, and any error under the interpreter (which compiles
    nothing) are raised as they are."""
    monkeypatch.setattr(launch, "interpreting", lambda: interpreting)
    with pytest.raises(KernelsUnavailable if unavailable else type(error)) as info:
        launch.launch_kernel(_Uncompilable(error), 1)
    if unavailable:
        assert info.value.__cause__ is error and type(error).__name__ in str(info.value)
    else:
        assert info.value is error


def test_the_warning_is_issued_once_per_process(launches: list[str]) -> None:
    """Two failures (two threads meeting one each) switch the kernels off with one warning, naming the first."""
    with pytest.warns(KernelFallbackWarning) as caught:
        kernels_failed(KernelsUnavailable("CompilationError: first"))
        kernels_failed(KernelsUnavailable("PTXASError: second"))
    assert len(caught) == 1 and "first" in str(caught[0].message)
    assert not kernels_enabled()
    forget_kernel_failure()
    assert kernels_enabled()


def test_an_older_triton_takes_the_other_executors(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Triton older than the kernels need serves nothing (the other executors compute), and forcing the kernels
    then says which release they need."""
    from torchgrad import _triton

    x = torch.rand(1, 1, 6, 6)
    op = build_operator("t", REGISTRY["sobel"], x, "reflect", False, 2)
    with monkeypatch.context() as patched:
        patched.setattr(_triton, "_installed_version", lambda: "3.2.1")
        _triton.available.cache_clear()
        try:
            assert not _triton.available()
            assert f"Triton {_triton.MINIMUM_TRITON_TEXT} or newer" in str(_triton.unsupported_reason(op, x))
            assert not route(op, x).kernels
            patched.setenv(FORCE_TRITON, "1")
            with pytest.raises(RuntimeError, match=f"needs Triton {_triton.MINIMUM_TRITON_TEXT} or newer"):
                torchgrad.sobel(x)
        finally:
            _triton.available.cache_clear()
    assert _triton.available()  # read again from what is installed


def test_tuning_configurations(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU times an operator kernel's full tile against one twice as wide with twice the warps (as many
    elements per thread); a tile the tensor shrank, a tensor too narrow for the wider one, or a CPU tensor
    outside the tests take the tile as it is."""
    x = torch.empty(2, 3, 64, 256)
    layout = kernel_layout([x, torch.empty_like(x)], 2)
    tile, cpu = (1, 32, 32), torch.device("cpu")
    assert launch.tuning(layout, tile, 1024, cpu) is None
    monkeypatch.setattr(launch, "TRY_EVERY_CONFIG", True)
    tuned = launch.tuning(layout, tile, 1024, cpu)
    assert tuned is not None and tuned.configs == ((tile, 4), ((1, 32, 64), 8))
    assert {bd * bh * bw // (32 * warps) for (bd, bh, bw), warps in tuned.configs} == {8}
    assert launch.tuning(layout, (1, 16, 32), 1024, cpu) is None
    narrow = torch.empty(2, 3, 64, 32)
    assert launch.tuning(kernel_layout([narrow, torch.empty_like(narrow)], 2), tile, 1024, cpu) is None


def test_every_tuning_configuration_gives_the_same_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """The configurations differ in which program computes an element, never in how: with each one run in
    turn, forward, adjoint, magnitude and its backward equal the default tile's bit for bit."""
    monkeypatch.setenv("TORCHGRAD_FORCE_TRITON", "1")
    x = random_input((1, 1, 32, 64), torch.float32)  # the smallest image with a full tile and room for a wider one

    def run() -> list[torch.Tensor]:
        v = x.clone().requires_grad_()
        outputs = (*torchgrad.sobel(v), torchgrad.gradient_magnitude(v))
        grads = [torch.ones_like(o) for o in outputs]
        return [o.detach() for o in outputs] + list(torch.autograd.grad(outputs, v, grads))

    expected = run()
    monkeypatch.setattr(launch, "TRY_EVERY_CONFIG", True)
    launches = count_launches(monkeypatch)
    got = run()
    assert launches and all(torch.equal(a, b) for a, b in zip(got, expected))


def test_a_tuned_launch_is_timed_once_then_launched_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first launch of a kernel for an operator, sizes and dtypes goes through ``triton.autotune``; later
    ones launch the configuration it chose directly (the autotuner's own bookkeeping costs host time)."""
    import triton

    timed: list[str] = []

    class Timing:  # triton.autotune's interface, choosing the wider tile without timing anything
        def __init__(self, kernel: Any, configs: tuple[Any, ...]) -> None:
            (bd, bh, bw), warps = configs[-1]
            self.kernel, self.best_config = (
                kernel,
                triton.Config(dict(BLOCK_D=bd, BLOCK_H=bh, BLOCK_W=bw), num_warps=warps),
            )

        def __getitem__(self, grid: Any) -> Any:
            def run(*args: Any, **meta: Any) -> None:
                timed.append(self.kernel.fn.__name__)
                tile = self.best_config.kwargs
                self.kernel[grid(tile)](*args, num_warps=self.best_config.num_warps, **tile, **meta)

            return run

    monkeypatch.setenv("TORCHGRAD_FORCE_TRITON", "1")
    x = random_input((1, 1, 32, 64), torch.float32)
    expected = torchgrad.sobel(x)
    monkeypatch.setattr(launch, "_tunes", lambda device: True)
    monkeypatch.setattr(launch, "_autotuner", Timing)
    monkeypatch.setattr(launch, "_CHOSEN", {})
    for _ in range(2):
        assert all(torch.equal(a, b) for a, b in zip(torchgrad.sobel(x), expected))
    assert timed == ["_apply_kernel"]


@pytest.mark.parametrize("p, slopes", [(1, torch.int16), (2, torch.float64)])
def test_the_l1_backward_hands_the_adjoint_signs(p: int, slopes: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    """The L1 penalty's slope is a sign: the slopes kernel writes it in int16 (exact, two bytes where scaled
    slopes take four or eight) and the adjoint applies each component's scale and the cotangent; other penalties
    hand it their scaled slopes. The gradient is the eager executor's either way."""
    seen: list[tuple[set[torch.dtype], bool]] = []
    original = launch.launch_kernel

    def recording(kernel: Any, programs: int, *args: Any, **meta: Any) -> None:
        if kernel.fn.__name__ == "_adjoint_kernel":
            seen.append(({g.dtype for g in args[0]}, meta["FACTORS"]))
        original(kernel, programs, *args, **meta)

    x, y = torch.rand(2, 3, 16, 16, dtype=torch.float64), torch.rand(2, 3, 16, 16, dtype=torch.float64)
    (expected,) = torch.autograd.grad(GradientLoss("sobel", p=p)(x.requires_grad_(), y), x)
    monkeypatch.setenv("TORCHGRAD_FORCE_TRITON", "1")
    monkeypatch.setattr(launch, "launch_kernel", recording)
    (got,) = torch.autograd.grad(GradientLoss("sobel", p=p)(x, y), x)
    assert seen == [({slopes}, p == 1)]
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-15)
