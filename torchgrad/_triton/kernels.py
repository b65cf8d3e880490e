"""Triton kernels that run a :class:`~torchgrad._triton.plan.KernelPlan`: ``A x`` and ``A^T g``.

The kernels are written once for every operator: the plan arrives as compile-time tuples (``MODES``,
``WTS``, ...), the loops over axes, slots and components unroll at compile time and the zero taps
drop out, so an operator's code is its description.

A program computes one ``BLOCK_D x BLOCK_H x BLOCK_W`` tile of one batch item of the
``(b1, b0, D, H, W)`` view. Along each axis, an output of ``A`` reads three slots (samples ``i - 1,
i, i + 1``, remapped at the border) and an output of ``A^T`` reads rows ``j - 1, j, j + 1`` of ``g``
with per-column weights: the taps reversed inside, the border rows' weights folded back near the
edges (circular padding is circulant: its transpose is the reversed taps, wrapped). Explicit border
rows that read two or more samples away add two far slots, rows ``0`` and ``n - 1``, which run only
on the tiles they reach. Every sample index is clamped into its axis, so the loads of a tile that
reaches past the edge stay inside the tensor without a mask; masks only zero the samples that zero
padding leaves out, and keep stores (and the cotangent's load) to the tile's own elements.

Only Triton's builtins are used, none of its standard library (``tl.cdiv``, ``tl.zeros``): those are
jitted when ``triton.language`` is first imported, so the interpreter could not run them if Triton
was imported before ``TRITON_INTERPRET`` was set (torchvision imports it).
"""

from __future__ import annotations

import triton
import triton.language as tl

from .penalty_kernels import loss_epilogue

_NONE: tl.constexpr = tl.constexpr(0)
_REFLECT: tl.constexpr = tl.constexpr(1)
_REPLICATE: tl.constexpr = tl.constexpr(2)
_ZEROS: tl.constexpr = tl.constexpr(3)
_CIRCULAR: tl.constexpr = tl.constexpr(4)
_VALID: tl.constexpr = tl.constexpr(5)
_ROWS: tl.constexpr = tl.constexpr(6)
_SYMMETRIC: tl.constexpr = tl.constexpr(7)

COMPONENTS: tl.constexpr = tl.constexpr(0)
MAGNITUDE: tl.constexpr = tl.constexpr(1)
SCALED: tl.constexpr = tl.constexpr(2)
LOSS_SUMS: tl.constexpr = tl.constexpr(3)
LOSS_SLOPES: tl.constexpr = tl.constexpr(4)


@triton.jit
def _sources(i, n, MODE: tl.constexpr, FK: tl.constexpr, LK: tl.constexpr):
    """The samples that slots 0, 1, 2 of rows ``i`` read along an axis of size ``n`` (clamped into
    it), and whether each lies inside (only zero padding reads zero where it does not)."""
    s0 = i - 1
    s1 = i
    s2 = i + 1
    if MODE == _REFLECT:
        s0 = tl.where(s0 < 0, -s0, s0)
        s2 = tl.where(s2 > n - 1, 2 * (n - 1) - s2, s2)
        s0 = tl.where(s0 > n - 1, 2 * (n - 1) - s0, s0)
    elif MODE == _REPLICATE:
        s0 = tl.maximum(s0, 0)
        s2 = tl.minimum(s2, n - 1)
    elif MODE == _SYMMETRIC:
        # Half-sample symmetric: x[-1] = x[0], x[n] = x[n - 1] (one sample: both are x[0]).
        s0 = tl.where(s0 < 0, -s0 - 1, s0)
        s2 = tl.where(s2 > n - 1, 2 * n - 1 - s2, s2)
    elif MODE == _CIRCULAR:
        s0 = tl.where(s0 < 0, s0 + n, s0)
        s2 = tl.where(s2 > n - 1, s2 - n, s2)
    elif MODE == _ROWS:
        s0 = tl.where(i == 0, FK[0], tl.where(i == n - 1, n + LK[0], s0))
        s1 = tl.where(i == 0, FK[1], tl.where(i == n - 1, n + LK[1], s1))
        s2 = tl.where(i == 0, FK[2], tl.where(i == n - 1, n + LK[2], s2))
    if MODE == _ZEROS or MODE == _VALID:
        m0 = (s0 >= 0) & (s0 < n)
        m1 = (s1 >= 0) & (s1 < n)
        m2 = (s2 >= 0) & (s2 < n)
    else:
        m0 = s1 >= 0  # every sample is inside the axis (for the lanes that are)
        m1 = m0
        m2 = m0
    hi = n - 1
    s0 = tl.minimum(tl.maximum(s0, 0), hi)
    s1 = tl.minimum(tl.maximum(s1, 0), hi)
    s2 = tl.minimum(tl.maximum(s2, 0), hi)
    return (s0, s1, s2), (m0, m1, m2)


