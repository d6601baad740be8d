"""Rotary position embedding in the rotate-half convention of the Qwen-VL vision towers, in
plain torch: what the backends that cannot rotate inside their kernel (SDPA, varlen_attn,
flash-attn) run before attending. vitune's Triton kernels rotate as they load instead."""

from __future__ import annotations

import torch


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """[..., D] -> [-x[..., D/2:], x[..., :D/2]]."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin in fp32, cast back to x's dtype (into `out` when
    given). x is [..., tokens, heads, D]; cos and sin are [..., tokens, D] (one row per
    token, shared by the heads)."""
    x32 = x.float()
    cos32, sin32 = cos.float().unsqueeze(-2), sin.float().unsqueeze(-2)
    rotated = x32 * cos32 + rotate_half(x32) * sin32
    return rotated.to(x.dtype) if out is None else out.copy_(rotated)
