"""The fused losses' kernels, on the components of ``A`` that :func:`~torchgrad._triton.kernels.components`
computes for a tile (the plan ``P`` as the operator kernels take it, the penalty as one more compile-time
argument ``L``, :class:`~torchgrad._triton.penalty_codes.Penalty`):

- :func:`_loss_kernel`: the penalty per element, zero where a mask leaves it out, summed per component into
  one row of per-program partial sums (and, under a mask, the number of elements that count);
- :func:`_slopes_kernel`: ``grad * scale_c * d penalty / d a`` per component (zero where left out), the
  cotangents that the adjoint kernel takes;
- :func:`_edge_weights_kernel`: the edge-aware weights of an image, ``exp(-mean over channels |A image|)``,
  which the edge-aware penalty reads as its ``b``.

:func:`_total_kernel` adds the partial sums of every program (in float64) into the loss and writes the scale
of each component (its weight over the number of elements that count), which the backward reads.

Penalties arrive as a code (:mod:`torchgrad._triton.penalty_codes`) and a tuple of parameters, both
compile-time constants. Masks: an element counts where every sample its stencil reads with a non-zero
weight is valid (samples that zero padding leaves out are not read; rows that ``valid`` padding zeroes read
nothing), as the eager executor's ``op.support()`` finds it. As in :mod:`~torchgrad._triton.kernels`, only
Triton's builtins are used (``tl.reduce`` with a jitted ``_add``, not ``tl.sum``).
"""

from __future__ import annotations

import triton
import triton.language as tl

from . import penalty_codes
from .kernels import components, interior, offsets, store_mask, tile_of, x_reach
from .rows import INTERIOR, ROWS, row_weight, valid_rows

_L1: tl.constexpr = tl.constexpr(penalty_codes.L1)
_SQUARED_L2: tl.constexpr = tl.constexpr(penalty_codes.SQUARED_L2)
_CHARBONNIER: tl.constexpr = tl.constexpr(penalty_codes.CHARBONNIER)
_GRADIENT_DIFFERENCE: tl.constexpr = tl.constexpr(penalty_codes.GRADIENT_DIFFERENCE)
_EDGE_AWARE: tl.constexpr = tl.constexpr(penalty_codes.EDGE_AWARE)


@triton.jit
def _add(a, b):
    return a + b


@triton.jit
def _tile_sum(v):
    """The sum of a ``BLOCK_D x BLOCK_H x BLOCK_W`` tile."""
    return tl.reduce(tl.reduce(tl.reduce(v, 2, _add), 1, _add), 0, _add)


@triton.jit
def _sign(a):
    """``torch.sign``: -1, 0 or 1, and 0 for NaN (``(0 < a) - (a < 0)``), so that autograd's gradient of
    ``|a|`` at a NaN is 0."""
    return tl.where(a > 0, 1.0, tl.where(a < 0, -1.0, 0.0)).to(a.dtype)


@triton.jit
def _sqrt(v, ACC: tl.constexpr):
    """A correctly rounded square root (as torch's)."""
    if ACC == tl.float64:
        out = tl.sqrt(v)
    else:
        out = tl.sqrt_rn(v)
    return out


@triton.jit
def _hypot_parts(a, EPS: tl.constexpr, ACC: tl.constexpr):
    """``hypot(a, eps) = big * root`` without a square that leaves the dtype's range: ``big = max(|a|, eps)``,
    ``root = sqrt(1 + (min(|a|, eps) / big)^2)`` in ``[1, sqrt(2)]``. Also returns ``a / big`` (``|.| <= 1``), so
    that the slope ``a / hypot(a, eps)`` is ``(a / big) / root``: 0 where ``a = 0``. ``eps`` is rounded to the
    accumulator's dtype (0 below its range, then ``hypot(a, 0) = |a|`` and the slope ``sign(a)``, as the eager
    penalty's); a NaN ``a`` gives NaN (the comparisons leave it in ``big``)."""
    eps = tl.full([], EPS, tl.float64).to(ACC)
    m = tl.abs(a)
    big = tl.where(m < eps, eps, m)
    safe = tl.where(big == 0, 1.0, big).to(ACC)  # a = 0 and eps rounded to 0: 0 / 1, no 0 / 0
    r = tl.where(m < eps, m, eps) / safe
    return big, _sqrt(1.0 + r * r, ACC), a / safe


