"""The private PyTorch APIs torchgrad relies on, in one place: a PyTorch release that changes one of them breaks
this file (and ``tests/test_torch_private.py``, which names each), not a call deep in an executor.

- ``torch._C._functorch.is_functorch_wrapped_tensor`` and ``is_legacy_batchedtensor``: whether a tensor is wrapped
  by a ``torch.func`` transform (or batched gradients), where eager code that writes through ``out=`` into views
  cannot run and raw kernel launches cannot read it;
- ``torch._C._functorch.peek_interpreter_stack``: whether a ``torch.func`` transform is active;
- ``torch.autograd.forward_ad._current_level``: whether forward-mode AD is active (``-1`` outside);
- ``torch._C._DisableFuncTorch``: a context in which new tensors are plain, not wrapped by the active transforms;
- ``torch._assert_async``: an assertion on a one-element tensor that a CUDA device checks without the host waiting.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["assert_on_device", "is_func_wrapped", "is_transformed", "plain_tensor_like", "transforms_active"]


def is_func_wrapped(t: Tensor) -> bool:
    """Whether ``t`` is wrapped by a ``torch.func`` transform."""
    return torch._C._functorch.is_functorch_wrapped_tensor(t)


def is_transformed(t: Tensor) -> bool:
    """Whether ``t`` is wrapped by a ``torch.func`` transform or by batched gradients (``is_grads_batched``)."""
    return is_func_wrapped(t) or torch._C._functorch.is_legacy_batchedtensor(t)


def transforms_active() -> bool:
    """Whether a ``torch.func`` transform or forward-mode AD is active."""
    return torch.autograd.forward_ad._current_level >= 0 or torch._C._functorch.peek_interpreter_stack() is not None


def plain_tensor_like(x: Tensor) -> Tensor:
    """A plain one-element tensor (zero strides) of ``x``'s logical shape, dtype and device, even where ``x`` is
    wrapped by the active transforms: something to decide on by shape without entering them."""
    with torch._C._DisableFuncTorch():
        return torch.empty_strided(x.shape, (0,) * x.dim(), dtype=x.dtype, device=x.device)


def assert_on_device(condition: Tensor, message: str) -> None:
    """Fail with ``message`` where the one-element ``condition`` is false, checked by the device in its own time
    (on CUDA the host does not wait; on the CPU it raises ``RuntimeError`` at once)."""
    torch._assert_async(condition, message)
