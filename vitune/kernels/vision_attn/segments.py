"""A segment-major variant of the vision-attention kernel, for the window regime (issue 6):
a candidate, not yet in the search space, until an A/B on a GPU says it is faster
(`scripts/ab_segments.py`; docs/perf-notes.md, seventh session).

The main kernel (kernel.py) gives each program a tile of BLOCK_M consecutive tokens of one
head; every row finds its segment by a binary search over cu_seqlens (a chain of about
log2(segments) dependent loads: 9 for the ~300 windows of two images) and a 64-token
window is read once per query tile that covers it. Here each program takes whole segments:
program (s, g) attends segment s for heads g * HEADS_PER_PROGRAM onwards, so its bounds are
two loads, its keys and values are read once when a segment fits one query tile, and a
program carries several heads' work. Segments longer than BLOCK_M are walked tile by tile
(correct for any lengths, but one program per segment and head group: meant for windows).

The online-softmax step, the head-dim chunks and the loads are the main kernel's
(no tensor descriptors here). cu_seqlens must be well formed (start at 0, never decrease,
end at the token count): rows outside every segment are not written.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from vitune.kernels.vision_attn.kernel import _attend_block, _finish_rows, _start_rows
from vitune.kernels.vision_attn.launch import LOG2E, stride_unit, tile_constants


@dataclass(frozen=True)
class SegmentConfig:
    block_m: int = 64
    block_n: int = 64
    num_warps: int = 4
    num_stages: int = 2
    heads_per_program: int = 1
    head_split: bool = True

    def short(self) -> str:
        split = "split" if self.head_split else "pad"
        return (f"seg-m{self.block_m}n{self.block_n}w{self.num_warps}s{self.num_stages}"
                f"h{self.heads_per_program}-{split}")


@triton.jit
def _attend_segment_tile(q_base, k_base, v_base, o_base, m0, start, end, stride_qt, stride_kt,
                         stride_vt, stride_ot, qk_scale,
                         HEAD_DIM: tl.constexpr, D0: tl.constexpr, D1: tl.constexpr,
                         D2: tl.constexpr, O1: tl.constexpr, O2: tl.constexpr,
                         BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                         PRECISION: tl.constexpr):
    """Query rows m0..m0+BLOCK_M of the segment [start, end) against all of its keys."""
    offs_m = m0 + tl.arange(0, BLOCK_M)
    in_seg = offs_m < end
    q0, q1, q2, acc0, acc1, acc2, m_i, l_i = _start_rows(
        q_base, offs_m, in_seg, stride_qt, HEAD_DIM, D0, D1, D2, O1, O2, BLOCK_M)
    row_start = tl.zeros([BLOCK_M], dtype=tl.int32) + start
    row_end = tl.zeros([BLOCK_M], dtype=tl.int32) + end
    full_end = start + ((end - start) // BLOCK_N) * BLOCK_N
    for start_n in range(start, full_end, BLOCK_N):  # whole key blocks: no masks
        acc0, acc1, acc2, m_i, l_i = _attend_block(
            acc0, acc1, acc2, m_i, l_i, q0, q1, q2, k_base, v_base, None, None, None, None,
            None, None, 0, 0, 0, start_n, end, row_start, row_end, stride_kt, stride_vt,
            qk_scale, False, HEAD_DIM, D0, D1, D2, O1, O2, BLOCK_N, PRECISION, False)
    for start_n in range(full_end, end, BLOCK_N):  # the segment's last, partial block
        acc0, acc1, acc2, m_i, l_i = _attend_block(
            acc0, acc1, acc2, m_i, l_i, q0, q1, q2, k_base, v_base, None, None, None, None,
            None, None, 0, 0, 0, start_n, end, row_start, row_end, stride_kt, stride_vt,
            qk_scale, True, HEAD_DIM, D0, D1, D2, O1, O2, BLOCK_N, PRECISION, False)
    inv_l = 1.0 / tl.where(l_i > 0, l_i, 1.0)
    _finish_rows(o_base, offs_m, in_seg, stride_ot, acc0, acc1, acc2, inv_l, HEAD_DIM, D0,
                 D1, D2, O1, O2)


@triton.jit(do_not_specialize=["seq_len", "n_heads"])
def vision_attn_segments_fwd(
    Q, K, V, Out, CU,
    seq_len,  # tokens in total
    n_heads,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
    qk_scale,  # softmax scale * log2(e)
    HEAD_DIM: tl.constexpr,
    D0: tl.constexpr, D1: tl.constexpr, D2: tl.constexpr,
    O1: tl.constexpr, O2: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HEADS_PER_PROGRAM: tl.constexpr,
    PRECISION: tl.constexpr,
    STRIDE_UNIT: tl.constexpr,  # the strides above are in units of this many elements
):
    segment = tl.program_id(0)
    group = tl.program_id(1)
    # Clamped to [0, seq_len]: no access leaves the tensors whatever cu_seqlens holds.
    start = tl.minimum(tl.maximum(tl.load(CU + segment), 0), seq_len)
    end = tl.minimum(tl.maximum(tl.load(CU + segment + 1), start), seq_len)
    stride_qt = stride_qt * STRIDE_UNIT
    stride_kt = stride_kt * STRIDE_UNIT
    stride_vt = stride_vt * STRIDE_UNIT
    stride_ot = stride_ot * STRIDE_UNIT
    for i in tl.static_range(HEADS_PER_PROGRAM):
        h = group * HEADS_PER_PROGRAM + i
        if h < n_heads:
            h64 = h.to(tl.int64)
            q_base = Q + h64 * stride_qh * STRIDE_UNIT
            k_base = K + h64 * stride_kh * STRIDE_UNIT
            v_base = V + h64 * stride_vh * STRIDE_UNIT
            o_base = Out + h64 * stride_oh * STRIDE_UNIT
            for m0 in range(start, end, BLOCK_M):
                _attend_segment_tile(q_base, k_base, v_base, o_base, m0, start, end,
                                     stride_qt, stride_kt, stride_vt, stride_ot, qk_scale,
                                     HEAD_DIM, D0, D1, D2, O1, O2, BLOCK_M, BLOCK_N,
                                     PRECISION)


def launch_segments(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                    cu_seqlens: torch.Tensor, scale: float, cfg: SegmentConfig) -> torch.Tensor:
    """Packed [T, H, D] q, k, v (any token and head strides) and out, int32 cu_seqlens."""
    seq_len, heads, head_dim = q.shape
    n_segments = cu_seqlens.numel() - 1
    if not seq_len or not heads or n_segments < 1:
        return out
    strides = [(0, x.stride(0), x.stride(1)) for x in (q, k, v, out)]
    unit = stride_unit(strides)
    grid = (n_segments, triton.cdiv(heads, cfg.heads_per_program))
    vision_attn_segments_fwd[grid](
        q, k, v, out, cu_seqlens, seq_len, heads,
        *(s // unit for _, t, h in strides for s in (t, h)), scale * LOG2E,
        **tile_constants(head_dim, cfg.head_split, q.dtype, unit), BLOCK_M=cfg.block_m,
        BLOCK_N=cfg.block_n, HEADS_PER_PROGRAM=cfg.heads_per_program,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return out
