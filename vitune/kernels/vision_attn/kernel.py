"""Triton forward kernel for non-causal vision-encoder attention on packed or batched input.

Each program takes a tile of BLOCK_M consecutive query tokens of one head. In the packed
layout a tile may span several segments (64-token windows fit two to a 128-token tile): every
row finds its own segment by a binary search over cu_seqlens, the program walks the union of
its rows' key ranges, and a row attends only to keys of its own segment. So the grid is sized
from the token count alone: no max_seqlen, no host-device sync, and no idle programs for
short segments.

The head dim is computed on up to three power-of-two chunks of widths D0, D1, D2 at column
offsets 0, O1, O2, so head_dim 80 costs 64 + 16 columns rather than 128. In split mode the last
chunk ends exactly at HEAD_DIM and may overlap the one before it (72 = [0, 64) + [56, 72)):
no load or store ever needs a column mask, and the overlapped columns of its Q chunk are
zeroed so they count once in Q K^T; both chunks then produce the same output columns. Only
padded mode (one chunk wider than HEAD_DIM) masks columns. Softmax runs in base 2 with the
scale folded in.

With TMA, keys and values arrive through tensor descriptors (Hopper's copy engine writes the
tiles straight into shared memory, no address arithmetic or row masks in the loop): one 2D
descriptor per chunk over the rows of all tokens, a head being a column offset. Rows past a
segment are other segments' data or zero-filled past the tensor, and the score mask keeps
them out, as in the pointer path.
"""

import triton
import triton.language as tl


@triton.jit
def _trig(cos_base, sin_base, rows, row_mask, stride_ct, OFF: tl.constexpr,
          WIDTH: tl.constexpr, HEAD_DIM: tl.constexpr):
    """[rows, WIDTH] fp32 cos and sin tiles of columns OFF.. (zero past HEAD_DIM)."""
    cols = OFF + tl.arange(0, WIDTH)
    mask = row_mask[:, None] & (cols < HEAD_DIM)[None, :]
    offsets = rows.to(tl.int64)[:, None] * stride_ct + cols[None, :]
    cos = tl.load(cos_base + offsets, mask=mask, other=0.0).to(tl.float32)
    sin = tl.load(sin_base + offsets, mask=mask, other=0.0).to(tl.float32)
    return cos, sin


@triton.jit
def _rotate(x, base, rows, row_mask, stride_t, cos, sin, OFF: tl.constexpr,
            WIDTH: tl.constexpr, HEAD_DIM: tl.constexpr):
    """x, the [rows, WIDTH] tile of columns OFF.. of base's rows, as x * cos +
    rotate_half(x) * sin in fp32, cast to x's dtype. rotate_half(x)[j] is -x[j + HEAD_DIM/2]
    in the first half and x[j - HEAD_DIM/2] in the second: one more load of the same rows
    (cache hits). Columns past HEAD_DIM stay zero (cos and sin are zero there)."""
    HALF: tl.constexpr = HEAD_DIM // 2
    cols = OFF + tl.arange(0, WIDTH)
    first = cols < HALF
    partner_cols = tl.where(first, cols + HALF, cols - HALF)
    partner = tl.load(base + rows.to(tl.int64)[:, None] * stride_t + partner_cols[None, :],
                      mask=row_mask[:, None] & (cols < HEAD_DIM)[None, :], other=0.0)
    partner = tl.where(first[None, :], -partner.to(tl.float32), partner.to(tl.float32))
    return (x.to(tl.float32) * cos + partner * sin).to(x.dtype)


@triton.jit
def _load_q(base, rows, row_mask, stride_t, OFF: tl.constexpr, WIDTH: tl.constexpr,
            NEW: tl.constexpr, HEAD_DIM: tl.constexpr, cos, sin, ROTARY: tl.constexpr):
    """[rows, WIDTH] Q tile of columns OFF..OFF+WIDTH (rotated with ROTARY by the chunk's
    cos and sin tiles). Columns past HEAD_DIM (padded mode) and columns below NEW (already
    covered by the previous chunk) read as zero."""
    cols = OFF + tl.arange(0, WIDTH)
    ptrs = base + rows.to(tl.int64)[:, None] * stride_t + cols[None, :]
    if OFF + WIDTH > HEAD_DIM:
        q = tl.load(ptrs, mask=row_mask[:, None] & (cols < HEAD_DIM)[None, :], other=0.0)
    else:
        q = tl.load(ptrs, mask=row_mask[:, None], other=0.0)
    if ROTARY:
        q = _rotate(q, base, rows, row_mask, stride_t, cos, sin, OFF, WIDTH, HEAD_DIM)
    if NEW > OFF:
        q = tl.where((cols >= NEW)[None, :], q, 0.0).to(q.dtype)
    return q


