"""The private PyTorch APIs torchgrad relies on (``torchgrad/_torch_private.py``), each named and checked for the
behaviour torchgrad reads from it: a PyTorch release that changes one fails here, by name."""

from __future__ import annotations

import pytest
import torch

from torchgrad import _torch_private


def test_each_private_api_exists() -> None:
    assert callable(torch._C._functorch.is_functorch_wrapped_tensor)
    assert callable(torch._C._functorch.is_legacy_batchedtensor)
    assert callable(torch._C._functorch.peek_interpreter_stack)
    assert isinstance(torch.autograd.forward_ad._current_level, int)
    assert callable(torch._C._DisableFuncTorch)
    assert callable(torch._assert_async)


def test_a_plain_tensor_outside_any_transform() -> None:
    x = torch.rand(2, 3)
    assert not _torch_private.is_func_wrapped(x) and not _torch_private.is_transformed(x)
    assert not _torch_private.transforms_active()
    assert torch.autograd.forward_ad._current_level == -1
    assert torch._C._functorch.peek_interpreter_stack() is None


def test_inside_vmap_grad_and_jvp() -> None:
    seen: list[tuple[bool, bool, bool]] = []

    def probe(t: torch.Tensor) -> torch.Tensor:
        seen.append(
            (_torch_private.is_func_wrapped(t), _torch_private.is_transformed(t), _torch_private.transforms_active())
        )
        stand_in = _torch_private.plain_tensor_like(t)
        assert not _torch_private.is_func_wrapped(stand_in)
        assert (stand_in.shape, stand_in.dtype, stand_in.device) == (t.shape, t.dtype, t.device)
        return (t * t).sum()

    x = torch.rand(4, 3)
    torch.func.vmap(probe)(x)
    torch.func.grad(probe)(x)
    torch.func.jvp(probe, (x,), (torch.ones_like(x),))
    assert seen == [(True, True, True)] * 3


def test_forward_mode_ad_is_seen() -> None:
    import torch.autograd.forward_ad as fwAD

    with fwAD.dual_level():
        assert torch.autograd.forward_ad._current_level >= 0
        assert _torch_private.transforms_active()
    assert not _torch_private.transforms_active()


def test_batched_gradients_are_seen() -> None:
    x = torch.rand(3, requires_grad=True)
    seen: list[bool] = []

    class Probe(torch.autograd.Function):
        @staticmethod
        def forward(ctx: object, t: torch.Tensor) -> torch.Tensor:
            return t * 2

        @staticmethod
        def backward(ctx: object, g: torch.Tensor) -> torch.Tensor:
            seen.append(_torch_private.is_transformed(g))
            return g * 2

    y = Probe.apply(x)
    torch.autograd.grad(y, x, torch.eye(3), is_grads_batched=True)
    assert seen == [True]


def test_an_assertion_on_the_device() -> None:
    """On the CPU the assertion is checked at once; on CUDA the device checks it without the host waiting."""
    _torch_private.assert_on_device(torch.tensor(True), "never shown")
    with pytest.raises(RuntimeError, match="the message"):
        _torch_private.assert_on_device(torch.tensor(False), "the message")
