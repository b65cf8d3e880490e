"""L1 / L2 / Charbonnier distance between image gradients, fused through linearity into one operator pass."""

from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from torchgrad._internal import (
    OPERATOR_NAMES,
    REGISTRY,
    check_batch,
    check_bool,
    check_choice,
    check_int_choice,
    check_like,
    check_mask,
    check_number,
    check_operator,
    check_padding,
    check_reduction,
    operator_by_name,
)

from ._autocast import autocast_off, autocast_pair, result_dtype
from ._fused import FusedLoss, reduced_penalty
from ._penalties import L1, Charbonnier, Penalty, SquaredL2

PENALTIES = ("l1", "l2", "charbonnier")
CHARBONNIER_EPS = 1e-3  # MPRNet's


def _check_options(
    caller: str, operator: object, p: object, reduction: object, padding: object, normalized: object
) -> tuple[str, Optional[int], str, Optional[str], bool]:
    """``(operator, p, reduction, padding, normalized)``, checked for ``caller`` (``p`` may be None)."""
    padding = None if padding is None else check_padding(caller, "padding", padding)
    normalized = check_bool(caller, "normalized", normalized)
    operator = check_operator(caller, "operator", operator, OPERATOR_NAMES, padding, normalized)
    return (
        operator,
        None if p is None else check_int_choice(caller, "p", p, (1, 2)),
        check_reduction(caller, "reduction", reduction),
        padding,
        normalized,
    )


def _check_penalty(
    caller: str, p: Optional[int], penalty: object, eps: object
) -> tuple[Optional[int], str, Optional[float]]:
    """``(p, penalty, eps)`` resolved: ``p=1`` is ``penalty="l1"``, ``p=2`` is ``"l2"``, neither is ``"l1"``;
    ``eps`` (default 1e-3) goes with ``"charbonnier"`` alone, which has no ``p``."""
    penalty = None if penalty is None else check_choice(caller, "penalty", penalty, PENALTIES)
    eps = None if eps is None else check_number(caller, "eps", eps, positive=True)
    named = None if p is None else PENALTIES[p - 1]
    if penalty is not None and named is not None and penalty != named:
        raise ValueError(
            f"{caller}: `p={p}` is penalty={named!r} and contradicts `penalty={penalty!r}`: give one of them"
        )
    penalty = penalty or named or "l1"
    if penalty != "charbonnier":
        if eps is not None:
            raise ValueError(f"{caller}: `eps` applies to penalty='charbonnier' only, got eps={eps!r} with {penalty!r}")
        return PENALTIES.index(penalty) + 1, penalty, None
    return None, penalty, CHARBONNIER_EPS if eps is None else eps


def _penalty(penalty: str, eps: Optional[float]) -> Penalty:
    """The penalty :func:`_check_penalty` resolved (``eps`` is set for ``"charbonnier"`` alone)."""
    if eps is not None:
        return Charbonnier(eps)
    return L1() if penalty == "l1" else SquaredL2()


def check_pair(caller: str, input: object, target: object, operator: str) -> tuple[Tensor, Tensor]:
    """``input`` and ``target`` as the gradient losses take them: images (volumes where ``operator`` takes
    them) of one shape, device and dtype."""
    ranks = (4, 5) if 3 in REGISTRY[operator].spatial_dims else (4,)
    input = check_batch(caller, "input", input, ranks)
    return input, check_like(caller, "target", check_batch(caller, "target", target, ranks), "input", input)


