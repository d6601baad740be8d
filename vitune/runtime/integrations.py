"""Drop-in entry points for serving engines and model code.

- `context_attention_fwd`: the signature of SGLang's vision Triton kernel
  (`context_attention_fwd(q, k, v, o, b_start_loc, b_seq_len, max_input_len,
  is_causal=False)`), non-causal only.
- `register_hf_attention()`: the value to pass as transformers' `attn_implementation` for a
  vision tower. Qwen-VL-family towers (hf_towers.py) then make one packed call per layer
  with the rotary embedding fused; other towers without an attention mask (ViT, SigLIP,
  ...) call `hf_attention_forward` through transformers' `AttentionInterface`.
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
    """Make `name` a transformers attention implementation and return it, to pass as
    `attn_implementation` when a model is loaded or built:

    - a vision tower alone: `Qwen2_5_VisionTransformerPretrainedModel._from_config(cfg,
      attn_implementation=name)` or `.from_pretrained(path, attn_implementation=name)`;
    - a whole VLM, the language model keeping its own attention:
      `from_pretrained(path, attn_implementation={"vision_config": name, "text_config":
      "sdpa"})`.

    In the Qwen-VL family's towers (hf_towers.PACKED_VISION_ATTENTIONS) each layer then makes
    one packed call with the model's cu_seqlens and its rotary embedding fused into the
    kernel; other mask-free vision models call `hf_attention_forward` once per attention.
    The name must not contain "flash" (transformers would fetch a flash kernel for it)."""
    from vitune.runtime.hf_towers import TowerMode

    return register_tower_mode(name, TowerMode())


def register_tower_mode(name: str, mode) -> str:
    """`register_hf_attention` with the packed towers' behaviour under `name` set to `mode`
    (a hf_towers.TowerMode: the encoder benchmark's other paths)."""
    if not isinstance(name, str) or not name or "flash" in name:
        raise ValueError(f"name must be a non-empty string without 'flash', got {name!r}")
    try:
        from transformers import AttentionInterface
    except ImportError as exc:
        raise ImportError("register_hf_attention needs transformers >= 4.48 "
                          "(pip install transformers)") from exc
    from vitune.runtime import hf_towers

    AttentionInterface.register(name, hf_attention_forward)
    hf_towers.install(name, mode)
    return name
