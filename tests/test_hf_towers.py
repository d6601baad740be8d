"""transformers' own Qwen-VL-family vision towers (tiny configs, random weights, the real
model classes) with `attn_implementation=register_hf_attention()`: one packed vitune launch
per layer, rotary fused, output within tolerance of the same tower on transformers' sdpa."""

import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")

from vitune.kernels.vision_attn.launch import kernel_is_interpreted  # noqa: E402
from vitune.kernels.vision_attn.reference import TOLERANCE  # noqa: E402
from vitune.runtime import api  # noqa: E402
from vitune.runtime.integrations import register_hf_attention  # noqa: E402

cpu_lane = pytest.mark.skipif(torch.cuda.is_available() or not kernel_is_interpreted(),
                              reason="CPU lane")
TINY = dict(depth=3, hidden_size=64, num_heads=2, intermediate_size=64, out_hidden_size=32)


def tower(kind: str):
    """(tower class, tiny vision config, pixel row width) of one model family."""
    if kind == "qwen2_vl":
        from transformers.models.qwen2_vl import modeling_qwen2_vl as m

        config = transformers.Qwen2VLVisionConfig(depth=3, embed_dim=64, hidden_size=32,
                                                  num_heads=2, mlp_ratio=1)
        return m.Qwen2VisionTransformerPretrainedModel, config, 3 * 2 * 14 * 14
    if kind == "qwen2_5_vl":
        from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as m

        config = transformers.Qwen2_5_VLVisionConfig(**TINY, fullatt_block_indexes=[1])
        return m.Qwen2_5_VisionTransformerPretrainedModel, config, 3 * 2 * 14 * 14
    from transformers.models.qwen3_vl import modeling_qwen3_vl as m

    config = transformers.Qwen3VLVisionConfig(**TINY, num_position_embeddings=64,
                                              deepstack_visual_indexes=[1])
    return m.Qwen3VLVisionModel, config, 3 * 2 * 16 * 16


def build(kind: str, attn: str, dtype: torch.dtype, device: str = "cpu", **overrides):
    cls, config, width = tower(kind)
    config = copy.deepcopy(config)
    for key, value in overrides.items():
        setattr(config, key, value)
    torch.manual_seed(0)  # the same random weights for every attention implementation
    model = cls._from_config(config, attn_implementation=attn)
    return model.to(device, dtype).eval(), width


@pytest.fixture
def launches(monkeypatch):
    """Every Triton launch the runtime makes: whether it carried the rotary embedding."""
    seen = []
    real = api.run_launch
    monkeypatch.setattr(api, "run_launch",
                        lambda *a, **kw: seen.append(kw.get("rotary") is not None)
                        or real(*a, **kw))
    return seen


@cpu_lane
@pytest.mark.parametrize("kind,dtype", [("qwen2_vl", torch.float32),
                                        ("qwen2_5_vl", torch.float32),
                                        ("qwen2_5_vl", torch.float16),
                                        ("qwen3_vl", torch.float32)])
def test_one_packed_launch_per_layer_matches_sdpa(kind, dtype, launches):
    name = register_hf_attention()
    want_model, width = build(kind, "sdpa", dtype)
    ours, _ = build(kind, name, dtype)
    # Two images: 8 x 12 and 4 x 4 patches (Qwen2.5-VL: windows of 64, 32 and 16 tokens).
    grid = torch.tensor([[1, 8, 12], [1, 4, 4]])
    pixels = torch.randn(int(grid.prod(-1).sum()), width).to(dtype)
    with torch.no_grad():
        want = want_model(pixels, grid_thw=grid).last_hidden_state.float()
        assert launches == []  # (sdpa never reaches vitune)
        got = ours(pixels, grid_thw=grid).last_hidden_state.float()
    assert launches == [True] * len(ours.blocks)  # one launch per layer, rotary fused
    assert ((got - want).norm() / want.norm()).item() < TOLERANCE[dtype]


@cpu_lane
def test_whole_vlm_from_pretrained_vision_tower_only(tmp_path, launches):
    """A whole VLM loaded with a per-sub-config attn_implementation: the vision tower runs
    vitune, the language model keeps sdpa."""
    name = register_hf_attention()
    config = transformers.Qwen2_5_VLConfig(
        vision_config=dict(TINY, fullatt_block_indexes=[1]),
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, vocab_size=128,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e4,
                                          "mrope_section": [2, 2, 4]}))
    torch.manual_seed(0)
    transformers.Qwen2_5_VLForConditionalGeneration(config).save_pretrained(tmp_path)
    cls = transformers.Qwen2_5_VLForConditionalGeneration
    ours = cls.from_pretrained(tmp_path, attn_implementation={"vision_config": name,
                                                              "text_config": "sdpa"}).eval()
    plain = cls.from_pretrained(tmp_path, attn_implementation="sdpa").eval()
    assert ours.model.visual.config._attn_implementation == name
    assert ours.model.language_model.config._attn_implementation == "sdpa"
    grid = torch.tensor([[1, 8, 8]])
    pixels = torch.randn(64, 3 * 2 * 14 * 14)
    with torch.no_grad():
        want = plain.model.get_image_features(pixels, grid).pooler_output
        got = ours.model.get_image_features(pixels, grid).pooler_output
    got, want = torch.cat(list(got)), torch.cat(list(want))
    assert launches == [True] * config.vision_config.depth
    assert ((got - want).norm() / want.norm()).item() < TOLERANCE[torch.float32]


def test_names_transformers_would_take_for_flash_are_refused():
    with pytest.raises(ValueError, match="without 'flash'"):
        register_hf_attention("vitune_flash")


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["qwen2_5_vl", "qwen3_vl"])
def test_gpu_bf16_tower_at_real_head_dims(kind, launches):
    """Head dims 80 (Qwen2.5-VL) and 72 (Qwen3-VL), bf16, two images of 448 x 448 and
    448 x 672 pixels: 64-token windows and full layers of 1,024 and 1,536 tokens."""
    name = register_hf_attention()
    heads_dim = {"qwen2_5_vl": 160, "qwen3_vl": 144}[kind]  # 2 heads of 80 / 72
    kw = dict(hidden_size=heads_dim, depth=4)
    want_model, width = build(kind, "sdpa", torch.bfloat16, "cuda", **kw)
    ours, _ = build(kind, name, torch.bfloat16, "cuda", **kw)
    patch = 14 if kind == "qwen2_5_vl" else 16
    grid = torch.tensor([[1, 448 // patch, 448 // patch], [1, 448 // patch, 672 // patch]])
    pixels = torch.randn(int(grid.prod(-1).sum()), width, device="cuda",
                         dtype=torch.bfloat16)
    with torch.no_grad():
        want = want_model(pixels, grid_thw=grid.cuda()).last_hidden_state.float()
        got = ours(pixels, grid_thw=grid.cuda()).last_hidden_state.float()
    assert launches == [True] * 4
    assert ((got - want).norm() / want.norm()).item() < TOLERANCE[torch.bfloat16]
