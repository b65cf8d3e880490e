"""What :mod:`torchgrad.losses` may use of the operators' internals: the one declared internal API.

Everything else in torchgrad's private modules is private to its file. The losses build a linear
operator by name, apply it (and its adjoint) through autograd or as plain eager code, cut large
tensors into slabs along the batch, ask whether a tensor needs traceable code, and validate their
arguments with the checks the operators use.

- :class:`Separable`: a linear operator ``A`` made of stencil chains. ``op.apply(x)`` is ``A x``
  and ``op.adjoint(grads)`` is ``A^T g``, eager and without autograd; ``op.support()`` is the
  operator with absolute weights (which outputs read which inputs, for masks).
- :func:`apply_operator` / :func:`apply_adjoint`: the same through autograd, differentiable to any
  order, with forward mode and ``vmap``.
- :func:`operator_by_name`, :data:`OPERATOR_NAMES`: ``"diff"``, ``"sobel"``, ``"scharr"``, ``"central"``,
  ``"prewitt"``, ``"laplacian"``, ``"hessian"`` as the losses name them, and :data:`REGISTRY`, their
  descriptions (which spatial dims each takes, whether it takes ``padding``).
- :func:`forward_difference_operator`: :func:`torchgrad.image_gradients` as an operator.
- :func:`padded_stencil`: one stencil along one axis, its border handled as a padding mode pads the input;
  a :class:`Separable` of such stages is a new operator (the edge loss's Gaussian).
- :func:`in_work_dtype`: a tensor as it is computed in (float32 for half precision).
- :func:`slabs`: slices cutting a tensor along dim 0 into cache-sized pieces (the operators' rule, or the
  depth losses' per thread); :class:`Workspace`: the buffers a loop over them reuses, by slot.
- :func:`route`: where a call runs (:class:`Route`); with ``loss=(penalty code, target)``, whether the
  fused-loss Triton ops (``torch.ops.torchgrad.fused_loss`` and ``fused_loss_backward``) compute a loss on a
  tensor, and the operator's description they take;
  :data:`PENALTY_CODES`, the penalties they compute, by code; :class:`KernelsUnavailable`, what they raise
  where the kernels are switched off or cannot be compiled on the device (the losses then compute with
  their eager code).
- :func:`needs_traceable_code`: whether a tensor needs plain, out-of-place tensor operations (under
  ``torch.compile`` or a ``torch.func`` transform) instead of eager code writing through ``out=``.
- the ``check_*`` functions of :mod:`torchgrad._validation` (one signature: ``check_xxx(caller, name,
  value, ...)``), its dtype groups :data:`FLOATING`, :data:`REDUCTIONS` and :data:`DEPTH_REDUCTIONS`, and
  :func:`autocast_enabled` (whether autocast runs on a device; never on ``meta``).
"""

from ._executor import KernelsUnavailable, Route, route
from ._linear import LinearOperator, apply_adjoint, apply_operator
from ._named import OPERATOR_NAMES, operator_by_name
from ._registry import REGISTRY
from ._separable import Separable, Workspace, in_work_dtype, needs_traceable_code, slabs
from ._stencil import padded_stencil
from ._torch_private import assert_on_device
from ._triton import penalty_codes as PENALTY_CODES
from ._validation import (
    DEPTH_REDUCTIONS,
    FLOATING,
    REDUCTIONS,
    autocast_enabled,
    check_batch,
    check_bool,
    check_choice,
    check_computable_dtype,
    check_depth_batch,
    check_device,
    check_dtype,
    check_image,
    check_int,
    check_int_choice,
    check_like,
    check_mask,
    check_min_size,
    check_names,
    check_number,
    check_numbers,
    check_operator,
    check_padding,
    check_reduction,
    check_same_device,
    check_tensor,
)
from .image_gradients import forward_difference_operator

__all__ = [
    "assert_on_device",
    "DEPTH_REDUCTIONS",
    "FLOATING",
    "OPERATOR_NAMES",
    "PENALTY_CODES",
    "REDUCTIONS",
    "REGISTRY",
    "KernelsUnavailable",
    "LinearOperator",
    "Route",
    "Separable",
    "apply_adjoint",
    "apply_operator",
    "autocast_enabled",
    "check_batch",
    "check_bool",
    "check_choice",
    "check_computable_dtype",
    "check_depth_batch",
    "check_device",
    "check_dtype",
    "check_image",
    "check_int",
    "check_int_choice",
    "check_like",
    "check_mask",
    "check_min_size",
    "check_names",
    "check_number",
    "check_numbers",
    "check_operator",
    "check_padding",
    "check_reduction",
    "check_same_device",
    "check_tensor",
    "forward_difference_operator",
    "in_work_dtype",
    "needs_traceable_code",
    "operator_by_name",
    "padded_stencil",
    "route",
    "slabs",
    "Workspace",
]
