"""The end-to-end encoder benchmark at a tiny size on the CPU: every backend computes the
same encoder; unavailable ones are reported, not timed."""

import pytest
import torch

from vitune.bench.encoder import EncoderShape, ImageSegments, bench_encoder
from vitune.kernels.vision_attn.launch import kernel_is_interpreted

TINY = EncoderShape(depth=2, hidden=64, heads=2, mlp=96, full_blocks=(1,))


def test_segments_follow_qwen_geometry():
    seg = ImageSegments.for_images([(1024, 1024), (448, 448)], "cpu")
    assert seg.tokens == 5476 + 1024
    assert seg.full_cu.tolist() == [0, 5476, 6500]
    assert seg.full_max == 5476 and seg.window_max == 64
    assert seg.window_cu[-1].item() == seg.tokens


@pytest.mark.skipif(torch.cuda.is_available() or not kernel_is_interpreted(), reason="CPU lane")
def test_backends_agree_on_a_tiny_encoder():
    rows = bench_encoder([(112, 224), (112, 112)], ["sdpa-masked", "varlen_attn",
                                                    "sglang-style-fixed", "vitune-auto"],
                         torch.device("cpu"), torch.float32, shape=TINY, reps=1)
    by = {r["backend"]: r for r in rows}
    assert by["varlen_attn"]["status"] == "n/a" and "CUDA" in by["varlen_attn"]["reason"]
    for name in ("sglang-style-fixed", "vitune-auto"):
        assert by[name]["status"] == "ok" and by[name]["rel_diff_vs_first"] < 1e-4
        assert by[name]["tokens"] == 3 * 64 and by[name]["tokens_per_s"] > 0
        assert by[name]["attention_ms"] == by[name]["median_ms"] - by["no-attention"]["median_ms"]
    # The attention-free encoder bounds every backend (interpreted attention is slow here).
    assert by["no-attention"]["status"] == "bound"
    assert by["no-attention"]["median_ms"] < by["vitune-auto"]["median_ms"]


@pytest.mark.skipif(torch.cuda.is_available() or not kernel_is_interpreted(), reason="CPU lane")
def test_a_backend_out_of_memory_is_reported_and_the_rest_run(monkeypatch):
    from vitune.bench import encoder

    def huge_mask(q, k, v, cu, max_len):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 48.58 GiB. ...")

    monkeypatch.setitem(encoder.ENCODER_BACKENDS, "sdpa-masked", huge_mask)
    rows = bench_encoder([(112, 112)], ["sdpa-masked", "vitune-auto"], torch.device("cpu"),
                         torch.float32, shape=TINY, reps=1)
    assert rows[0] == {"backend": "sdpa-masked", "status": "oom",
                       "reason": "CUDA out of memory"}
    assert rows[1]["status"] == "ok" and rows[1]["rel_diff_vs_first"] is None
    assert rows[2]["backend"] == "no-attention"