@triton.jit
def _power(r, alpha: tl.constexpr):
    """``r ** alpha`` for ``r >= 0`` (0 at 0 for ``alpha > 0``), through float64 ``exp`` and ``log`` (a GPU's
    float32 ones are approximations; the float64 ones are accurate, and the loss is bound by memory)."""
    if alpha == 1:
        out = r
    elif alpha == 2:
        out = r * r
    else:
        positive = tl.where(r > 0, r, 1.0).to(tl.float64)
        power = tl.exp(alpha * tl.log(positive)).to(r.dtype)
        out = tl.where(r > 0, power, r * 0.0)  # NaN stays NaN
    return out


@triton.jit
def penalty_value(a, b, PENALTY: tl.constexpr, PARAMS: tl.constexpr, ACC: tl.constexpr):
    """The per-element loss of component values ``a`` (``A (input - target)``, or ``A input`` with ``b``
    the target's component, or the edge-aware weight)."""
    if PENALTY == _L1:
        v = tl.abs(a)
    elif PENALTY == _SQUARED_L2:
        v = a * a
    elif PENALTY == _CHARBONNIER:
        big, root, _ = _hypot_parts(a, PARAMS[0], ACC)
        v = big * root
    elif PENALTY == _GRADIENT_DIFFERENCE:
        v = _power(tl.abs(tl.abs(a) - tl.abs(b)), PARAMS[0])
    else:  # _EDGE_AWARE
        v = tl.abs(a) * b
    return v


@triton.jit
def penalty_slope(a, b, PENALTY: tl.constexpr, PARAMS: tl.constexpr, ACC: tl.constexpr):
    """``d value / d a`` (the gradient difference's is 0 where ``|a| = |b|``, as the eager penalty's)."""
    if PENALTY == _L1:
        d = _sign(a)
    elif PENALTY == _SQUARED_L2:
        d = 2 * a
    elif PENALTY == _CHARBONNIER:
        _, root, scaled = _hypot_parts(a, PARAMS[0], ACC)
        d = scaled / root
    elif PENALTY == _EDGE_AWARE:
        d = _sign(a) * b
    else:  # _GRADIENT_DIFFERENCE
        r = tl.abs(a) - tl.abs(b)
        if PARAMS[0] == 1:
            s = _sign(r)
        else:
            m = tl.abs(r)
            s = tl.where(m == 0, 0.0, PARAMS[0] * _power(m, PARAMS[0] - 1)) * _sign(r)
        d = s * _sign(a)
    return d


@triton.jit
def _reads(i, n, MODE: tl.constexpr, W: tl.constexpr, t: tl.constexpr):
    """Whether slot ``t`` of rows ``i`` carries a weight (the border rows of ``ROWS`` have their own; an
    interior tile's rows read the taps alone)."""
    if MODE == ROWS:
        out = row_weight(i, n, t, MODE, W) != 0
    elif MODE == INTERIOR and W[0][t] == 0:
        out = i < 0
    else:
        out = i >= 0
    return out