@triton.jit
def _load_rows_t(base, desc, desc_row, desc_col, rows, row_mask, stride_t, OFF: tl.constexpr,
                 WIDTH: tl.constexpr, HEAD_DIM: tl.constexpr, MASKED: tl.constexpr,
                 TMA: tl.constexpr, cos, sin, ROTARY: tl.constexpr):
    """[WIDTH, rows] transposed tile (K^T; rotated with ROTARY by the chunk's [rows, WIDTH]
    cos and sin tiles); rows are only masked on the last key block."""
    if TMA:
        return tl.trans(desc.load([desc_row, desc_col + OFF]))
    if ROTARY:
        k = _load_v(base, desc, desc_row, desc_col, rows, row_mask, stride_t, OFF, WIDTH,
                    HEAD_DIM, True, False)
        return tl.trans(_rotate(k, base, rows, row_mask, stride_t, cos, sin, OFF, WIDTH,
                                HEAD_DIM))
    cols = OFF + tl.arange(0, WIDTH)
    ptrs = base + rows.to(tl.int64)[None, :] * stride_t + cols[:, None]
    if OFF + WIDTH > HEAD_DIM:
        if MASKED:
            mask = row_mask[None, :] & (cols < HEAD_DIM)[:, None]
        else:
            mask = (cols < HEAD_DIM)[:, None]
        return tl.load(ptrs, mask=mask, other=0.0)
    else:
        if MASKED:
            return tl.load(ptrs, mask=row_mask[None, :], other=0.0)
        else:
            return tl.load(ptrs)


@triton.jit
def _load_v(base, desc, desc_row, desc_col, rows, row_mask, stride_t, OFF: tl.constexpr,
            WIDTH: tl.constexpr, HEAD_DIM: tl.constexpr, MASKED: tl.constexpr,
            TMA: tl.constexpr):
    if TMA:
        return desc.load([desc_row, desc_col + OFF])
    cols = OFF + tl.arange(0, WIDTH)
    ptrs = base + rows.to(tl.int64)[:, None] * stride_t + cols[None, :]
    if OFF + WIDTH > HEAD_DIM:
        if MASKED:
            mask = row_mask[:, None] & (cols < HEAD_DIM)[None, :]
        else:
            mask = (cols < HEAD_DIM)[None, :]
        return tl.load(ptrs, mask=mask, other=0.0)
    else:
        if MASKED:
            return tl.load(ptrs, mask=row_mask[:, None], other=0.0)
        else:
            return tl.load(ptrs)


@triton.jit
def _trig_if(cos_base, sin_base, rows, row_mask, stride_ct, OFF: tl.constexpr,
             WIDTH: tl.constexpr, HEAD_DIM: tl.constexpr, ROTARY: tl.constexpr):
    """_trig's tiles with ROTARY; placeholders (never read) without. (One return: the
    compiler wants every return of a function to have the same types.)"""
    if ROTARY:
        cos, sin = _trig(cos_base, sin_base, rows, row_mask, stride_ct, OFF, WIDTH, HEAD_DIM)
    else:
        cos, sin = 0.0, 0.0
    return cos, sin


