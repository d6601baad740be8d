"""The window kernel: the vision-attention kernel for many short segments (Qwen2.5-VL's
64-token windows), where attention is bound by memory, not by matrix work. A search-space
choice (KernelConfig.windows) for packed input.

The tile kernel (kernel.py) gives each program BLOCK_M consecutive tokens of one head and
ends; a program's loads never overlap its own matrix work, and each row finds its segment
by a binary search over cu_seqlens. Here a work item is one segment of one head (heads
fastest, so programs running side by side read the same tokens' rows); a grid of two
programs per multiprocessor takes every grid-th item in a loop that Triton software-
pipelines (num_stages): the next items' Q, K and V copies into shared memory run while the
current item computes. A segment of at most BLOCK_M tokens is attended in one step: one
Q K^T, one softmax, one P V, no running rescale. Measured on an H100 against the tile
kernel's best window configs (docs/decisions.md, "Three window kernels, measured"):
1.20x at head_dim 80, 1.32x at 64, 1.14x at 72, 1.18x at 128.

A pipelined loop holds no inner loop, so a longer segment is skipped there and attended
afterwards, tile by tile with the tile kernel's online softmax, by the program that owns
it (correct for any lengths; slow, and only run when some segment is longer than
BLOCK_M: a vectorised scan of cu_seqlens says so). No max_seqlen and no host-device sync.
Whatever cu_seqlens holds, every access stays inside the tensors (bounds clamped to
[0, seq_len]) and rows before its first or after its last bound are written as zeros, as
the tile kernel writes them. With ROTARY, q and k are rotated as they are loaded (x * cos
+ rotate_half(x) * sin in fp32; see kernel.py): a window's q and k rows are the same
tokens, so one cos/sin tile per head-dim chunk serves both, and k takes no extra pass
through memory. The long-segment path rotates each key block as it loads it.
"""

import triton
import triton.language as tl

from vitune.kernels.vision_attn.kernel import (
    _attend_block,
    _finish_rows,
    _load_q,
    _load_rows_t,
    _load_v,
    _start_rows,
    _store_rows,
    _trig_if,
)

PROGRAMS_PER_SM = 2  # measured best or within 1% of it at head_dim 64, 80 and 128 (H100)
SCAN = tl.constexpr(1024)  # cu_seqlens entries read at once, looking for long segments


@triton.jit
def _item(CU, item, n_heads, seq_len):
    """Head and clamped [start, end) of work item `item` (segment-major, heads fastest)."""
    segment = item // n_heads
    head = item - segment * n_heads
    start = tl.minimum(tl.maximum(tl.load(CU + segment), 0), seq_len)
    end = tl.minimum(tl.maximum(tl.load(CU + segment + 1), start), seq_len)
    return head.to(tl.int64), start, end


@triton.jit
def _attend_window(q_base, k_base, v_base, o_base, start, length, stride_qt, stride_kt,
                   stride_vt, stride_ot, qk_scale, cos_base, sin_base, stride_ct,
                   HEAD_DIM: tl.constexpr, D0: tl.constexpr, D1: tl.constexpr,
                   D2: tl.constexpr, O1: tl.constexpr, O2: tl.constexpr,
                   BLOCK: tl.constexpr, PRECISION: tl.constexpr, ROTARY: tl.constexpr):
    """Rows start..start+length (length <= BLOCK; 0: nothing) against the same keys, the
    whole softmax in one step (q and k rotated as loaded with ROTARY)."""
    offs = tl.arange(0, BLOCK)
    rows = start + offs
    mask = offs < length
    # A window's q and k rows are the same tokens: one cos/sin tile per chunk serves both.
    c0, s0 = _trig_if(cos_base, sin_base, rows, mask, stride_ct, 0, D0, HEAD_DIM, ROTARY)
    s = tl.dot(_load_q(q_base, rows, mask, stride_qt, 0, D0, 0, HEAD_DIM, c0, s0, ROTARY),
               _load_rows_t(k_base, None, 0, 0, rows, mask, stride_kt, 0, D0, HEAD_DIM, True,
                            False, c0, s0, ROTARY),
               input_precision=PRECISION)
    if D1 > 0:
        c1, s1 = _trig_if(cos_base, sin_base, rows, mask, stride_ct, O1, D1, HEAD_DIM, ROTARY)
        s = tl.dot(_load_q(q_base, rows, mask, stride_qt, O1, D1, D0, HEAD_DIM, c1, s1,
                           ROTARY),
                   _load_rows_t(k_base, None, 0, 0, rows, mask, stride_kt, O1, D1, HEAD_DIM,
                                True, False, c1, s1, ROTARY), s,
                   input_precision=PRECISION)
    if D2 > 0:
        c2, s2 = _trig_if(cos_base, sin_base, rows, mask, stride_ct, O2, D2, HEAD_DIM, ROTARY)
        s = tl.dot(_load_q(q_base, rows, mask, stride_qt, O2, D2, O1 + D1, HEAD_DIM, c2, s2,
                           ROTARY),
                   _load_rows_t(k_base, None, 0, 0, rows, mask, stride_kt, O2, D2, HEAD_DIM,
                                True, False, c2, s2, ROTARY), s,
                   input_precision=PRECISION)
    s = tl.where(mask[None, :], s * qk_scale, float("-inf"))
    m = tl.maximum(tl.max(s, 1), -1.0e30)  # (finite: an empty item makes no NaN)
    p = tl.math.exp2(s - m[:, None])
    l_sum = tl.sum(p, 1)
    inv_l = 1.0 / tl.where(l_sum > 0, l_sum, 1.0)
    p = p.to(q_base.dtype.element_ty)
    o = tl.dot(p, _load_v(v_base, None, 0, 0, rows, mask, stride_vt, 0, D0, HEAD_DIM, True,
                          False), input_precision=PRECISION)
    _store_rows(o_base, rows, mask, stride_ot, o, inv_l, 0, D0, HEAD_DIM)
    if D1 > 0:
        o = tl.dot(p, _load_v(v_base, None, 0, 0, rows, mask, stride_vt, O1, D1, HEAD_DIM,
                              True, False), input_precision=PRECISION)
        _store_rows(o_base, rows, mask, stride_ot, o, inv_l, O1, D1, HEAD_DIM)
    if D2 > 0:
        o = tl.dot(p, _load_v(v_base, None, 0, 0, rows, mask, stride_vt, O2, D2, HEAD_DIM,
                              True, False), input_precision=PRECISION)
        _store_rows(o_base, rows, mask, stride_ot, o, inv_l, O2, D2, HEAD_DIM)


