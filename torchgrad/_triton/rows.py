"""The border rules of :mod:`torchgrad._triton.plan` as Triton constants, and the two row rules that the
operator kernels (:mod:`~torchgrad._triton.kernels`) and the loss kernels
(:mod:`~torchgrad._triton.penalty_kernels`) share: the weight a row gives a slot, and which rows
``valid`` borders keep."""

from __future__ import annotations

import triton
import triton.language as tl

from . import plan

NONE: tl.constexpr = tl.constexpr(plan.NONE)
REFLECT: tl.constexpr = tl.constexpr(plan.REFLECT)
REPLICATE: tl.constexpr = tl.constexpr(plan.REPLICATE)
ZEROS: tl.constexpr = tl.constexpr(plan.ZEROS)
CIRCULAR: tl.constexpr = tl.constexpr(plan.CIRCULAR)
VALID: tl.constexpr = tl.constexpr(plan.VALID)
ROWS: tl.constexpr = tl.constexpr(plan.ROWS)
SYMMETRIC: tl.constexpr = tl.constexpr(plan.SYMMETRIC)
INTERIOR: tl.constexpr = tl.constexpr(plan.INTERIOR)


@triton.jit
def row_weight(i, n, t: tl.constexpr, MODE: tl.constexpr, W: tl.constexpr):
    """The weight that rows ``i`` give slot ``t``, ``W = (taps, row 0, row n - 1)``."""
    if MODE == ROWS:
        w = tl.where(i == 0, W[1][t], tl.where(i == n - 1, W[2][t], W[0][t]))
    else:
        w = W[0][t]
    return w


@triton.jit
def valid_rows(i, n, R: tl.constexpr, MODE: tl.constexpr, W: tl.constexpr):
    """``VALID``: the rows whose non-zero taps all read inside the axis (every row otherwise)."""
    ok = i == i
    if MODE == VALID:
        for t in tl.static_range(2 * R + 1):
            if W[0][t] != 0:
                ok = ok & (i + (t - R) >= 0) & (i + (t - R) <= n - 1)
    return ok
