"""Drop-in entry points for serving engines and model code.

- `context_attention_fwd`: the signature of SGLang's vision Triton kernel
  (`context_attention_fwd(q, k, v, o, b_start_loc, b_seq_len, max_input_len,
  is_causal=False)`), non-causal only.
- `hf_attention_forward` and `register_hf_attention()`: an attention function for Hugging
  Face transformers' `AttentionInterface`, for vision towers without an attention mask.
"""

from __future__ import annotations

import torch

from vitune.runtime.api import vision_attention


def context_attention_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor,
                          b_start_loc: torch.Tensor, b_seq_len: torch.Tensor,
                          max_input_len: int, is_causal: bool = False) -> torch.Tensor:
    """SGLang-compatible call: packed [T, H, D] q/k/v written into `o`; segment i starts at
    b_start_loc[i] and has b_seq_len[i] tokens (segments packed back to back, as SGLang's
    vision path builds them). Builds cu_seqlens on the device: no host sync."""
    if is_causal:
        raise ValueError("is_causal=True is not supported: vitune's kernels are non-causal "
                         "(vision encoders); use SGLang's kernel for causal attention")
    for name, x in (("b_start_loc", b_start_loc), ("b_seq_len", b_seq_len)):
        if not isinstance(x, torch.Tensor) or x.dim() != 1 or x.dtype not in (torch.int32,
                                                                            torch.int64):
            raise TypeError(f"{name} must be a 1-D int32 or int64 tensor")
    if b_start_loc.shape != b_seq_len.shape or b_seq_len.numel() == 0:
        raise ValueError(f"b_start_loc {tuple(b_start_loc.shape)} and b_seq_len "
                         f"{tuple(b_seq_len.shape)} must have the same, non-zero length")
    cu_seqlens = torch.empty(b_seq_len.numel() + 1, dtype=torch.int32, device=b_seq_len.device)
    cu_seqlens[0] = 0
    torch.cumsum(b_seq_len, 0, dtype=torch.int32, out=cu_seqlens[1:])
    vision_attention(q, k, v, cu_seqlens, int(max_input_len), out=o)
    return o


def hf_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                         value: torch.Tensor, attention_mask: torch.Tensor | None,
                         scaling: float | None = None, dropout: float = 0.0,
                         **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: query/key/value [B, H, S, D]; returns
    ([B, S, H, D], None). Packed input passes `cu_seq_lens_q` (and `max_length_q`) as the
    flash-attention path of Qwen2-VL-style towers does."""
    if attention_mask is not None:
        raise ValueError("vitune attention takes no attention_mask (vision towers attend "
                         "within segments given by cu_seq_lens_q); pass None")
    if dropout:
        raise ValueError("vitune attention is inference-only: dropout must be 0")
    if getattr(module, "is_causal", False):
        raise ValueError("vitune attention is non-causal; this module is causal")
    q, k, v = (x.transpose(1, 2) for x in (query, key, value))  # [B, S, H, D] views
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None:
        return vision_attention(q, k, v, scale=scaling), None
    if q.shape[0] != 1:
        raise ValueError("with cu_seq_lens_q the batch dimension must be 1 (packed)")
    max_len = kwargs.get("max_length_q")
    max_len = max_len if isinstance(max_len, int) else None  # a tensor would need a sync
    out = vision_attention(q[0], k[0], v[0], cu.to(torch.int32), max_len, scale=scaling)
    return out.unsqueeze(0), None


def register_hf_attention(name: str = "vitune") -> str:
    """Register `hf_attention_forward` with transformers' AttentionInterface; then load a
    model with `attn_implementation="vitune"`. Needs transformers >= 4.48."""
    try:
        from transformers import AttentionInterface
    except ImportError as exc:
        raise ImportError("register_hf_attention needs transformers >= 4.48 "
                          "(pip install transformers)") from exc
    AttentionInterface.register(name, hf_attention_forward)
    return name