def gradient_loss(
    input: Tensor,
    target: Tensor,
    mask: Optional[Tensor] = None,
    *,
    operator: str = "sobel",
    p: Optional[int] = None,
    reduction: str = "mean",
    padding: Optional[str] = None,
    normalized: bool = False,
    penalty: Optional[str] = None,
    eps: Optional[float] = None,
) -> Tensor:
    r"""L1 (``p=1``), squared L2 (``p=2``) or Charbonnier distance between the image gradients of two images.

    .. math:: \ell = \operatorname{reduce}_{c, d, \text{pixels}} |g_d(\text{input}) - g_d(\text{target})|^p

    (or, with ``penalty="charbonnier"``, ``sqrt((g_d(input) - g_d(target))^2 + eps^2)`` per element),
    with ``g_d`` the components of ``operator`` (``"diff"``: :func:`torchgrad.image_gradients`,
    ``"sobel"``, ``"scharr"``, ``"prewitt"``, ``"central"``: :func:`torchgrad.gradient` over the spatial
    axes), or its second derivatives: ``"laplacian"`` (one component, :func:`torchgrad.laplacian` with
    ``ksize=1``; MegaDepth's second-order matching is ``GradientLoss("laplacian")`` with a mask),
    ``"hessian"`` (three, :func:`torchgrad.hessian`). The operators are linear, so this is
    ``|A (input - target)|^p``: one operator pass, inside one autograd Function whose backward
    (``A^T sign(A d)``, ``A^T 2 A d`` or ``A^T (A d / sqrt((A d)^2 + eps^2))``) is written by hand and saves
    only references to ``input``, ``target`` and ``mask``. The Charbonnier penalty is computed as
    ``hypot(A d, eps)`` (its slope ``A d / hypot(A d, eps)``): no square leaves the dtype's range, whatever
    ``eps``. ``"mean"`` averages over every element of every
    component: ``gradient_loss(x, y)`` equals TensorFlow's ``reduce_mean(abs(sobel_edges(x) - sobel_edges(y)))``.

    Args:
        input: ``(N, C, H, W)`` images or ``(N, C, D, H, W)`` volumes (``"scharr"``, ``"hessian"``: images
            only).
        target: same shape, device and dtype as ``input``; gradients flow to it when it requires grad.
        mask: bool, broadcastable to ``input``, True where a pixel is valid (depth maps with holes). A
            gradient element counts only where every pixel its stencil reads is valid; ``"mean"``
            divides by the number that count (a batch where none counts gives 0).
        operator: ``"diff"``, ``"sobel"``, ``"scharr"``, ``"prewitt"``, ``"central"``, ``"laplacian"`` or
            ``"hessian"``.
        p: 1 for L1, 2 for the squared error; the same as ``penalty="l1"`` or ``"l2"`` (default: L1).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``; a mean over no elements (an empty batch) is 0.
        padding: border mode of the filters (``"sobel"``, ``"scharr"``, ``"prewitt"``, ``"laplacian"``,
            ``"hessian"``); ``None`` takes their default, reflect.
        normalized: divide the filter so that it returns the derivative itself of a polynomial of its
            order (Sobel by 8, Scharr by 32, Prewitt by 6, the Hessian by 4, ``"laplacian"`` by 1).
        penalty: ``"l1"``, ``"l2"`` (squared) or ``"charbonnier"``; a ``p`` that says otherwise is an error.
        eps: the Charbonnier penalty's ``eps``, a finite positive number (default 1e-3, MPRNet's); only with
            ``penalty="charbonnier"``.

    Returns:
        A scalar, or with ``reduction="none"`` the per-element loss stacked as ``(N, C, K, H, W)``
        (``(N, C, K, D, H, W)`` for volumes), ``K`` the number of components: one per spatial axis for
        the gradients, 1 for ``"laplacian"``, 3 for ``"hessian"``. Half-precision inputs are accumulated
        in float32 and the result returned in the input's dtype; under autocast the result is float32.

    Example:
        >>> target = torch.zeros(1, 1, 4, 4)
        >>> input = torch.zeros(1, 1, 4, 4)
        >>> input[..., 2:] = 1.0
        >>> gradient_loss(input, target, operator="diff", p=2)
        tensor(0.1250)
        >>> gradient_loss(input, target, operator="diff", penalty="charbonnier", eps=0.5)
        tensor(0.5773)
    """
    caller = "gradient_loss"
    operator, p, reduction, padding, normalized = _check_options(caller, operator, p, reduction, padding, normalized)
    p, penalty, eps = _check_penalty(caller, p, penalty, eps)
    input, target = check_pair(caller, input, target, operator)
    mask = check_mask(caller, "mask", mask, input)
    spatial_dims = input.dim() - 2
    dtype = result_dtype(input, target)
    input, target = autocast_pair(input, target)
    with autocast_off(input.device):
        op = operator_by_name(caller, operator, input, padding, normalized, spatial_dims)
        loss = FusedLoss(op, _penalty(penalty, eps))
        return reduced_penalty(input, target, mask, loss, reduction, dtype)


class GradientLoss(nn.Module):
    """Module form of :func:`gradient_loss`; ``forward(input, target, mask=None)``.

    Example:
        >>> criterion = GradientLoss("diff", p=2)
        >>> criterion(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)).shape
        torch.Size([])
        >>> GradientLoss(penalty="charbonnier")
        GradientLoss(operator='sobel', penalty='charbonnier', eps=0.001, reduction='mean')
    """

    def __init__(
        self,
        operator: str = "sobel",
        p: Optional[int] = None,
        reduction: str = "mean",
        padding: Optional[str] = None,
        normalized: bool = False,
        *,
        penalty: Optional[str] = None,
        eps: Optional[float] = None,
    ) -> None:
        super().__init__()
        caller = type(self).__name__
        self.operator, p, self.reduction, self.padding, self.normalized = _check_options(
            caller, operator, p, reduction, padding, normalized
        )
        self.p, self.penalty, self.eps = _check_penalty(caller, p, penalty, eps)

    def forward(self, input: Tensor, target: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        return gradient_loss(
            input,
            target,
            mask,
            operator=self.operator,
            p=self.p,
            reduction=self.reduction,
            padding=self.padding,
            normalized=self.normalized,
            penalty=self.penalty,
            eps=self.eps,
        )

    def extra_repr(self) -> str:
        penalty = f"p={self.p}" if self.eps is None else f"penalty={self.penalty!r}, eps={self.eps}"
        options = f"operator={self.operator!r}, {penalty}, reduction={self.reduction!r}"
        if self.padding is not None:
            options += f", padding={self.padding!r}"
        return options + (", normalized=True" if self.normalized else "")
