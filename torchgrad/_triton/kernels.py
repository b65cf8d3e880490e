"""Triton kernels that run a :class:`~torchgrad._triton.plan.KernelPlan`: ``A x``, ``A^T g`` and the magnitude.

One kernel per job: :func:`_apply_kernel` (``A x``, every output), :func:`_adjoint_kernel` (``A^T g``),
:func:`_magnitude_kernel` and :func:`_magnitude_backward_kernel` (the fused magnitude and the first half of its
backward); the fused losses' kernels (:mod:`~torchgrad._triton.penalty_kernels`) share this file's tile code.
Each takes its tensors (a tuple where there is one per output or chain), the sizes ``(B0, D, H, W)`` and each
tensor's five strides as tuples, and the plan as one compile-time argument ``P``
(:class:`~torchgrad._triton.plan.Constants`: ``P.MODES``, ``P.STENCIL_WEIGHTS``, ...). The loops over axes, slots and
components unroll at compile time and the zero taps drop out, so an operator's code is its description.

A program computes one ``BLOCK_D x BLOCK_H x BLOCK_W`` tile of one batch item of the
``(b1, b0, D, H, W)`` view. Along an axis of radius ``R``, an output of ``A`` reads ``2 R + 1`` slots
(samples ``i - R .. i + R``, remapped at the border) and an output of ``A^T`` reads rows ``j - R ..
j + R`` of ``g`` with per-column weights: the taps reversed inside, the weights that the border rows
give column ``j`` near the edges (circular padding is circulant: its transpose is the reversed taps,
wrapped). Explicit border rows that read farther than ``R`` samples add two far slots, rows ``0`` and
``n - 1``, which run only on the tiles they reach.

Each program takes one of two paths (a uniform branch). A tile whose rows (columns, for ``A^T``) lie
within the plan's margins reaches no border: it runs the interior taps (the ``INTERIOR`` rule) on
unfolded indices with unmasked loads and stores; ``A`` loads each row segment of it along x once, with the
segments 16 bytes before and after it, and puts the x slots together in registers
(:func:`_x_slots_in_registers`). On the other tiles every sample index is folded by
comparisons and clamped into its axis, so the loads of a tile that reaches past the edge stay inside the
tensor without a mask; masks only zero the samples that zero padding leaves out, and keep stores (and the
cotangent's load) to the tile's own elements (rows that valid borders zero are zeroed by the arithmetic,
not by masks). Indices within a plane are int32 (the host keeps planes and program counts within it),
offsets along z and the batch int64.

Only Triton's builtins are used, none of its standard library (``tl.cdiv``, ``tl.zeros``): those are
jitted when ``triton.language`` is first imported, so the interpreter could not run them if Triton
was imported before ``TRITON_INTERPRET`` was set (torchvision imports it).
"""

from __future__ import annotations

import triton
import triton.language as tl

from .rows import CIRCULAR as _CIRCULAR
from .rows import INTERIOR as _INTERIOR
from .rows import NONE as _NONE
from .rows import REFLECT as _REFLECT
from .rows import ROWS as _ROWS
from .rows import SYMMETRIC as _SYMMETRIC
from .rows import VALID as _VALID
from .rows import ZEROS as _ZEROS
from .rows import row_weight as _row_weight
from .rows import valid_rows as _valid_rows

MAX_X_REACH: tl.constexpr = tl.constexpr(24)
"""How far (in elements) the x slots an interior tile puts together in registers may reach: three 16-byte
vectors of a 2-byte dtype."""


@triton.jit
def _source(s, n, MODE: tl.constexpr, R: tl.constexpr):
    """Where index ``s`` (at most ``R`` outside the axis) of the padded axis reads: folded into
    ``0 .. n - 1`` by comparisons, once per sample of reach so that an axis shorter than the stencil folds
    as often as it needs (reflect about ``0`` and ``n - 1``, symmetric about ``-1/2`` and ``n - 1/2``,
    circular by ``n``), clamped (replicate), or left for the caller to mask (zeros, valid)."""
    hi = n - 1
    for _ in tl.static_range(R):
        if MODE == _REFLECT:
            s = tl.where(s < 0, -s, s)
            s = tl.where(s > hi, 2 * hi - s, s)
        elif MODE == _SYMMETRIC:
            s = tl.where(s < 0, -1 - s, s)
            s = tl.where(s > hi, 2 * hi + 1 - s, s)
        elif MODE == _CIRCULAR:
            s = tl.where(s < 0, s + n, s)
            s = tl.where(s > hi, s - n, s)
    return s


@triton.jit
def _sources(i, n, MODE: tl.constexpr, R: tl.constexpr, FIRST_READS: tl.constexpr, LAST_READS: tl.constexpr):
    """The samples that slots ``0 .. 2 R`` of rows ``i`` read along an axis of size ``n`` (clamped into
    it), and whether each lies inside (only zero padding and valid rows read nothing where it does not)."""
    hi = n - 1
    sources = ()
    inside = ()
    for t in tl.static_range(2 * R + 1):
        s = i + (t - R)
        if MODE == _ROWS:
            s = tl.where(i == 0, FIRST_READS[t], tl.where(i == hi, n + LAST_READS[t], s))
        elif MODE != _INTERIOR:
            s = _source(s, n, MODE, R)
        if MODE == _ZEROS or MODE == _VALID:
            m = (s >= 0) & (s <= hi)
        else:
            m = i == i  # every sample is inside the axis
        if MODE != _INTERIOR:  # an interior tile reads inside the axis as it is
            s = tl.minimum(tl.maximum(s, 0), hi)
        sources = sources + (s,)
        inside = inside + (m,)
    return sources, inside


