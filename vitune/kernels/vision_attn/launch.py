"""Launch the vision-attention kernel on already-validated tensors (see vitune.runtime.api)."""

from __future__ import annotations

import functools
from dataclasses import replace

import torch
import triton
from triton.tools.tensor_descriptor import TensorDescriptor

from vitune.kernels.vision_attn.kernel import vision_attn_fwd
from vitune.kernels.vision_attn.space import KernelConfig, chunk_offsets, head_chunks

LOG2E = 1.4426950408889634


def kernel_is_interpreted() -> bool:
    """True when TRITON_INTERPRET=1 was set before the kernel module was imported: the kernel
    then runs on the CPU through NumPy."""
    return not isinstance(vision_attn_fwd, triton.runtime.JITFunction)


def launch_vision_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            out: torch.Tensor, cu_seqlens: torch.Tensor | None, scale: float,
                            cfg: KernelConfig, warmup: bool = False) -> torch.Tensor:
    """Packed [T, H, D] with cu_seqlens, or batched [B, S, H, D] without. Strides of every
    axis but the last are free; nothing is copied. With `warmup`, the kernel is compiled for
    these arguments (into Triton's on-disk cache) but not run."""
    if cu_seqlens is not None:
        batch, (seq_len, heads, head_dim) = 1, q.shape
        n_segments = cu_seqlens.numel() - 1
        strides = [(0, x.stride(0), x.stride(1)) for x in (q, k, v, out)]
        cu = cu_seqlens
    else:
        batch, seq_len, heads, head_dim = q.shape
        n_segments = 1
        strides = [(x.stride(0), x.stride(1), x.stride(2)) for x in (q, k, v, out)]
        cu = q  # never read when IS_VARLEN is False
    if batch * seq_len * heads == 0:
        return out
    n_m_blocks = triton.cdiv(seq_len, cfg.block_m)
    grid = (n_m_blocks * heads * batch,)
    unit = stride_unit(strides)
    descriptors = [None] * 6
    if cfg.tma:
        if tma_layout_ok(k, v, batch * seq_len):
            descriptors = chunk_descriptors(k, cfg, head_dim, batch * seq_len) + \
                chunk_descriptors(v, cfg, head_dim, batch * seq_len)
        else:  # the same tiles through pointer loads: the same result
            cfg = replace(cfg, tma=False)
    kernel = functools.partial(vision_attn_fwd.warmup, grid=grid) if warmup else \
        vision_attn_fwd[grid]
    kernel(
        q, k, v, out, cu, *descriptors,
        seq_len, n_segments, max(n_segments - 1, 0).bit_length(),
        heads, n_m_blocks,
        *(s // unit for group in strides for s in group),
        scale * LOG2E,
        **kernel_constants(cfg, head_dim, q.dtype, cu_seqlens is not None, unit),
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    return out


@functools.cache
def kernel_constants(cfg: KernelConfig, head_dim: int, dtype: torch.dtype, varlen: bool,
                     unit: int) -> dict:
    """The kernel's compile-time arguments for a config (the launcher's and the ahead-of-time
    compiler's, so both build the same kernel). Cached: it is on every call's path; callers
    unpack the dict and never change it."""
    d0, d1, d2 = head_chunks(head_dim, cfg.head_split)
    _, o1, o2 = chunk_offsets(head_dim, cfg.head_split)
    return dict(IS_VARLEN=varlen, HEAD_DIM=head_dim, D0=d0, D1=d1, D2=d2, O1=o1, O2=o2,
                BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, HEADS_FASTEST=cfg.heads_fastest,
                PRECISION="ieee" if dtype == torch.float32 else "tf32", STRIDE_UNIT=unit,
                TMA=cfg.tma)


def tma_layout_ok(k: torch.Tensor, v: torch.Tensor, rows: int) -> bool:
    """Whether k and v can be read through 2D tensor descriptors over [rows, columns]:
    16-byte aligned base and strides, heads side by side within a token's row, and (batched)
    each batch's rows right after the previous batch's. Else the kernel takes pointer loads."""
    for x in (k, v):
        *lead, heads, head_dim = x.shape
        stride_t, stride_h = x.stride()[-3], x.stride()[-2]
        if x.data_ptr() % 16 or (stride_t * x.element_size()) % 16:
            return False
        if heads > 1 and (stride_h < head_dim or (stride_h * x.element_size()) % 16
                          or stride_t < (heads - 1) * stride_h + head_dim):
            return False
        if len(lead) == 2 and lead[0] > 1 and x.stride(0) != lead[1] * stride_t:
            return False
    return rows > 0


def chunk_descriptors(x: torch.Tensor, cfg: KernelConfig, head_dim: int,
                      rows: int) -> list[TensorDescriptor | None]:
    """One descriptor per head-dim chunk of x (the kernel's chunk widths differ) over the
    2D view [rows, all heads' columns]; absent chunks are None."""
    heads, stride_t, stride_h = x.shape[-2], x.stride()[-3], x.stride()[-2]
    columns = (heads - 1) * stride_h + head_dim
    return [TensorDescriptor(x, [rows, columns], [stride_t, 1], [cfg.block_n, width])
            if width else None for width in head_chunks(head_dim, cfg.head_split)]


def stride_unit(strides: list[tuple[int, int, int]]) -> int:
    """8 where every stride is a multiple of 8 elements but not all of 16 (rows of head_dim
    72 or 88): the kernel gets strides in units of 8 so Triton can see 16-byte alignment,
    which it proves from an argument's value only for multiples of 16. Else 1 (no change)."""
    flat = [s for group in strides for s in group]
    return 8 if all(s % 8 == 0 for s in flat) and not all(s % 16 == 0 for s in flat) else 1


def tensor_strides_aligned(*tensors: torch.Tensor) -> bool:
    """Every stride but the head_dim one is a multiple of 8 elements (what split head dims
    on the wgmma path need: space.needs_aligned_strides)."""
    return all(s % 8 == 0 for x in tensors for s in x.stride()[:-1])