@triton.jit
def _attend_long_segment(q_base, k_base, v_base, o_base, start, end, stride_qt, stride_kt,
                         stride_vt, stride_ot, qk_scale, cos_base, sin_base, stride_ct,
                         HEAD_DIM: tl.constexpr, D0: tl.constexpr, D1: tl.constexpr,
                         D2: tl.constexpr, O1: tl.constexpr, O2: tl.constexpr,
                         BLOCK: tl.constexpr, PRECISION: tl.constexpr, ROTARY: tl.constexpr):
    """A segment longer than BLOCK, query tile by query tile, with the online softmax."""
    row_start = tl.zeros([BLOCK], dtype=tl.int32) + start
    row_end = tl.zeros([BLOCK], dtype=tl.int32) + end
    full_end = start + ((end - start) // BLOCK) * BLOCK
    for m0 in range(start, end, BLOCK):
        offs_m = m0 + tl.arange(0, BLOCK)
        in_seg = offs_m < end
        q0, q1, q2, acc0, acc1, acc2, m_i, l_i = _start_rows(
            q_base, offs_m, in_seg, stride_qt, HEAD_DIM, D0, D1, D2, O1, O2, BLOCK, cos_base,
            sin_base, stride_ct, ROTARY)
        for start_n in range(start, full_end, BLOCK):  # whole key blocks: no masks
            acc0, acc1, acc2, m_i, l_i = _attend_block(
                acc0, acc1, acc2, m_i, l_i, q0, q1, q2, k_base, v_base, None, None, None,
                None, None, None, 0, 0, 0, start_n, end, row_start, row_end, stride_kt,
                stride_vt, qk_scale, cos_base, sin_base, stride_ct, False, HEAD_DIM, D0, D1, D2,
                O1, O2, BLOCK, PRECISION, False, ROTARY)
        for start_n in range(full_end, end, BLOCK):  # the segment's last, partial block
            acc0, acc1, acc2, m_i, l_i = _attend_block(
                acc0, acc1, acc2, m_i, l_i, q0, q1, q2, k_base, v_base, None, None, None,
                None, None, None, 0, 0, 0, start_n, end, row_start, row_end, stride_kt,
                stride_vt, qk_scale, cos_base, sin_base, stride_ct, True, HEAD_DIM, D0, D1, D2,
                O1, O2, BLOCK, PRECISION, False, ROTARY)
        inv_l = 1.0 / tl.where(l_i > 0, l_i, 1.0)
        _finish_rows(o_base, offs_m, in_seg, stride_ot, acc0, acc1, acc2, inv_l, HEAD_DIM,
                     D0, D1, D2, O1, O2)


@triton.jit
def _longest_segment(CU, n_segments):
    """max(cu[i + 1] - cu[i]) before clamping (never below a clamped segment's length), in
    int64: int32 differences of malformed entries (-2^31) would wrap and hide a segment."""
    longest = tl.zeros([], dtype=tl.int64)
    for s0 in range(0, n_segments, SCAN):
        idx = s0 + tl.arange(0, SCAN)
        live = idx < n_segments
        lengths = tl.load(CU + idx + 1, mask=live, other=0).to(tl.int64) - tl.load(
            CU + idx, mask=live, other=0).to(tl.int64)
        longest = tl.maximum(longest, tl.max(lengths, 0))
    return longest


@triton.jit
def _zero_rows(Out, first, last, n_heads, stride_ot, stride_oh, pid, n_programs,
               HEAD_DIM: tl.constexpr, D_PAD: tl.constexpr, BLOCK: tl.constexpr):
    """Rows first..last of every head written as zeros, tiles shared among the programs."""
    offs_t = tl.arange(0, BLOCK)
    offs_d = tl.arange(0, D_PAD)
    zeros = tl.zeros([BLOCK, D_PAD], dtype=Out.dtype.element_ty)
    for t0 in range(first + pid * BLOCK, last, n_programs * BLOCK):
        rows = (t0 + offs_t).to(tl.int64)
        mask = (t0 + offs_t < last)[:, None] & (offs_d < HEAD_DIM)[None, :]
        for head in range(n_heads):
            tl.store(Out + head * stride_oh + rows[:, None] * stride_ot + offs_d[None, :],
                     zeros, mask=mask)


# One binary for every token, segment and head count, as the tile kernel.
@triton.jit(do_not_specialize=["seq_len", "n_segments", "n_heads"])
def vision_attn_windows_fwd(
    Q, K, V, Out, CU,
    COS, SIN,  # ROTARY: [tokens, head_dim] rows (q when unused: never read)
    seq_len,  # tokens in total
    n_segments, n_heads,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
    stride_ct,  # of COS and SIN's rows
    qk_scale,  # softmax scale * log2(e)
    HEAD_DIM: tl.constexpr,
    D0: tl.constexpr, D1: tl.constexpr, D2: tl.constexpr,
    O1: tl.constexpr, O2: tl.constexpr,  # column offsets of chunks 1 and 2
    D_PAD: tl.constexpr,  # HEAD_DIM rounded up to a power of two (zeroed rows)
    BLOCK_M: tl.constexpr,  # segments up to this long are attended in one step
    PRECISION: tl.constexpr,
    STRIDE_UNIT: tl.constexpr,  # the strides above are in units of this many elements
    ROTARY: tl.constexpr,  # rotate q and k with COS and SIN as they are loaded
    ROTARY_UNIT: tl.constexpr,  # COS and SIN strides are in units of this many elements
):
    pid = tl.program_id(0)
    n_programs = tl.num_programs(0)
    stride_ct = stride_ct * ROTARY_UNIT
    n_items = n_segments * n_heads
    # (in units of STRIDE_UNIT: see the tile kernel)
    stride_qt = stride_qt * STRIDE_UNIT
    stride_kt = stride_kt * STRIDE_UNIT
    stride_vt = stride_vt * STRIDE_UNIT
    stride_ot = stride_ot * STRIDE_UNIT
    stride_qh = stride_qh * STRIDE_UNIT
    stride_kh = stride_kh * STRIDE_UNIT
    stride_vh = stride_vh * STRIDE_UNIT
    stride_oh = stride_oh * STRIDE_UNIT
    longest = _longest_segment(CU, n_segments)  # (its loads overlap the loop's start)
    for item in range(pid, n_items, n_programs):  # pipelined by Triton (num_stages)
        head, start, end = _item(CU, item, n_heads, seq_len)
        length = end - start
        _attend_window(Q + head * stride_qh, K + head * stride_kh, V + head * stride_vh,
                       Out + head * stride_oh, start, tl.where(length <= BLOCK_M, length, 0),
                       stride_qt, stride_kt, stride_vt, stride_ot, qk_scale, COS, SIN,
                       stride_ct, HEAD_DIM, D0, D1, D2, O1, O2, BLOCK_M, PRECISION, ROTARY)
    if longest > BLOCK_M:  # segments the loop above skipped
        for item in range(pid, n_items, n_programs):
            head, start, end = _item(CU, item, n_heads, seq_len)
            if end - start > BLOCK_M:
                _attend_long_segment(Q + head * stride_qh, K + head * stride_kh,
                                     V + head * stride_vh, Out + head * stride_oh, start, end,
                                     stride_qt, stride_kt, stride_vt, stride_ot, qk_scale,
                                     COS, SIN, stride_ct, HEAD_DIM, D0, D1, D2, O1, O2,
                                     BLOCK_M, PRECISION, ROTARY)
    # Rows outside every segment (cu_seqlens not starting at 0 or not ending at seq_len).
    first = tl.minimum(tl.maximum(tl.load(CU), 0), seq_len)
    last = tl.minimum(tl.maximum(tl.load(CU + n_segments), first), seq_len)
    _zero_rows(Out, 0, first, n_heads, stride_ot, stride_oh, pid, n_programs, HEAD_DIM,
               D_PAD, BLOCK_M)
    _zero_rows(Out, last, seq_len, n_heads, stride_ot, stride_oh, pid, n_programs, HEAD_DIM,
               D_PAD, BLOCK_M)