@triton.jit
def _x_sources(
    i, n, MODE: tl.constexpr, R: tl.constexpr, FIRST_READS: tl.constexpr, LAST_READS: tl.constexpr, STEP: tl.constexpr
):
    """:func:`_sources` along the x axis, whose samples lie ``STEP`` elements apart (``i`` and ``n`` in
    elements): the border rules fold the sample index ``i // STEP`` and keep the lane ``i % STEP``."""
    if STEP == 1:
        sources, inside = _sources(i, n, MODE, R, FIRST_READS, LAST_READS)
    elif MODE == _INTERIOR:
        sources = ()
        inside = ()
        for t in tl.static_range(2 * R + 1):
            sources = sources + (i + (t - R) * STEP,)
            inside = inside + (i == i,)
    else:
        w = i // STEP
        lane = i - w * STEP
        folded, inside = _sources(w, n // STEP, MODE, R, FIRST_READS, LAST_READS)
        sources = ()
        for t in tl.static_range(2 * R + 1):
            sources = sources + (folded[t] * STEP + lane,)
    return sources, inside


@triton.jit
def _combine(vs, i, n, MODE: tl.constexpr, R: tl.constexpr, W: tl.constexpr, NONZERO: tl.constexpr):
    """One chain's 1-D operator along one axis: ``sum_t w_t(i) v_t`` over the ``2 R + 1`` slots. A zero
    weight never touches its sample (an infinite sample it does not read stays out)."""
    if MODE == _NONE:
        out = vs[0]
    else:
        out = tl.full(vs[R].shape, 0, vs[R].dtype)
        for t in tl.static_range(2 * R + 1):
            if NONZERO[t] and (MODE != _INTERIOR or W[0][t] != 0):
                if MODE == _ROWS:
                    w = _row_weight(i, n, t, MODE, W).to(vs[t].dtype)
                    out += tl.where(w != 0, w * vs[t], 0.0)
                else:
                    out += vs[t] * W[0][t]
        if MODE == _VALID:
            out = tl.where(_valid_rows(i, n, R, MODE, W), out, 0.0)
    return out


@triton.jit
def _wide(indices, N: tl.constexpr):
    """The ``N`` index tensors of ``indices`` as int64."""
    out = ()
    for k in tl.static_range(N):
        out = out + (indices[k].to(tl.int64),)
    return out


@triton.jit
def _zeros(zero, CHAINS: tl.constexpr):
    """``CHAINS`` references to ``zero``, as a tuple."""
    out = ()
    for _ in tl.static_range(CHAINS):
        out = out + (zero,)
    return out


@triton.jit
def tile_of(sizes, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    """This program's tile of the ``(B1, B0, D, H, W)`` view (``sizes = (B0, D, H, W)``): the batch item (outer
    and inner index, int64), the indices along z, y and x and their first values (int32: the host keeps every
    in-plane offset and the program count within int32), from one division chain per program, never per
    element."""
    B0, D, H, W = sizes
    pid = tl.program_id(0)
    tiles_w = (W + BLOCK_W - 1) // BLOCK_W
    tiles_h = (H + BLOCK_H - 1) // BLOCK_H
    tiles_d = (D + BLOCK_D - 1) // BLOCK_D
    rest = pid // tiles_w
    col0 = (pid - rest * tiles_w) * BLOCK_W
    plane = rest // tiles_h
    row0 = (rest - plane * tiles_h) * BLOCK_H
    b = plane // tiles_d
    z0 = (plane - b * tiles_d) * BLOCK_D
    bo = b // B0
    bi = b - bo * B0
    zi = z0 + tl.arange(0, BLOCK_D)[:, None, None]
    rows = row0 + tl.arange(0, BLOCK_H)[None, :, None]
    cols = col0 + tl.arange(0, BLOCK_W)[None, None, :]
    return bo.to(tl.int64), bi.to(tl.int64), zi, rows, cols, z0, row0, col0


@triton.jit
def _inside(start, n, BLOCK: tl.constexpr, MARGIN: tl.constexpr):
    """Whether rows ``start .. start + BLOCK - 1`` lie within ``MARGIN = (lo, hi)`` of the axis's ends
    (see :meth:`~torchgrad._triton.plan.KernelPlan.margins`)."""
    return (start >= MARGIN[0]) & (start + (BLOCK + MARGIN[1]) <= n)


@triton.jit
def interior(tile, sizes, MARGINS: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr,
              BLOCK_W: tl.constexpr, X_REACH: tl.constexpr = 0):  # fmt: skip
    """Whether the tile takes the interior path: every axis's rows within its margins, and its x slots'
    loads within ``X_REACH`` elements of it inside the axis (a uniform branch)."""
    LO: tl.constexpr = MARGINS[2][0] if MARGINS[2][0] > X_REACH else X_REACH
    HI: tl.constexpr = MARGINS[2][1] if MARGINS[2][1] > X_REACH else X_REACH
    return (
        _inside(tile[5], sizes[1], BLOCK_D, MARGINS[0])
        & _inside(tile[6], sizes[2], BLOCK_H, MARGINS[1])
        & _inside(tile[7], sizes[3], BLOCK_W, (LO, HI))
    )


@triton.jit
def x_reach(x_ptr, P: tl.constexpr, BLOCK_W: tl.constexpr):
    """How far beyond an interior tile :func:`_x_slots_in_registers` loads along x (``K`` vectors of ``V``
    elements, 16 bytes), or 0 where the tile loads its x slots one by one (a slot a load): the former where
    the slots reach at most ``MAX_X_REACH`` elements, lanes are no farther apart than a vector's elements and the
    tile holds a vector."""
    V: tl.constexpr = 128 // x_ptr.dtype.element_ty.primitive_bitwidth
    R: tl.constexpr = P.RADII[2]
    K: tl.constexpr = (R * P.STEP + V - 1) // V
    REACH: tl.constexpr = K * V if R > 0 and R * P.STEP <= MAX_X_REACH and P.STEP <= V and V <= BLOCK_W else 0
    return REACH


@triton.jit
def store_mask(tile, sizes, BORDER: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr,
                BLOCK_W: tl.constexpr):  # fmt: skip
    """The tile's elements inside the tensor (every one on a tile that reaches no border: ``BORDER`` false)."""
    if BORDER:
        mask = (tile[2] < sizes[1]) & (tile[3] < sizes[2]) & (tile[4] < sizes[3])
    else:
        mask = tl.full([BLOCK_D, BLOCK_H, BLOCK_W], 1, tl.int1)
    return mask


@triton.jit
def offsets(tile, strides):
    """The offsets of the tile's elements in a tensor of five ``strides`` (in-plane int32, z and batch int64)."""
    return (tile[0] * strides[0] + tile[1] * strides[1] + tile[2].to(tl.int64) * strides[2]) + (
        tile[3] * strides[3] + tile[4] * strides[4]
    )


@triton.jit
def _split_lanes(v, V: tl.constexpr):
    """The ``V`` lanes of ``v`` (``[BD, BH, BW]``) along x, each ``[BD, BH, BW // V]``: lane ``j`` holds the
    elements ``j, V + j, 2 V + j, ...`` (a thread's vector of ``V`` consecutive elements, taken apart in
    registers)."""
    BD: tl.constexpr = v.shape[0]
    BH: tl.constexpr = v.shape[1]
    BW: tl.constexpr = v.shape[2]
    if V == 2:
        a, b = tl.split(tl.reshape(v, [BD, BH, BW // 2, 2]))
        lanes = (a, b)
    elif V == 4:
        a, b = tl.split(tl.reshape(v, [BD, BH, BW // 4, 2, 2]))
        a0, a1 = tl.split(a)
        b0, b1 = tl.split(b)
        lanes = (a0, b0, a1, b1)
    else:
        a, b = tl.split(tl.reshape(v, [BD, BH, BW // 8, 2, 2, 2]))
        a0, a1 = tl.split(a)
        b0, b1 = tl.split(b)
        a00, a01 = tl.split(a0)
        a10, a11 = tl.split(a1)
        b00, b01 = tl.split(b0)
        b10, b11 = tl.split(b1)
        lanes = (a00, b00, a10, b10, a01, b01, a11, b11)
    return lanes


@triton.jit
def _join_lanes(lanes, V: tl.constexpr):
    """The inverse of :func:`_split_lanes`: ``[BD, BH, V * BW']`` from ``V`` lanes ``[BD, BH, BW']``."""
    BD: tl.constexpr = lanes[0].shape[0]
    BH: tl.constexpr = lanes[0].shape[1]
    BW: tl.constexpr = lanes[0].shape[2] * V
    if V == 2:
        v = tl.join(lanes[0], lanes[1])
    elif V == 4:
        v = tl.join(tl.join(lanes[0], lanes[2]), tl.join(lanes[1], lanes[3]))
    else:
        v = tl.join(
            tl.join(tl.join(lanes[0], lanes[4]), tl.join(lanes[2], lanes[6])),
            tl.join(tl.join(lanes[1], lanes[5]), tl.join(lanes[3], lanes[7])),
        )
    return tl.reshape(v, [BD, BH, BW])


@triton.jit
def _x_slots_in_registers(ptrs, t_ptrs, cols, sx, R: tl.constexpr, USED: tl.constexpr, STEP: tl.constexpr,
                          V: tl.constexpr, ACC: tl.constexpr, SUBTRACT: tl.constexpr, zero):  # fmt: skip
    """The x slots of an interior tile from the loads of the tile's row segment and of the ``K`` segments of
    ``V`` elements (16 bytes: aligned vectors) before and after it that its reach covers, each slot put together
    in registers from the lanes it reads, where one load per slot would read each sample ``2 R + 1`` times (and,
    shifted off the vectors' alignment, element by element)."""
    K: tl.constexpr = (R * STEP + V - 1) // V
    segments = ()
    for q in tl.static_range(2 * K + 1):
        v = tl.load(ptrs + (cols + (q - K) * V) * sx).to(ACC)
        if SUBTRACT:
            v -= tl.load(t_ptrs + (cols + (q - K) * V) * sx).to(ACC)
        segments = segments + (_split_lanes(v, V),)
    vals = ()
    for t in tl.static_range(2 * R + 1):
        v = zero
        if USED[t]:
            lanes = ()
            for j in tl.static_range(V):
                # sample j + (t - R) STEP: lane (j + (t - R) STEP) mod V of segment K + its floor division by V
                lanes = lanes + (segments[(j + (t - R) * STEP + K * V) // V][(j + (t - R) * STEP + K * V) % V],)
            v = _join_lanes(lanes, V)
        vals = vals + (v,)
    return vals


@triton.jit
def _x_pass(
    ptrs, t_ptrs, mask, zero, xs, xm, cols, W, sx,
    MODE: tl.constexpr, R: tl.constexpr, USED: tl.constexpr, MASKED: tl.constexpr, CHAINS: tl.constexpr,
    STENCIL_WEIGHTS: tl.constexpr, NONZERO: tl.constexpr, ACC: tl.constexpr, SUBTRACT: tl.constexpr,
    STEP: tl.constexpr,
):  # fmt: skip
    """Loads the x slots of one (z, y) slot (with ``SUBTRACT``, minus the same samples at ``t_ptrs``, the
    difference formed in ``ACC``) and applies every chain's x operator."""
    V: tl.constexpr = 128 // ptrs.dtype.element_ty.primitive_bitwidth  # elements in 16 bytes
    if MODE == _INTERIOR and not MASKED and R > 0 and R * STEP <= MAX_X_REACH and STEP <= V and V <= zero.shape[2]:
        vals = _x_slots_in_registers(ptrs, t_ptrs, cols, sx, R, USED, STEP, V, ACC, SUBTRACT, zero)
    else:
        vals = ()
        for t in tl.static_range(2 * R + 1):
            v = zero
            if USED[t]:
                if MASKED:
                    v = tl.load(ptrs + xs[t] * sx, mask=mask & xm[t], other=0.0).to(ACC)
                    if SUBTRACT:
                        v -= tl.load(t_ptrs + xs[t] * sx, mask=mask & xm[t], other=0.0).to(ACC)
                else:
                    v = tl.load(ptrs + xs[t] * sx).to(ACC)
                    if SUBTRACT:
                        v -= tl.load(t_ptrs + xs[t] * sx).to(ACC)
            vals = vals + (v,)
    parts = ()
    for c in tl.static_range(CHAINS):
        parts = parts + (_combine(vals, cols, W, MODE, R, STENCIL_WEIGHTS[c][2], NONZERO[c][2]),)
    return parts


@triton.jit
def _plane(
    ptrs, t_ptrs, mask, zero, ys, ym, xs, xm, rows, cols, H, W, sy, sx,
    P: tl.constexpr, MODES: tl.constexpr, MASKED: tl.constexpr, ACC: tl.constexpr, SUBTRACT: tl.constexpr,
):  # fmt: skip
    """Every chain's y and x operators on the samples of one z slot."""
    RADII: tl.constexpr = P.RADII
    USED: tl.constexpr = P.USED
    CHAINS: tl.constexpr = P.CHAINS
    STENCIL_WEIGHTS: tl.constexpr = P.STENCIL_WEIGHTS
    NONZERO: tl.constexpr = P.NONZERO
    per_slot = ()
    for t in tl.static_range(2 * RADII[1] + 1):
        parts = _zeros(zero, CHAINS)
        if USED[1][t]:
            parts = _x_pass(
                ptrs + ys[t] * sy,
                t_ptrs + ys[t] * sy,
                mask & ym[t],
                zero,
                xs,
                xm,
                cols,
                W,
                sx,
                MODES[2],
                RADII[2],
                USED[2],
                MASKED,
                CHAINS,
                STENCIL_WEIGHTS,
                NONZERO,
                ACC,
                SUBTRACT,
                P.STEP,
            )
        per_slot = per_slot + (parts,)
    out = ()
    for c in tl.static_range(CHAINS):
        vs = ()
        for t in tl.static_range(2 * RADII[1] + 1):
            vs = vs + (per_slot[t][c],)
        out = out + (_combine(vs, rows, H, MODES[1], RADII[1], STENCIL_WEIGHTS[c][1], NONZERO[c][1]),)
    return out


@triton.jit
def components(
    x_ptr, t_ptr, tile, sizes, strides, P: tl.constexpr, MODES: tl.constexpr, SUBTRACT: tl.constexpr,
    ACC: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """Every output of ``A x`` on the tile under border rules ``MODES`` (``P.INTERIOR_MODES`` on a tile that reaches no
    border), in ``ACC``; with ``SUBTRACT``, of ``A (x - t)``, the target at ``t_ptr`` read with ``x``'s
    ``strides`` and the difference formed in ``ACC``. Also returns the samples each slot read along each
    axis and whether they lie inside (``zs, zm, ys, ym, xs, xm``: the fused losses' mask rule reads them).

    Each sample of the tile and its halo is loaded once per slot and serves every chain, which is reduced
    along x, then y, then z, and divided once by its divisor; an output adds its chains."""
    RADII: tl.constexpr = P.RADII
    CHAINS: tl.constexpr = P.CHAINS
    MASKED: tl.constexpr = MODES[0] == _ZEROS or MODES[1] == _ZEROS or MODES[2] == _ZEROS
    bo, bi, zi, rows, cols, _, _, _ = tile
    _, D, H, W = sizes
    zs, zm = _sources(zi, D, MODES[0], RADII[0], P.FIRST_READS[0], P.LAST_READS[0])
    ys, ym = _sources(rows, H, MODES[1], RADII[1], P.FIRST_READS[1], P.LAST_READS[1])
    xs, xm = _x_sources(cols, W, MODES[2], RADII[2], P.FIRST_READS[2], P.LAST_READS[2], P.STEP)
    x_base = x_ptr + bo * strides[0] + bi * strides[1]
    t_base = x_base
    if SUBTRACT:
        t_base = t_ptr + bo * strides[0] + bi * strides[1]  # the target shares the input's strides
    zero = tl.full([BLOCK_D, BLOCK_H, BLOCK_W], 0, ACC)
    per_slot = ()
    for t in tl.static_range(2 * RADII[0] + 1):
        parts = _zeros(zero, CHAINS)
        if P.USED[0][t]:
            z_off = zs[t].to(tl.int64) * strides[2]
            parts = _plane(x_base + z_off, t_base + z_off, zm[t], zero, ys, ym, xs, xm, rows, cols, H, W,
                           strides[3], strides[4], P, MODES, MASKED, ACC, SUBTRACT)  # fmt: skip
        per_slot = per_slot + (parts,)
    chains = ()
    for c in tl.static_range(CHAINS):
        vs = ()
        for t in tl.static_range(2 * RADII[0] + 1):
            vs = vs + (per_slot[t][c],)
        acc = _combine(vs, zi, D, MODES[0], RADII[0], P.STENCIL_WEIGHTS[c][0], P.NONZERO[c][0])
        if P.DIVISORS[c] != 1:
            acc = acc / P.DIVISORS[c]
        chains = chains + (acc,)
    outputs = ()
    for o in tl.static_range(P.OUTPUTS):
        acc = chains[P.FIRST_CHAIN[o]]
        for c in tl.static_range(P.FIRST_CHAIN[o] + 1, CHAINS):
            if P.OUTPUT_OF[c] == o:
                acc = acc + chains[c]
        outputs = outputs + (acc,)
    return outputs, (zs, zm, ys, ym, xs, xm)


@triton.jit
def _apply_kernel(
    x_ptr, y_ptrs, sizes, x_strides, y_strides,
    P: tl.constexpr, ACC: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """``A x`` on one tile: output ``o`` to ``y_ptrs[o]`` (the outputs share ``y_strides``). A tile whose
    stencils reach no border (``P.MARGINS``) runs the interior taps on unfolded, unmasked indices
    (``P.INTERIOR_MODES``); the others fold and mask."""
    tile = tile_of(sizes, BLOCK_D, BLOCK_H, BLOCK_W)
    if interior(tile, sizes, P.MARGINS, BLOCK_D, BLOCK_H, BLOCK_W, x_reach(x_ptr, P, BLOCK_W)):
        _apply_tile(x_ptr, y_ptrs, tile, sizes, x_strides, y_strides, P, P.INTERIOR_MODES, False, ACC, BLOCK_D, BLOCK_H,
                    BLOCK_W)  # fmt: skip
    else:
        _apply_tile(x_ptr, y_ptrs, tile, sizes, x_strides, y_strides, P, P.MODES, True, ACC, BLOCK_D, BLOCK_H,
                    BLOCK_W)  # fmt: skip


@triton.jit
def _apply_tile(
    x_ptr, y_ptrs, tile, sizes, x_strides, y_strides, P: tl.constexpr, MODES: tl.constexpr, BORDER: tl.constexpr,
    ACC: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    outputs, _ = components(x_ptr, x_ptr, tile, sizes, x_strides, P, MODES, False, ACC, BLOCK_D, BLOCK_H, BLOCK_W)
    mask = store_mask(tile, sizes, BORDER, BLOCK_D, BLOCK_H, BLOCK_W)
    at = offsets(tile, y_strides)
    for o in tl.static_range(P.OUTPUTS):
        tl.store(y_ptrs[o] + at, outputs[o].to(y_ptrs[o].dtype.element_ty), mask=mask)


@triton.jit
def _component_norm(outputs, e_ptr, OUTPUTS: tl.constexpr, ACC: tl.constexpr):
    """``sqrt(sum_o outputs[o]^2 + eps)``, ``eps`` the float64 scalar at ``e_ptr`` (read at run time: a new value
    compiles nothing), rounded to ``ACC`` as torch rounds it."""
    total = outputs[0] * outputs[0]
    for o in tl.static_range(1, OUTPUTS):
        total += outputs[o] * outputs[o]
    eps = tl.load(e_ptr).to(ACC)
    if ACC == tl.float64:
        norm = tl.sqrt(total + eps)
    else:
        norm = tl.sqrt_rn(total + eps)
    return norm


@triton.jit
def _magnitude_kernel(
    x_ptr, out_ptr, e_ptr, sizes, x_strides, out_strides,
    P: tl.constexpr, ACC: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """The magnitude ``sqrt(sum_o (A x)_o^2 + eps)`` on one tile, the outputs never written."""
    tile = tile_of(sizes, BLOCK_D, BLOCK_H, BLOCK_W)
    if interior(tile, sizes, P.MARGINS, BLOCK_D, BLOCK_H, BLOCK_W, x_reach(x_ptr, P, BLOCK_W)):
        _magnitude_tile(
            x_ptr,
            out_ptr,
            e_ptr,
            tile,
            sizes,
            x_strides,
            out_strides,
            P,
            P.INTERIOR_MODES,
            False,
            ACC,
            BLOCK_D,
            BLOCK_H,
            BLOCK_W,
        )
    else:
        _magnitude_tile(x_ptr, out_ptr, e_ptr, tile, sizes, x_strides, out_strides, P, P.MODES, True, ACC, BLOCK_D,
                        BLOCK_H, BLOCK_W)  # fmt: skip


@triton.jit
def _magnitude_tile(
    x_ptr, out_ptr, e_ptr, tile, sizes, x_strides, out_strides, P: tl.constexpr, MODES: tl.constexpr,
    BORDER: tl.constexpr, ACC: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    outputs, _ = components(x_ptr, x_ptr, tile, sizes, x_strides, P, MODES, False, ACC, BLOCK_D, BLOCK_H, BLOCK_W)
    mask = store_mask(tile, sizes, BORDER, BLOCK_D, BLOCK_H, BLOCK_W)
    norm = _component_norm(outputs, e_ptr, P.OUTPUTS, ACC)
    tl.store(out_ptr + offsets(tile, out_strides), norm.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _magnitude_backward_kernel(
    x_ptr, g_ptr, e_ptr, y_ptrs, sizes, x_strides, g_strides, y_strides,
    P: tl.constexpr, ACC: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """The magnitude's backward before ``A^T``: ``(A x)_o * g / magnitude`` to ``y_ptrs[o]`` on one tile
    (``g`` the magnitude's cotangent)."""
    tile = tile_of(sizes, BLOCK_D, BLOCK_H, BLOCK_W)
    if interior(tile, sizes, P.MARGINS, BLOCK_D, BLOCK_H, BLOCK_W, x_reach(x_ptr, P, BLOCK_W)):
        _magnitude_backward_tile(x_ptr, g_ptr, e_ptr, y_ptrs, tile, sizes, x_strides, g_strides, y_strides, P,
                                 P.INTERIOR_MODES, False, ACC, BLOCK_D, BLOCK_H, BLOCK_W)  # fmt: skip
    else:
        _magnitude_backward_tile(x_ptr, g_ptr, e_ptr, y_ptrs, tile, sizes, x_strides, g_strides, y_strides, P,
                                 P.MODES, True, ACC, BLOCK_D, BLOCK_H, BLOCK_W)  # fmt: skip


@triton.jit
def _magnitude_backward_tile(
    x_ptr, g_ptr, e_ptr, y_ptrs, tile, sizes, x_strides, g_strides, y_strides, P: tl.constexpr,
    MODES: tl.constexpr, BORDER: tl.constexpr, ACC: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):  # fmt: skip
    outputs, _ = components(x_ptr, x_ptr, tile, sizes, x_strides, P, MODES, False, ACC, BLOCK_D, BLOCK_H, BLOCK_W)
    mask = store_mask(tile, sizes, BORDER, BLOCK_D, BLOCK_H, BLOCK_W)
    scale = tl.load(g_ptr + offsets(tile, g_strides), mask=mask, other=0.0).to(ACC) / _component_norm(
        outputs, e_ptr, P.OUTPUTS, ACC
    )
    at = offsets(tile, y_strides)
    for o in tl.static_range(P.OUTPUTS):
        tl.store(y_ptrs[o] + at, (outputs[o] * scale).to(y_ptrs[o].dtype.element_ty), mask=mask)


@triton.jit
def _adjoint_rows(j, n, MODE: tl.constexpr, R: tl.constexpr):
    """The rows of ``g`` that the ``2 R + 3`` slots of ``A^T`` read at columns ``j`` (clamped into the
    axis): ``j - R .. j + R`` (wrapped around for circular padding; as they are on an interior tile),
    then the border rows 0 and ``n - 1``."""
    top = n - 1
    jc = j
    if MODE != _INTERIOR:
        jc = tl.minimum(j, top)  # lanes past the end of the axis read its last row
    rows = ()
    for k in tl.static_range(2 * R + 1):
        r = jc + (k - R)
        if MODE == _CIRCULAR:
            r = _source(r, n, MODE, R)
        elif MODE != _INTERIOR:
            r = tl.minimum(tl.maximum(r, 0), top)
        rows = rows + (r,)
    return rows + (j * 0, j * 0 + top)


@triton.jit
def _x_rows(j, n, MODE: tl.constexpr, R: tl.constexpr, STEP: tl.constexpr):
    """:func:`_adjoint_rows` along the x axis, whose samples lie ``STEP`` elements apart (see
    :func:`_x_sources`)."""
    if STEP == 1:
        rows = _adjoint_rows(j, n, MODE, R)
    elif MODE == _INTERIOR:
        rows = ()
        for k in tl.static_range(2 * R + 1):
            rows = rows + (j + (k - R) * STEP,)
        rows = rows + (j * 0, j * 0)  # the far slots: a stepped axis has no border rows
    else:
        w = j // STEP
        lane = j - w * STEP
        folded = _adjoint_rows(w, n // STEP, MODE, R)
        rows = ()
        for k in tl.static_range(2 * R + 3):
            rows = rows + (folded[k] * STEP + lane,)
    return rows


@triton.jit
def _read_weight(
    i, j, n, MODE: tl.constexpr, R: tl.constexpr, W: tl.constexpr, FIRST_READS: tl.constexpr, LAST_READS: tl.constexpr
):
    """The weight with which row ``i`` reads sample ``j`` (its terms on ``j`` summed; zero for a row
    outside the axis or a row that valid borders zero)."""
    sources, inside = _sources(i, n, MODE, R, FIRST_READS, LAST_READS)
    total = tl.full(j.shape, 0, tl.float32)
    for t in tl.static_range(2 * R + 1):
        if W[0][t] != 0 or (MODE == _ROWS and (W[1][t] != 0 or W[2][t] != 0)):
            total += tl.where(inside[t] & (sources[t] == j), _row_weight(i, n, t, MODE, W), 0.0)
    ok = (i >= 0) & (i <= n - 1) & _valid_rows(i, n, R, MODE, W)
    return tl.where(ok, total, 0.0)


@triton.jit
def _adjoint_weights(
    j, n, start, BLOCK: tl.constexpr, MODE: tl.constexpr, R: tl.constexpr, W: tl.constexpr,
    ADJOINT_SLOTS: tl.constexpr, FIRST_READS: tl.constexpr, LAST_READS: tl.constexpr,
):  # fmt: skip
    """One chain's 1-D ``A^T`` along one axis, as ``2 R + 3`` weights per column ``j``.

    Slot ``k <= 2 R`` reads row ``i = j + k - R`` with the weight that row gives ``x[j]``: inside, the
    tap ``2 R - k``; near the edges, the sum of the taps that the padding folds onto ``j``, or the border
    row's own weights. Slots ``2 R + 1`` and ``2 R + 2`` read rows 0 and ``n - 1`` for the columns
    farther than ``R`` from them (``torch.gradient``'s second-order edges); ``near_first`` /
    ``near_last`` say whether columns ``start .. start + BLOCK - 1`` hold any, so that only the tiles
    they reach load them. (Circular padding needs none of this: its ``A`` is circulant, ``A^T`` the
    reversed taps wrapped around.)"""
    weights = ()
    for k in tl.static_range(2 * R + 1):
        w = tl.full(j.shape, 0, tl.float32)
        if ADJOINT_SLOTS[k]:
            w = _read_weight(j + (k - R), j, n, MODE, R, W, FIRST_READS, LAST_READS)
        weights = weights + (w,)
    far_first = tl.full(j.shape, 0, tl.float32)
    far_last = tl.full(j.shape, 0, tl.float32)
    near_first = n < 0
    near_last = n < 0
    if ADJOINT_SLOTS[2 * R + 1] or ADJOINT_SLOTS[2 * R + 2]:
        zero = n * 0
        first, first_in = _sources(zero, n, MODE, R, FIRST_READS, LAST_READS)
        last, last_in = _sources(zero + n - 1, n, MODE, R, FIRST_READS, LAST_READS)
        for t in tl.static_range(2 * R + 1):
            if ADJOINT_SLOTS[2 * R + 1]:
                reads = first_in[t] & (_row_weight(zero, n, t, MODE, W) != 0) & (first[t] > R)
                near_first = near_first | (reads & (first[t] >= start) & (first[t] < start + BLOCK))
            if ADJOINT_SLOTS[2 * R + 2]:
                reads = last_in[t] & (_row_weight(zero + n - 1, n, t, MODE, W) != 0) & (last[t] < n - 1 - R)
                near_last = near_last | (reads & (last[t] >= start) & (last[t] < start + BLOCK))
        if ADJOINT_SLOTS[2 * R + 1]:
            far_first = tl.where(j > R, _read_weight(j * 0, j, n, MODE, R, W, FIRST_READS, LAST_READS), 0.0)
        if ADJOINT_SLOTS[2 * R + 2]:
            far_last = tl.where(
                j < n - 1 - R, _read_weight(j * 0 + n - 1, j, n, MODE, R, W, FIRST_READS, LAST_READS), 0.0
            )
    return weights + (far_first, far_last), near_first, near_last


@triton.jit
def _adjoint_term(v, k: tl.constexpr, MODE: tl.constexpr, R: tl.constexpr, W: tl.constexpr, weights):
    """``v``, read by slot ``k`` along one axis, times its weight there; a zero weight never
    touches ``v`` (a sample that a column does not read never reaches it, inf included)."""
    if MODE == _NONE:
        out = v
    elif MODE == _CIRCULAR or MODE == _INTERIOR:
        out = v * W[0][2 * R - k]
    else:
        out = tl.where(weights[k] != 0, weights[k] * v, 0.0)
    return out


@triton.jit
def _adjoint_row(
    ptrs, zero, xr, sx, xw, near_x, far_x,
    MODE: tl.constexpr, R: tl.constexpr, W: tl.constexpr, ADJOINT_SLOTS: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    """One chain's x part of ``A^T`` along the row of ``g`` that one (z, y) slot pair reads.
    The far slots run only on tiles that hold the columns they reach (a uniform branch)."""
    out = zero
    for k in tl.static_range(2 * R + 3):
        if ADJOINT_SLOTS[k] and (MODE != _INTERIOR or (k <= 2 * R and W[0][2 * R - k] != 0)):
            if k <= 2 * R:
                out += _adjoint_term(tl.load(ptrs + xr[k] * sx).to(ACC), k, MODE, R, W, xw)
            elif k == 2 * R + 1:
                if near_x:
                    out += _adjoint_term(tl.load(ptrs + xr[k] * sx).to(ACC), k, MODE, R, W, xw)
            else:
                if far_x:
                    out += _adjoint_term(tl.load(ptrs + xr[k] * sx).to(ACC), k, MODE, R, W, xw)
    return out


@triton.jit
def _adjoint_plane(
    ptrs, zero, yr, xr, sy, sx, yw, near_y, far_y, xw, near_x, far_x,
    MODES: tl.constexpr, RADII: tl.constexpr, WC: tl.constexpr, ADJOINT_SLOTS: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    """One chain's y and x parts of ``A^T`` on the rows of ``g`` that one z slot reads."""
    out = zero
    R: tl.constexpr = RADII[1]
    for k in tl.static_range(2 * R + 3):
        if ADJOINT_SLOTS[1][k] and (MODES[1] != _INTERIOR or (k <= 2 * R and WC[1][0][2 * R - k] != 0)):
            if k <= 2 * R:
                h = _adjoint_row(ptrs + yr[k] * sy, zero, xr, sx, xw, near_x, far_x,
                                 MODES[2], RADII[2], WC[2], ADJOINT_SLOTS[2], ACC)  # fmt: skip
                out += _adjoint_term(h, k, MODES[1], R, WC[1], yw)
            elif k == 2 * R + 1:
                if near_y:
                    h = _adjoint_row(ptrs + yr[k] * sy, zero, xr, sx, xw, near_x, far_x,
                                     MODES[2], RADII[2], WC[2], ADJOINT_SLOTS[2], ACC)  # fmt: skip
                    out += _adjoint_term(h, k, MODES[1], R, WC[1], yw)
            else:
                if far_y:
                    h = _adjoint_row(ptrs + yr[k] * sy, zero, xr, sx, xw, near_x, far_x,
                                     MODES[2], RADII[2], WC[2], ADJOINT_SLOTS[2], ACC)  # fmt: skip
                    out += _adjoint_term(h, k, MODES[1], R, WC[1], yw)
    return out


@triton.jit
def _axis_adjoint(
    j, n, start, BLOCK: tl.constexpr, MODE: tl.constexpr, R: tl.constexpr, W: tl.constexpr,
    ADJOINT_SLOTS: tl.constexpr, FIRST_READS: tl.constexpr, LAST_READS: tl.constexpr, zero,
):  # fmt: skip
    """:func:`_adjoint_weights` on axes with border rules (none for identity, circular and interior axes)."""
    if MODE != _NONE and MODE != _CIRCULAR and MODE != _INTERIOR:
        out = _adjoint_weights(j, n, start, BLOCK, MODE, R, W, ADJOINT_SLOTS, FIRST_READS, LAST_READS)
    else:
        never = n < 0
        out = _zeros(zero, 2 * R + 3), never, never
    return out


@triton.jit
def _adjoint_part(
    g_ptr, tile, sizes, strides, zero, zr, yr, xr, P: tl.constexpr, MODES: tl.constexpr, c: tl.constexpr,
    ACC: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """``A_c^T g_c`` for chain ``c`` on the tile: per axis, the slots of :func:`_adjoint_weights` (along a
    stepped x axis, of its sample indices)."""
    RADII: tl.constexpr = P.RADII
    FIRST_READS: tl.constexpr = P.FIRST_READS
    LAST_READS: tl.constexpr = P.LAST_READS
    WC: tl.constexpr = P.STENCIL_WEIGHTS[c]
    ADJOINT_SLOTS: tl.constexpr = P.ADJOINT_SLOTS[c]
    STEP: tl.constexpr = P.STEP
    _, _, zi, rows, cols, _, _, _ = tile
    _, D, H, W = sizes
    zw, near_z, far_z = _axis_adjoint(
        zi, D, tile[5], BLOCK_D, MODES[0], RADII[0], WC[0], ADJOINT_SLOTS[0], FIRST_READS[0], LAST_READS[0], zero
    )
    yw, near_y, far_y = _axis_adjoint(
        rows, H, tile[6], BLOCK_H, MODES[1], RADII[1], WC[1], ADJOINT_SLOTS[1], FIRST_READS[1], LAST_READS[1], zero
    )
    if STEP == 1:
        xw, near_x, far_x = _axis_adjoint(
            cols, W, tile[7], BLOCK_W, MODES[2], RADII[2], WC[2], ADJOINT_SLOTS[2], FIRST_READS[2], LAST_READS[2], zero
        )
    else:
        # In samples: the tile's columns reach (BLOCK_W - 1) // STEP + 1 samples past the first one's.
        xw, near_x, far_x = _axis_adjoint(
            cols // STEP,
            W // STEP,
            tile[7] // STEP,
            (BLOCK_W - 1) // STEP + 2,
            MODES[2],
            RADII[2],
            WC[2],
            ADJOINT_SLOTS[2],
            FIRST_READS[2],
            LAST_READS[2],
            zero,
        )
    base = g_ptr + tile[0] * strides[0] + tile[1] * strides[1]
    sz = strides[2]
    sy = strides[3]
    sx = strides[4]
    part = zero
    R: tl.constexpr = RADII[0]
    for k in tl.static_range(2 * R + 3):
        if ADJOINT_SLOTS[0][k] and (MODES[0] != _INTERIOR or (k <= 2 * R and WC[0][0][2 * R - k] != 0)):
            if k <= 2 * R:
                h = _adjoint_plane(base + zr[k] * sz, zero, yr, xr, sy, sx, yw, near_y, far_y, xw, near_x, far_x,
                                   MODES, RADII, WC, ADJOINT_SLOTS, ACC)  # fmt: skip
                part += _adjoint_term(h, k, MODES[0], R, WC[0], zw)
            elif k == 2 * R + 1:
                if near_z:
                    h = _adjoint_plane(base + zr[k] * sz, zero, yr, xr, sy, sx, yw, near_y, far_y, xw, near_x,
                                       far_x, MODES, RADII, WC, ADJOINT_SLOTS, ACC)  # fmt: skip
                    part += _adjoint_term(h, k, MODES[0], R, WC[0], zw)
            else:
                if far_z:
                    h = _adjoint_plane(base + zr[k] * sz, zero, yr, xr, sy, sx, yw, near_y, far_y, xw, near_x,
                                       far_x, MODES, RADII, WC, ADJOINT_SLOTS, ACC)  # fmt: skip
                    part += _adjoint_term(h, k, MODES[0], R, WC[0], zw)
    if P.DIVISORS[c] != 1:
        part = part / P.DIVISORS[c]
    return part


@triton.jit
def _adjoint_kernel(
    g_ptrs, out_ptr, neg_ptr, f_ptr, fg_ptr, sizes, g_strides, out_strides, P: tl.constexpr, NEG: tl.constexpr,
    FACTORS: tl.constexpr, ACC: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """``A^T g = sum_c A_c^T g_c`` on one tile, chain ``c`` reading the cotangent of its output at
    ``g_ptrs[c]`` with strides ``g_strides[c]``; with ``FACTORS``, each chain's part times its output's factor
    at ``f_ptr`` and the scalar at ``fg_ptr`` (a fused loss's scale and cotangent, applied to its int16 signs);
    with ``NEG``, ``-A^T g`` written to ``neg_ptr`` too (laid out like ``out_ptr``: a fused loss's target
    gradient). A tile whose columns only interior rows read (``P.ADJOINT_MARGINS``) takes the reversed taps
    with no border weights (``P.INTERIOR_MODES``)."""
    tile = tile_of(sizes, BLOCK_D, BLOCK_H, BLOCK_W)
    if interior(tile, sizes, P.ADJOINT_MARGINS, BLOCK_D, BLOCK_H, BLOCK_W):
        _adjoint_tile(g_ptrs, out_ptr, neg_ptr, f_ptr, fg_ptr, tile, sizes, g_strides, out_strides, P,
                      P.INTERIOR_MODES, False, NEG, FACTORS, ACC, BLOCK_D, BLOCK_H, BLOCK_W)  # fmt: skip
    else:
        _adjoint_tile(g_ptrs, out_ptr, neg_ptr, f_ptr, fg_ptr, tile, sizes, g_strides, out_strides, P, P.MODES,
                      True, NEG, FACTORS, ACC, BLOCK_D, BLOCK_H, BLOCK_W)  # fmt: skip


@triton.jit
def _adjoint_tile(
    g_ptrs, out_ptr, neg_ptr, f_ptr, fg_ptr, tile, sizes, g_strides, out_strides, P: tl.constexpr,
    MODES: tl.constexpr,
    BORDER: tl.constexpr, NEG: tl.constexpr, FACTORS: tl.constexpr, ACC: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """:func:`_adjoint_kernel` on a tile, under border rules ``MODES`` (``BORDER``: stores are masked)."""
    RADII: tl.constexpr = P.RADII
    zero = tl.full([BLOCK_D, BLOCK_H, BLOCK_W], 0, ACC)
    zr = _wide(_adjoint_rows(tile[2], sizes[1], MODES[0], RADII[0]), 2 * RADII[0] + 3)  # z offsets reach past int32
    yr = _adjoint_rows(tile[3], sizes[2], MODES[1], RADII[1])
    xr = _x_rows(tile[4], sizes[3], MODES[2], RADII[2], P.STEP)
    acc = zero
    for c in tl.static_range(P.CHAINS):
        part = _adjoint_part(g_ptrs[c], tile, sizes, g_strides[c], zero, zr, yr, xr, P, MODES, c, ACC,
                             BLOCK_D, BLOCK_H, BLOCK_W)  # fmt: skip
        if FACTORS:
            part = part * tl.load(f_ptr + P.OUTPUT_OF[c]).to(ACC)
        acc += part
    if FACTORS:
        acc = acc * tl.load(fg_ptr).to(ACC)
    mask = store_mask(tile, sizes, BORDER, BLOCK_D, BLOCK_H, BLOCK_W)
    at = offsets(tile, out_strides)
    tl.store(out_ptr + at, acc.to(out_ptr.dtype.element_ty), mask=mask)
    if NEG:
        tl.store(neg_ptr + at, (-acc).to(neg_ptr.dtype.element_ty), mask=mask)
