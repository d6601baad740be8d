"""One packed vitune call per layer in transformers' Qwen-VL-family vision towers.

These towers (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5, GLM-4V and their MoE and Omni
siblings) share one vision-attention contract: `forward(hidden_states [T, hidden],
cu_seqlens, position_embeddings=(cos, sin), max_seqlen=None, **kwargs)`, a fused `qkv`
projection, rotary embedding in the rotate-half convention, then `proj`. transformers passes
`cu_seqlens` to an attention function only when the implementation's name contains "flash";
any other name is called once per segment (8,752 calls per forward of the Qwen2.5-VL tower on
four images), and a "flash" name makes transformers load a flash kernel from its hub.

So `install()` wraps each such class's `forward` once: where the module's own config names a
vitune implementation (`config._attn_implementation`, set per sub-config by transformers from
`attn_implementation=...`), the layer makes one packed `vision_attention` call on strided
views of the qkv projection with the model's `cu_seqlens` and `max_seqlen`, and the rotary
embedding fused into the kernel (the model's own rotary step is skipped). Every other
implementation runs the class's own forward, untouched.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import sys
from dataclasses import dataclass

import torch

from vitune.runtime.api import vision_attention

log = logging.getLogger(__name__)

# (module under transformers.models, class): vision attentions with the contract above.
PACKED_VISION_ATTENTIONS = (
    ("qwen2_vl.modeling_qwen2_vl", "VisionAttention"),
    ("qwen2_5_vl.modeling_qwen2_5_vl", "Qwen2_5_VLVisionAttention"),
    ("qwen3_vl.modeling_qwen3_vl", "Qwen3VLVisionAttention"),
    ("qwen3_vl_moe.modeling_qwen3_vl_moe", "Qwen3VLMoeVisionAttention"),
    ("qwen3_5.modeling_qwen3_5", "Qwen3_5VisionAttention"),
    ("qwen3_5_moe.modeling_qwen3_5_moe", "Qwen3_5MoeVisionAttention"),
    ("qwen3_omni_moe.modeling_qwen3_omni_moe", "Qwen3OmniMoeVisionAttention"),
    ("glm4v.modeling_glm4v", "Glm4vVisionAttention"),
    ("glm4v_moe.modeling_glm4v_moe", "Glm4vMoeVisionAttention"),
)
CONTRACT = ("self", "hidden_states", "cu_seqlens", "position_embeddings", "max_seqlen")


@dataclass(frozen=True)
class TowerMode:
    """What a layer does under one vitune implementation name. The default is what
    `register_hf_attention()` gives; the others exist for the encoder benchmark."""

    backend: str = "auto"  # vision_attention's backend
    fused_rotary: bool = True  # rotate inside the kernel; else transformers' rotary first
    attend: bool = True  # False: rotary and attention skipped, v passed on (a ceiling)


_modes: dict[str, TowerMode] = {}  # attn_implementation values that mean vitune


def install(name: str, mode: TowerMode = TowerMode()) -> None:
    """Make `name` mean one packed call per layer in every installed tower class with the
    contract (each class wrapped once, whatever the names)."""
    _modes[name] = mode
    for module_name, class_name in PACKED_VISION_ATTENTIONS:
        try:
            module = importlib.import_module(f"transformers.models.{module_name}")
        except ImportError:  # an older transformers without this model
            continue
        cls = getattr(module, class_name, None)
        if cls is None:
            continue
        if not getattr(cls.forward, "_vitune_packed", False):
            params = tuple(inspect.signature(cls.forward).parameters)
            if params[:len(CONTRACT)] != CONTRACT:
                log.warning("%s.forward%s is not the packed vision-attention contract this "
                            "vitune knows; it keeps transformers' per-segment calls",
                            class_name, params)
                continue
            cls.forward = _packed(cls.forward)


def _packed(original):
    @functools.wraps(original)
    def forward(self, hidden_states: torch.Tensor, cu_seqlens: torch.Tensor,
                position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
                max_seqlen: int | None = None, **kwargs) -> torch.Tensor:
        mode = _modes.get(getattr(self.config, "_attn_implementation", None))
        if mode is None:
            return original(self, hidden_states, cu_seqlens, position_embeddings, max_seqlen,
                            **kwargs)
        tokens = hidden_states.shape[0]
        # [T, 3, H, D] views of the projection: q, k and v are read in place, no copies.
        q, k, v = self.qkv(hidden_states).view(tokens, 3, self.num_heads, -1).unbind(1)
        if not mode.attend:
            return self.proj(v.reshape(tokens, -1))
        rotary = None if position_embeddings is None else tuple(position_embeddings)
        if rotary is not None and not mode.fused_rotary:  # the model's own rotary step
            rotate = sys.modules[type(self).__module__].apply_rotary_pos_emb_vision
            q, k = rotate(q, k, *rotary)
            rotary = None
        if cu_seqlens.dtype != torch.int32:  # (int64 while tracing in some versions)
            cu_seqlens = cu_seqlens.to(torch.int32)
        out = vision_attention(
            q, k, v, cu_seqlens, max_seqlen if isinstance(max_seqlen, int) else None,
            scale=self.scaling, backend=mode.backend, rotary=rotary)
        return self.proj(out.reshape(tokens, -1))

    forward._vitune_packed = True
    return forward
