"""The encoder benchmark on transformers' real tower classes (tiny configs on the CPU
through the interpreter): every path computes the same tower, unavailable ones are
reported, and the skip-attention ceiling bounds the rest."""

import pytest
import torch

pytest.importorskip("transformers")

from vitune.bench.encoder import PATHS, bench_tower, grid_for, tower_inputs  # noqa: E402
from vitune.kernels.vision_attn.launch import kernel_is_interpreted  # noqa: E402

TINY = {"qwen2.5-vl": dict(depth=3, hidden_size=64, num_heads=2, intermediate_size=64,
                           out_hidden_size=32, fullatt_block_indexes=[1]),
        "qwen3-vl": dict(depth=2, hidden_size=64, num_heads=2, intermediate_size=64,
                         out_hidden_size=32, num_position_embeddings=64,
                         deepstack_visual_indexes=[1]),
        "qwen2-vl": dict(depth=2, embed_dim=64, hidden_size=32, num_heads=2, mlp_ratio=1)}


def test_images_become_the_processors_grids():
    from vitune.bench.encoder import build_tower

    model = build_tower("qwen2.5-vl", torch.device("cpu"), torch.float32, TINY["qwen2.5-vl"])
    # The batch: 10,764 + 5,476 + 2 x 1,024 = 18,288 patches.
    assert grid_for(1092, 1932, model.config) == (1, 78, 138)
    assert grid_for(1036, 1036, model.config) == (1, 74, 74)
    pixels, kwargs = tower_inputs("qwen2.5-vl", model, [(1092, 1932), (1036, 1036),
                                                        (448, 448), (448, 448)],
                                  torch.device("cpu"), torch.float32)
    assert pixels.shape == (18288, 3 * 2 * 14 * 14)
    assert kwargs["max_seqlen"] == 10764 and kwargs["max_window_seqlen"] == 64


@pytest.mark.parametrize("kind", ["qwen2.5-vl", "qwen3-vl"])
def test_tune_presets_hold_the_towers_own_segments(kind):
    """`vitune tune --preset <tower>`: its full-attention workloads are the segments and head
    dim that transformers' tower of the published config makes of the preset's images."""
    import transformers

    from vitune.bench.encoder import TOWERS
    from vitune.bench.presets import TUNE_PRESETS

    spec = TOWERS[kind]
    config = getattr(transformers, spec.config_class)(**spec.config)
    sizes = {"448x448 x8": ((448, 448),) * 8, "1024x1024 x2": ((1024, 1024),) * 2,
             "1920x1080": ((1080, 1920),)}
    full = [w for w in TUNE_PRESETS[kind] if w.regime == "full"]
    assert len(full) == len(sizes)
    for workload in full:
        images = sizes[workload.name.removeprefix(f"{kind} full ")]
        assert workload.seqlens == tuple(h * w for _, h, w in (grid_for(*i, config)
                                                                for i in images))
        assert workload.head_dim == config.hidden_size // config.num_heads


@pytest.mark.skipif(torch.cuda.is_available() or not kernel_is_interpreted(), reason="CPU lane")
@pytest.mark.parametrize("kind", sorted(TINY))
def test_paths_agree_on_a_tiny_tower(kind):
    rows = bench_tower(kind, [(112, 168), (56, 56)], list(PATHS), torch.device("cpu"),
                       torch.float32, reps=1, overrides=TINY[kind])
    by = {r["path"]: r for r in rows}
    assert [r["path"] for r in rows] == [*PATHS, "skip-attention"]
    assert by["varlen+hf-rotary"]["status"] == "n/a" and "CUDA" in by["varlen+hf-rotary"]["reason"]
    assert by["transformers-sdpa"]["rel_diff_vs_first"] is None
    for path in ("vitune+hf-rotary", "vitune"):
        row = by[path]
        assert row["status"] == "ok" and row["rel_diff_vs_first"] < 1e-5
        assert row["tokens"] == (96 if kind == "qwen3-vl" else 112)  # 8x12 (8x10) + 4x4
        assert row["attention_rotary_ms"] == row["median_ms"] - by["skip-attention"]["median_ms"]
        assert 0 < row["attention_rotary_share"] < 1  # interpreted attention is slow here
    assert by["skip-attention"]["status"] == "bound"


def test_a_tower_the_installed_transformers_lacks_is_a_clear_error(monkeypatch):
    from vitune.bench import encoder

    monkeypatch.setitem(encoder.TOWERS, "qwen9-vl", encoder.TowerSpec(
        "qwen9_vl.modeling_qwen9_vl", "Qwen9VisionModel", "Qwen9VLVisionConfig"))
    with pytest.raises(ValueError, match="has no qwen9-vl vision tower"):
        encoder.build_tower("qwen9-vl", torch.device("cpu"), torch.float32)
