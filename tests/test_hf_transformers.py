"""The transformers registration against a real transformers install: a (tiny, random) ViT
loaded with attn_implementation="vitune" runs vitune's kernel in every layer and matches the
same model with transformers' eager attention."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from vitune.kernels.vision_attn.reference import TOLERANCE  # noqa: E402
from vitune.runtime import integrations  # noqa: E402


def test_vit_loaded_with_vitune_attention_matches_eager(tmp_path, monkeypatch):
    config = transformers.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=128, image_size=32, patch_size=8)
    torch.manual_seed(0)
    transformers.ViTModel(config).save_pretrained(tmp_path)
    assert integrations.register_hf_attention() == "vitune"
    calls = []
    real = integrations.vision_attention
    monkeypatch.setattr(integrations, "vision_attention",
                        lambda *a, **kw: calls.append(a[0].shape) or real(*a, **kw))
    eager = transformers.ViTModel.from_pretrained(tmp_path, attn_implementation="eager")
    ours = transformers.ViTModel.from_pretrained(tmp_path, attn_implementation="vitune")
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = eager(pixel_values=pixels).last_hidden_state
        got = ours(pixel_values=pixels).last_hidden_state
    assert calls == [(2, 17, 2, 32)] * 2  # [B, S, H, D]: one call per layer, batched layout
    assert ((got - want).norm() / want.norm()).item() < TOLERANCE[torch.float32]