@triton.jit
def _holes(
    bad, c: tl.constexpr, hole, t0: tl.constexpr, t1: tl.constexpr, t2: tl.constexpr, zi, rows, cols, D, H, W,
    MODES: tl.constexpr, STENCIL_WEIGHTS: tl.constexpr, NONZERO: tl.constexpr,
):  # fmt: skip
    """``bad`` with the elements of component ``c`` whose slots ``(t0, t1, t2)`` read a hole added."""
    if NONZERO[c][0][t0]:
        if NONZERO[c][1][t1]:
            if NONZERO[c][2][t2]:
                bad = bad | (
                    hole
                    & _reads(zi, D, MODES[0], STENCIL_WEIGHTS[c][0], t0)
                    & _reads(rows, H, MODES[1], STENCIL_WEIGHTS[c][1], t1)
                    & _reads(cols, W, MODES[2], STENCIL_WEIGHTS[c][2], t2)
                )
    return bad


@triton.jit
def _counted(
    m_base, mask, tile, sizes, reads, m_strides, P: tl.constexpr, MODES: tl.constexpr, LOSS_MASK: tl.constexpr
):  # fmt: skip
    """Per output, the tile's elements that count: inside the tensor and, under a mask, reading valid
    samples only, through every chain that the output adds (the mask is read once per slot and serves
    every chain; ``reads`` the samples each slot read, from :func:`~torchgrad._triton.kernels.components`)."""
    CHAINS: tl.constexpr = P.CHAINS
    NONZERO: tl.constexpr = P.NONZERO
    STENCIL_WEIGHTS: tl.constexpr = P.STENCIL_WEIGHTS
    RADII: tl.constexpr = P.RADII
    _, _, zi, rows, cols, _, _, _ = tile
    _, D, H, W = sizes
    zs, zm, ys, ym, xs, xm = reads
    bad0 = mask & (D < 0)
    bad1 = bad0
    bad2 = bad0
    if LOSS_MASK:
        for t0 in tl.static_range(2 * RADII[0] + 1):
            for t1 in tl.static_range(2 * RADII[1] + 1):
                for t2 in tl.static_range(2 * RADII[2] + 1):
                    read = NONZERO[0][0][t0] and NONZERO[0][1][t1] and NONZERO[0][2][t2]
                    if CHAINS > 1:
                        read = read or (NONZERO[1][0][t0] and NONZERO[1][1][t1] and NONZERO[1][2][t2])
                    if CHAINS > 2:
                        read = read or (NONZERO[2][0][t0] and NONZERO[2][1][t1] and NONZERO[2][2][t2])
                    if read:
                        inside = mask & zm[t0] & ym[t1] & xm[t2]
                        at = zs[t0].to(tl.int64) * m_strides[2] + (ys[t1] * m_strides[3] + xs[t2] * m_strides[4])
                        hole = tl.load(m_base + at, mask=inside, other=1) == 0
                        bad0 = _holes(
                            bad0, 0, hole, t0, t1, t2, zi, rows, cols, D, H, W, MODES, STENCIL_WEIGHTS, NONZERO
                        )
                        if CHAINS > 1:
                            bad1 = _holes(
                                bad1, 1, hole, t0, t1, t2, zi, rows, cols, D, H, W, MODES, STENCIL_WEIGHTS, NONZERO
                            )
                        if CHAINS > 2:
                            bad2 = _holes(
                                bad2, 2, hole, t0, t1, t2, zi, rows, cols, D, H, W, MODES, STENCIL_WEIGHTS, NONZERO
                            )
    bads = (bad0, bad1, bad2)
    oks = ()
    for c in tl.static_range(CHAINS):
        # Rows that valid borders zero read nothing, so they always count.
        zeroed = ~(
            valid_rows(zi, D, RADII[0], MODES[0], STENCIL_WEIGHTS[c][0])
            & valid_rows(rows, H, RADII[1], MODES[1], STENCIL_WEIGHTS[c][1])
            & valid_rows(cols, W, RADII[2], MODES[2], STENCIL_WEIGHTS[c][2])
        )
        oks = oks + (zeroed | ~bads[c],)
    counted = ()
    for o in tl.static_range(P.OUTPUTS):
        ok = mask
        for c in tl.static_range(CHAINS):
            if P.OUTPUT_OF[c] == o:
                ok = ok & oks[c]
        counted = counted + (ok,)
    return counted