@triton.jit
def _attend_block(acc0, acc1, acc2, m_i, l_i, q0, q1, q2, k_base, v_base, kd0, kd1, kd2, vd0,
                  vd1, vd2, desc_row0, k_col, v_col, start_n, kv_end, row_start, row_end,
                  stride_kt, stride_vt, qk_scale, cos_base, sin_base, stride_ct,
                  MASKED: tl.constexpr, HEAD_DIM: tl.constexpr, D0: tl.constexpr,
                  D1: tl.constexpr, D2: tl.constexpr, O1: tl.constexpr, O2: tl.constexpr,
                  BLOCK_N: tl.constexpr, PRECISION: tl.constexpr, TMA: tl.constexpr,
                  ROTARY: tl.constexpr):
    """One online-softmax step over keys start_n..start_n+BLOCK_N. MASKED blocks may run past
    kv_end and hold keys of other segments; unmasked blocks are full and shared by all rows."""
    offs_n = start_n + tl.arange(0, BLOCK_N)
    n_mask = offs_n < kv_end
    row = desc_row0 + start_n
    c0, s0 = _trig_if(cos_base, sin_base, offs_n, n_mask, stride_ct, 0, D0, HEAD_DIM, ROTARY)
    s = tl.dot(q0, _load_rows_t(k_base, kd0, row, k_col, offs_n, n_mask, stride_kt, 0, D0,
                                HEAD_DIM, MASKED, TMA, c0, s0, ROTARY),
               input_precision=PRECISION)
    if D1 > 0:
        c1, s1 = _trig_if(cos_base, sin_base, offs_n, n_mask, stride_ct, O1, D1, HEAD_DIM,
                          ROTARY)
        s = tl.dot(q1, _load_rows_t(k_base, kd1, row, k_col, offs_n, n_mask, stride_kt, O1, D1,
                                    HEAD_DIM, MASKED, TMA, c1, s1, ROTARY), s,
                   input_precision=PRECISION)
    if D2 > 0:
        c2, s2 = _trig_if(cos_base, sin_base, offs_n, n_mask, stride_ct, O2, D2, HEAD_DIM,
                          ROTARY)
        s = tl.dot(q2, _load_rows_t(k_base, kd2, row, k_col, offs_n, n_mask, stride_kt, O2, D2,
                                    HEAD_DIM, MASKED, TMA, c2, s2, ROTARY), s,
                   input_precision=PRECISION)
    s = s * qk_scale
    if MASKED:
        own = (offs_n[None, :] >= row_start[:, None]) & (offs_n[None, :] < row_end[:, None])
        s = tl.where(own, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = tl.math.exp2(m_i - m_new)
    p = tl.math.exp2(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    p = p.to(q0.dtype)
    acc0 = tl.dot(p, _load_v(v_base, vd0, row, v_col, offs_n, n_mask, stride_vt, 0, D0,
                             HEAD_DIM, MASKED, TMA), acc0 * alpha[:, None],
                  input_precision=PRECISION)
    if D1 > 0:
        acc1 = tl.dot(p, _load_v(v_base, vd1, row, v_col, offs_n, n_mask, stride_vt, O1, D1,
                                 HEAD_DIM, MASKED, TMA), acc1 * alpha[:, None],
                      input_precision=PRECISION)
    if D2 > 0:
        acc2 = tl.dot(p, _load_v(v_base, vd2, row, v_col, offs_n, n_mask, stride_vt, O2, D2,
                                 HEAD_DIM, MASKED, TMA), acc2 * alpha[:, None],
                      input_precision=PRECISION)
    return acc0, acc1, acc2, m_new, l_i


@triton.jit
def _start_rows(q_base, offs_m, row_mask, stride_qt, HEAD_DIM: tl.constexpr, D0: tl.constexpr,
                D1: tl.constexpr, D2: tl.constexpr, O1: tl.constexpr, O2: tl.constexpr,
                BLOCK_M: tl.constexpr, cos_base, sin_base, stride_ct, ROTARY: tl.constexpr):
    """A tile's Q chunks (rotated with ROTARY; absent chunks repeat chunk 0, unused), zeroed
    accumulators, and the online softmax's running max and sum."""
    c0, s0 = _trig_if(cos_base, sin_base, offs_m, row_mask, stride_ct, 0, D0, HEAD_DIM,
                      ROTARY)
    q0 = _load_q(q_base, offs_m, row_mask, stride_qt, 0, D0, 0, HEAD_DIM, c0, s0, ROTARY)
    acc0 = tl.zeros([BLOCK_M, D0], dtype=tl.float32)
    if D1 > 0:
        c1, s1 = _trig_if(cos_base, sin_base, offs_m, row_mask, stride_ct, O1, D1, HEAD_DIM,
                          ROTARY)
        q1 = _load_q(q_base, offs_m, row_mask, stride_qt, O1, D1, D0, HEAD_DIM, c1, s1, ROTARY)
        acc1 = tl.zeros([BLOCK_M, D1], dtype=tl.float32)
    else:
        q1 = q0
        acc1 = acc0
    if D2 > 0:
        c2, s2 = _trig_if(cos_base, sin_base, offs_m, row_mask, stride_ct, O2, D2, HEAD_DIM,
                          ROTARY)
        q2 = _load_q(q_base, offs_m, row_mask, stride_qt, O2, D2, O1 + D1, HEAD_DIM, c2, s2,
                     ROTARY)
        acc2 = tl.zeros([BLOCK_M, D2], dtype=tl.float32)
    else:
        q2 = q0
        acc2 = acc0
    # A finite start keeps exp2(m_old - m_new) defined for rows that see only masked keys.
    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - 1.0e30
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    return q0, q1, q2, acc0, acc1, acc2, m_i, l_i


@triton.jit
def _finish_rows(o_base, offs_m, row_mask, stride_ot, acc0, acc1, acc2, inv_l,
                 HEAD_DIM: tl.constexpr, D0: tl.constexpr, D1: tl.constexpr,
                 D2: tl.constexpr, O1: tl.constexpr, O2: tl.constexpr):
    """Each chunk's accumulator, scaled by inv_l, into the tile's output rows."""
    _store_rows(o_base, offs_m, row_mask, stride_ot, acc0, inv_l, 0, D0, HEAD_DIM)
    if D1 > 0:
        _store_rows(o_base, offs_m, row_mask, stride_ot, acc1, inv_l, O1, D1, HEAD_DIM)
    if D2 > 0:
        _store_rows(o_base, offs_m, row_mask, stride_ot, acc2, inv_l, O2, D2, HEAD_DIM)


@triton.jit
def _store_rows(base, rows, row_mask, stride_t, acc, inv_l, OFF: tl.constexpr,
                WIDTH: tl.constexpr, HEAD_DIM: tl.constexpr):
    cols = OFF + tl.arange(0, WIDTH)
    ptrs = base + rows.to(tl.int64)[:, None] * stride_t + cols[None, :]
    val = (acc * inv_l[:, None]).to(base.dtype.element_ty)
    if OFF + WIDTH > HEAD_DIM:
        tl.store(ptrs, val, mask=row_mask[:, None] & (cols < HEAD_DIM)[None, :])
    else:
        tl.store(ptrs, val, mask=row_mask[:, None])


# One binary for every token and segment count: Triton would otherwise compile the kernel
# again (1-3 s) the first time a process sees a count that is 1 or a multiple of 16 and
# had not before. Measured on an H100 (docs/decisions.md, "One binary"): same rates.
@triton.jit(do_not_specialize=["seq_len", "n_segments", "search_steps", "n_m_blocks"])
def vision_attn_fwd(
    Q, K, V, Out, CU,
    KD0, KD1, KD2, VD0, VD1, VD2,  # TMA: descriptors of each head-dim chunk of K and V
    COS, SIN,  # ROTARY: [batch?, tokens, head_dim] rows (q when unused: never read)
    seq_len,  # tokens per batch element (batched) or in total (packed)
    n_segments,  # packed: len(cu_seqlens) - 1; batched: 1
    search_steps,  # ceil(log2(n_segments)): binary-search steps over cu_seqlens
    n_heads, n_m_blocks,
    stride_qb, stride_qt, stride_qh,
    stride_kb, stride_kt, stride_kh,
    stride_vb, stride_vt, stride_vh,
    stride_ob, stride_ot, stride_oh,
    stride_cb, stride_ct,  # of COS and SIN (in units of ROTARY_UNIT elements)
    qk_scale,  # softmax scale * log2(e)
    IS_VARLEN: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    D0: tl.constexpr, D1: tl.constexpr, D2: tl.constexpr,
    O1: tl.constexpr, O2: tl.constexpr,  # column offsets of chunks 1 and 2
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HEADS_FASTEST: tl.constexpr,
    PRECISION: tl.constexpr,
    STRIDE_UNIT: tl.constexpr,  # the strides above are in units of this many elements
    TMA: tl.constexpr,  # keys and values through the descriptors KD*, VD* (see launch.py)
    ROTARY: tl.constexpr,  # rotate q with COS and SIN as it is loaded (k comes rotated)
    ROTARY_UNIT: tl.constexpr,  # COS and SIN strides are in units of this many elements
):
    pid = tl.program_id(0)
    tiles_per_batch = n_heads * n_m_blocks
    b = pid // tiles_per_batch
    rem = pid % tiles_per_batch
    if HEADS_FASTEST:
        h = rem % n_heads
        m_blk = rem // n_heads
    else:
        m_blk = rem % n_m_blocks
        h = rem // n_m_blocks

    offs_m = m_blk * BLOCK_M + tl.arange(0, BLOCK_M)
    in_range = offs_m < seq_len
    if IS_VARLEN:
        # Segment of each row: the largest i < n_segments with cu[i] <= row. With repeated
        # entries (empty segments) that is the non-empty segment holding the row.
        lo = tl.zeros([BLOCK_M], dtype=tl.int32)
        hi = lo + (n_segments - 1)
        for _ in range(search_steps):
            mid = (lo + hi + 1) // 2
            le = tl.load(CU + mid) <= offs_m
            active = lo < hi
            lo = tl.where(active & le, mid, lo)
            hi = tl.where(active & ~le, mid - 1, hi)
        # Clamped to [0, seq_len]: whatever cu_seqlens holds, no access leaves the tensors.
        row_start = tl.maximum(tl.load(CU + lo), 0)
        row_end = tl.minimum(tl.load(CU + lo + 1), seq_len)
        valid = in_range & (row_start <= offs_m) & (offs_m < row_end)
    else:
        row_start = tl.zeros([BLOCK_M], dtype=tl.int32)
        row_end = row_start + seq_len
        valid = in_range
    kv_start = tl.min(tl.where(valid, row_start, seq_len), 0)
    kv_end = tl.max(tl.where(valid, row_end, 0), 0)
    # Full key blocks may skip the masks only when every row shares one key range.
    uniform = (tl.max(tl.where(valid, row_start, -1), 0) == kv_start) & (
        tl.min(tl.where(valid, row_end, seq_len + 1), 0) == kv_end)
    n_full = tl.where(uniform, tl.maximum(kv_end - kv_start, 0) // BLOCK_N, 0)
    full_end = kv_start + n_full * BLOCK_N

    b64 = b.to(tl.int64)
    h64 = h.to(tl.int64)
    # Strides arrive in units of STRIDE_UNIT elements (8 where all are multiples of 8 but
    # not all of 16: head_dim 72 or 88 rows). Triton proves divisibility by 16 from an int
    # argument's value and no less (a tl.multiple_of hint on the argument did not reach the
    # loads); the product by the constant unit does, and gives 16-byte vector loads.
    q_base = Q + (b64 * stride_qb + h64 * stride_qh) * STRIDE_UNIT
    k_base = K + (b64 * stride_kb + h64 * stride_kh) * STRIDE_UNIT
    v_base = V + (b64 * stride_vb + h64 * stride_vh) * STRIDE_UNIT
    o_base = Out + (b64 * stride_ob + h64 * stride_oh) * STRIDE_UNIT
    stride_qt = stride_qt * STRIDE_UNIT
    stride_kt = stride_kt * STRIDE_UNIT
    stride_vt = stride_vt * STRIDE_UNIT
    stride_ot = stride_ot * STRIDE_UNIT
    stride_ct = stride_ct * ROTARY_UNIT
    cos_base = COS + b64 * stride_cb * ROTARY_UNIT
    sin_base = SIN + b64 * stride_cb * ROTARY_UNIT
    # Descriptor coordinates: batch b's rows follow batch b-1's; a head is a column offset.
    desc_row0 = b * seq_len
    k_col = h * stride_kh * STRIDE_UNIT
    v_col = h * stride_vh * STRIDE_UNIT

    q0, q1, q2, acc0, acc1, acc2, m_i, l_i = _start_rows(
        q_base, offs_m, in_range, stride_qt, HEAD_DIM, D0, D1, D2, O1, O2, BLOCK_M, cos_base,
        sin_base, stride_ct, ROTARY)

    for start_n in range(kv_start, full_end, BLOCK_N):
        acc0, acc1, acc2, m_i, l_i = _attend_block(
            acc0, acc1, acc2, m_i, l_i, q0, q1, q2, k_base, v_base, KD0, KD1, KD2, VD0, VD1,
            VD2, desc_row0, k_col, v_col, start_n, kv_end, row_start, row_end, stride_kt,
            stride_vt, qk_scale, cos_base, sin_base, stride_ct, False, HEAD_DIM, D0, D1, D2,
            O1, O2, BLOCK_N, PRECISION, TMA, False)
    for start_n in range(full_end, kv_end, BLOCK_N):
        acc0, acc1, acc2, m_i, l_i = _attend_block(
            acc0, acc1, acc2, m_i, l_i, q0, q1, q2, k_base, v_base, KD0, KD1, KD2, VD0, VD1,
            VD2, desc_row0, k_col, v_col, start_n, kv_end, row_start, row_end, stride_kt,
            stride_vt, qk_scale, cos_base, sin_base, stride_ct, True, HEAD_DIM, D0, D1, D2, O1,
            O2, BLOCK_N, PRECISION, TMA, False)

    # Rows outside every segment (only with malformed cu_seqlens) are written as zeros.
    inv_l = tl.where(valid & (l_i > 0), 1.0 / tl.where(l_i > 0, l_i, 1.0), 0.0)
    _finish_rows(o_base, offs_m, in_range, stride_ot, acc0, acc1, acc2, inv_l, HEAD_DIM, D0,
                 D1, D2, O1, O2)