@triton.jit
def _combine(v0, v1, v2, i, n, MODE: tl.constexpr, W: tl.constexpr, NZ: tl.constexpr):
    """One component's 1-D operator along one axis: ``sum_t w_t(i) v_t`` over the three slots,
    ``W = (taps, row 0, row n - 1)``. A zero weight never touches its sample (an infinite sample it
    does not read stays out); ``VALID`` zeroes the rows whose non-zero taps read past the edge."""
    vs = (v0, v1, v2)
    out = tl.full(v1.shape, 0, v1.dtype)
    for t in tl.static_range(3):
        if NZ[t]:
            if MODE == _ROWS:
                w = tl.where(i == 0, W[1][t], tl.where(i == n - 1, W[2][t], W[0][t])).to(v1.dtype)
                out += tl.where(w != 0, w * vs[t], 0.0)
            else:
                out += vs[t] * W[0][t]
    if MODE == _VALID:
        ok = i >= 0
        if W[0][0] != 0:
            ok = ok & (i >= 1)
        if W[0][2] != 0:
            ok = ok & (i <= n - 2)
        out = tl.where(ok, out, 0.0)
    return out


@triton.jit
def _tile(B0, D, H, W, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    """This program's tile: the batch item (outer and inner index), the indices along z, y and x,
    their first values, and the sizes. Index arithmetic is int64 (also spares the interpreter its
    int32 overflow checks)."""
    pid = tl.program_id(0).to(tl.int64)
    B0 = tl.cast(B0, tl.int64)
    D = tl.cast(D, tl.int64)
    H = tl.cast(H, tl.int64)
    W = tl.cast(W, tl.int64)
    tiles_w = (W + BLOCK_W - 1) // BLOCK_W
    tiles_h = (H + BLOCK_H - 1) // BLOCK_H
    tiles_d = (D + BLOCK_D - 1) // BLOCK_D
    col0 = (pid % tiles_w) * BLOCK_W
    rest = pid // tiles_w
    row0 = (rest % tiles_h) * BLOCK_H
    rest = rest // tiles_h
    z0 = (rest % tiles_d) * BLOCK_D
    b = rest // tiles_d
    zi = z0 + tl.arange(0, BLOCK_D).to(tl.int64)[:, None, None]
    rows = row0 + tl.arange(0, BLOCK_H).to(tl.int64)[None, :, None]
    cols = col0 + tl.arange(0, BLOCK_W).to(tl.int64)[None, None, :]
    return b // B0, b % B0, zi, rows, cols, z0, row0, col0, D, H, W


@triton.jit
def _x_pass(
    ptrs, mask, zero, xs, xm, cols, W, sx,
    MODE: tl.constexpr, USED: tl.constexpr, MASKED: tl.constexpr, NC: tl.constexpr,
    WTS: tl.constexpr, NZ: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    """Loads the three x slots of one (z, y) slot and applies every component's x operator."""
    v0 = zero
    v1 = zero
    v2 = zero
    for t in tl.static_range(3):
        if USED[t]:
            if MASKED:
                v = tl.load(ptrs + xs[t] * sx, mask=mask & xm[t], other=0.0).to(ACC)
            else:
                v = tl.load(ptrs + xs[t] * sx).to(ACC)
            if t == 0:
                v0 = v
            elif t == 1:
                v1 = v
            else:
                v2 = v
    p0 = _combine(v0, v1, v2, cols, W, MODE, WTS[0][2], NZ[0][2])
    p1 = zero
    p2 = zero
    if NC > 1:
        p1 = _combine(v0, v1, v2, cols, W, MODE, WTS[1][2], NZ[1][2])
    if NC > 2:
        p2 = _combine(v0, v1, v2, cols, W, MODE, WTS[2][2], NZ[2][2])
    return p0, p1, p2


@triton.jit
def _plane(
    ptrs, mask, zero, ys, ym, xs, xm, rows, cols, H, W, sy, sx,
    MODES: tl.constexpr, USED: tl.constexpr, MASKED: tl.constexpr, NC: tl.constexpr,
    WTS: tl.constexpr, NZ: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    """Every component's y and x operators on the samples of one z slot."""
    a0, b0, c0 = zero, zero, zero  # slot 0 of components 0, 1, 2
    a1, b1, c1 = zero, zero, zero
    a2, b2, c2 = zero, zero, zero
    if USED[1][0]:
        a0, b0, c0 = _x_pass(ptrs + ys[0] * sy, mask & ym[0], zero, xs, xm, cols, W, sx,
                             MODES[2], USED[2], MASKED, NC, WTS, NZ, ACC)  # fmt: skip
    if USED[1][1]:
        a1, b1, c1 = _x_pass(ptrs + ys[1] * sy, mask & ym[1], zero, xs, xm, cols, W, sx,
                             MODES[2], USED[2], MASKED, NC, WTS, NZ, ACC)  # fmt: skip
    if USED[1][2]:
        a2, b2, c2 = _x_pass(ptrs + ys[2] * sy, mask & ym[2], zero, xs, xm, cols, W, sx,
                             MODES[2], USED[2], MASKED, NC, WTS, NZ, ACC)  # fmt: skip
    q0 = _combine(a0, a1, a2, rows, H, MODES[1], WTS[0][1], NZ[0][1])
    q1 = zero
    q2 = zero
    if NC > 1:
        q1 = _combine(b0, b1, b2, rows, H, MODES[1], WTS[1][1], NZ[1][1])
    if NC > 2:
        q2 = _combine(c0, c1, c2, rows, H, MODES[1], WTS[2][1], NZ[2][1])
    return q0, q1, q2


@triton.jit
def _forward_kernel(
    x_ptr, y0_ptr, y1_ptr, y2_ptr, g_ptr,
    B0, D, H, W,
    xs1, xs0, xsz, xsy, xsx,
    ys1, ys0, ysz, ysy, ysx,
    gs1, gs0, gsz, gsy, gsx,
    NC: tl.constexpr, MODES: tl.constexpr, FK: tl.constexpr, LK: tl.constexpr, WTS: tl.constexpr,
    NZ: tl.constexpr, USED: tl.constexpr, DIVS: tl.constexpr, OUTPUT: tl.constexpr, EPS: tl.constexpr,
    ACC: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
    s_ptr=None, m_ptr=None, ms1=0, ms0=0, msz=0, msy=0, msx=0,
    PENALTY: tl.constexpr = 0, PARAMS: tl.constexpr = (), REFS: tl.constexpr = False, LOSS_MASK: tl.constexpr = False,
):  # fmt: skip
    """``A x`` on one tile: every component (``COMPONENTS``), their magnitude ``sqrt(sum c^2 + EPS)``
    (``MAGNITUDE``), or ``c * g / magnitude`` (``SCALED``, the magnitude's backward before ``A^T``); or a
    fused loss's penalty on the components (``LOSS_SUMS``, ``LOSS_SLOPES``: see
    :func:`~torchgrad._triton.penalty_kernels.loss_epilogue`; ``s_ptr`` its sums or scales, ``m_ptr`` and
    its strides the mask, ``y*_ptr`` the target's components with ``REFS``, or the slopes written).

    Each sample of the tile and its halo is loaded once per slot and serves every component, which
    is reduced along x, then y, then z, and divided once by its divisor."""
    bo, bi, zi, rows, cols, z0, row0, col0, D, H, W = _tile(B0, D, H, W, BLOCK_D, BLOCK_H, BLOCK_W)
    MASKED: tl.constexpr = MODES[0] == _ZEROS or MODES[1] == _ZEROS or MODES[2] == _ZEROS
    zs, zm = _sources(zi, D, MODES[0], FK[0], LK[0])
    ys, ym = _sources(rows, H, MODES[1], FK[1], LK[1])
    xs, xm = _sources(cols, W, MODES[2], FK[2], LK[2])
    x_base = x_ptr + bo * xs1 + bi * xs0
    zero = tl.full([BLOCK_D, BLOCK_H, BLOCK_W], 0, ACC)
    if MODES[0] == _NONE:
        acc0, acc1, acc2 = _plane(x_base + zs[1] * xsz, zm[1], zero, ys, ym, xs, xm, rows, cols, H, W,
                                  xsy, xsx, MODES, USED, MASKED, NC, WTS, NZ, ACC)  # fmt: skip
    else:
        a0, b0, c0 = zero, zero, zero  # z slot 0 of components 0, 1, 2
        a1, b1, c1 = zero, zero, zero
        a2, b2, c2 = zero, zero, zero
        if USED[0][0]:
            a0, b0, c0 = _plane(x_base + zs[0] * xsz, zm[0], zero, ys, ym, xs, xm, rows, cols, H, W,
                                 xsy, xsx, MODES, USED, MASKED, NC, WTS, NZ, ACC)  # fmt: skip
        if USED[0][1]:
            a1, b1, c1 = _plane(x_base + zs[1] * xsz, zm[1], zero, ys, ym, xs, xm, rows, cols, H, W,
                                 xsy, xsx, MODES, USED, MASKED, NC, WTS, NZ, ACC)  # fmt: skip
        if USED[0][2]:
            a2, b2, c2 = _plane(x_base + zs[2] * xsz, zm[2], zero, ys, ym, xs, xm, rows, cols, H, W,
                                 xsy, xsx, MODES, USED, MASKED, NC, WTS, NZ, ACC)  # fmt: skip
        acc0 = _combine(a0, a1, a2, zi, D, MODES[0], WTS[0][0], NZ[0][0])
        acc1 = zero
        acc2 = zero
        if NC > 1:
            acc1 = _combine(b0, b1, b2, zi, D, MODES[0], WTS[1][0], NZ[1][0])
        if NC > 2:
            acc2 = _combine(c0, c1, c2, zi, D, MODES[0], WTS[2][0], NZ[2][0])
    if DIVS[0] != 1:
        acc0 = acc0 / DIVS[0]
    if NC > 1:
        if DIVS[1] != 1:
            acc1 = acc1 / DIVS[1]
    if NC > 2:
        if DIVS[2] != 1:
            acc2 = acc2 / DIVS[2]

    mask = (zi < D) & (rows < H) & (cols < W)
    y_off = bo * ys1 + bi * ys0 + zi * ysz + rows * ysy + cols * ysx
    if OUTPUT == COMPONENTS:
        tl.store(y0_ptr + y_off, acc0.to(y0_ptr.dtype.element_ty), mask=mask)
        if NC > 1:
            tl.store(y1_ptr + y_off, acc1.to(y1_ptr.dtype.element_ty), mask=mask)
        if NC > 2:
            tl.store(y2_ptr + y_off, acc2.to(y2_ptr.dtype.element_ty), mask=mask)
    elif OUTPUT == LOSS_SUMS or OUTPUT == LOSS_SLOPES:
        loss_epilogue((acc0, acc1, acc2), mask, (y0_ptr, y1_ptr, y2_ptr), y_off, g_ptr, s_ptr,
                      m_ptr + bo * ms1 + bi * ms0, msz, msy, msx, zi, rows, cols, D, H, W, zs, zm, ys, ym, xs, xm,
                      NC, MODES, WTS, NZ, OUTPUT == LOSS_SLOPES, PENALTY, PARAMS, REFS, LOSS_MASK, ACC)  # fmt: skip
    else:
        total = acc0 * acc0
        if NC > 1:
            total += acc1 * acc1
        if NC > 2:
            total += acc2 * acc2
        if ACC == tl.float64:
            norm = tl.sqrt(total + EPS)
        else:
            norm = tl.sqrt_rn(total + EPS)
        if OUTPUT == MAGNITUDE:
            tl.store(y0_ptr + y_off, norm.to(y0_ptr.dtype.element_ty), mask=mask)
        else:
            g_off = bo * gs1 + bi * gs0 + zi * gsz + rows * gsy + cols * gsx
            scale = tl.load(g_ptr + g_off, mask=mask, other=0.0).to(ACC) / norm
            tl.store(y0_ptr + y_off, (acc0 * scale).to(y0_ptr.dtype.element_ty), mask=mask)
            if NC > 1:
                tl.store(y1_ptr + y_off, (acc1 * scale).to(y1_ptr.dtype.element_ty), mask=mask)
            if NC > 2:
                tl.store(y2_ptr + y_off, (acc2 * scale).to(y2_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _adjoint_rows(j, n, MODE: tl.constexpr):
    """The rows of ``g`` that the five slots of ``A^T`` read at columns ``j`` (clamped into the axis):
    ``j - 1, j, j + 1`` (wrapped around for circular padding), then the border rows 0 and ``n - 1``."""
    top = n - 1
    jc = tl.minimum(j, top)  # lanes past the end of the axis read its last row
    r0 = jc - 1
    r2 = jc + 1
    if MODE == _CIRCULAR:
        r0 = tl.where(r0 < 0, r0 + n, r0)
        r2 = tl.where(r2 > top, r2 - n, r2)
    return (tl.maximum(r0, 0), jc, tl.minimum(r2, top), j * 0, j * 0 + top)


@triton.jit
def _adjoint_weights(
    j, n, start, BLOCK: tl.constexpr, MODE: tl.constexpr, W: tl.constexpr, SLOTS: tl.constexpr,
    first, first_in, last, last_in,
):  # fmt: skip
    """One component's 1-D ``A^T`` along one axis, as five weights per column ``j``.

    Slot ``k < 3`` reads row ``i = j + k - 1``: an interior row reads ``x[j]`` with tap ``2 - k``, a
    border row with the sum of its weights on ``x[j]`` (``first``, ``last``: the samples that rows 0
    and ``n - 1`` read in their three slots), a row outside the axis not at all. Slots 3 and 4 read
    rows 0 and ``n - 1`` for the columns they reach from afar (second-order edges of ``ROWS``);
    ``near_first`` / ``near_last`` say whether columns ``start .. start + BLOCK - 1`` hold any.
    (Circular padding needs none of this: its ``A`` is circulant, ``A^T`` the reversed taps wrapped.)"""
    T = W[0]
    f = tl.full(j.shape, 0, tl.float32)
    g = tl.full(j.shape, 0, tl.float32)
    near_first = n < 0
    near_last = n < 0
    for t in tl.static_range(3):
        if MODE == _ROWS:
            wf = tl.where(first_in[t], W[1][t], 0.0)
            wl = tl.where(last_in[t], W[2][t], 0.0)
        else:
            wf = tl.where(first_in[t], T[t], 0.0)
            wl = tl.where(last_in[t], T[t], 0.0)
        if MODE == _VALID:
            # Row 0 is zero when its first tap reads past the edge (or its last one does, n = 1), likewise row n - 1.
            if T[0] != 0:
                wf = wf * 0.0
                wl = tl.where(n >= 2, wl, 0.0)
            if T[2] != 0:
                wf = tl.where(n >= 2, wf, 0.0)
                wl = wl * 0.0
        f += tl.where(j == first[t], wf, 0.0)
        g += tl.where(j == last[t], wl, 0.0)
        if SLOTS[3]:
            far = (first[t] >= 2) & (first[t] >= start) & (first[t] < start + BLOCK)
            near_first = near_first | ((wf != 0) & far)
        if SLOTS[4]:
            far = (last[t] <= n - 3) & (last[t] >= start) & (last[t] < start + BLOCK)
            near_last = near_last | ((wl != 0) & far)
    # With one sample, row 0 is the only row.
    g = tl.where(n > 1, g, 0.0)
    weights = ()
    for k in tl.static_range(3):
        i = j + (k - 1)
        w = tl.where((i >= 1) & (i <= n - 2), T[2 - k], 0.0)
        w = tl.where(i == n - 1, g, w)
        w = tl.where(i == 0, f, w)
        weights = weights + (w,)
    far_first = f
    far_last = g
    if SLOTS[3]:
        far_first = tl.where(j >= 2, f, 0.0)
    if SLOTS[4]:
        far_last = tl.where(j <= n - 3, g, 0.0)
    return weights + (far_first, far_last), near_first, near_last & (n > 1)


@triton.jit
def _adjoint_term(v, k: tl.constexpr, MODE: tl.constexpr, W: tl.constexpr, weights):
    """``v``, read by slot ``k`` along one axis, times its weight there; a zero weight never
    touches ``v`` (a sample that a column does not read never reaches it, inf included)."""
    if MODE == _NONE:
        out = v
    elif MODE == _CIRCULAR:
        out = v * W[0][2 - k]
    else:
        out = tl.where(weights[k] != 0, weights[k] * v, 0.0)
    return out


@triton.jit
def _adjoint_row(
    ptrs, zero, xr, sx, xw, near_x3, near_x4,
    MODE: tl.constexpr, W: tl.constexpr, SLOTS: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    """One component's x part of ``A^T`` along the row of ``g`` that one (z, y) slot pair reads.
    The far slots run only on tiles that hold the columns they reach (a uniform branch)."""
    out = zero
    for k in tl.static_range(5):
        if SLOTS[k]:
            if k < 3:
                out += _adjoint_term(tl.load(ptrs + xr[k] * sx).to(ACC), k, MODE, W, xw)
            elif k == 3:
                if near_x3:
                    out += _adjoint_term(tl.load(ptrs + xr[3] * sx).to(ACC), 3, MODE, W, xw)
            else:
                if near_x4:
                    out += _adjoint_term(tl.load(ptrs + xr[4] * sx).to(ACC), 4, MODE, W, xw)
    return out


@triton.jit
def _adjoint_plane(
    ptrs, zero, yr, xr, sy, sx, yw, near_y3, near_y4, xw, near_x3, near_x4,
    MODES: tl.constexpr, WC: tl.constexpr, SLOTS: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    """One component's y and x parts of ``A^T`` on the rows of ``g`` that one z slot reads."""
    out = zero
    for k in tl.static_range(5):
        if SLOTS[1][k]:
            if k < 3:
                h = _adjoint_row(ptrs + yr[k] * sy, zero, xr, sx, xw, near_x3, near_x4, MODES[2], WC[2], SLOTS[2], ACC)
                out += _adjoint_term(h, k, MODES[1], WC[1], yw)
            elif k == 3:
                if near_y3:
                    h = _adjoint_row(ptrs + yr[3] * sy, zero, xr, sx, xw, near_x3, near_x4, MODES[2], WC[2], SLOTS[2],
                                     ACC)  # fmt: skip
                    out += _adjoint_term(h, 3, MODES[1], WC[1], yw)
            else:
                if near_y4:
                    h = _adjoint_row(ptrs + yr[4] * sy, zero, xr, sx, xw, near_x3, near_x4, MODES[2], WC[2], SLOTS[2],
                                     ACC)  # fmt: skip
                    out += _adjoint_term(h, 4, MODES[1], WC[1], yw)
    return out


@triton.jit
def _adjoint_part(
    g_ptr, bo, bi, s1, s0, sz, sy, sx, zero, zi, rows, cols, z0, row0, col0, D, H, W,
    zr, yr, xr, zb, yb, xb,
    MODES: tl.constexpr, WC: tl.constexpr, SLOTS: tl.constexpr, DIV: tl.constexpr, ACC: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """``A_c^T g_c`` for one component on the tile: per axis, the five slots of :func:`_adjoint_weights`."""
    never = H < 0
    zw, near_z3, near_z4 = (zero, zero, zero, zero, zero), never, never
    yw, near_y3, near_y4 = (zero, zero, zero, zero, zero), never, never
    xw, near_x3, near_x4 = (zero, zero, zero, zero, zero), never, never
    if MODES[0] != _NONE and MODES[0] != _CIRCULAR:
        zw, near_z3, near_z4 = _adjoint_weights(
            zi, D, z0, BLOCK_D, MODES[0], WC[0], SLOTS[0], zb[0], zb[1], zb[2], zb[3]
        )
    if MODES[1] != _NONE and MODES[1] != _CIRCULAR:
        yw, near_y3, near_y4 = _adjoint_weights(rows, H, row0, BLOCK_H, MODES[1], WC[1], SLOTS[1],
                                                yb[0], yb[1], yb[2], yb[3])  # fmt: skip
    if MODES[2] != _NONE and MODES[2] != _CIRCULAR:
        xw, near_x3, near_x4 = _adjoint_weights(cols, W, col0, BLOCK_W, MODES[2], WC[2], SLOTS[2],
                                                xb[0], xb[1], xb[2], xb[3])  # fmt: skip
    base = g_ptr + bo * s1 + bi * s0
    part = zero
    for k in tl.static_range(5):
        if SLOTS[0][k]:
            if k < 3:
                h = _adjoint_plane(base + zr[k] * sz, zero, yr, xr, sy, sx, yw, near_y3, near_y4, xw, near_x3, near_x4,
                                   MODES, WC, SLOTS, ACC)  # fmt: skip
                part += _adjoint_term(h, k, MODES[0], WC[0], zw)
            elif k == 3:
                if near_z3:
                    h = _adjoint_plane(base + zr[3] * sz, zero, yr, xr, sy, sx, yw, near_y3, near_y4, xw, near_x3,
                                       near_x4, MODES, WC, SLOTS, ACC)  # fmt: skip
                    part += _adjoint_term(h, 3, MODES[0], WC[0], zw)
            else:
                if near_z4:
                    h = _adjoint_plane(base + zr[4] * sz, zero, yr, xr, sy, sx, yw, near_y3, near_y4, xw, near_x3,
                                       near_x4, MODES, WC, SLOTS, ACC)  # fmt: skip
                    part += _adjoint_term(h, 4, MODES[0], WC[0], zw)
    if DIV != 1:
        part = part / DIV
    return part


@triton.jit
def _border_sources(n, MODE: tl.constexpr, FK: tl.constexpr, LK: tl.constexpr):
    """The samples that border rows 0 and ``n - 1`` read in their three slots, and which lie inside."""
    first, first_in = _sources(n * 0, n, MODE, FK, LK)
    last, last_in = _sources(n - 1, n, MODE, FK, LK)
    return first, first_in, last, last_in


@triton.jit
def _adjoint_kernel(
    g0_ptr, g1_ptr, g2_ptr, out_ptr,
    B0, D, H, W,
    g0s1, g0s0, g0sz, g0sy, g0sx,
    g1s1, g1s0, g1sz, g1sy, g1sx,
    g2s1, g2s0, g2sz, g2sy, g2sx,
    os1, os0, osz, osy, osx,
    NC: tl.constexpr, MODES: tl.constexpr, FK: tl.constexpr, LK: tl.constexpr, WTS: tl.constexpr,
    SLOTS: tl.constexpr, DIVS: tl.constexpr, ACC: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
    neg_ptr=None, NEG: tl.constexpr = False,
):  # fmt: skip
    """``A^T g = sum_c A_c^T g_c`` on one tile, each cotangent read with its own strides; with ``NEG``,
    ``-A^T g`` written to ``neg_ptr`` too (laid out like ``out_ptr``: a fused loss's target gradient)."""
    bo, bi, zi, rows, cols, z0, row0, col0, D, H, W = _tile(B0, D, H, W, BLOCK_D, BLOCK_H, BLOCK_W)
    zero = tl.full([BLOCK_D, BLOCK_H, BLOCK_W], 0, ACC)
    zr = _adjoint_rows(zi, D, MODES[0])
    yr = _adjoint_rows(rows, H, MODES[1])
    xr = _adjoint_rows(cols, W, MODES[2])
    unused = ((D, D, D), (D > 0, D > 0, D > 0), (D, D, D), (D > 0, D > 0, D > 0))  # for axes without stencils
    zb = unused
    yb = unused
    xb = unused
    if MODES[0] != _NONE and MODES[0] != _CIRCULAR:
        zb = _border_sources(D, MODES[0], FK[0], LK[0])
    if MODES[1] != _NONE and MODES[1] != _CIRCULAR:
        yb = _border_sources(H, MODES[1], FK[1], LK[1])
    if MODES[2] != _NONE and MODES[2] != _CIRCULAR:
        xb = _border_sources(W, MODES[2], FK[2], LK[2])
    acc = _adjoint_part(g0_ptr, bo, bi, g0s1, g0s0, g0sz, g0sy, g0sx, zero, zi, rows, cols, z0, row0, col0, D, H, W,
                        zr, yr, xr, zb, yb, xb, MODES, WTS[0], SLOTS[0], DIVS[0], ACC,
                        BLOCK_D, BLOCK_H, BLOCK_W)  # fmt: skip
    if NC > 1:
        acc += _adjoint_part(g1_ptr, bo, bi, g1s1, g1s0, g1sz, g1sy, g1sx, zero, zi, rows, cols, z0, row0, col0,
                             D, H, W, zr, yr, xr, zb, yb, xb, MODES, WTS[1], SLOTS[1], DIVS[1], ACC,
                             BLOCK_D, BLOCK_H, BLOCK_W)  # fmt: skip
    if NC > 2:
        acc += _adjoint_part(g2_ptr, bo, bi, g2s1, g2s0, g2sz, g2sy, g2sx, zero, zi, rows, cols, z0, row0, col0,
                             D, H, W, zr, yr, xr, zb, yb, xb, MODES, WTS[2], SLOTS[2], DIVS[2], ACC,
                             BLOCK_D, BLOCK_H, BLOCK_W)  # fmt: skip
    mask = (zi < D) & (rows < H) & (cols < W)
    out_off = bo * os1 + bi * os0 + zi * osz + rows * osy + cols * osx
    tl.store(out_ptr + out_off, acc.to(out_ptr.dtype.element_ty), mask=mask)
    if NEG:
        tl.store(neg_ptr + out_off, (-acc).to(neg_ptr.dtype.element_ty), mask=mask)
