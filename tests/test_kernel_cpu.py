"""The Triton kernel against the float64 reference, on the CPU through TRITON_INTERPRET=1.
Outputs are poisoned with NaN before each call, so an unwritten element fails."""

import pytest
import torch
from conftest import make_packed, random_lengths

from vitune import KernelConfig, reference_attention, vision_attention
from vitune.kernels.vision_attn.launch import kernel_is_interpreted
from vitune.kernels.vision_attn.reference import TOLERANCE, relative_error

pytestmark = pytest.mark.skipif(
    torch.cuda.is_available() or not kernel_is_interpreted(),
    reason="CPU lane: runs the kernel in the Triton interpreter",
)

SMALL = KernelConfig(block_m=32, block_n=32, num_warps=2, num_stages=1, head_split=True,
                     heads_fastest=True)
PADDED = KernelConfig(block_m=64, block_n=32, num_warps=4, num_stages=2, head_split=False,
                      heads_fastest=False)
CPU_DTYPES = [torch.float32, torch.float16]  # bf16 tl.dot is wrong in the interpreter


def run_poisoned(q, k, v, cu=None, **kwargs):
    out = torch.full(q.shape, float("nan"), dtype=q.dtype)
    result = vision_attention(q, k, v, cu, out=out, **kwargs)
    assert result is out
    return out


@pytest.mark.parametrize("dtype", CPU_DTYPES, ids=str)
@pytest.mark.parametrize("head_dim", [32, 64, 72, 80, 88, 112])
@pytest.mark.parametrize("cfg", [SMALL, PADDED], ids=["split", "padded"])
def test_packed_random_segments(dtype, head_dim, cfg):
    lengths = random_lengths(7, 45, seed=head_dim)
    q, k, v, cu = make_packed([0, *lengths, 0, 1], heads=2, head_dim=head_dim, dtype=dtype,
                              seed=head_dim)
    out = run_poisoned(q, k, v, cu, config=cfg)
    assert relative_error(out, reference_attention(q, k, v, cu)) < TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", CPU_DTYPES, ids=str)
def test_window_regime_many_short_segments(dtype):
    """Qwen-like windows: many segments per tile, including lengths 4 and 16."""
    lengths = [64, 64, 16, 64, 4, 48, 64, 16, 1, 33]
    q, k, v, cu = make_packed(lengths, heads=2, head_dim=80, dtype=dtype, seed=3)
    cfg = KernelConfig(block_m=128, block_n=64, num_warps=8, num_stages=2, heads_fastest=True)
    out = run_poisoned(q, k, v, cu, config=cfg, max_seqlen=64)
    assert relative_error(out, reference_attention(q, k, v, cu)) < TOLERANCE[dtype]


def test_long_segment_crosses_many_key_blocks():
    q, k, v, cu = make_packed([150, 37], heads=1, head_dim=64, dtype=torch.float32, seed=5)
    out = run_poisoned(q, k, v, cu, config=SMALL)
    assert relative_error(out, reference_attention(q, k, v, cu)) < TOLERANCE[torch.float32]


@pytest.mark.parametrize("dtype", CPU_DTYPES, ids=str)
@pytest.mark.parametrize("head_dim", [48, 80])
def test_batched_layout_with_strided_views(dtype, head_dim):
    gen = torch.Generator().manual_seed(head_dim)
    # [B, S, 3, H, D] fused qkv -> strided q, k, v; batch axis strided too
    qkv = torch.randn(2, 37, 3, 2, head_dim, generator=gen).to(dtype)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    out = run_poisoned(q, k, v, config=SMALL)
    ref = reference_attention(q, k, v)
    assert relative_error(out, ref) < TOLERANCE[dtype]


def test_non_contiguous_heads_and_strided_output():
    gen = torch.Generator().manual_seed(1)
    base = torch.randn(40, 4, 64, generator=gen)
    q, k, v = base[:, ::2], base[:, 1::2], base[:, 1::2].flip(0)  # head stride 128
    cu = torch.tensor([0, 17, 40], dtype=torch.int32)
    out_buf = torch.full((40, 2, 2, 64), float("nan"))
    out = out_buf[:, :, 0]  # non-contiguous output view
    vision_attention(q, k, v, cu, out=out, config=SMALL)
    assert relative_error(out, reference_attention(q, k, v, cu)) < TOLERANCE[torch.float32]
    assert torch.isnan(out_buf[:, :, 1]).all(), "wrote outside the output view"


def test_default_config_and_scale():
    q, k, v, cu = make_packed([20, 9], heads=2, head_dim=64, dtype=torch.float32, seed=9)
    out = vision_attention(q, k, v, cu, scale=0.3)
    ref = reference_attention(q, k, v, cu, scale=0.3)
    assert relative_error(out, ref) < TOLERANCE[torch.float32]
    assert relative_error(out, reference_attention(q, k, v, cu)) > 1e-2  # scale was used


def test_all_segments_empty_but_one_and_zero_tokens():
    q, k, v, cu = make_packed([0, 0, 5, 0], heads=1, head_dim=32, dtype=torch.float32)
    out = run_poisoned(q, k, v, cu, config=SMALL)
    assert relative_error(out, reference_attention(q, k, v, cu)) < 1e-4
    q0, k0, v0, cu0 = make_packed([0, 0], heads=1, head_dim=32, dtype=torch.float32)
    assert vision_attention(q0, k0, v0, cu0).shape == (0, 1, 32)


def test_malformed_cu_seqlens_never_reads_out_of_bounds_without_validate():
    """Past-the-end and decreasing entries are clamped inside the kernel: rows outside every
    segment come out as zeros, no garbage from beyond the tensors, no crash."""
    q, k, v, _ = make_packed([30], heads=1, head_dim=32, dtype=torch.float32)
    cu = torch.tensor([0, 10, 5, 1000], dtype=torch.int32)
    out = run_poisoned(q, k, v, cu, config=SMALL, validate=False)
    assert torch.isfinite(out).all()
    ref = reference_attention(q[:10], k[:10], v[:10], torch.tensor([0, 10]))
    assert relative_error(out[:10], ref) < 1e-4


@pytest.mark.parametrize("width", [44, 40])
def test_strides_with_and_without_the_multiple_of_8_hint(width):
    """Head rows stored 44 wide (strides not multiples of 8: passed as they are) or 40 wide
    (multiples of 8, not all of 16: passed in units of 8) give the right answer."""
    from vitune.kernels.vision_attn.launch import stride_unit

    assert stride_unit([(0, 3 * 2 * width, width)]) == (8 if width == 40 else 1)
    gen = torch.Generator().manual_seed(width)
    base = torch.randn(30, 3, 2, width, generator=gen).to(torch.float16)
    q, k, v = (base[:, i, :, :40] for i in range(3))
    cu = torch.tensor([0, 13, 30], dtype=torch.int32)
    out = run_poisoned(q, k, v, cu, config=SMALL)
    assert relative_error(out, reference_attention(q, k, v, cu)) < TOLERANCE[torch.float16]
