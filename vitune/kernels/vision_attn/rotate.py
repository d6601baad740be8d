"""Keys rotated once, before the tile kernel (kernel.py) attends over them: that kernel reads
every key block once per query tile of its segment, so rotating keys inside its key loop
would redo the rotation per query tile. This is one pass over k: each program takes a block
of tokens, reads their cos and sin rows once and rotates every head's key row with them
(x * cos + rotate_half(x) * sin in fp32, cast to k's dtype), writing a contiguous buffer.
Queries and the window kernel's keys are rotated as they are loaded instead."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vitune.kernels import triton_compat
from vitune.kernels.triton_compat import warmup_launcher
from vitune.kernels.vision_attn.rotary import apply_rotary

BLOCK_TOKENS = 32


@triton.jit
def rotate_rows_fwd(X, COS, SIN, Out, n_tokens, n_heads,
                    stride_xb, stride_xt, stride_xh, stride_cb, stride_ct,
                    stride_ob, stride_ot, stride_oh,
                    HEAD_DIM: tl.constexpr, D_PAD: tl.constexpr, BLOCK_T: tl.constexpr):
    b = tl.program_id(1).to(tl.int64)
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = tl.arange(0, D_PAD)
    HALF: tl.constexpr = HEAD_DIM // 2
    first = cols < HALF
    partner_cols = tl.where(first, cols + HALF, cols - HALF)
    mask = (rows < n_tokens)[:, None] & (cols < HEAD_DIM)[None, :]
    r64 = rows.to(tl.int64)[:, None]
    trig = b * stride_cb + r64 * stride_ct + cols[None, :]
    cos = tl.load(COS + trig, mask=mask, other=0.0).to(tl.float32)
    sin = tl.load(SIN + trig, mask=mask, other=0.0).to(tl.float32)
    sign = tl.where(first, -1.0, 1.0)[None, :]
    x_rows = X + b * stride_xb + r64 * stride_xt
    o_rows = Out + b * stride_ob + r64 * stride_ot
    for h in range(n_heads):
        x = tl.load(x_rows + h * stride_xh + cols[None, :], mask=mask, other=0.0)
        partner = tl.load(x_rows + h * stride_xh + partner_cols[None, :], mask=mask, other=0.0)
        rotated = x.to(tl.float32) * cos + sign * partner.to(tl.float32) * sin
        tl.store(o_rows + h * stride_oh + cols[None, :], rotated.to(x.dtype), mask=mask)


def rotate_rows(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                out: torch.Tensor, warmup: bool = False) -> torch.Tensor:
    """`x` ([T, H, D] packed or [B, S, H, D] batched, any strides but a contiguous head dim)
    rotated into `out` (same shape). cos and sin: [T, D], [S, D] or [B, S, D], equal
    strides, contiguous last axis (checked by the caller, vitune.runtime.api). With
    `warmup`, compiled for these arguments but not run."""
    given = out
    if x.dim() == 3:
        x, out = x.unsqueeze(0), out.unsqueeze(0)
    batch, tokens, heads, head_dim = x.shape
    if not tokens or not heads or not batch:
        return given
    stride_cb = cos.stride(0) if cos.dim() == 3 else 0
    grid = (triton.cdiv(tokens, BLOCK_TOKENS), batch)
    kernel = warmup_launcher(rotate_rows_fwd, grid) if warmup else rotate_rows_fwd[grid]
    kernel(x, cos, sin, out, tokens, heads, *x.stride()[:3], stride_cb, cos.stride(-2),
           *out.stride()[:3], HEAD_DIM=head_dim, D_PAD=triton.next_power_of_2(head_dim),
           BLOCK_T=BLOCK_TOKENS, num_warps=4)
    return given


def rotated(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """`x` rotated into a new contiguous tensor: by rotate_rows where a Triton kernel runs on
    x (a CUDA tensor, or the interpreter on fp32/fp16), else by torch (apply_rotary: the
    same fp32 math in a few elementwise passes; also under torch.compile, which traces
    it)."""
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    if torch.compiler.is_compiling():
        triton_runs = False
    elif not triton_compat.is_interpreted(rotate_rows_fwd):
        triton_runs = x.device.type == "cuda"
    else:  # (the interpreter: CPU tensors, no bf16, a NumPy it can run with)
        triton_runs = x.device.type == "cpu" and x.dtype != torch.bfloat16 \
            and triton_compat.interpreter_problem() is None
    if triton_runs:
        return rotate_rows(x, cos, sin, out)
    return apply_rotary(x, cos, sin, out=out)
