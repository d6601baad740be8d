"""The segment-major window kernel candidate (vitune/kernels/vision_attn/segments.py)
against the float64 reference: through the interpreter on the CPU, and (GPU lane) in bf16
on Qwen2.5-VL's windows with the configs its A/B times. Outputs are poisoned first."""

import pytest
import torch
from conftest import make_packed

from vitune.kernels.vision_attn.launch import kernel_is_interpreted
from vitune.kernels.vision_attn.reference import TOLERANCE, reference_attention, relative_error
from vitune.kernels.vision_attn.segments import SegmentConfig, launch_segments

interpreter_only = pytest.mark.skipif(
    torch.cuda.is_available() or not kernel_is_interpreted(),
    reason="CPU lane: runs the kernel in the Triton interpreter")

# segments shorter than, as long as and longer than a tile; empty ones; a lone token
LENGTHS = [16, 5, 0, 1, 40, 16, 0]


def run(lengths, heads, head_dim, dtype, cfg, device="cpu"):
    q, k, v, cu = make_packed(lengths, heads, head_dim, dtype, device=device)
    out = torch.full_like(q, float("nan"))
    assert launch_segments(q, k, v, out, cu, head_dim ** -0.5, cfg) is out
    return relative_error(out, reference_attention(q, k, v, cu))


@interpreter_only
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("head_dim", [32, 40])  # one chunk; 32 + 16 overlapping at 24
@pytest.mark.parametrize("cfg", [SegmentConfig(16, 16, 4, 1, 1, True),
                                 SegmentConfig(32, 16, 2, 2, 2, False),
                                 SegmentConfig(16, 32, 4, 1, 4, True)], ids=SegmentConfig.short)
def test_segment_kernel_matches_the_reference(dtype, head_dim, cfg):
    assert run(LENGTHS, 3, head_dim, dtype, cfg) < TOLERANCE[dtype]


@interpreter_only
def test_malformed_cu_seqlens_never_reach_outside_the_tensors():
    """A decreasing bound and one past the tokens are clamped: every read and write stays
    inside q, k, v and out (guard rows after each stay as they were). The runtime's
    validation is what rejects such input."""
    tokens, guard, heads, dim = 16, 4, 2, 32
    bufs = [torch.randn(tokens + guard, heads, dim) for _ in range(3)]
    for b in bufs:
        b[tokens:] = float("nan")  # a read past the tokens would reach the output
    out_buf = torch.full((tokens + guard, heads, dim), 7.0)
    q, k, v = (b[:tokens] for b in bufs)
    cu = torch.tensor([0, 10, 6, 1000], dtype=torch.int32)
    launch_segments(q, k, v, out_buf[:tokens], cu, dim ** -0.5,
                    SegmentConfig(16, 16, 4, 1, 1, True))
    assert torch.isfinite(out_buf[:tokens]).all()
    assert (out_buf[tokens:] == 7.0).all()


@pytest.mark.gpu
@pytest.mark.parametrize("head_dim", [64, 72, 80, 88, 128])
def test_segment_kernel_on_qwen_windows(head_dim):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from ab_segments import segment_configs

    from vitune.tuner.workloads import qwen_window_seqlens

    lengths = list(qwen_window_seqlens(1024, 1024))
    for cfg in segment_configs([1, 2, 4] if head_dim == 80 else [2]):
        err = run(lengths, 4, head_dim, torch.bfloat16, cfg, device="cuda")
        assert err < TOLERANCE[torch.bfloat16], f"{cfg.short()}: {err:.1e}"
