"""vitune's kernel as a torch.library custom op, so `vision_attention` traces under
torch.compile(fullgraph=True) (one opaque node, no graph break) and records into CUDA graphs.
Validation and config selection happen in Python at trace time; the op gets plain fields."""

from __future__ import annotations

import torch

from vitune.kernels.vision_attn.launch import launch_vision_attention, tensor_bases_aligned
from vitune.kernels.vision_attn.space import KernelConfig, fit_to_layout
from vitune.runtime.gpu import device_arch


@torch.library.custom_op("vitune::vision_attention", mutates_args=())
def vision_attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        cu_seqlens: torch.Tensor | None, scale: float, block_m: int,
                        block_n: int, num_warps: int, num_stages: int, head_split: bool,
                        heads_fastest: bool, tma: bool, windows: bool,
                        cos: torch.Tensor | None = None,
                        sin: torch.Tensor | None = None) -> torch.Tensor:
    cfg = KernelConfig(block_m, block_n, num_warps, num_stages, head_split, heads_fastest, tma,
                       windows)
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    if not tensor_bases_aligned(q, k, v):  # (unknown when the config was chosen, at trace time)
        cfg = fit_to_layout(cfg, q.shape[-1], q.dtype, device_arch(q.device),
                            layout_aligned=False)
    rotary = None if cos is None or sin is None else (cos, sin)
    return launch_vision_attention(q, k, v, out, cu_seqlens, scale, cfg, rotary=rotary)


@vision_attention_op.register_fake
def _(q, k, v, cu_seqlens, scale, block_m, block_n, num_warps, num_stages, head_split,
      heads_fastest, tma, windows, cos=None, sin=None):
    return torch.empty_like(q, memory_format=torch.contiguous_format)


def call_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor | None,
            cu_seqlens: torch.Tensor | None, scale: float, cfg: KernelConfig,
            rotary: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    cos, sin = (None, None) if rotary is None else rotary
    result = vision_attention_op(q, k, v, cu_seqlens, scale, *cfg.as_tuple(), cos, sin)
    if out is None:
        return result
    out.copy_(result)
    return out