@triton.jit
def _loss_kernel(
    x_ptr, t_ptr, c_ptrs, m_ptr, s_ptr, sizes, x_strides, c_strides, m_strides,
    P: tl.constexpr, L: tl.constexpr, ACC: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """The penalty on the components of ``A x`` (``A (x - t)`` with ``L.SUBTRACT``, the target read with
    ``x``'s strides; with ``L.REFS``, ``c_ptrs[o]`` holds the target's component, which a linear penalty
    subtracts and the others compare with), zero where the mask at ``m_ptr`` leaves an element out
    (``L.MASK``): row ``program_id`` of ``s_ptr`` gets each component's sum over the tile and the number of
    elements that count."""
    tile = tile_of(sizes, BLOCK_D, BLOCK_H, BLOCK_W)
    if interior(tile, sizes, P.MARGINS, BLOCK_D, BLOCK_H, BLOCK_W, x_reach(x_ptr, P, BLOCK_W)):
        _penalty_tile(x_ptr, t_ptr, c_ptrs, m_ptr, s_ptr, s_ptr, tile, sizes, x_strides, c_strides, m_strides, P,
                      P.INTERIOR_MODES, False, L, False, ACC, BLOCK_D, BLOCK_H, BLOCK_W)  # fmt: skip
    else:
        _penalty_tile(x_ptr, t_ptr, c_ptrs, m_ptr, s_ptr, s_ptr, tile, sizes, x_strides, c_strides, m_strides, P,
                      P.MODES, True, L, False, ACC, BLOCK_D, BLOCK_H, BLOCK_W)  # fmt: skip


@triton.jit
def _slopes_kernel(
    x_ptr, t_ptr, c_ptrs, m_ptr, s_ptr, g_ptr, sizes, x_strides, c_strides, m_strides,
    P: tl.constexpr, L: tl.constexpr, ACC: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """The loss's cotangents of the components, as :func:`_loss_kernel` reads its inputs: ``c_ptrs[o]`` gets
    ``grad * scale_o * d value / d a`` (zero where left out; ``grad`` the scalar at ``g_ptr``, ``scale_o`` at
    ``s_ptr``; with ``L.REFS`` it first holds the target's component, which the slope overwrites), or, in int16
    buffers (the L1 penalty's), ``d value / d a`` alone: a sign, which the adjoint scales."""
    tile = tile_of(sizes, BLOCK_D, BLOCK_H, BLOCK_W)
    if interior(tile, sizes, P.MARGINS, BLOCK_D, BLOCK_H, BLOCK_W, x_reach(x_ptr, P, BLOCK_W)):
        _penalty_tile(x_ptr, t_ptr, c_ptrs, m_ptr, s_ptr, g_ptr, tile, sizes, x_strides, c_strides, m_strides, P,
                      P.INTERIOR_MODES, False, L, True, ACC, BLOCK_D, BLOCK_H, BLOCK_W)  # fmt: skip
    else:
        _penalty_tile(x_ptr, t_ptr, c_ptrs, m_ptr, s_ptr, g_ptr, tile, sizes, x_strides, c_strides, m_strides, P,
                      P.MODES, True, L, True, ACC, BLOCK_D, BLOCK_H, BLOCK_W)  # fmt: skip


@triton.jit
def _penalty_tile(
    x_ptr, t_ptr, c_ptrs, m_ptr, s_ptr, g_ptr, tile, sizes, x_strides, c_strides, m_strides,
    P: tl.constexpr, MODES: tl.constexpr, BORDER: tl.constexpr, L: tl.constexpr, SLOPES: tl.constexpr,
    ACC: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """:func:`_loss_kernel` (``SLOPES`` false) or :func:`_slopes_kernel` on a tile, component by component
    (``accs[o]``, output ``o`` of ``A``, which adds the chains ``k`` with ``P.OUTPUT_OF[k] == o``)."""
    PENALTY: tl.constexpr = L.PENALTY
    PARAMS: tl.constexpr = L.PARAMS
    OUTPUTS: tl.constexpr = P.OUTPUTS
    accs, reads = components(x_ptr, t_ptr, tile, sizes, x_strides, P, MODES, L.SUBTRACT, ACC, BLOCK_D, BLOCK_H,
                             BLOCK_W)  # fmt: skip
    mask = store_mask(tile, sizes, BORDER, BLOCK_D, BLOCK_H, BLOCK_W)
    m_base = m_ptr
    if L.MASK:
        m_base = m_ptr + tile[0] * m_strides[0] + tile[1] * m_strides[1]
    counted = _counted(m_base, mask, tile, sizes, reads, m_strides, P, MODES, L.MASK)
    c_off = offsets(tile, c_strides)
    row = s_ptr + tl.program_id(0).to(tl.int64) * (OUTPUTS + 1)
    number = tl.full(mask.shape, 0, ACC)
    grad = 0.0
    if SLOPES:
        grad = tl.load(g_ptr).to(ACC)
    for c in tl.static_range(OUTPUTS):
        a = accs[c]
        b = a
        if L.REFS:
            b = tl.load(c_ptrs[c] + c_off, mask=mask, other=0.0).to(ACC)
            if PENALTY == _L1 or PENALTY == _SQUARED_L2 or PENALTY == _CHARBONNIER:
                a = a - b  # linear: A (input - target) = A input - A target
        if SLOPES:
            d = penalty_slope(a, b, PENALTY, PARAMS, ACC)
            if c_ptrs[c].dtype.element_ty != tl.int16:  # int16 slopes hold a sign: the adjoint scales it
                d = d * (grad * tl.load(s_ptr + c).to(ACC))
            d = tl.where(counted[c], d, 0.0)
            tl.store(c_ptrs[c] + c_off, d.to(c_ptrs[c].dtype.element_ty), mask=mask)
        else:
            v = tl.where(counted[c], penalty_value(a, b, PENALTY, PARAMS, ACC), 0.0)
            tl.store(row + c, _tile_sum(v).to(s_ptr.dtype.element_ty))
            number += counted[c].to(ACC)
    if not SLOPES:
        tl.store(row + OUTPUTS, _tile_sum(number).to(s_ptr.dtype.element_ty))


@triton.jit
def _edge_weights_kernel(
    image_ptr, w_ptrs, sizes, image_strides, w_strides, copies,
    P: tl.constexpr, ACC: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """The edge-aware weights of an image whose channels lie along z, every channel in one tile: per component,
    ``exp(-mean over the channels of |A image|)`` written to channels ``0 .. copies - 1`` of ``w_ptrs[c]``."""
    tile = tile_of(sizes, BLOCK_D, BLOCK_H, BLOCK_W)
    if interior(tile, sizes, P.MARGINS, BLOCK_D, BLOCK_H, BLOCK_W, x_reach(image_ptr, P, BLOCK_W)):
        _edge_weights_tile(
            image_ptr,
            w_ptrs,
            tile,
            sizes,
            image_strides,
            w_strides,
            copies,
            P,
            P.INTERIOR_MODES,
            False,
            ACC,
            BLOCK_D,
            BLOCK_H,
            BLOCK_W,
        )
    else:
        _edge_weights_tile(image_ptr, w_ptrs, tile, sizes, image_strides, w_strides, copies, P, P.MODES, True, ACC,
                           BLOCK_D, BLOCK_H, BLOCK_W)  # fmt: skip


@triton.jit
def _edge_weights_tile(
    image_ptr, w_ptrs, tile, sizes, image_strides, w_strides, copies, P: tl.constexpr, MODES: tl.constexpr,
    BORDER: tl.constexpr, ACC: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    accs, _ = components(image_ptr, image_ptr, tile, sizes, image_strides, P, MODES, False, ACC, BLOCK_D, BLOCK_H,
                         BLOCK_W)  # fmt: skip
    mask = store_mask(tile, sizes, BORDER, BLOCK_D, BLOCK_H, BLOCK_W)
    zi = tile[2]
    inside = (zi < copies) & (tile[3] < sizes[2]) & (tile[4] < sizes[3])
    plane = (tile[0] * w_strides[0] + tile[1] * w_strides[1]) + (tile[3] * w_strides[3] + tile[4] * w_strides[4])
    channels = tl.cast(sizes[1], ACC)
    every = tl.full(zi.shape, 0, tl.float64)  # broadcasts the weight to every channel
    for c in tl.static_range(P.OUTPUTS):
        total = tl.reduce(tl.where(mask, tl.abs(accs[c]), 0.0), 0, _add, keep_dims=True)
        # exp in float64: a GPU's float32 exp is an approximation (one per pixel and component: cheap)
        weight = tl.exp(-(total / channels).to(tl.float64)) + every
        tl.store(w_ptrs[c] + plane + zi.to(tl.int64) * w_strides[2], weight.to(w_ptrs[c].dtype.element_ty),
                 mask=inside)  # fmt: skip


@triton.jit
def _total_kernel(
    p_ptr, out_ptr, scale_ptr, programs, elements,
    OUTPUTS: tl.constexpr, WEIGHTS: tl.constexpr, MEAN: tl.constexpr, LOSS_MASK: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """The loss from the partial sums of ``programs`` rows: ``sum_c WEIGHTS[c] sum_c`` in float64, over the
    number of elements that count (``MEAN``: the masked count, else ``elements``; at least 1, so that a mean
    over no elements is 0); writes the loss and each component's scale ``WEIGHTS[c] / number``."""
    lanes = tl.arange(0, BLOCK).to(tl.int64)
    s0 = tl.full([BLOCK], 0, tl.float64)
    s1 = s0
    s2 = s0
    n = s0
    for start in range(0, programs, BLOCK):
        i = start + lanes
        ok = i < programs
        s0 += tl.load(p_ptr + i * (OUTPUTS + 1), mask=ok, other=0.0).to(tl.float64)
        if OUTPUTS > 1:
            s1 += tl.load(p_ptr + i * (OUTPUTS + 1) + 1, mask=ok, other=0.0).to(tl.float64)
        if OUTPUTS > 2:
            s2 += tl.load(p_ptr + i * (OUTPUTS + 1) + 2, mask=ok, other=0.0).to(tl.float64)
        if LOSS_MASK:
            n += tl.load(p_ptr + i * (OUTPUTS + 1) + OUTPUTS, mask=ok, other=0.0).to(tl.float64)
    sums = (tl.reduce(s0, 0, _add), tl.reduce(s1, 0, _add), tl.reduce(s2, 0, _add))
    if not MEAN:
        number = tl.full([], 1.0, tl.float64)
    elif LOSS_MASK:
        number = tl.maximum(tl.reduce(n, 0, _add), 1.0)
    else:
        number = tl.maximum(tl.cast(elements, tl.float64), 1.0)
    # The weights as float64 constants (a bare Python float would reach float64 through float32).
    weights = ()
    for c in tl.static_range(OUTPUTS):
        weights = weights + (tl.full([], WEIGHTS[c], tl.float64),)
    total = sums[0] * weights[0]
    for c in tl.static_range(1, OUTPUTS):
        total += sums[c] * weights[c]
    loss = total / number
    if out_ptr.dtype.element_ty != tl.float64:  # through float32 (the interpreter cannot go to bfloat16 directly)
        loss = loss.to(tl.float32)
    tl.store(out_ptr, loss.to(out_ptr.dtype.element_ty))
    for c in tl.static_range(OUTPUTS):
        tl.store(scale_ptr + c, (weights[c] / number).to(scale_ptr.dtype.element_ty))
